//! Depth-Anything-V2 (relative monocular depth) on the GPU runtime: configuration, weight loading (official
//! `.pth`, safetensors, transformers `-hf`), the DINOv2 + DPT network, preprocessing and post-processing
//! (`docs/reference/depth-anything-v2.md`). `trajattn depth` and `camera --depth-model` run it.

pub mod config;
pub mod load;
pub mod model;
pub mod pos_embed;
pub mod preprocess;
pub mod preview;

pub use config::{DepthConfig, Encoder};
pub use model::DepthAnything;

/// Why depth could not be computed. Every message names the file or the value at fault.
#[derive(Debug, thiserror::Error)]
pub enum DepthError {
    /// A bad argument or input.
    #[error("{0}")]
    Input(String),
    /// Weights that are not a usable Depth-Anything-V2 checkpoint.
    #[error("{path}: {msg}")]
    Weights { path: String, msg: String },
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error(transparent)]
    Upload(#[from] crate::nn::WeightsError),
    #[error(transparent)]
    Kernel(#[from] trajattn_kernels::KernelError),
    #[error(transparent)]
    Image(#[from] crate::image_input::ImageInputError),
    #[error(transparent)]
    Limit(#[from] crate::limits::LimitError),
    // The variants below are the preprocessing work's (branch `depthref`), kept identical for the merge.
    /// `--input-size` is zero or not a multiple of the patch size.
    #[error("--input-size {0} is not usable: it must be a positive multiple of 14 (the model's patch size), e.g. 518")]
    InputSize(usize),
    /// An image or map with no pixels.
    #[error("{what} is {height}×{width} pixels; it must have at least one pixel")]
    Empty { what: String, height: usize, width: usize },
    /// A buffer whose length does not match the size it is said to have.
    #[error("{what}: expected {expected} values, got {got}")]
    Shape { what: String, expected: String, got: String },
    /// Writing the preview image failed.
    #[error("cannot write the depth preview {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: image::ImageError,
    },
}
