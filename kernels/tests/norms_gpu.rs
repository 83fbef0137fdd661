//! The gpu-tier (one workgroup per row / per statistics chunk) layer norm, softmax and group norm, forced on
//! whatever adapter the tests run on (lavapipe in CI) and checked against the float64 references: odd row
//! lengths, rows with a large mean and a small spread (the statistics must keep their digits), f32 and f16,
//! NaN-poisoned outputs, windows split by a lowered binding limit, and the pipelines that really ran.

mod common;

use std::sync::Arc;
use trajattn_kernels::ops::group_norm::{self, GroupNormOpts, GroupStats};
use trajattn_kernels::ops::rows::{self, reference};
use trajattn_kernels::select::{KernelSet, Tier};
use trajattn_kernels::testing::{assert_close, rand_range, round_f16, to_f64};
use trajattn_kernels::{DType, Gpu, GpuOptions, Recorder, Tensor};

fn gpu_tier(max_binding: Option<u64>) -> Arc<Gpu> {
    let opts = GpuOptions { kernels: Some(KernelSet::Gpu), max_binding, ..Default::default() };
    let gpu = Gpu::new(&opts).unwrap_or_else(|e| panic!("no GPU for tests: {e}"));
    assert_eq!(gpu.tier, Tier::Gpu);
    Arc::new(gpu)
}

fn maybe16(v: Vec<f32>, d: DType) -> Vec<f32> {
    if d == DType::F16 {
        round_f16(&v)
    } else {
        v
    }
}

/// `n` values `centre + spread·u`, u uniform in [-1, 1).
fn data(seed: u64, n: usize, centre: f32, spread: f32) -> Vec<f32> {
    rand_range(seed, n, -1.0, 1.0).iter().map(|u| centre + spread * u).collect()
}

/// (centre, spread) pairs: plain data, and a large mean with a small spread (f16 cannot hold 1000 ± 0.05 apart
/// from a few levels, so its stability case is 100 ± 2: steps of 1/16 over a spread of 4).
fn cases(d: DType) -> [(f32, f32); 2] {
    if d == DType::F16 {
        [(0.0, 1.0), (100.0, 2.0)]
    } else {
        [(0.0, 1.0), (1000.0, 0.05)]
    }
}

fn check_layer_norm(gpu: &Gpu, d: DType, rows: usize, c: usize, (centre, spread): (f32, f32), affine: bool) {
    let x = maybe16(data(7 + c as u64, rows * c, centre, spread), d);
    let g = maybe16(rand_range(8, c, 0.5, 1.5), d);
    let b = maybe16(rand_range(9, c, -1.0, 1.0), d);
    let tx = Tensor::from_f32(gpu, &x, &[rows, c], d).unwrap();
    let tg = Tensor::from_f32(gpu, &g, &[c], d).unwrap();
    let tb = Tensor::from_f32(gpu, &b, &[c], d).unwrap();
    let y = Tensor::empty(gpu, &[rows, c], d).unwrap();
    y.poison(gpu);
    let mut rec = Recorder::new(gpu);
    rows::record_layer_norm(&mut rec, &tx, affine.then_some((&tg, &tb)), 1e-5, &y).unwrap();
    rec.run().unwrap();
    let (g64, b64) = (to_f64(&g), to_f64(&b));
    let want = reference::layer_norm(&to_f64(&x), c, affine.then_some((&g64[..], &b64[..])), 1e-5);
    // f32: shifted two-pass statistics in f32 (x − x₀ is exact near x₀), output of order 1 → 1e-5, also at
    // 1000 ± 0.05 (an unshifted f32 mean is off by ~1e-4 there: 3e-3 of the spread); f16: output storage → 3e-3.
    let tol = if d == DType::F16 { 3e-3 } else { 1e-5 };
    let what = format!("gpu layer norm {d} {rows}x{c} {centre}±{spread} affine={affine}");
    assert_close(&what, &y.to_f32(gpu).unwrap(), &want, tol);
}

