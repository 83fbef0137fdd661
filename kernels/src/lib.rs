//! trajattn-kernels: the GPU runtime of trajattn — adapter and device, tensors, buffer pool, pipeline cache,
//! dispatch recording, and WGSL compute kernels, each with a float64 CPU reference.
//!
//! Where things live (paths from the crate root, `kernels/`): an op `foo` has its WGSL in `shaders/foo.wgsl`,
//! its launcher, float64 CPU reference and benchmark case in `src/ops/foo.rs` (a large op is a folder,
//! `src/ops/foo/{mod,reference,bench,…}.rs`), its tests in `tests/foo.rs`; its `BENCH` entry is listed in
//! [`ops::bench_entries`], run by `trajattn bench foo` and `cargo bench`. Test helpers (`testing`) need the
//! `testing` feature.

pub mod arena;
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
