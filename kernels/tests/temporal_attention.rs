//! Temporal attention (many short sequences) against the float64 plain-softmax reference of flash attention.

mod common;

use trajattn_kernels::ops::flash_attention::{reference, AttnShape, Strided};
use trajattn_kernels::ops::temporal_attention::{self, ShortPlan, MAX_SEQ};
use trajattn_kernels::select::KernelSet;
use trajattn_kernels::testing::{assert_close, rand_vec, to_f64};
use trajattn_kernels::{DType, Gpu, GpuOptions, Recorder, Tensor};

/// A device with the GPU kernel tier forced (lavapipe would otherwise pick the sg8 tier), and an optional
/// lowered binding limit.
fn gpu_tier(max_binding: Option<u64>) -> Gpu {
    Gpu::new(&GpuOptions { kernels: Some(KernelSet::Gpu), max_binding, ..Default::default() }).unwrap()
}

/// Which temporal kernels ran on `gpu`: (GPU tier `temporal_gpu`, lavapipe tier `temporal`).
fn ran(gpu: &Gpu) -> (bool, bool) {
    (
        gpu.pipelines().used("temporal_attention_gpu", "temporal_gpu"),
        gpu.pipelines().used("temporal_attention", "temporal"),
    )
}

// f32: softmax over ≤ 64 scores and a weighted sum of ≤ 64 rows in f32 → 1e-4 (stated like flash attention's).
// f16: inputs rounded to f16 (mirrored in the reference) and the output stored in f16 (2^-11) → 3e-3.
fn tol(d: DType) -> f64 {
    match d {
        DType::F32 => 1e-4,
        DType::F16 => 3e-3,
    }
}

fn check(gpu: &Gpu, s: AttnShape, mul: f32, dtype: DType, seed: u64) {
    common::check_self_attention(
        gpu,
        temporal_attention::record_temporal_attention,
        s,
        mul,
        dtype,
        seed,
        tol(dtype),
    );
}

#[test]
fn odd_sequence_counts_frames_and_head_dims() {
    // The sg8-tier kernel (`temporal`); the GPU tier's `temporal_gpu` has its own test below.
    let Some(gpu) = common::sg8_tier("temporal attention sg8 tier") else { return };
    for dtype in common::dtypes(&gpu) {
        for (i, &(n, l, heads, d)) in [
            (37, 14, 3, 24),
            (37, 25, 5, 64),
            (11, 7, 2, 80),
            (5, 1, 4, 16),
            (9, 50, 1, 40),
            (3, MAX_SEQ, 2, 128),
        ]
        .iter()
        .enumerate()
        {
            check(&gpu, AttnShape::self_attn(n, l, heads, d), 1.0, dtype, 200 + i as u64);
        }
    }
    assert_eq!(ran(&gpu), (false, true), "{:?}", gpu.pipelines().keys());
}

#[test]
fn large_logits_need_the_max_subtraction() {
    let gpu = common::gpu();
    for dtype in common::dtypes(&gpu) {
        check(&gpu, AttnShape::self_attn(13, 25, 2, 64), 30.0, dtype, 300);
    }
}

#[test]
fn agrees_with_flash_attention_on_unet_temporal_shapes() {
    use trajattn_kernels::ops::flash_attention::record_flash_attention;
    let gpu = common::gpu();
    let s = AttnShape::self_attn(129, 14, 5, 64);
    let w = 5 * 64;
    let qkv =
        Tensor::from_f32(&gpu, &rand_vec(400, 129 * 14 * 3 * w), &[129 * 14, 3 * w], DType::F32).unwrap();
    let (a, b) = (
        Tensor::empty(&gpu, &[129 * 14, w], DType::F32).unwrap(),
        Tensor::empty(&gpu, &[129 * 14, w], DType::F32).unwrap(),
    );
    a.poison(&gpu);
    b.poison(&gpu);
    let mut rec = Recorder::new(&gpu);
    let (q, k, v) = (Strided::fused(&qkv, 0, w), Strided::fused(&qkv, 1, w), Strided::fused(&qkv, 2, w));
    temporal_attention::record_temporal_attention(&mut rec, s, q, k, v, &a, None).unwrap();
    record_flash_attention(&mut rec, s, q, k, v, &b, None).unwrap();
    rec.run().unwrap();
    let bb: Vec<f64> = b.to_f32(&gpu).unwrap().iter().map(|&x| x as f64).collect();
    // Both f32 with different summation orders → 1e-4.
    assert_close("temporal vs flash", &a.to_f32(&gpu).unwrap(), &bb, 1e-4);
}

#[test]
fn gpu_tier_odd_shapes_frames_and_head_dims() {
    let gpu = gpu_tier(None);
    for dtype in common::dtypes(&gpu) {
        // (sequences, frames, heads, head dim): frames 14, 25, 2F = 50 and odd ones, head dims 40/64/80/160 and
        // others, down to a single token and up to MAX_SEQ.
        for (i, &(n, l, heads, d)) in [
            (37, 14, 3, 40),
            (13, 25, 5, 64),
            (11, 7, 2, 80),
            (5, 50, 2, 160),
            (9, 33, 3, 64),
            (6, 1, 4, 16),
            (3, MAX_SEQ, 2, 128),
            (4, 61, 1, 4),
            (7, 25, 1, 256),
        ]
        .iter()
        .enumerate()
        {
            check(&gpu, AttnShape::self_attn(n, l, heads, d), 1.0, dtype, 600 + i as u64);
        }
        check(&gpu, AttnShape::self_attn(13, 25, 2, 64), 30.0, dtype, 650);
    }
    assert_eq!(
        ran(&gpu),
        (true, false),
        "the GPU tier must run temporal_gpu only: {:?}",
        gpu.pipelines().keys()
    );
}