fn check_softmax(gpu: &Gpu, d: DType, rows: usize, c: usize, (centre, spread): (f32, f32), scale: f32) {
    let x = maybe16(data(17 + c as u64, rows * c, centre, spread), d);
    let tx = Tensor::from_f32(gpu, &x, &[rows, c], d).unwrap();
    let y = Tensor::empty(gpu, &[rows, c], d).unwrap();
    y.poison(gpu);
    let mut rec = Recorder::new(gpu);
    rows::record_softmax(&mut rec, &tx, scale, &y).unwrap();
    rec.run().unwrap();
    let want = reference::softmax(&to_f64(&x), c, scale as f64);
    // f32: exp and workgroup sums in f32 → 1e-5 of the row maximum; f16: storage → 3e-3.
    let tol = if d == DType::F16 { 3e-3 } else { 1e-5 };
    let what = format!("gpu softmax {d} {rows}x{c} {centre}±{spread} scale {scale}");
    assert_close(&what, &y.to_f32(gpu).unwrap(), &want, tol);
}

type Shape = (usize, usize, usize, usize);

fn check_group_norm(
    gpu: &Gpu,
    d: DType,
    (rows, c, h, w): Shape,
    o: GroupNormOpts,
    (centre, spread): (f32, f32),
) {
    let n = rows * c * h * w;
    let x = maybe16(data(31 + n as u64, n, centre, spread), d);
    let ga = maybe16(rand_range(32, c, 0.5, 1.5), d);
    let be = maybe16(rand_range(33, c, -1.0, 1.0), d);
    let tx = Tensor::from_f32(gpu, &x, &[rows, c, h, w], d).unwrap();
    let tg = Tensor::from_f32(gpu, &ga, &[c], d).unwrap();
    let tb = Tensor::from_f32(gpu, &be, &[c], d).unwrap();
    let y = Tensor::empty(gpu, &[rows, c, h, w], d).unwrap();
    y.poison(gpu);
    let mut rec = Recorder::new(gpu);
    group_norm::record(&mut rec, &tx, &tg, &tb, o, &y).unwrap();
    rec.run().unwrap();
    let want = group_norm::reference::group_norm(&to_f64(&x), &to_f64(&ga), &to_f64(&be), rows, c, h * w, o);
    // f32: shifted chunk statistics (≤ 16 terms per invocation, then trees and Chan merges) → 1e-5, also at
    // 1000 ± 0.05; f16: output storage → 3e-3.
    let tol = if d == DType::F16 { 3e-3 } else { 1e-5 };
    let what = format!("gpu group norm {d} [{rows},{c},{h},{w}] {o:?} {centre}±{spread}");
    assert_close(&what, &y.to_f32(gpu).unwrap(), &want, tol);
}

#[test]
fn layer_norm_gpu_tier() {
    let gpu = gpu_tier(None);
    for d in common::dtypes(&gpu) {
        for (rows, c) in [(5, 1), (7, 3), (9, 77), (3, 1281), (11, 320), (2, 1284)] {
            for case in cases(d) {
                for affine in [true, false] {
                    check_layer_norm(&gpu, d, rows, c, case, affine);
                }
            }
        }
    }
    let p = gpu.pipelines();
    assert!(p.used("layer_norm", "layer_norm_wg") && p.used("rows_vec4", "layer_norm_wg4"), "{:?}", p.keys());
    assert!(!p.used("layer_norm", "layer_norm"), "the sg8 kernel ran on the gpu tier");
}

