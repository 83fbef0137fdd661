//! Matmul / linear against the float64 reference: every code path (generic, vec4, 8-lane subgroup, and the
//! GPU tier's tiled GEMM on a device with that tier forced), every epilogue, bias, batches, both weight layouts,
//! f16, and tensors above the binding limit.

mod common;

use trajattn_kernels::ops::matmul::{
    self, reference, BiasMode, Epilogue, Gemm, GemmTiles, Operand, Tiling, WLayout,
};
use trajattn_kernels::select::{AdapterFacts, KernelSet};
use trajattn_kernels::testing::{assert_close, rand_vec, round_f16, to_f64};
use trajattn_kernels::{DType, Gpu, GpuOptions, Recorder, Tensor};

fn input(seed: u64, n: usize, d: DType) -> Vec<f32> {
    let v = rand_vec(seed, n);
    if d == DType::F16 {
        round_f16(&v)
    } else {
        v
    }
}

// f32: K-long dot products in f32 → ≤ 1e-4 (the project's bound for long reductions).
// f16: the output is stored in f16 (2^-11 relative) → 3e-3.
fn tol(d: DType) -> f64 {
    match d {
        DType::F32 => 1e-4,
        DType::F16 => 3e-3,
    }
}

#[allow(clippy::too_many_arguments)]
fn check(
    gpu: &Gpu,
    d: DType,
    batch: usize,
    wb: usize,
    (m, n, k): (usize, usize, usize),
    layout: WLayout,
    with_bias: bool,
    act: Epilogue,
    tiling: Option<Tiling>,
) {
    let x = input(1 + m as u64, batch * m * k, d);
    let w = input(2 + n as u64, wb * n * k, d);
    let b = input(3 + k as u64, n, d);
    let xs: Vec<usize> = if batch > 1 { vec![batch, m, k] } else { vec![m, k] };
    let ws: Vec<usize> = match (wb > 1, layout) {
        (false, WLayout::NK) => vec![n, k],
        (false, WLayout::KN) => vec![k, n],
        (true, WLayout::NK) => vec![wb, n, k],
        (true, WLayout::KN) => vec![wb, k, n],
    };
    let ys: Vec<usize> = if batch > 1 { vec![batch, m, n] } else { vec![m, n] };
    let tx = Tensor::from_f32(gpu, &x, &xs, d).unwrap();
    let tw = Tensor::from_f32(gpu, &w, &ws, d).unwrap();
    let tb = Tensor::from_f32(gpu, &b, &[n], d).unwrap();
    let ty = Tensor::empty(gpu, &ys, d).unwrap();
    ty.poison(gpu);
    let mut rec = Recorder::new(gpu);
    matmul::record(&mut rec, &tx, &tw, layout, with_bias.then_some(&tb), act, &ty, tiling).unwrap();
    rec.run().unwrap();
    let bias64 = to_f64(&b);
    let want = reference::matmul(
        &to_f64(&x),
        &to_f64(&w),
        layout,
        with_bias.then_some(bias64.as_slice()),
        act,
        batch,
        wb,
        m,
        n,
        k,
    );
    let what = format!("{d} b{batch}/{wb} {m}x{n}x{k} {layout:?} bias={with_bias} {act:?} {tiling:?}");
    assert_close(&what, &ty.to_f32(gpu).unwrap(), &want, tol(d));
}

#[test]
fn every_path_and_epilogue_matches_reference() {
    let gpu = common::gpu();
    let acts = [Epilogue::None, Epilogue::Silu, Epilogue::GeluErf, Epilogue::GeluTanh];
    for d in common::dtypes(&gpu) {
        // K = 71: generic path; K = 36: vec4 path; K = 96: 8-lane subgroup path where the adapter has one.
        for (i, &mnk) in
            [(37, 53, 71), (1, 1, 1), (29, 43, 36), (45, 19, 96), (3, 130, 64)].iter().enumerate()
        {
            let act = acts[i % acts.len()];
            check(&gpu, d, 1, 1, mnk, WLayout::NK, i % 2 == 0, act, None);
        }
        for act in acts {
            check(&gpu, d, 1, 1, (17, 23, 32), WLayout::NK, true, act, None);
        }
        // Forced generic tiling with uneven blocks (`matmul` on every tier).
        check(
            &gpu,
            d,
            1,
            1,
            (31, 29, 64),
            WLayout::NK,
            true,
            Epilogue::None,
            Some(Tiling { tm: 3, tn: 5, wg_x: 4, wg_y: 2 }),
        );
    }
}

