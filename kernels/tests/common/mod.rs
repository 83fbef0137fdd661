//! Shared setup for kernel tests: one device per test binary.
#![allow(dead_code)]

use std::sync::Arc;
use trajattn_kernels::Gpu;

/// The shared device (lavapipe in CI). Panics with the driver-install hint if there is none.
pub fn gpu() -> Arc<Gpu> {
    Gpu::shared().unwrap_or_else(|e| panic!("no GPU for tests: {e}"))
}

/// A device on the default tier whose storage-binding limit is lowered to `bytes`, so a test forces the binding
/// splits with small tensors on any adapter (a discrete GPU's limit is GiBs).
pub fn gpu_with_max_binding(bytes: u64) -> Gpu {
    let opts = trajattn_kernels::GpuOptions { max_binding: Some(bytes), ..Default::default() };
    let gpu = Gpu::new(&opts).unwrap_or_else(|e| panic!("no GPU for tests: {e}"));
    assert_eq!(gpu.max_binding(), bytes, "the binding limit was not lowered");
    gpu
}

/// A device with the sg8 kernel tier forced (the `_sg8` / lavapipe-tier kernels), or `None`, said on stderr, where
/// the adapter has no subgroups of exactly 8 lanes: a test of those kernels then skips visibly instead of running
/// the GPU-tier kernels under their name.
pub fn sg8_tier(test: &str) -> Option<Gpu> {
    let opts = trajattn_kernels::GpuOptions {
        kernels: Some(trajattn_kernels::select::KernelSet::Sg8),
        ..Default::default()
    };
    match Gpu::new(&opts) {
        Ok(gpu) => Some(gpu),
        Err(e) => {
            eprintln!("SKIPPED {test}: the sg8 kernel tier does not run on this adapter ({e})");
            None
        }
    }
}

/// Dtypes to test on this adapter: f32 always, f16 when the adapter has SHADER_F16.
pub fn dtypes(gpu: &Gpu) -> Vec<trajattn_kernels::DType> {
    let mut v = vec![trajattn_kernels::DType::F32];
    if gpu.caps.shader_f16 {
        v.push(trajattn_kernels::DType::F16);
    }
    v
}

/// Runs a self-attention launcher on a random fused QKV tensor `[b, seq, 3·heads·d]` (values × `mul`, rounded
/// through f16 for an f16 run) into a NaN-poisoned output and checks it against the float64 reference with `tol`.
pub fn check_self_attention(
    gpu: &Gpu,
    launch: trajattn_kernels::ops::flash_attention::AttnLauncher,
    s: trajattn_kernels::ops::flash_attention::AttnShape,
    mul: f32,
    dtype: trajattn_kernels::DType,
    seed: u64,
    tol: f64,
) {
    use trajattn_kernels::ops::flash_attention::{reference, Strided};
    use trajattn_kernels::testing::{assert_close, rand_vec, round_f16, to_f64};
    use trajattn_kernels::{DType, Recorder, Tensor};
    let w = s.heads * s.head_dim;
    let v: Vec<f32> = rand_vec(seed, s.batch * s.seq_q * 3 * w).into_iter().map(|x| x * mul).collect();
    let host = if dtype == DType::F16 { round_f16(&v) } else { v };
    let qkv = Tensor::from_f32(gpu, &host, &[s.batch, s.seq_q, 3 * w], dtype).unwrap();
    let out = Tensor::empty(gpu, &[s.batch, s.seq_q, w], dtype).unwrap();
    out.poison(gpu);
    let mut rec = Recorder::new(gpu);
    let (q, k, vv) = (Strided::fused(&qkv, 0, w), Strided::fused(&qkv, 1, w), Strided::fused(&qkv, 2, w));
    launch(&mut rec, s, q, k, vv, &out, None).unwrap();
    rec.run().unwrap();
    let h = to_f64(&host);
    let scale = 1.0 / (s.head_dim as f64).sqrt();
    let want = reference::attention(&s, (&h, 0, 3 * w), (&h, w, 3 * w), (&h, 2 * w, 3 * w), scale);
    assert_close(&format!("{s:?} ×{mul} {dtype}"), &out.to_f32(gpu).unwrap(), &want, tol);
}
