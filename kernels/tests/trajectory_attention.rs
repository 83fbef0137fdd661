//! Trajectory attention references against the spec's test vector (computed with the official processor in
//! float64), the efficient formulation against the literal one on larger random cases, and the input checks.

use serde_json::Value;
use trajattn_kernels::ops::trajectory_attention::{
    check, reference, samples_per_call, Call, Grouping, Weights,
};
use trajattn_kernels::testing::rand_vec;

fn vector() -> Value {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/spec/trajectory_attention_vector.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        _ => panic!("not numeric"),
    }
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn spec_vector_both_groupings() {
    let v = vector();
    let u = |k: &str| v[k].as_u64().unwrap() as usize;
    let (hidden, traj) = (flat(&v["hidden_states"]), flat(&v["trajectory"]));
    let mask: Vec<bool> = flat(&v["mask"]).iter().map(|&x| x != 0.0).collect();
    let idx: Vec<usize> = flat(&v["sampled_indices"]).iter().map(|&x| x as usize).collect();
    let (wq, wk, wv, wo, bo) = (
        flat(&v["to_q_weight"]),
        flat(&v["to_k_weight"]),
        flat(&v["to_v_weight"]),
        flat(&v["to_out_weight"]),
        flat(&v["to_out_bias"]),
    );
    let wts = Weights { wq: &wq, wk: &wk, wv: &wv, wo: &wo, bo: &bo };
    assert_eq!(idx.len(), samples_per_call(u("N"), u("h"), u("w")));
    for (grouping, key) in [
        (Grouping::Pairs, "expected_output_faithful"),
        (Grouping::PerTrajectory, "expected_output_per_trajectory"),
    ] {
        let call = Call {
            hidden: &hidden,
            b: u("B"),
            h: u("h"),
            w: u("w"),
            f: u("F"),
            c: u("C"),
            heads: u("heads"),
            traj: &traj,
            mask: &mask,
            n: u("N"),
            origin_w: u("origin_width"),
            origin_h: u("origin_height"),
            idx: &idx,
            grouping,
        };
        let want = flat(&v[key]);
        let lit = reference::literal(&call, &wts).unwrap();
        let eff = reference::efficient(&call, &wts).unwrap();
        // Both are float64 ports of the same function: agreement to rounding.
        assert!(max_diff(&lit, &want) < 1e-12, "{grouping:?} literal: {}", max_diff(&lit, &want));
        assert!(max_diff(&eff, &want) < 1e-12, "{grouping:?} efficient: {}", max_diff(&eff, &want));
    }
}

#[test]
fn efficient_equals_literal_on_larger_cases() {
    // B = 2, non-square levels, partly invisible tracks, points leaving the frame (clamped), many duplicates.
    for (seed, (h, w), n) in [(1u64, (6usize, 10usize), 150usize), (2, (3, 5), 40), (3, (8, 4), 64)] {
        let (b, f, c, heads) = (2, 5, 16, 2);
        let (ow, oh) = (w * 8, h * 8);
        let hidden: Vec<f64> = rand_vec(seed, b * h * w * f * c).iter().map(|&x| x as f64).collect();
        let traj: Vec<f64> = rand_vec(seed + 10, f * n * 2)
            .iter()
            .enumerate()
            .map(|(i, &r)| {
                if i % 2 == 0 {
                    (r as f64 * 0.7 + 0.5) * ow as f64
                } else {
                    (r as f64 * 0.7 + 0.5) * oh as f64
                }
            })
            .collect();
        let mask: Vec<bool> = rand_vec(seed + 20, f * n).iter().map(|&r| r > -0.6).collect();
        let m = samples_per_call(n, h, w);
        let idx: Vec<usize> = (0..m).map(|i| (i * 7 + 3) % n).collect();
        let ws: Vec<Vec<f64>> = (0..4)
            .map(|k| rand_vec(seed + 30 + k, c * c).iter().map(|&x| x as f64 * 0.5).collect())
            .collect();
        let bo: Vec<f64> = rand_vec(seed + 40, c).iter().map(|&x| x as f64).collect();
        let wts = Weights { wq: &ws[0], wk: &ws[1], wv: &ws[2], wo: &ws[3], bo: &bo };
        for grouping in [Grouping::Pairs, Grouping::PerTrajectory] {
            let call = Call {
                hidden: &hidden,
                b,
                h,
                w,
                f,
                c,
                heads,
                traj: &traj,
                mask: &mask,
                n,
                origin_w: ow,
                origin_h: oh,
                idx: &idx,
                grouping,
            };
            if grouping == Grouping::Pairs && check(&call).is_err() {
                continue;
            }
            let lit = reference::literal(&call, &wts).unwrap();
            let eff = reference::efficient(&call, &wts).unwrap();
            assert!(max_diff(&lit, &eff) < 1e-12, "seed {seed} {grouping:?}: {}", max_diff(&lit, &eff));
            assert!(lit.iter().any(|&x| x != 0.0));
        }
    }
}