#[test]
fn batches_and_layouts() {
    let gpu = common::gpu();
    // Per-batch weights, [K, N] layout, shared weight over a 3-D input.
    check(&gpu, DType::F32, 3, 3, (13, 7, 19), WLayout::NK, false, Epilogue::None, None);
    check(&gpu, DType::F32, 3, 3, (13, 7, 64), WLayout::NK, true, Epilogue::Silu, None);
    check(&gpu, DType::F32, 2, 2, (9, 11, 5), WLayout::KN, false, Epilogue::None, None);
    check(&gpu, DType::F32, 1, 1, (21, 17, 33), WLayout::KN, true, Epilogue::GeluErf, None);
    check(&gpu, DType::F32, 3, 1, (5, 6, 40), WLayout::NK, true, Epilogue::None, None);
}

#[test]
fn sg8_tier_runs_its_three_kernels() {
    // K = 71: `matmul`; K = 36: `matmul_vec4`; K = 96: `matmul_sg8` (8-lane subgroups).
    let Some(gpu) = common::sg8_tier("matmul sg8 tier") else { return };
    for d in common::dtypes(&gpu) {
        for (i, &mnk) in [(37, 53, 71), (29, 43, 36), (45, 19, 96)].iter().enumerate() {
            check(&gpu, d, 1, 1, mnk, WLayout::NK, i % 2 == 0, Epilogue::Silu, None);
        }
    }
    let p = gpu.pipelines();
    for s in ["matmul", "matmul_vec4", "matmul_sg8"] {
        assert!(p.used(s, s), "{s} did not run: {:?}", p.keys());
    }
}

#[test]
fn fallback_device_without_subgroups() {
    // Without subgroups the device takes the GPU tier: the tiled GEMM, never the subgroup kernel.
    let gpu = Gpu::new(&GpuOptions { disable: vec!["subgroup".into()], ..Default::default() }).unwrap();
    check(&gpu, DType::F32, 1, 1, (45, 19, 96), WLayout::NK, true, Epilogue::GeluErf, None);
    let p = gpu.pipelines();
    assert!(!p.used("matmul_sg8", "matmul_sg8"), "matmul_sg8 ran without subgroups: {:?}", p.keys());
    assert!(
        p.used("gemm_tiled", "gemm_tiled") || p.used("gemm_tiled_vec4", "gemm_tiled_vec4"),
        "no tiled GEMM ran: {:?}",
        p.keys()
    );
}

#[test]
fn linear_over_leading_dims() {
    let gpu = common::gpu();
    let (k, n) = (24, 10);
    let x = rand_vec(5, 2 * 3 * 5 * k);
    let w = rand_vec(6, n * k);
    let tx = Tensor::from_f32(&gpu, &x, &[2, 3, 5, k], DType::F32).unwrap();
    let tw = Tensor::from_f32(&gpu, &w, &[n, k], DType::F32).unwrap();
    let y = matmul::linear(&gpu, &tx, &tw, None, Epilogue::None).unwrap();
    assert_eq!(y.shape(), &[2, 3, 5, n]);
    let want = reference::matmul(&to_f64(&x), &to_f64(&w), WLayout::NK, None, Epilogue::None, 1, 1, 30, n, k);
    assert_close("linear [2,3,5,24]", &y.to_f32(&gpu).unwrap(), &want, 1e-4);
}

#[test]
fn input_above_binding_limit_is_split_over_rows() {
    // Bindings lowered to 1 MiB on any adapter: 300 × 1,024 f32 = 1.2 MB does not fit; N small so the reference
    // is quick.
    let gpu = common::gpu_with_max_binding(1 << 20);
    let (m, n, k) = (300, 9, 1024);
    assert!((m * k * 4) as u64 > gpu.max_binding());
    check(&gpu, DType::F32, 1, 1, (m, n, k), WLayout::NK, true, Epilogue::None, None);
    let (m, n, k) = (301, 5, 1031);
    check(&gpu, DType::F32, 1, 1, (m, n, k), WLayout::NK, false, Epilogue::Silu, None);
}

