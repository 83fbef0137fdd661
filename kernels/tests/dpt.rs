//! DPT head ops (bilinear align_corners resize, stride = kernel transposed convolution, ReLU) against their
//! float64 references: odd shapes, NaN-poisoned outputs, f32 and f16, on the default tier and the forced GPU
//! tier, with a lowered binding limit that splits the work into windows, and the pipelines that really ran.

mod common;

use std::sync::Arc;
use trajattn_kernels::ops::dpt::{self, reference};
use trajattn_kernels::select::{KernelSet, Tier};
use trajattn_kernels::testing::{assert_close, rand_vec, round_f16, to_f64};
use trajattn_kernels::{DType, Gpu, GpuOptions, Recorder, Tensor};

fn device(kernels: Option<KernelSet>, max_binding: Option<u64>) -> Arc<Gpu> {
    let opts = GpuOptions { kernels, max_binding, ..Default::default() };
    let gpu = Gpu::new(&opts).unwrap_or_else(|e| panic!("no GPU for tests: {e}"));
    if kernels == Some(KernelSet::Gpu) {
        assert_eq!(gpu.tier, Tier::Gpu);
    }
    Arc::new(gpu)
}

fn devices() -> Vec<(&'static str, Arc<Gpu>)> {
    vec![
        ("default", common::gpu()),
        ("gpu tier", device(Some(KernelSet::Gpu), None)),
        // 256 KiB bindings: the larger cases below split into several windows.
        ("gpu tier, 256 KiB bindings", device(Some(KernelSet::Gpu), Some(256 << 10))),
    ]
}

fn data(seed: u64, n: usize, d: DType) -> Vec<f32> {
    let v = rand_vec(seed, n);
    if d == DType::F16 {
        round_f16(&v)
    } else {
        v
    }
}

fn tol(d: DType, f32_tol: f64) -> f64 {
    if d == DType::F16 {
        2e-3
    } else {
        f32_tol
    }
}

#[test]
fn bilinear_align_corners_matches_reference() {
    for (name, gpu) in devices() {
        for d in common::dtypes(&gpu) {
            // (planes, h, w, ho, wo): odd up/down scales, the DPT 2× case, a copied axis, a 1-pixel output.
            for (c, h, w, ho, wo) in [
                (3, 5, 7, 13, 9),
                (5, 10, 14, 20, 28),
                (2, 9, 11, 9, 23),
                (3, 17, 13, 6, 5),
                (2, 4, 6, 1, 3),
                (7, 40, 37, 80, 74),
            ] {
                let x = data(11 + c as u64, c * h * w, d);
                let tx = Tensor::from_f32(&gpu, &x, &[1, c, h, w], d).unwrap();
                let y = Tensor::empty(&gpu, &[1, c, ho, wo], d).unwrap();
                y.poison(&gpu);
                let mut rec = Recorder::new(&gpu);
                dpt::record_bilinear_ac(&mut rec, &tx, &y).unwrap();
                rec.run().unwrap();
                let want = reference::bilinear_ac(&to_f64(&x), h, w, ho, wo);
                assert_close(
                    &format!("{name} bilinear {c}x{h}x{w}→{ho}x{wo} {d}"),
                    &y.to_f32(&gpu).unwrap(),
                    &want,
                    tol(d, 1e-6),
                );
            }
        }
        assert!(gpu.pipelines().used("dpt", "bilinear_ac"), "{name}: bilinear_ac did not run");
        let bad = Tensor::empty(&gpu, &[1, 4, 3, 3], DType::F32).unwrap();
        let x = Tensor::empty(&gpu, &[1, 3, 3, 3], DType::F32).unwrap();
        assert!(dpt::record_bilinear_ac(&mut Recorder::new(&gpu), &x, &bad).is_err());
    }
}