#[test]
fn bad_inputs_say_what_is_required() {
    let (b, h, w, f, c, n) = (1, 4, 4, 3, 8, 10);
    let hidden = vec![0.5; b * h * w * f * c];
    let traj = vec![1.0; f * n * 2];
    let mask = vec![true; f * n];
    let idx: Vec<usize> = (0..samples_per_call(n, h, w)).collect();
    let call = Call {
        hidden: &hidden,
        b,
        h,
        w,
        f,
        c,
        heads: 2,
        traj: &traj,
        mask: &mask,
        n,
        origin_w: 16,
        origin_h: 16,
        idx: &idx,
        grouping: Grouping::Pairs,
    };
    // 10 trajectories × 3 frames do not cut into 16 sequences.
    let e = check(&call).unwrap_err().to_string();
    assert!(e.contains("per-trajectory") && e.contains("32"), "{e}");
    assert_eq!(check(&Call { grouping: Grouping::PerTrajectory, ..call }).unwrap(), 3);
    let short_mask = vec![true; f * n - 1];
    assert!(check(&Call { mask: &short_mask, grouping: Grouping::PerTrajectory, ..call })
        .unwrap_err()
        .to_string()
        .contains("mask"));
    let mut nan = traj.clone();
    nan[7] = f64::NAN;
    assert!(check(&Call { traj: &nan, grouping: Grouping::PerTrajectory, ..call })
        .unwrap_err()
        .to_string()
        .contains("non-finite"));
    let bad_idx = [0usize, 11];
    assert!(check(&Call { idx: &bad_idx, grouping: Grouping::PerTrajectory, ..call }).is_err());
}

mod common;

/// hidden, trajectories, mask, sampled indices, [Wq, Wk, Wv, Wo], output bias.
type Case = (Vec<f64>, Vec<f64>, Vec<bool>, Vec<usize>, Vec<Vec<f64>>, Vec<f64>);

/// The call of a [`random_case_frames`] case (frames from the mask's length), trajectories in pixels of 8 per
/// latent cell.
fn case_call(
    k: &Case,
    b: usize,
    hw: (usize, usize),
    n: usize,
    (c, heads): (usize, usize),
    g: Grouping,
) -> Call<'_> {
    Call {
        hidden: &k.0,
        b,
        h: hw.0,
        w: hw.1,
        f: k.2.len() / n,
        c,
        heads,
        traj: &k.1,
        mask: &k.2,
        n,
        origin_w: hw.1 * 8,
        origin_h: hw.0 * 8,
        idx: &k.3,
        grouping: g,
    }
}

/// A random case of batch `b`, 5 frames and `c` channels.
fn random_case_sized(seed: u64, hw: (usize, usize), n: usize, b: usize, c: usize) -> Case {
    random_case_frames(seed, hw, n, b, c, 5)
}