#[test]
fn bad_shapes_are_errors_naming_both() {
    let gpu = common::gpu();
    let x = Tensor::from_f32(&gpu, &rand_vec(1, 12), &[3, 4], DType::F32).unwrap();
    let w = Tensor::from_f32(&gpu, &rand_vec(2, 10), &[2, 5], DType::F32).unwrap();
    let e = matmul::linear(&gpu, &x, &w, None, Epilogue::None).unwrap_err().to_string();
    assert!(e.contains("[2, 5]") && e.contains('4'), "{e}");
    let w = Tensor::from_f32(&gpu, &rand_vec(2, 8), &[2, 4], DType::F32).unwrap();
    let b = Tensor::from_f32(&gpu, &rand_vec(3, 3), &[3], DType::F32).unwrap();
    let e = matmul::linear(&gpu, &x, &w, Some(&b), Epilogue::None).unwrap_err().to_string();
    assert!(e.contains("[2]") && e.contains("[3]"), "{e}");
    if gpu.caps.shader_f16 {
        let wh = Tensor::from_f32(&gpu, &rand_vec(2, 8), &[2, 4], DType::F16).unwrap();
        let e = matmul::linear(&gpu, &x, &wh, None, Epilogue::None).unwrap_err().to_string();
        assert!(e.contains("f32") && e.contains("f16"), "{e}");
    }
}

// ---- GPU tier: the workgroup-tiled GEMM (`gemm_tiled`, `gemm_tiled_vec4`), forced on any adapter ----

/// A device of its own with the GPU tier forced (and an optional binding limit), so its pipeline cache says
/// exactly which GEMM variants this test ran.
fn gpu_tier(max_binding: Option<u64>) -> Gpu {
    Gpu::new(&GpuOptions { kernels: Some(KernelSet::Gpu), max_binding, ..Default::default() }).unwrap()
}

/// One strided GEMM: every operand has an offset, a padded row stride and a batch stride (0 for a shared
/// weight), so windows, strides and edge blocks are all exercised.
#[derive(Clone, Copy, Debug)]
struct Case {
    batch: usize,
    shared_w: bool,
    m: usize,
    n: usize,
    k: usize,
    layout: WLayout,
    bias: Option<BiasMode>,
    act: Epilogue,
    accumulate: bool,
    /// Extra elements added to every row stride and as leading offset (0 keeps vec4 alignment possible).
    pad: usize,
}

impl Case {
    #[allow(clippy::too_many_arguments)]
    fn new(batch: usize, shared_w: bool, (m, n, k): (usize, usize, usize), layout: WLayout) -> Case {
        Case { batch, shared_w, m, n, k, layout, bias: None, act: Epilogue::None, accumulate: false, pad: 0 }
    }
    fn bias(self, b: BiasMode) -> Case {
        Case { bias: Some(b), ..self }
    }
    fn act(self, act: Epilogue) -> Case {
        Case { act, ..self }
    }
    fn accumulate(self) -> Case {
        Case { accumulate: true, ..self }
    }
    fn pad(self, pad: usize) -> Case {
        Case { pad, ..self }
    }
}

/// (offset, ld, batch stride, total elements) of an operand with `rows` rows of `cols` used elements.
fn strided(c: &Case, rows: usize, cols: usize, shared: bool, extra: usize) -> (usize, usize, usize, usize) {
    let ld = cols + c.pad + extra;
    let off = c.pad + extra;
    let sb = if shared { 0 } else { rows * ld + 4 };
    let total = off + (c.batch - 1) * sb + (rows - 1) * ld + cols + 3;
    (off, ld, sb, total)
}

