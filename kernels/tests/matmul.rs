//! Matmul / linear against the float64 reference: every code path (generic, vec4, 8-lane subgroup),
//! every epilogue, bias, batches, both weight layouts, f16, and a tensor above the binding limit.

mod common;

use trajattn_kernels::ops::matmul::{self, reference, Epilogue, Tiling, WLayout};
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
        // Forced generic tiling with uneven blocks.
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
fn fallback_device_without_subgroups() {
    let gpu = Gpu::new(&GpuOptions { disable: vec!["subgroup".into()], ..Default::default() }).unwrap();
    check(&gpu, DType::F32, 1, 1, (45, 19, 96), WLayout::NK, true, Epilogue::GeluErf, None);
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
    let gpu = common::gpu();
    // 33,000 × 1,024 f32 = 135 MB > 128 MiB; N small so the reference is quick.
    let (m, n, k) = (33_000, 9, 1024);
    assert!((m * k * 4) as u64 > 128 << 20);
    check(&gpu, DType::F32, 1, 1, (m, n, k), WLayout::NK, true, Epilogue::None, None);
    let (m, n, k) = (33_013, 5, 1031);
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
