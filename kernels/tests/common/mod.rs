//! Shared setup for kernel tests: one device per test binary.
#![allow(dead_code)]

use std::sync::Arc;
use trajattn_kernels::Gpu;

/// The shared device (lavapipe in CI). Panics with the driver-install hint if there is none.
pub fn gpu() -> Arc<Gpu> {
    Gpu::shared().unwrap_or_else(|e| panic!("no GPU for tests: {e}"))
}

/// Dtypes to test on this adapter: f32 always, f16 when the adapter has SHADER_F16.
pub fn dtypes(gpu: &Gpu) -> Vec<trajattn_kernels::DType> {
    let mut v = vec![trajattn_kernels::DType::F32];
    if gpu.caps.shader_f16 {
        v.push(trajattn_kernels::DType::F16);
    }
    v
}