/// Runs `c` with `launch` on `gpu` in `d` and checks every element of Y: the GEMM region against the float64
/// reference, everything else untouched (NaN poison, or the initial values when accumulating).
fn check_gemm(
    gpu: &Gpu,
    d: DType,
    c: Case,
    launch: &dyn Fn(&mut Recorder, &Gemm) -> trajattn_kernels::Result<()>,
) {
    let (wr, wc) = match c.layout {
        WLayout::NK => (c.n, c.k),
        WLayout::KN => (c.k, c.n),
    };
    let (xo, xld, xsb, xlen) = strided(&c, c.m, c.k, false, 0);
    let (wo, wld, wsb, wlen) = strided(&c, wr, wc, c.shared_w, 4);
    // GEGLU writes one column per (value, gate) pair.
    let geglu = c.act == Epilogue::Geglu;
    let yn = if geglu { c.n / 2 } else { c.n };
    let (yo, yld, ysb, ylen) = strided(&c, c.m, yn, false, 8);
    let seed = (c.m * 1000 + c.n * 10 + c.k) as u64;
    let x = input(seed, xlen, d);
    let w = input(seed + 1, wlen, d);
    let bn = if c.bias == Some(BiasMode::PerRow) { c.m } else { c.n };
    let b = input(seed + 2, bn, d);
    let y0 = input(seed + 3, ylen, d);
    let tx = Tensor::from_f32(gpu, &x, &[xlen], d).unwrap();
    let tw = Tensor::from_f32(gpu, &w, &[wlen], d).unwrap();
    let tb = Tensor::from_f32(gpu, &b, &[bn], d).unwrap();
    let ty = if c.accumulate {
        Tensor::from_f32(gpu, &y0, &[ylen], d).unwrap()
    } else {
        let t = Tensor::empty(gpu, &[ylen], d).unwrap();
        t.poison(gpu);
        t
    };
    let g = Gemm {
        batch: c.batch,
        m: c.m,
        n: c.n,
        k: c.k,
        x: Operand { t: &tx, offset: xo, ld: xld, sb: xsb },
        w: Operand { t: &tw, offset: wo, ld: wld, sb: wsb },
        layout: c.layout,
        bias: c.bias.map(|m| (&tb, m)),
        act: c.act,
        y: Operand { t: &ty, offset: yo, ld: yld, sb: ysb },
        accumulate: c.accumulate,
    };
    let mut rec = Recorder::new(gpu);
    launch(&mut rec, &g).unwrap();
    rec.run().unwrap();
    let got = ty.to_f32(gpu).unwrap();
    let mut want: Vec<f64> = vec![0.0; ylen];
    let mut inside = vec![false; ylen];
    for bi in 0..c.batch {
        for i in 0..c.m {
            let mut row = vec![0.0f64; c.n];
            for (j, r) in row.iter_mut().enumerate() {
                let mut s = 0.0f64;
                for kk in 0..c.k {
                    let xv = x[xo + bi * xsb + i * xld + kk] as f64;
                    let wi = match c.layout {
                        WLayout::NK => wo + bi * wsb + j * wld + kk,
                        WLayout::KN => wo + bi * wsb + kk * wld + j,
                    };
                    s += xv * w[wi] as f64;
                }
                match c.bias {
                    Some(BiasMode::PerColumn) => s += b[j] as f64,
                    Some(BiasMode::PerRow) => s += b[i] as f64,
                    None => {}
                }
                *r = s;
            }
            for j in 0..yn {
                let yi = yo + bi * ysb + i * yld + j;
                want[yi] = if geglu {
                    row[j] * reference::activate(row[yn + j], Epilogue::GeluErf)
                } else {
                    let acc = if c.accumulate { y0[yi] as f64 } else { 0.0 };
                    reference::activate(row[j] + acc, c.act)
                };
                inside[yi] = true;
            }
        }
    }
    let what = format!("{d} {c:?}");
    let (gi, wi): (Vec<f32>, Vec<f64>) =
        got.iter().zip(&want).zip(&inside).filter(|(_, &ins)| ins).map(|((&g, &w), _)| (g, w)).unzip();
    assert_close(&what, &gi, &wi, tol(d));
    for (i, (&g, &ins)) in got.iter().zip(&inside).enumerate() {
        if !ins {
            let untouched = if c.accumulate { g == y0[i] } else { g.is_nan() };
            assert!(untouched, "{what}: y[{i}] outside the GEMM was written ({g})");
        }
    }
}

fn record_default(rec: &mut Recorder, g: &Gemm) -> trajattn_kernels::Result<()> {
    matmul::record_gemm(rec, g, None)
}