/// A random case of batch `b`, `f` frames and `c` channels: about a fifth of the points invisible, tracks leaving
/// the frame (clamped).
fn random_case_frames(seed: u64, (h, w): (usize, usize), n: usize, b: usize, c: usize, f: usize) -> Case {
    let (ow, oh) = (w * 8, h * 8);
    let hidden: Vec<f64> = rand_vec(seed, b * h * w * f * c).iter().map(|&x| x as f64).collect();
    let traj: Vec<f64> =
        rand_vec(seed + 10, f * n * 2)
            .iter()
            .enumerate()
            .map(|(i, &r)| {
                if i % 2 == 0 {
                    (r as f64 * 0.7 + 0.5) * ow as f64
                } else {
                    (r as f64 * 0.7 + 0.5) * oh as f64
                }
            })
            .collect();
    let mask: Vec<bool> = rand_vec(seed + 20, f * n).iter().map(|&r| r > -0.6).collect();
    let idx: Vec<usize> = (0..samples_per_call(n, h, w)).map(|i| (i * 7 + 3) % n).collect();
    let ws: Vec<Vec<f64>> =
        (0..4).map(|k| rand_vec(seed + 30 + k, c * c).iter().map(|&x| x as f64 * 0.5).collect()).collect();
    let bo: Vec<f64> = rand_vec(seed + 40, c).iter().map(|&x| x as f64).collect();
    (hidden, traj, mask, idx, ws, bo)
}

/// Both GPU formulations against the literal float64 port. Head dims that are multiples of 32 take
/// `traj_attend_sg8` on 8-lane-subgroup adapters (lavapipe); a device without subgroups runs every case through
/// `traj_attend`.
/// The literal GPU port's output, or `None` where it does not fit: it is the checking path and binds its tensors
/// whole (only the efficient path splits them), so under a lowered binding limit (`TRAJATTN_MAX_BINDING=1M`) it
/// refuses with `TooLarge`, said on stderr, and only the efficient path is compared.
fn literal_or_skip(
    gpu: &trajattn_kernels::Gpu,
    call: &Call,
    wts: &Weights,
    dtype: trajattn_kernels::DType,
) -> Option<Vec<f32>> {
    match trajattn_kernels::ops::trajectory_attention::prepare_literal(gpu, call, wts, dtype) {
        Ok(p) => Some(p.run_checked(gpu).unwrap()),
        Err(trajattn_kernels::KernelError::TooLarge { what, .. }) => {
            eprintln!(
                "SKIPPED the literal GPU port under a {}-byte binding limit: {what}",
                gpu.max_binding()
            );
            None
        }
        Err(e) => panic!("literal GPU port: {e}"),
    }
}

#[test]
fn gpu_efficient_and_literal_match_the_literal_port() {
    use trajattn_kernels::ops::trajectory_attention::prepare_efficient;
    use trajattn_kernels::testing::assert_close;
    use trajattn_kernels::{Gpu, GpuOptions};
    let plain = Gpu::new(&GpuOptions { disable: vec!["subgroup".into()], ..Default::default() }).unwrap();
    // (seed, latent, N, C, heads): head dims 8, 64 and 32.
    let cases = [
        (1u64, (6usize, 10usize), 150usize, 16usize, 2usize),
        (3, (8, 4), 64, 16, 2),
        (6, (3, 5), 40, 16, 2),
        (21, (6, 10), 150, 128, 2),
        (22, (8, 4), 64, 96, 3),
    ];
    for gpu in [&common::gpu(), &plain] {
        let mut pairs_ran = 0;
        for &(seed, hw, n, c, heads) in &cases {
            let case = random_case_sized(seed, hw, n, 2, c);
            let (ws, bo) = (&case.4, &case.5);
            let wts = Weights { wq: &ws[0], wk: &ws[1], wv: &ws[2], wo: &ws[3], bo };
            for grouping in [Grouping::Pairs, Grouping::PerTrajectory] {
                let call = case_call(&case, 2, hw, n, (c, heads), grouping);
                if check(&call).is_err() {
                    continue; // paired grouping undefined for this count (covered by bad_inputs_say_what_is_required)
                }
                pairs_ran += usize::from(grouping == Grouping::Pairs);
                let want = reference::literal(&call, &wts).unwrap();
                // Unreached cells must be exactly 0 in the reference; the GPU output starts as NaN.
                assert!(want.contains(&0.0) && want.iter().any(|&v| v != 0.0));
                for dtype in common::dtypes(gpu) {
                    let eff = prepare_efficient(gpu, &call, &wts, dtype).unwrap().run_checked(gpu).unwrap();
                    let lit = literal_or_skip(gpu, &call, &wts, dtype);
                    // f32: projections and softmax sums over ≤ 50 tokens in f32 → 1e-4; f16: Q/K/V, attention
                    // outputs and the result stored in f16 (three roundings of 2^-11) → 1e-2.
                    let tol = if dtype == trajattn_kernels::DType::F16 { 1e-2 } else { 1e-4 };
                    let what = format!(
                        "{dtype} seed {seed} d {} {grouping:?} subgroups {}",
                        c / heads,
                        gpu.caps.subgroup
                    );
                    assert_close(&format!("efficient {what}"), &eff, &want, tol);
                    if let Some(lit) = lit {
                        assert_close(&format!("literal {what}"), &lit, &want, tol);
                    }
                }
            }
        }
        assert!(pairs_ran > 0, "no case exercised the paired grouping");
    }
}

