//! Measuring what a generated video did with the motion it was asked for.
//!
//! [`drag`]: where the dragged regions went compared with their requested paths, and how far the regions that
//! should stay still drifted — in pixels, the quantity behind the paper's drag and camera metrics
//! (docs/reference/evaluation.md §5).

pub mod drag;