/// Asserts the GPU-tier pipelines ran (`vec4`: the vec4-load twin too) and none of the older GEMM kernels.
fn assert_tiled_only(gpu: &Gpu, vec4: bool) {
    let keys = gpu.pipelines().keys();
    assert!(gpu.pipelines().used("gemm_tiled", "gemm_tiled"), "scalar tiled GEMM did not run: {keys:?}");
    if vec4 {
        assert!(
            gpu.pipelines().used("gemm_tiled_vec4", "gemm_tiled_vec4"),
            "vec4 tiled GEMM did not run: {keys:?}"
        );
    }
    for (s, e) in [("matmul", "matmul"), ("matmul_vec4", "matmul_vec4"), ("matmul_sg8", "matmul_sg8")] {
        assert!(!gpu.pipelines().used(s, e), "{s} ran on the GPU tier: {keys:?}");
    }
}

#[test]
fn tiled_gemm_every_feature_on_odd_shapes() {
    let gpu = gpu_tier(None);
    let acts = [Epilogue::None, Epilogue::Silu, Epilogue::GeluErf, Epilogue::GeluTanh];
    let (nk, kn) = (WLayout::NK, WLayout::KN);
    let (col, row) = (BiasMode::PerColumn, BiasMode::PerRow);
    let cases = [
        // Scalar loads (K odd), several blocks along M and N, edge blocks everywhere.
        Case::new(1, true, (67, 71, 37), nk).bias(col),
        // K < BK, N < 4, M = 1; and K < BK on the vec4 path.
        Case::new(1, true, (1, 3, 5), nk).act(Epilogue::Silu),
        Case::new(2, false, (5, 6, 4), nk).bias(col).act(Epilogue::GeluTanh),
        Case::new(1, true, (70, 3, 9), nk).bias(row).act(Epilogue::GeluErf),
        // vec4 loads (K, strides, offsets multiples of 4), batch with a shared and with strided weights.
        Case::new(2, true, (33, 65, 40), nk).bias(col).act(Epilogue::GeluTanh),
        Case::new(3, false, (19, 21, 68), nk).bias(row).accumulate(),
        // K % 4 == 0 but misaligned rows: back to scalar loads.
        Case::new(2, false, (13, 17, 20), nk).pad(1).bias(col).act(Epilogue::Silu),
        // [K, N] weights: shared, strided, accumulate, per-row bias.
        Case::new(2, false, (23, 29, 31), kn).bias(col).act(Epilogue::Silu),
        Case::new(1, true, (130, 66, 20), kn).accumulate(),
        Case::new(3, true, (17, 5, 16), kn).bias(row).act(Epilogue::GeluErf).pad(3),
        // Several default (128 x 128) blocks along M and N.
        Case::new(1, true, (140, 135, 12), nk).bias(col),
        // K spanning several BK steps with a ragged last one.
        Case::new(1, true, (9, 7, 83), nk).pad(2).bias(row).accumulate(),
    ];
    for d in common::dtypes(&gpu) {
        for c in cases {
            check_gemm(&gpu, d, c, &record_default);
        }
        for act in acts {
            check_gemm(&gpu, d, Case::new(1, true, (29, 31, 24), nk).bias(col).act(act), &record_default);
        }
    }
    assert_tiled_only(&gpu, true);
}

#[test]
fn tiled_gemm_geglu_epilogue_on_odd_shapes() {
    // GEGLU pairs column j with column N/2 + j (weight rows and bias entries): scalar and vec4 loads, several
    // blocks along M and N, the smallest N, a batch with a shared weight; outputs poisoned.
    let gpu = gpu_tier(None);
    let nk = WLayout::NK;
    let col = BiasMode::PerColumn;
    let g = Epilogue::Geglu;
    let cases = [
        Case::new(1, true, (67, 74, 37), nk).bias(col).act(g),
        Case::new(2, true, (33, 66, 40), nk).bias(col).act(g),
        Case::new(1, true, (5, 2, 8), nk).act(g),
        Case::new(1, true, (140, 270, 12), nk).bias(col).act(g),
        Case::new(2, false, (13, 18, 20), nk).pad(1).act(g),
    ];
    for d in common::dtypes(&gpu) {
        for c in cases {
            check_gemm(&gpu, d, c, &record_default);
        }
    }
    assert_tiled_only(&gpu, true);
    // Refused: an odd N, a [K, N] weight, accumulation, and any kernel but the tiled GEMM.
    let t = Tensor::empty(&gpu, &[64], DType::F32).unwrap();
    let op = |t| Operand { t, offset: 0, ld: 4, sb: 0 };
    let gemm = |n, layout, accumulate| Gemm {
        batch: 1,
        m: 2,
        n,
        k: 4,
        x: op(&t),
        w: op(&t),
        layout,
        bias: None,
        act: g,
        y: op(&t),
        accumulate,
    };
    for (n, layout, acc) in [(3, nk, false), (4, WLayout::KN, false), (4, nk, true)] {
        let mut rec = Recorder::new(&gpu);
        assert!(
            matmul::record_gemm(&mut rec, &gemm(n, layout, acc), None).is_err(),
            "n {n} {layout:?} {acc}"
        );
    }
    let mut rec = Recorder::new(&gpu);
    let generic = Tiling { tm: 4, tn: 4, wg_x: 8, wg_y: 8 };
    assert!(matmul::record_gemm(&mut rec, &gemm(4, nk, false), Some(generic)).is_err());
}

