//! trajattn-kernels: the GPU runtime of trajattn — adapter and device, tensors, buffer pool, pipeline cache,
//! dispatch recording, and WGSL compute kernels, each with a float64 CPU reference.
//!
//! Where things live: an op `foo` has its WGSL in `shaders/foo.wgsl`, its launcher and CPU reference in
//! `kernels/src/ops/foo.rs`, its tests in `kernels/tests/foo.rs`, and its benchmark case in the same op file
//! (`bench_case`), run by `trajattn bench foo` and `cargo bench`.

pub mod bench;
pub mod compare;
pub mod disk_cache;
pub mod dispatch;
pub mod dtype;
pub mod error;
pub mod gpu;
pub mod lender;
pub mod ops;
pub mod params;
pub mod pipelines;
pub mod pool;
pub mod select;
pub mod selfcheck;
pub mod shaders;
pub mod tensor;
#[cfg(feature = "testing")]
pub mod testing;
pub mod timing;

pub use dispatch::{Recorder, Recording};
pub use dtype::DType;
pub use error::{KernelError, Result};
pub use gpu::{BackendChoice, Gpu, GpuOptions};
pub use tensor::Tensor;
