//! The binary's commands: one module per `trajattn` command (its clap arguments and its body), plus the global GPU
//! options. The library knows nothing of them.

pub mod bench;
pub mod bench_unet;
pub mod camera;
pub mod convert;
pub mod demo;
pub mod depth;
pub mod drag;
pub mod edit;
pub mod eval;
pub mod generate;
pub mod gpu_args;
pub mod info;
pub mod plan;
pub mod shaders;
pub mod trajectories;
pub mod video_camera;