#[test]
fn gpu_efficient_splits_operands_beyond_a_lowered_binding_limit() {
    splits_beyond_a_lowered_binding_limit(None);
}

#[test]
fn gpu_tier_splits_operands_beyond_a_lowered_binding_limit() {
    splits_beyond_a_lowered_binding_limit(Some(trajattn_kernels::select::KernelSet::Gpu));
}

/// On devices of the kernel set `kernels` (the adapter's own tier if `None`).
fn splits_beyond_a_lowered_binding_limit(kernels: Option<trajattn_kernels::select::KernelSet>) {
    // A device whose storage bindings are limited (wgpu enforces it) far below the dense operands: the fused
    // Q/K/V projection of all heads, the hidden states, the mean and the output each exceed it several times,
    // one head group's Q/K/V rows of the whole batch do too (the attention binds two batch elements of three,
    // then one), and one batch element's attention rows of the group just fit, so every stage runs in windows at
    // offsets.
    use trajattn_kernels::ops::trajectory_attention::{prepare_efficient, prepare_literal, tables, Geometry};
    use trajattn_kernels::testing::assert_close;
    use trajattn_kernels::{DType, Gpu, GpuOptions, KernelError};
    let full = common::gpu();
    let (b, hw, n) = (3usize, (6usize, 10usize), 150usize);
    // Heads one at a time (4 heads of 32), then in groups of two (10 heads of 16: a group's scratch is no larger
    // than the means), each group 32 columns wide; limits in elements (the [C, C] output weight must fit one).
    let configs = [(128usize, 4usize, 1usize, 20 * 1024u64), (160, 10, 2, 28 * 1024)];
    for (dtype, (c, heads, group, limit_elems)) in
        common::dtypes(&full).into_iter().flat_map(|dt| configs.map(|cfg| (dt, cfg)))
    {
        let case = random_case_sized(11, hw, n, b, c);
        let (ws, bo) = (&case.4, &case.5);
        let wts = Weights { wq: &ws[0], wk: &ws[1], wv: &ws[2], wo: &ws[3], bo };
        let limit = limit_elems * dtype.size();
        let gpu = Gpu::new(&GpuOptions { max_binding: Some(limit), kernels, ..Default::default() }).unwrap();
        assert_eq!(gpu.max_binding(), limit);
        for grouping in [Grouping::Pairs, Grouping::PerTrajectory] {
            let call = case_call(&case, b, hw, n, (c, heads), grouping);
            let t = tables(&call).unwrap();
            let g = Geometry { b, h: hw.0, w: hw.1, f: 5, c, heads, m: t.m, seq_len: t.seq_len };
            let es = dtype.size();
            assert_eq!(g.heads_per_group(es, limit), group);
            let (rows_b, d) = (hw.0 * hw.1 * 5, group * c / heads);
            // What the old whole-operand path bound, and what the windows must split.
            assert!(g.dense_qkv_bytes(dtype) > 5 * limit);
            assert!((g.rows() * c) as u64 * es > 2 * limit);
            assert!((3 * rows_b * d) as u64 * es > limit && (2 * rows_b * d) as u64 * es < limit);
            assert!((t.m * 5 * d) as u64 * es < limit && (2 * t.m * 5 * d) as u64 * es > limit);
            let want = reference::literal(&call, &wts).unwrap();
            assert!(want.contains(&0.0) && want.iter().any(|&v| v != 0.0));
            let got = prepare_efficient(&gpu, &call, &wts, dtype).unwrap().run_checked(&gpu).unwrap();
            let tol = if dtype == DType::F16 { 1e-2 } else { 1e-4 };
            assert_close(&format!("windowed efficient {dtype} {grouping:?} group {group}"), &got, &want, tol);
            // The literal comparison path binds its operands whole: refused here with a clear error.
            let e = prepare_literal(&gpu, &call, &wts, dtype).err().expect("literal path must not fit");
            assert!(matches!(e, KernelError::TooLarge { .. }), "{e}");
        }
        if kernels.is_some() {
            assert_eq!(attend_ran(&gpu), (true, false, false), "{:?}", gpu.pipelines().keys());
        }
        // One batch element's attention rows of one head above the limit: a clear error, not a bad binding.
        let tiny = Gpu::new(&GpuOptions { max_binding: Some(4096), kernels, ..Default::default() }).unwrap();
        let call = case_call(&case, b, hw, n, (c, heads), Grouping::Pairs);
        let e = prepare_efficient(&tiny, &call, &wts, dtype).err().expect("must not fit");
        assert!(matches!(e, KernelError::TooLarge { .. }) && e.to_string().contains("trajectory"), "{e}");
    }
}

