//! Flash attention against the float64 plain-softmax reference.

mod common;

use trajattn_kernels::ops::flash_attention::{self, reference, AttnShape, Strided};
use trajattn_kernels::select::KernelSet;
use trajattn_kernels::testing::{assert_close, rand_vec, round_f16, to_f64};
use trajattn_kernels::{DType, Gpu, GpuOptions, KernelError, Recorder, Tensor};

// f32: each output is a softmax-weighted sum over up to ~1000 keys with f32 exp and accumulation (and an
// online rescaling): a long reduction → 1e-4. f16: storage rounding of inputs (mirrored in the reference) and
// of the output (2^-11 relative) → 3e-3.
fn tol(d: DType) -> f64 {
    match d {
        DType::F32 => 1e-4,
        DType::F16 => 3e-3,
    }
}

fn data(seed: u64, n: usize, mul: f32, dtype: DType) -> Vec<f32> {
    let v: Vec<f32> = rand_vec(seed, n).into_iter().map(|x| x * mul).collect();
    if dtype == DType::F16 {
        round_f16(&v)
    } else {
        v
    }
}

/// Fused-QKV self-attention through flash attention against the float64 reference.
fn check_fused(gpu: &Gpu, s: AttnShape, mul: f32, dtype: DType, seed: u64) {
    common::check_self_attention(
        gpu,
        flash_attention::record_flash_attention,
        s,
        mul,
        dtype,
        seed,
        tol(dtype),
    );
}

#[test]
fn fused_qkv_odd_shapes_match_reference() {
    let gpu = common::gpu();
    for dtype in common::dtypes(&gpu) {
        for (i, &(b, seq, heads, d)) in
            [(3, 37, 2, 64), (1, 1, 3, 64), (2, 7, 5, 64), (1, 257, 4, 80), (3, 19, 2, 36)].iter().enumerate()
        {
            check_fused(&gpu, AttnShape::self_attn(b, seq, heads, d), 1.0, dtype, 100 + i as u64);
        }
    }
}

#[test]
fn long_sequence_and_large_logits() {
    // Values ×8 give logits of tens: the running max changes many times and the rescaling must be exact. One
    // head at 1031 tokens: one batch's fused QKV (792 KB) fits a binding limit lowered to 1 MiB.
    let gpu = common::gpu();
    check_fused(&gpu, AttnShape::self_attn(1, 1031, 1, 64), 1.0, DType::F32, 7);
    check_fused(&gpu, AttnShape::self_attn(2, 129, 3, 64), 8.0, DType::F32, 8);
    if gpu.caps.shader_f16 {
        check_fused(&gpu, AttnShape::self_attn(1, 300, 2, 64), 4.0, DType::F16, 9);
    }
}

#[test]
fn subgroup_and_register_paths_match_reference() {
    // Head dims that are multiples of 32 take `attn_sg8` on 8-lane-subgroup adapters (lavapipe); the same shapes
    // on a device without subgroups run the GPU tier (`attn_fa2`). Odd sequence lengths leave partial key blocks
    // and idle lanes.
    let shapes = [(2, 45, 3, 32), (1, 70, 2, 64), (3, 9, 1, 96), (1, 33, 2, 128)];
    let run = |gpu: &Gpu| {
        for dtype in common::dtypes(gpu) {
            for (i, &(b, seq, heads, d)) in shapes.iter().enumerate() {
                check_fused(gpu, AttnShape::self_attn(b, seq, heads, d), 2.0, dtype, 300 + i as u64);
            }
        }
    };
    if let Some(sg8) = common::sg8_tier("flash attention attn_sg8") {
        run(&sg8);
        let p = sg8.pipelines();
        assert!(p.used("flash_attention_sg8", "attn_sg8"), "attn_sg8 did not run: {:?}", p.keys());
        assert!(!p.used("flash_attention_fa2", "attn_fa2"), "multiples of 32 ran attn_fa2 on the sg8 tier");
    }
    let plain = Gpu::new(&GpuOptions { disable: vec!["subgroup".into()], ..Default::default() }).unwrap();
    run(&plain);
    assert_only_fa2(&plain);
}

