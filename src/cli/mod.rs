//! CLI subcommands that drive the model (the binary's own modules; the library knows nothing of them).

pub mod bench_unet;
pub mod convert;
pub mod depth;
pub mod generate;
pub mod plan;
pub mod shaders;