/// A device with the GPU kernel tier forced (lavapipe would otherwise pick the sg8 tier), optionally with a lowered
/// binding limit.
fn gpu_tier(max_binding: Option<u64>) -> trajattn_kernels::Gpu {
    use trajattn_kernels::select::KernelSet;
    use trajattn_kernels::{Gpu, GpuOptions};
    Gpu::new(&GpuOptions { kernels: Some(KernelSet::Gpu), max_binding, ..Default::default() }).unwrap()
}

/// Which gathered-attention kernels ran on `gpu`: (`traj_attend_gpu`, `traj_attend`, `traj_attend_sg8`).
fn attend_ran(gpu: &trajattn_kernels::Gpu) -> (bool, bool, bool) {
    let p = gpu.pipelines();
    (
        p.used("trajectory_attention_gpu", "traj_attend_gpu"),
        p.used("trajectory_attention", "traj_attend"),
        p.used("trajectory_attention_sg8", "traj_attend_sg8"),
    )
}

/// The GPU tier's gathered attention (`traj_attend_gpu`) in both formulations against the literal float64 port:
/// frames 14, 25 and odd counts, head dims 40/64/80/160, both groupings (paired sequences of odd lengths up to
/// 2F = 50), fewer trajectories than a call samples, invisible points and cells no trajectory reaches.
#[test]
fn gpu_tier_gathered_attention_matches_the_literal_port() {
    use trajattn_kernels::ops::trajectory_attention::{prepare_efficient, tables};
    use trajattn_kernels::testing::assert_close;
    let gpu = gpu_tier(None);
    // (seed, latent, N, frames, C, heads); in brackets the sequence lengths (pairs, per trajectory).
    let cases = [
        (31u64, (2usize, 7usize), 17usize, 14usize, 160usize, 4usize), // d 40, N < 24 sampled [17, 14]
        (32, (3, 5), 21, 25, 128, 2),                                  // d 64, N < 24 [35, 25]
        (33, (2, 4), 40, 25, 160, 2),                                  // d 80 [50, 25]
        (34, (4, 4), 40, 9, 160, 1),                                   // d 160 [18, 9]
    ];
    let mut lens = Vec::new();
    for &(seed, hw, n, f, c, heads) in &cases {
        let case = random_case_frames(seed, hw, n, 2, c, f);
        let (ws, bo) = (&case.4, &case.5);
        let wts = Weights { wq: &ws[0], wk: &ws[1], wv: &ws[2], wo: &ws[3], bo };
        for grouping in [Grouping::Pairs, Grouping::PerTrajectory] {
            let call = case_call(&case, 2, hw, n, (c, heads), grouping);
            let l = tables(&call).unwrap().seq_len;
            lens.push(l);
            let want = reference::literal(&call, &wts).unwrap();
            // Unreached cells are exactly 0 in the reference; the GPU output starts as NaN.
            assert!(want.contains(&0.0) && want.iter().any(|&v| v != 0.0), "seed {seed}: no unreached cell");
            for dtype in common::dtypes(&gpu) {
                let eff = prepare_efficient(&gpu, &call, &wts, dtype).unwrap().run_checked(&gpu).unwrap();
                let lit = literal_or_skip(&gpu, &call, &wts, dtype);
                // As gpu_efficient_and_literal_match_the_literal_port: f32 1e-4; f16 (Q/K/V, attention rows and
                // the result stored in f16) 1e-2.
                let tol = if dtype == trajattn_kernels::DType::F16 { 1e-2 } else { 1e-4 };
                let what = format!("{dtype} seed {seed} F {f} d {} L {l} {grouping:?}", c / heads);
                assert_close(&format!("efficient {what}"), &eff, &want, tol);
                if let Some(lit) = lit {
                    assert_close(&format!("literal {what}"), &lit, &want, tol);
                }
            }
        }
    }
    assert_eq!(lens, [17, 14, 35, 25, 50, 25, 18, 9]);
    assert_eq!(attend_ran(&gpu), (true, false, false), "{:?}", gpu.pipelines().keys());
}