#[test]
fn linear_geglu_on_every_tier() {
    // diffusers' GEGLU projection: fused on the GPU tier, linear + elementwise GEGLU elsewhere; both against
    // the float64 reference, x [2, 7, 24] → y [2, 7, 19] (2·I = 38).
    // Devices of their own (the adapter's tier, and the GPU tier forced), so their pipeline caches say what ran.
    for gpu in [Gpu::new(&GpuOptions::default()).unwrap(), gpu_tier(None)] {
        let fused = matmul::geglu_fused(&gpu);
        for d in common::dtypes(&gpu) {
            let (m, k, n) = (14, 24, 38);
            let x = input(71, m * k, d);
            let w = input(72, n * k, d);
            let b = input(73, n, d);
            let tx = Tensor::from_f32(&gpu, &x, &[2, 7, k], d).unwrap();
            let tw = Tensor::from_f32(&gpu, &w, &[n, k], d).unwrap();
            let tb = Tensor::from_f32(&gpu, &b, &[n], d).unwrap();
            let ty = Tensor::empty(&gpu, &[2, 7, n / 2], d).unwrap();
            ty.poison(&gpu);
            let h = Tensor::empty(&gpu, &[2, 7, n], d).unwrap();
            let mut rec = Recorder::new(&gpu);
            let scratch = if fused { None } else { Some(&h) };
            matmul::record_linear_geglu(&mut rec, &tx, &tw, Some(&tb), &ty, scratch).unwrap();
            rec.run().unwrap();
            let want = reference::matmul(
                &to_f64(&x),
                &to_f64(&w),
                WLayout::NK,
                Some(&to_f64(&b)),
                Epilogue::Geglu,
                1,
                1,
                m,
                n,
                k,
            );
            // f16 unfused: the projection is rounded to f16 before the GEGLU (as diffusers does) → 2 roundings.
            let tol = if d == DType::F16 { 6e-3 } else { tol(d) };
            assert_close(&format!("linear_geglu {d} fused {fused}"), &ty.to_f32(&gpu).unwrap(), &want, tol);
        }
        let keys = gpu.pipelines().keys();
        assert_eq!(gpu.pipelines().used("elementwise", "geglu"), !fused, "{keys:?}");
    }
}

#[test]
fn tiled_gemm_small_tiles_cross_many_blocks() {
    let gpu = gpu_tier(None);
    let tiles = [GemmTiles { wg_x: 4, wg_y: 4, bk: 4 }, GemmTiles { wg_x: 8, wg_y: 4, bk: 8 }];
    for d in common::dtypes(&gpu) {
        for t in tiles {
            let launch = |rec: &mut Recorder, g: &Gemm| matmul::record_gemm_tiled(rec, g, t);
            check_gemm(
                &gpu,
                d,
                Case::new(2, false, (37, 45, 50), WLayout::NK).bias(BiasMode::PerColumn),
                &launch,
            );
            check_gemm(
                &gpu,
                d,
                Case::new(2, true, (37, 45, 52), WLayout::NK).act(Epilogue::GeluErf),
                &launch,
            );
            check_gemm(
                &gpu,
                d,
                Case::new(1, true, (21, 38, 13), WLayout::KN).bias(BiasMode::PerRow),
                &launch,
            );
        }
    }
    assert_tiled_only(&gpu, true);
}

