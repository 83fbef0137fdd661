//! Trajectories: the official folder format, camera paths from depth, and previews.

pub mod build;
pub mod camera;
pub mod folder;
pub mod merge;
pub mod npy;
pub mod poses;
pub mod preview;
pub mod synthetic;
pub mod warp;