#[test]
fn wide_and_odd_head_dims() {
    // 512 = the VAE mid-block head; 6 and 130: partial vec4 column groups.
    let gpu = common::gpu();
    for dtype in common::dtypes(&gpu) {
        check_fused(&gpu, AttnShape::self_attn(1, 23, 1, 512), 1.0, dtype, 11);
        check_fused(&gpu, AttnShape::self_attn(2, 13, 3, 6), 1.0, dtype, 12);
        check_fused(&gpu, AttnShape::self_attn(1, 17, 2, 130), 1.0, dtype, 13);
    }
}

#[test]
fn separate_strided_inputs_cross_lengths_and_explicit_scale() {
    // Q dense; K and V from wider rows at odd column offsets; 11 queries against 23 keys; scale 0.3.
    let gpu = common::gpu();
    for dtype in common::dtypes(&gpu) {
        let s = AttnShape { batch: 2, seq_q: 11, seq_kv: 23, heads: 3, head_dim: 64 };
        let w = 3 * 64;
        let (kst, kcol, vst, vcol) = (w + 9, 5, w + 2, 1);
        let qh = data(21, 2 * 11 * w, 1.0, dtype);
        let kh = data(22, 2 * 23 * kst, 1.0, dtype);
        let vh = data(23, 2 * 23 * vst, 1.0, dtype);
        let q = Tensor::from_f32(&gpu, &qh, &[2, 11, w], dtype).unwrap();
        let k = Tensor::from_f32(&gpu, &kh, &[2, 23, kst], dtype).unwrap();
        let v = Tensor::from_f32(&gpu, &vh, &[2 * 23 * vst], dtype).unwrap();
        let out = Tensor::empty(&gpu, &[2, 11, w], dtype).unwrap();
        out.poison(&gpu);
        let mut rec = Recorder::new(&gpu);
        flash_attention::record_flash_attention(
            &mut rec,
            s,
            Strided::dense(&q),
            Strided { tensor: &k, col: kcol, row_stride: kst },
            Strided { tensor: &v, col: vcol, row_stride: vst },
            &out,
            Some(0.3),
        )
        .unwrap();
        rec.run().unwrap();
        let want = reference::attention(
            &s,
            (&to_f64(&qh), 0, w),
            (&to_f64(&kh), kcol, kst),
            (&to_f64(&vh), vcol, vst),
            0.3,
        );
        assert_close(&format!("strided {dtype}"), &out.to_f32(&gpu).unwrap(), &want, tol(dtype));
    }
}

#[test]
fn input_above_binding_limit_is_split_over_batches() {
    // A fused QKV tensor larger than one binding (lowered to 1 MiB on any adapter: 4 batches of 234 KB per
    // window) → several dispatches; check batches at the start, around the split points and at the end.
    let gpu = common::gpu_with_max_binding(1 << 20);
    let (heads, d, seq) = (5, 64, 61);
    let w = heads * d;
    let per_batch_bytes = (seq * 3 * w * 4) as u64;
    let b = (gpu.max_binding() / per_batch_bytes) as usize * 2 + 3;
    let host = rand_vec(31, b * seq * 3 * w);
    let qkv = Tensor::from_f32(&gpu, &host, &[b, seq, 3 * w], DType::F32).unwrap();
    let s = AttnShape::self_attn(b, seq, heads, d);
    let out = Tensor::empty(&gpu, &[b, seq, w], DType::F32).unwrap();
    out.poison(&gpu);
    let mut rec = Recorder::new(&gpu);
    flash_attention::record_flash_attention(
        &mut rec,
        s,
        Strided::fused(&qkv, 0, w),
        Strided::fused(&qkv, 1, w),
        Strided::fused(&qkv, 2, w),
        &out,
        None,
    )
    .unwrap();
    assert!(rec.len() >= 2, "expected a split into several dispatches, got {}", rec.len());
    rec.run().unwrap();
    let got = out.to_f32(&gpu).unwrap();
    let one = AttnShape::self_attn(1, seq, heads, d);
    let split = (gpu.max_binding() / per_batch_bytes) as usize;
    for bi in [0, split.saturating_sub(2), split - 1, split, split + 1, b - 1] {
        let hb = to_f64(&host[bi * seq * 3 * w..(bi + 1) * seq * 3 * w]);
        let want = reference::attention(&one, (&hb, 0, 3 * w), (&hb, w, 3 * w), (&hb, 2 * w, 3 * w), 0.125);
        // f32 long reduction → 1e-4.
        assert_close(&format!("batch {bi} of {b}"), &got[bi * seq * w..(bi + 1) * seq * w], &want, 1e-4);
    }
}