#[test]
fn head_dims_above_128_take_the_gpu_kernel_on_every_tier() {
    let gpu = common::gpu();
    for dtype in common::dtypes(&gpu) {
        check(&gpu, AttnShape::self_attn(5, 25, 2, 160), 1.0, dtype, 700);
    }
    assert!(ran(&gpu).0, "head dim 160 must run temporal_gpu");
}

#[test]
fn gpu_plans_fit_the_adapter() {
    let gpu = gpu_tier(None);
    for l in 1..=MAX_SEQ {
        for d in [4, 40, 64, 80, 128, 160, 256] {
            let p = ShortPlan::new(&gpu, l, d).expect("plan");
            let lq = p.lm / 4;
            assert!(
                p.lm >= l && p.lm.is_multiple_of(4) && p.wg >= lq * lq && p.wg.is_multiple_of(64),
                "{p:?}"
            );
            assert!(p.wg <= gpu.limits.max_compute_invocations_per_workgroup as usize, "{p:?}");
            assert!(p.workgroup_bytes() <= gpu.limits.max_compute_workgroup_storage_size as usize, "{p:?}");
        }
    }
    assert!(ShortPlan::new(&gpu, MAX_SEQ + 1, 64).is_none() && ShortPlan::new(&gpu, 25, 62).is_none());
    // The constants the AMD statistics in BENCHMARKS.md were taken at (any adapter with ≥ 32 KiB workgroup
    // memory and ≥ 256 invocations).
    if gpu.limits.max_compute_workgroup_storage_size >= 32 << 10 {
        for (l, d, lm, dc4, wg) in
            [(25, 64, 28, 4, 64), (14, 64, 16, 4, 64), (50, 64, 52, 4, 192), (64, 128, 64, 4, 256)]
        {
            assert_eq!(ShortPlan::new(&gpu, l, d), Some(ShortPlan { d, lm, dc4, wg }), "L {l} D {d}");
        }
    }
}

#[test]
fn input_above_binding_limit_is_split_over_sequences() {
    // 1 MiB bindings on any adapter (default tier): ten sequences' fused Q/K/V rows per dispatch.
    split_over_sequences(&common::gpu_with_max_binding(1 << 20));
}

#[test]
fn gpu_tier_input_above_binding_limit_is_split_over_sequences() {
    // 1 MiB bindings: ten sequences' fused Q/K/V rows per dispatch.
    let gpu = gpu_tier(Some(1 << 20));
    split_over_sequences(&gpu);
    assert_eq!(ran(&gpu), (true, false));
}

fn split_over_sequences(gpu: &Gpu) {
    let (heads, d, l) = (5, 64, 25);
    let w = heads * d;
    let per_seq = (l * 3 * w * 4) as u64;
    assert!(
        gpu.max_binding() <= 1 << 20,
        "callers lower the binding limit so the split runs with small tensors"
    );
    let n = (gpu.max_binding() / per_seq + 9) as usize;
    let host = rand_vec(500, n * l * 3 * w);
    let qkv = Tensor::from_f32(gpu, &host, &[n, l, 3 * w], DType::F32).unwrap();
    let out = Tensor::empty(gpu, &[n, l, w], DType::F32).unwrap();
    out.poison(gpu);
    let s = AttnShape::self_attn(n, l, heads, d);
    let mut rec = Recorder::new(gpu);
    let (q, k, v) = (Strided::fused(&qkv, 0, w), Strided::fused(&qkv, 1, w), Strided::fused(&qkv, 2, w));
    temporal_attention::record_temporal_attention(&mut rec, s, q, k, v, &out, None).unwrap();
    assert!(rec.len() >= 2, "expected several dispatches, got {}", rec.len());
    rec.run().unwrap();
    let got = out.to_f32(gpu).unwrap();
    let one = AttnShape::self_attn(1, l, heads, d);
    let split = (gpu.max_binding() / per_seq) as usize;
    for si in [0, split.saturating_sub(1), split, split + 1, n - 1] {
        let hs = to_f64(&host[si * l * 3 * w..(si + 1) * l * 3 * w]);
        let want = reference::attention(&one, (&hs, 0, 3 * w), (&hs, w, 3 * w), (&hs, 2 * w, 3 * w), 0.125);
        assert_close(&format!("sequence {si} of {n}"), &got[si * l * w..(si + 1) * l * w], &want, 1e-4);
    }
}

#[test]
fn bad_shapes_are_errors() {
    let gpu = common::gpu();
    let qkv = Tensor::from_f32(&gpu, &rand_vec(1, 4 * 70 * 3 * 64), &[4, 70, 192], DType::F32).unwrap();
    let out = Tensor::empty(&gpu, &[4, 70, 64], DType::F32).unwrap();
    let (q, k, v) = (Strided::fused(&qkv, 0, 64), Strided::fused(&qkv, 1, 64), Strided::fused(&qkv, 2, 64));
    let mut rec = Recorder::new(&gpu);
    let e = temporal_attention::record_temporal_attention(
        &mut rec,
        AttnShape::self_attn(4, 70, 1, 64),
        q,
        k,
        v,
        &out,
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("70") && e.contains("flash"), "{e}");
    let e = temporal_attention::record_temporal_attention(
        &mut rec,
        AttnShape::self_attn(4, 35, 1, 62),
        q,
        k,
        v,
        &out,
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("62"), "{e}");
    let e = temporal_attention::record_temporal_attention(
        &mut rec,
        AttnShape::self_attn(1, 35, 1, 260),
        q,
        k,
        v,
        &out,
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("260") && e.contains("256"), "{e}");
}