#[test]
fn softmax_gpu_tier() {
    let gpu = gpu_tier(None);
    for d in common::dtypes(&gpu) {
        for (rows, c) in [(5, 1), (7, 3), (9, 77), (3, 1281), (13, 52), (2, 1284)] {
            for (case, scale) in [((0.0, 1.0), 1.0), ((0.0, 1.0), 30.0), ((50.0, 4.0), 0.125)] {
                check_softmax(&gpu, d, rows, c, case, scale);
            }
        }
    }
    let p = gpu.pipelines();
    assert!(p.used("softmax", "softmax_wg") && p.used("rows_vec4", "softmax_wg4"), "{:?}", p.keys());
    assert!(!p.used("softmax", "softmax"), "the sg8 kernel ran on the gpu tier");
}

#[test]
fn rows_of_a_multiple_of_4_compile_only_the_vec4_pipelines() {
    // Every window aligned: the scalar one-workgroup-per-row pipelines are never dispatched, so never compiled.
    let gpu = gpu_tier(None);
    check_layer_norm(&gpu, DType::F32, 11, 320, (0.0, 1.0), true);
    check_softmax(&gpu, DType::F32, 13, 52, (0.0, 1.0), 1.0);
    let p = gpu.pipelines();
    assert!(p.used("rows_vec4", "layer_norm_wg4") && p.used("rows_vec4", "softmax_wg4"), "{:?}", p.keys());
    assert!(!p.used("layer_norm", "layer_norm_wg") && !p.used("softmax", "softmax_wg"), "{:?}", p.keys());
}

#[test]
fn group_norm_gpu_tier() {
    let gpu = gpu_tier(None);
    let per = |groups, silu| GroupNormOpts { groups, eps: 1e-6, stats: GroupStats::PerFrame, silu };
    let across =
        |groups, f, silu| GroupNormOpts { groups, eps: 1e-5, stats: GroupStats::AcrossFrames(f), silu };
    for d in common::dtypes(&gpu) {
        for case in cases(d) {
            check_group_norm(&gpu, d, (3, 64, 7, 11), per(32, true), case); // odd: scalar paths
            check_group_norm(&gpu, d, (6, 64, 7, 11), across(32, 3, false), case);
            check_group_norm(&gpu, d, (2, 64, 4, 9), per(32, true), case); // H·W % 4 == 0: vec4 paths
            check_group_norm(&gpu, d, (2, 32, 67, 71), per(4, false), case); // 38056-element groups: 10 chunks
            check_group_norm(&gpu, d, (4, 8, 32, 65), across(2, 2, true), case); // chunks across frames
            check_group_norm(&gpu, d, (1, 32, 1, 1), per(32, false), case); // one element per group
        }
    }
    let p = gpu.pipelines();
    for (shader, entry) in [
        ("group_norm", "gn_stats_wg"),
        ("group_norm_vec4", "gn_stats_wg4"),
        ("group_norm", "gn_finalize_wg"),
        ("group_norm", "gn_apply_wg"),
        ("group_norm_vec4", "gn_apply_wg4"),
    ] {
        assert!(p.used(shader, entry), "{shader}::{entry} did not run: {:?}", p.keys());
    }
}

#[test]
fn gpu_tier_windows_split_at_a_small_binding_limit() {
    // 256 KiB bindings: rows, statistics segments and apply windows all split over several dispatches.
    let gpu = gpu_tier(Some(256 << 10));
    check_layer_norm(&gpu, DType::F32, 301, 331, (3.0, 1.0), true);
    check_layer_norm(&gpu, DType::F32, 257, 320, (3.0, 1.0), true);
    check_softmax(&gpu, DType::F32, 301, 331, (0.0, 1.0), 2.0);
    check_softmax(&gpu, DType::F32, 257, 320, (0.0, 1.0), 2.0);
    let o = GroupNormOpts { groups: 4, eps: 1e-6, stats: GroupStats::AcrossFrames(2), silu: true };
    check_group_norm(&gpu, DType::F32, (4, 8, 45, 47), o, (2.0, 1.0));
    check_group_norm(&gpu, DType::F32, (4, 8, 44, 48), o, (2.0, 1.0));
}