#[test]
fn bad_inputs_are_errors_naming_shapes() {
    let gpu = common::gpu();
    let qkv = Tensor::from_f32(&gpu, &rand_vec(1, 2 * 5 * 3 * 128), &[2, 5, 384], DType::F32).unwrap();
    let s = AttnShape::self_attn(2, 5, 2, 64);
    let f = |i| Strided::fused(&qkv, i, 128);
    // Wrong sequence length: element count mismatch.
    let e = flash_attention::flash_attention(&gpu, AttnShape::self_attn(2, 6, 2, 64), f(0), f(1), f(2), None)
        .unwrap_err();
    assert!(matches!(e, KernelError::Shape { .. }) && e.to_string().contains("[2, 5, 384]"), "{e}");
    // Column offset past the row.
    let e = flash_attention::flash_attention(
        &gpu,
        s,
        f(0),
        f(1),
        Strided { tensor: &qkv, col: 300, row_stride: 384 },
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("exceeds the row stride"), "{e}");
    // Output sharing the input buffer.
    let mut rec = Recorder::new(&gpu);
    let e = flash_attention::record_flash_attention(
        &mut rec,
        s,
        f(0),
        f(1),
        f(2),
        &qkv.narrow0(0, 1).unwrap(),
        None,
    )
    .unwrap_err();
    assert!(matches!(e, KernelError::Shape { .. } | KernelError::Invalid { .. }), "{e}");
    let out = Tensor::empty(&gpu, &[2, 5, 100], DType::F32).unwrap();
    let e = flash_attention::record_flash_attention(&mut rec, s, f(0), f(1), f(2), &out, None).unwrap_err();
    assert!(e.to_string().contains("[2, 5, 128]") && e.to_string().contains("[2, 5, 100]"), "{e}");
    assert_eq!(rec.len(), 0);
    // One batch whose K does not fit a binding → TooLarge (the limit lowered to 256 KiB on any adapter).
    let small = common::gpu_with_max_binding(256 << 10);
    let seq = (small.max_binding() / (384 * 4)) as usize + 8;
    let big = Tensor::empty(&small, &[1, seq, 384], DType::F32).unwrap();
    let e = flash_attention::flash_attention(
        &small,
        AttnShape::self_attn(1, seq, 2, 64),
        Strided::fused(&big, 0, 128),
        Strided::fused(&big, 1, 128),
        Strided::fused(&big, 2, 128),
        None,
    )
    .unwrap_err();
    assert!(matches!(e, KernelError::TooLarge { .. }), "{e}");
}

/// Separate Q, K, V: Q dense; K and V rows wider than the heads, read at odd column offsets; `seq_q` may differ
/// from `seq_kv`. Checked against the float64 reference with NaN-poisoned output; returns the dispatch count.
fn check_separate(gpu: &Gpu, s: AttnShape, dtype: DType, seed: u64, scale: f32) -> usize {
    let w = s.heads * s.head_dim;
    let (kst, kcol, vst, vcol) = (w + 9, 5, w + 2, 1);
    let (b, sq, skv) = (s.batch, s.seq_q, s.seq_kv);
    let qh = data(seed, b * sq * w, 1.0, dtype);
    let kh = data(seed + 1, b * skv * kst, 1.0, dtype);
    let vh = data(seed + 2, b * skv * vst, 1.0, dtype);
    let q = Tensor::from_f32(gpu, &qh, &[b, sq, w], dtype).unwrap();
    let k = Tensor::from_f32(gpu, &kh, &[b, skv, kst], dtype).unwrap();
    let v = Tensor::from_f32(gpu, &vh, &[b * skv * vst], dtype).unwrap();
    let out = Tensor::empty(gpu, &[b, sq, w], dtype).unwrap();
    out.poison(gpu);
    let mut rec = Recorder::new(gpu);
    flash_attention::record_flash_attention(
        &mut rec,
        s,
        Strided::dense(&q),
        Strided { tensor: &k, col: kcol, row_stride: kst },
        Strided { tensor: &v, col: vcol, row_stride: vst },
        &out,
        Some(scale),
    )
    .unwrap();
    let dispatches = rec.len();
    rec.run().unwrap();
    let want = reference::attention(
        &s,
        (&to_f64(&qh), 0, w),
        (&to_f64(&kh), kcol, kst),
        (&to_f64(&vh), vcol, vst),
        scale as f64,
    );
    assert_close(&format!("separate {s:?} {dtype}"), &out.to_f32(gpu).unwrap(), &want, tol(dtype));
    dispatches
}