#[test]
fn conv_transpose_stride_kernel_matches_reference() {
    for (name, gpu) in devices() {
        for d in common::dtypes(&gpu) {
            // (cin, cout, gh, gw, k): the DPT 4×4 and 2×2 cases at odd sizes, and a channel count that splits.
            for (cin, cout, gh, gw, k) in
                [(7, 5, 3, 5, 4), (13, 9, 5, 7, 2), (37, 33, 10, 14, 4), (3, 70, 6, 9, 2)]
            {
                let x = data(21 + cin as u64, gh * gw * cin, d);
                let w = data(22 + cout as u64, cin * cout * k * k, d);
                let b = data(23, cout, d);
                let tx = Tensor::from_f32(&gpu, &x, &[gh * gw, cin], d).unwrap();
                let tw = Tensor::from_f32(&gpu, &w, &[cin, cout, k, k], d).unwrap();
                let tb = Tensor::from_f32(&gpu, &b, &[cout], d).unwrap();
                let y = Tensor::empty(&gpu, &[1, cout, k * gh, k * gw], d).unwrap();
                y.poison(&gpu);
                let mut rec = Recorder::new(&gpu);
                dpt::record_conv_transpose_ks(&mut rec, &tx, (gh, gw), &tw, &tb, &y).unwrap();
                rec.run().unwrap();
                let want = reference::conv_transpose_ks(&to_f64(&x), gh, gw, &to_f64(&w), &to_f64(&b), k);
                assert_close(
                    &format!("{name} conv transpose {cin}→{cout} {gh}x{gw} k{k} {d}"),
                    &y.to_f32(&gpu).unwrap(),
                    &want,
                    tol(d, 1e-5),
                );
            }
            // Shape errors name both shapes, never panic.
            let tx = Tensor::empty(&gpu, &[15, 7], d).unwrap();
            let tw = Tensor::empty(&gpu, &[7, 5, 4, 4], d).unwrap();
            let tb = Tensor::empty(&gpu, &[5], d).unwrap();
            let y = Tensor::empty(&gpu, &[1, 5, 12, 20], d).unwrap();
            let mut rec = Recorder::new(&gpu);
            assert!(dpt::record_conv_transpose_ks(&mut rec, &tx, (3, 5), &tw, &tb, &y).is_ok());
            assert!(dpt::record_conv_transpose_ks(&mut rec, &tx, (5, 3), &tw, &tb, &y).is_err());
            assert!(dpt::record_conv_transpose_ks(&mut rec, &tx, (3, 5), &tw, &tx, &y).is_err());
        }
        assert!(gpu.pipelines().used("dpt", "rearrange_ks"), "{name}: rearrange_ks did not run");
    }
}

#[test]
fn relu_matches_reference() {
    for (name, gpu) in devices() {
        for d in common::dtypes(&gpu) {
            let n = 40_001;
            let x = data(31, n, d);
            let tx = Tensor::from_f32(&gpu, &x, &[n], d).unwrap();
            let y = Tensor::empty(&gpu, &[n], d).unwrap();
            y.poison(&gpu);
            let mut rec = Recorder::new(&gpu);
            dpt::record_relu(&mut rec, &tx, &y).unwrap();
            rec.run().unwrap();
            let want: Vec<f64> = x.iter().map(|&v| (v as f64).max(0.0)).collect();
            assert_close(&format!("{name} relu {d}"), &y.to_f32(&gpu).unwrap(), &want, 0.0);
            // In place.
            let mut rec = Recorder::new(&gpu);
            dpt::record_relu_inplace(&mut rec, &tx).unwrap();
            rec.run().unwrap();
            assert_close(&format!("{name} relu in place {d}"), &tx.to_f32(&gpu).unwrap(), &want, 0.0);
        }
        assert!(gpu.pipelines().used("dpt", "relu"), "{name}: relu did not run");
        assert!(gpu.pipelines().used("dpt", "relu_inplace"), "{name}: relu_inplace did not run");
    }
}
