//! Layer norm and softmax against float64 references: odd row lengths, off-centre inputs, large logits, f16,
//! and a tensor above the binding limit.

mod common;

use trajattn_kernels::ops::rows::{self, reference};
use trajattn_kernels::testing::{assert_close, rand_range, rand_vec, round_f16, to_f64};
use trajattn_kernels::{DType, Tensor};

fn maybe16(v: Vec<f32>, d: DType) -> Vec<f32> {
    if d == DType::F16 {
        round_f16(&v)
    } else {
        v
    }
}

#[test]
fn layer_norm_matches_reference() {
    let gpu = common::gpu();
    for d in common::dtypes(&gpu) {
        for &(rows, c, off) in &[(37usize, 320usize, 0.0f32), (5, 1, 0.0), (11, 129, 5.0), (3, 1280, -2.0)] {
            let x = maybe16(rand_vec(41 + c as u64, rows * c).iter().map(|v| v + off).collect(), d);
            let g = maybe16(rand_range(42, c, 0.5, 1.5), d);
            let b = maybe16(rand_vec(43, c), d);
            let tx = Tensor::from_f32(&gpu, &x, &[rows, c], d).unwrap();
            let tg = Tensor::from_f32(&gpu, &g, &[c], d).unwrap();
            let tb = Tensor::from_f32(&gpu, &b, &[c], d).unwrap();
            for affine in [true, false] {
                let y = Tensor::empty(&gpu, &[rows, c], d).unwrap();
                y.poison(&gpu);
                let mut rec = trajattn_kernels::Recorder::new(&gpu);
                rows::record_layer_norm(&mut rec, &tx, affine.then_some((&tg, &tb)), 1e-5, &y).unwrap();
                rec.run().unwrap();
                let (g64, b64) = (to_f64(&g), to_f64(&b));
                let want =
                    reference::layer_norm(&to_f64(&x), c, affine.then_some((&g64[..], &b64[..])), 1e-5);
                // f32: per-row statistics in f32 → 1e-5 (c = 1: output is β exactly); f16: output storage → 3e-3.
                let tol = if d == DType::F16 { 3e-3 } else { 1e-5 };
                assert_close(
                    &format!("layer norm {d} {rows}x{c} +{off} affine={affine}"),
                    &y.to_f32(&gpu).unwrap(),
                    &want,
                    tol,
                );
            }
        }
    }
}

#[test]
fn layer_norm_large_mean_small_spread() {
    // 1000 ± 0.05 in f32 (the tier this adapter selects; norms_gpu.rs forces the gpu tier): an unshifted f32
    // mean is off by ~1e-4, 3e-3 of the spread, so the statistics must be taken relative to a row element.
    let gpu = common::gpu();
    for &(rows, c) in &[(9usize, 77usize), (3, 1281), (11, 320), (4, 1)] {
        let x: Vec<f32> =
            rand_range(71 + c as u64, rows * c, -1.0, 1.0).iter().map(|u| 1000.0 + 0.05 * u).collect();
        let tx = Tensor::from_f32(&gpu, &x, &[rows, c], DType::F32).unwrap();
        let y = Tensor::empty(&gpu, &[rows, c], DType::F32).unwrap();
        y.poison(&gpu);
        let mut rec = trajattn_kernels::Recorder::new(&gpu);
        rows::record_layer_norm(&mut rec, &tx, None, 1e-5, &y).unwrap();
        rec.run().unwrap();
        let want = reference::layer_norm(&to_f64(&x), c, None, 1e-5);
        // Shifted f32 sums: the same 1e-5 as for centred data.
        assert_close(&format!("layer norm {rows}x{c} 1000±0.05"), &y.to_f32(&gpu).unwrap(), &want, 1e-5);
    }
}

#[test]
fn softmax_matches_reference() {
    let gpu = common::gpu();
    for d in common::dtypes(&gpu) {
        for &(rows, c, scale) in &[(41usize, 50usize, 1.0f32), (7, 257, 0.125), (3, 1, 1.0), (9, 33, 30.0)] {
            let x = maybe16(rand_vec(51 + c as u64, rows * c), d);
            let tx = Tensor::from_f32(&gpu, &x, &[rows, c], d).unwrap();
            let y = Tensor::empty(&gpu, &[rows, c], d).unwrap();
            y.poison(&gpu);
            let mut rec = trajattn_kernels::Recorder::new(&gpu);
            rows::record_softmax(&mut rec, &tx, scale, &y).unwrap();
            rec.run().unwrap();
            let want = reference::softmax(&to_f64(&x), c, scale as f64);
            // f32: exp and a c-term sum in f32 → 1e-5 relative to the row maximum; f16: storage → 3e-3.
            let tol = if d == DType::F16 { 3e-3 } else { 1e-5 };
            assert_close(
                &format!("softmax {d} {rows}x{c} scale {scale}"),
                &y.to_f32(&gpu).unwrap(),
                &want,
                tol,
            );
        }
    }
}

#[test]
fn rows_above_binding_limit() {
    // Bindings lowered to 1 MiB on any adapter: 1,001 rows of 331 f32 = 1.3 MB are split into row windows.
    let gpu = common::gpu_with_max_binding(1 << 20);
    let (rows, c) = (1_001, 331);
    let x = rand_vec(61, rows * c);
    let tx = Tensor::from_f32(&gpu, &x, &[rows, c], DType::F32).unwrap();
    let y = rows::layer_norm(&gpu, &tx, None, 1e-6).unwrap();
    assert_close(
        "layer norm over windows",
        &y.to_f32(&gpu).unwrap(),
        &reference::layer_norm(&to_f64(&x), c, None, 1e-6),
        1e-5,
    );
    let y = rows::softmax(&gpu, &tx, 2.0).unwrap();
    assert_close(
        "softmax over windows",
        &y.to_f32(&gpu).unwrap(),
        &reference::softmax(&to_f64(&x), c, 2.0),
        1e-5,
    );
}

#[test]
fn bad_shapes_are_errors() {
    let gpu = common::gpu();
    let x = Tensor::from_f32(&gpu, &rand_vec(1, 12), &[3, 4], DType::F32).unwrap();
    let g = Tensor::from_f32(&gpu, &rand_vec(2, 3), &[3], DType::F32).unwrap();
    let e = rows::layer_norm(&gpu, &x, Some((&g, &g)), 1e-5).unwrap_err().to_string();
    assert!(e.contains("[4]") && e.contains("[3]"), "{e}");
}