/// A device running the GPU tier (forced on lavapipe), optionally with a lowered binding limit.
fn gpu_tier(max_binding: Option<u64>) -> Gpu {
    Gpu::new(&GpuOptions { kernels: Some(KernelSet::Gpu), max_binding, ..Default::default() }).unwrap()
}

/// Only `attn_fa2` ran on `gpu`, not the sg8-tier `attn_sg8`.
fn assert_only_fa2(gpu: &Gpu) {
    let p = gpu.pipelines();
    assert!(p.used("flash_attention_fa2", "attn_fa2"), "attn_fa2 did not run: {:?}", p.keys());
    assert!(!p.used("flash_attention_sg8", "attn_sg8"), "the GPU tier ran attn_sg8");
}

#[test]
fn sg8_tier_keeps_attn_sg8_for_multiples_of_32_and_runs_fa2_otherwise() {
    // On lavapipe attn_sg8 beats attn_fa2 for head dims that are multiples of 32; the others run attn_fa2 there
    // too (on par with the one-query-per-invocation kernels it replaced: BENCHMARKS.md).
    let Some(gpu) = common::sg8_tier("flash attention sg8 tier") else { return };
    check_fused(&gpu, AttnShape::self_attn(2, 37, 2, 64), 1.0, DType::F32, 801);
    assert!(gpu.pipelines().used("flash_attention_sg8", "attn_sg8"));
    assert!(!gpu.pipelines().used("flash_attention_fa2", "attn_fa2"));
    check_fused(&gpu, AttnShape::self_attn(2, 37, 2, 80), 1.0, DType::F32, 802);
    assert!(gpu.pipelines().used("flash_attention_fa2", "attn_fa2"));
}

#[test]
fn gpu_tier_fa2_matches_reference_on_svd_head_dims() {
    // SVD's spatial heads (40, 64, 80, 160: the 320/640/1280-channel levels), CLIP's 64 (and 80), the VAE's
    // single 512-wide head, and 36 (not a multiple of 8: a partial vec4 chunk); odd sequence lengths leave
    // partial query blocks and key tiles. Both layouts: the fused QKV projection and separate strided tensors.
    let gpu = gpu_tier(None);
    for dtype in common::dtypes(&gpu) {
        for (i, &(b, seq, heads, d)) in [
            (2, 37, 3, 40),
            (3, 101, 2, 64),
            (1, 37, 2, 80),
            (2, 37, 2, 160),
            (2, 37, 1, 512),
            (1, 101, 1, 512),
            (2, 23, 3, 36),
        ]
        .iter()
        .enumerate()
        {
            check_fused(&gpu, AttnShape::self_attn(b, seq, heads, d), 1.0, dtype, 500 + i as u64);
        }
        for (i, &(b, sq, skv, heads, d)) in
            [(2, 37, 101, 2, 64), (1, 101, 37, 3, 40), (2, 19, 45, 2, 160), (1, 37, 23, 1, 512)]
                .iter()
                .enumerate()
        {
            let s = AttnShape { batch: b, seq_q: sq, seq_kv: skv, heads, head_dim: d };
            let _ = check_separate(&gpu, s, dtype, 600 + 3 * i as u64, 0.2);
        }
    }
    assert_only_fa2(&gpu);
}

#[test]
fn gpu_tier_fa2_large_logits_and_one_key() {
    // Logits of tens (values ×8): the running max changes from tile to tile; a single key and a single query.
    let gpu = gpu_tier(None);
    check_fused(&gpu, AttnShape::self_attn(1, 301, 2, 64), 8.0, DType::F32, 41);
    check_fused(&gpu, AttnShape::self_attn(1, 131, 1, 512), 4.0, DType::F32, 42);
    check_fused(&gpu, AttnShape::self_attn(3, 1, 2, 80), 1.0, DType::F32, 43);
    if gpu.caps.shader_f16 {
        check_fused(&gpu, AttnShape::self_attn(1, 200, 2, 64), 4.0, DType::F16, 44);
    }
    assert_only_fa2(&gpu);
}

