//! trajattn: camera- and motion-controlled video generation (Trajectory Attention on Stable Video Diffusion)
//! on any GPU through wgpu. The GPU runtime and kernels live in the `trajattn-kernels` crate; this crate holds
//! everything about the model and the user.

pub mod checkpoint;
pub mod demo;
pub mod depth;
pub mod eval;
pub mod graph;
pub mod image_input;
pub mod limits;
pub mod models;
pub mod nn;
pub mod nvs;
pub mod output;
pub mod pipeline;
pub mod rng;
pub mod sampler;
pub mod trajectory;
pub mod video;