/// Head dims above 128 run `traj_attend_gpu` whatever the tier (the other kernels stop at 128).
#[test]
fn head_dims_above_128_take_the_gpu_kernel_on_every_tier() {
    use trajattn_kernels::ops::trajectory_attention::prepare_efficient;
    use trajattn_kernels::testing::assert_close;
    let gpu = common::gpu();
    let (hw, n, f, c) = ((4usize, 4usize), 40usize, 9usize, 160usize);
    let case = random_case_frames(34, hw, n, 2, c, f);
    let (ws, bo) = (&case.4, &case.5);
    let wts = Weights { wq: &ws[0], wk: &ws[1], wv: &ws[2], wo: &ws[3], bo };
    let call = case_call(&case, 2, hw, n, (c, 1), Grouping::Pairs);
    let want = reference::literal(&call, &wts).unwrap();
    let got = prepare_efficient(&gpu, &call, &wts, trajattn_kernels::DType::F32)
        .unwrap()
        .run_checked(&gpu)
        .unwrap();
    assert_close("d 160 on the default tier", &got, &want, 1e-4);
    assert!(attend_ran(&gpu).0);
}

/// Why the token table and the CSR arrays are bound whole while Q/K/V and the attention rows are windowed: for
/// every geometry the kernels accept with head-group width × element size ≥ 8 bytes (any head dim ≥ 4 in f16),
/// each of them is no larger than one batch element's Q (or K, V) rows of one head group, which the gathered
/// attention must bind whole anyway (a sequence gathers from anywhere in its batch element). So an adapter that
/// runs the branch at all binds them whole too; a limit below that is refused by the Q/K/V check (see
/// `splits_beyond_a_lowered_binding_limit`'s 4 KiB device).
#[test]
fn index_tables_never_outgrow_the_rows_one_batch_element_binds() {
    use trajattn_kernels::ops::trajectory_attention::Geometry;
    for (h, w) in [(1usize, 1usize), (2, 3), (6, 10), (9, 16), (36, 64), (72, 128)] {
        for f in [1usize, 5, 14, 25] {
            for n in [1usize, 10, 1000, 100_000] {
                let m = samples_per_call(n, h, w).max(1);
                for (c, heads) in [(8usize, 2usize), (320, 5), (1280, 20), (160, 10)] {
                    for es in [2u64, 4] {
                        let g = Geometry { b: 2, h, w, f, c, heads, m, seq_len: f };
                        for group in (1..=heads).filter(|k| heads % k == 0) {
                            let gd = (group * g.head_dim()) as u64;
                            let q_rows = (h * w * f) as u64 * gd * es;
                            let (table, offsets, hits) =
                                ((m * f) as u64 * 4, (f * h * w + 1) as u64 * 4, (m * f) as u64 * 4);
                            let biggest = table.max(offsets).max(hits);
                            assert!(
                                biggest <= q_rows,
                                "{g:?} group {group}, {es}-byte elements: tables {biggest} B > Q rows {q_rows} B"
                            );
                        }
                    }
                }
            }
        }
    }
}