#[test]
fn gpu_tier_fa2_splits_over_batches_under_a_small_binding_limit() {
    // 256 KiB bindings: one batch of the fused QKV (101 × 3·128 f32 = 155 KB; d=512: 37 × 1536 = 227 KB) per
    // dispatch, so every batch after the first reads through a window with a non-zero base.
    let gpu = gpu_tier(Some(256 << 10));
    assert_eq!(gpu.max_binding(), 256 << 10);
    for (b, seq, heads, d) in [(5, 101, 2, 64), (3, 37, 1, 512)] {
        let s = AttnShape::self_attn(b, seq, heads, d);
        let w = heads * d;
        let host = rand_vec(70 + d as u64, b * seq * 3 * w);
        let qkv = Tensor::from_f32(&gpu, &host, &[b, seq, 3 * w], DType::F32).unwrap();
        let out = Tensor::empty(&gpu, &[b, seq, w], DType::F32).unwrap();
        out.poison(&gpu);
        let mut rec = Recorder::new(&gpu);
        let f = |i| Strided::fused(&qkv, i, w);
        flash_attention::record_flash_attention(&mut rec, s, f(0), f(1), f(2), &out, None).unwrap();
        assert_eq!(rec.len(), b, "expected one dispatch per batch");
        rec.run().unwrap();
        let h = to_f64(&host);
        let want = reference::attention(
            &s,
            (&h, 0, 3 * w),
            (&h, w, 3 * w),
            (&h, 2 * w, 3 * w),
            1.0 / (d as f64).sqrt(),
        );
        // f32 long reduction → 1e-4.
        assert_close(&format!("split {s:?}"), &out.to_f32(&gpu).unwrap(), &want, 1e-4);
    }
    assert_only_fa2(&gpu);
}

/// Separate Q, K, V whose Q and output of one batch exceed a binding while its keys fit: checks the split into
/// blocks of query rows (several dispatches per batch) on `gpu`. At 32 KiB a block is fewer rows than a
/// workgroup's queries (an f32 row of 2·64 is 512 B: 63 rows), at 128 KiB whole workgroups' rows.
fn check_query_blocks(gpu: &Gpu, head_dims: &[usize]) {
    for dtype in common::dtypes(gpu) {
        for (i, &d) in head_dims.iter().enumerate() {
            // Q of one batch above 128 KiB even in f16 (601 × 2·64, 141 × 512, 557 × 3·40); K and V ≤ 21 KB.
            let (b, sq, skv, heads) = match d {
                512 => (1, 141, 7, 1),
                40 => (3, 557, 19, 3),
                _ => (2, 601, 37, 2),
            };
            let s = AttnShape { batch: b, seq_q: sq, seq_kv: skv, heads, head_dim: d };
            let n = check_separate(gpu, s, dtype, 900 + 3 * i as u64, 0.3);
            assert!(n >= 2 * b, "{s:?} {dtype}: {n} dispatches for {b} batches: no split inside a batch");
        }
    }
}

#[test]
fn one_batch_above_the_binding_limit_is_split_over_query_blocks_on_both_tiers() {
    for limit in [32 << 10, 128 << 10] {
        let gpu = gpu_tier(Some(limit));
        assert_eq!(gpu.max_binding(), limit);
        check_query_blocks(&gpu, &[64, 512, 40]);
        assert_only_fa2(&gpu);
        let opts =
            GpuOptions { kernels: Some(KernelSet::Sg8), max_binding: Some(limit), ..Default::default() };
        match Gpu::new(&opts) {
            Ok(gpu) => {
                check_query_blocks(&gpu, &[64]);
                let p = gpu.pipelines();
                assert!(p.used("flash_attention_sg8", "attn_sg8"), "attn_sg8 did not run: {:?}", p.keys());
                assert!(!p.used("flash_attention_fa2", "attn_fa2"), "d 64 ran attn_fa2 on the sg8 tier");
            }
            Err(e) => {
                eprintln!("SKIPPED the sg8 half: the sg8 kernel tier does not run on this adapter ({e})")
            }
        }
    }
}
