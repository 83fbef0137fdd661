//! Depth-Anything-V2 (relative monocular depth): the official preprocessing and post-processing
//! (`preprocess`) and the colour-mapped preview (`preview`). Reference: `docs/reference/depth-anything-v2.md`.

pub mod preprocess;
pub mod preview;

use thiserror::Error;

/// Why depth preprocessing, post-processing or the preview failed.
#[derive(Debug, Error)]
pub enum DepthError {
    /// `--input-size` is zero or not a multiple of the patch size.
    #[error("--input-size {0} is not usable: it must be a positive multiple of 14 (the model's patch size), e.g. 518")]
    InputSize(usize),
    /// An image or map with no pixels.
    #[error("{what} is {height}×{width} pixels; it must have at least one pixel")]
    Empty { what: String, height: usize, width: usize },
    /// A buffer whose length does not match the size it is said to have.
    #[error("{what}: expected {expected} values, got {got}")]
    Shape { what: String, expected: String, got: String },
    /// A size over a limit of [`crate::limits`].
    #[error(transparent)]
    Limit(#[from] crate::limits::LimitError),
    /// Writing the preview image failed.
    #[error("cannot write the depth preview {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: image::ImageError,
    },
}