#[test]
fn tiled_gemm_splits_over_binding_windows() {
    // 16 KiB bindings: X rows of 300 f32 → 13 rows per window, per-batch weights → one dispatch per batch entry
    // and row chunk; a per-row bias must follow the chunk.
    let gpu = gpu_tier(Some(16 << 10));
    assert_eq!(gpu.max_binding(), 16 << 10);
    for d in common::dtypes(&gpu) {
        check_gemm(
            &gpu,
            d,
            Case::new(2, false, (57, 11, 300), WLayout::NK).bias(BiasMode::PerRow),
            &record_default,
        );
        check_gemm(
            &gpu,
            d,
            Case::new(2, true, (45, 9, 301), WLayout::NK).bias(BiasMode::PerColumn).act(Epilogue::Silu),
            &record_default,
        );
        check_gemm(&gpu, d, Case::new(1, true, (40, 7, 250), WLayout::KN).accumulate(), &record_default);
    }
    assert_tiled_only(&gpu, true);
}

#[test]
fn weight_above_binding_limit_is_split_over_output_columns() {
    // 32 KiB bindings, both tiers: [N, K] weights (row stride K + 4) larger than one binding in f32 and f16, so
    // the GEMM runs in chunks of output columns, each binding a window of whole weight rows, the matching columns
    // of Y and of the per-column bias. Unsplit, the weight's binding would be refused (TooLarge).
    for kernels in [None, Some(KernelSet::Gpu)] {
        let gpu =
            Gpu::new(&GpuOptions { kernels, max_binding: Some(32 << 10), ..Default::default() }).unwrap();
        for d in common::dtypes(&gpu) {
            for (m, n, k) in [(37, 301, 64), (21, 403, 45)] {
                assert!((n * (k + 4)) as u64 * d.size() > gpu.max_binding());
                let c =
                    Case::new(1, true, (m, n, k), WLayout::NK).bias(BiasMode::PerColumn).act(Epilogue::Silu);
                check_gemm(&gpu, d, c, &record_default);
            }
        }
        if kernels.is_some() {
            assert_tiled_only(&gpu, true);
        } else if gpu.subgroup8() {
            let keys = gpu.pipelines().keys();
            assert!(gpu.pipelines().used("matmul_sg8", "matmul_sg8"), "{keys:?}");
        }
    }
}

#[test]
fn tiled_gemm_tiles_follow_adapter_limits() {
    let facts = |inv: u32, lds: u32| AdapterFacts {
        name: "test".into(),
        shader_f16: true,
        subgroup: true,
        subgroup_min_size: 32,
        subgroup_max_size: 32,
        timestamp: false,
        max_workgroup_storage: lds,
        max_invocations: inv,
        max_binding: 1 << 27,
    };
    let t = GemmTiles::for_facts(&facts(256, 16384));
    assert_eq!(t, GemmTiles { wg_x: 16, wg_y: 16, bk: 8 });
    assert_eq!((t.bm(), t.bn(), t.workgroup_bytes()), (128, 128, 8192));
    for (inv, lds) in [(128, 16384), (64, 16384), (256, 4096), (256, 2048), (16, 1024)] {
        let t = GemmTiles::for_facts(&facts(inv, lds));
        assert!(t.wg_x * t.wg_y <= inv && t.workgroup_bytes() <= lds, "{inv} {lds}: {t:?}");
    }
    // Tiles the adapter cannot run are an error, not a failed pipeline.
    let gpu = gpu_tier(None);
    let x = Tensor::from_f32(&gpu, &rand_vec(1, 12), &[3, 4], DType::F32).unwrap();
    let y = Tensor::empty(&gpu, &[3, 3], DType::F32).unwrap();
    let g = Gemm {
        batch: 1,
        m: 3,
        n: 3,
        k: 4,
        x: Operand { t: &x, offset: 0, ld: 4, sb: 0 },
        w: Operand { t: &x, offset: 0, ld: 4, sb: 0 },
        layout: WLayout::NK,
        bias: None,
        act: Epilogue::None,
        y: Operand { t: &y, offset: 0, ld: 3, sb: 0 },
        accumulate: false,
    };
    let mut rec = Recorder::new(&gpu);
    let big = GemmTiles { wg_x: 64, wg_y: 64, bk: 16 };
    assert!(matmul::record_gemm_tiled(&mut rec, &g, big).is_err());
    let odd_bk = GemmTiles { wg_x: 4, wg_y: 4, bk: 6 };
    assert!(matmul::record_gemm_tiled(&mut rec, &g, odd_bk).is_err());
}
