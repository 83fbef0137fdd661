//! 2-D and temporal convolutions against direct float64 references: odd sizes, strides, asymmetric padding,
//! 1×1, channel counts that take the fast matmul path and ones that don't, f16, inputs above the binding limit.

mod common;

use trajattn_kernels::ops::conv::{self, reference, Conv2dOpts};
use trajattn_kernels::testing::{assert_close, rand_vec, round_f16, to_f64};
use trajattn_kernels::{DType, Gpu, Tensor};

fn input(seed: u64, n: usize, d: DType) -> Vec<f32> {
    let v = rand_vec(seed, n);
    if d == DType::F16 {
        round_f16(&v)
    } else {
        v
    }
}

// f32: sums of Cin·K·K products accumulated in f32 → 1e-4; f16: output stored in f16 → 3e-3.
fn tol(d: DType) -> f64 {
    if d == DType::F16 {
        3e-3
    } else {
        1e-4
    }
}

fn check2d(
    gpu: &Gpu,
    d: DType,
    (n, cin, h, w): (usize, usize, usize, usize),
    (cout, k): (usize, usize),
    o: Conv2dOpts,
    bias: bool,
) -> usize {
    let x = input(11 + cin as u64, n * cin * h * w, d);
    let wt = input(12 + cout as u64, cout * cin * k * k, d);
    let b = input(13, cout, d);
    let tx = Tensor::from_f32(gpu, &x, &[n, cin, h, w], d).unwrap();
    let tw = Tensor::from_f32(gpu, &wt, &[cout, cin, k, k], d).unwrap();
    let tb = Tensor::from_f32(gpu, &b, &[cout], d).unwrap();
    let (ho, wo) = o.out_size(h, w, k, k).unwrap();
    let y = Tensor::empty(gpu, &[n, cout, ho, wo], d).unwrap();
    y.poison(gpu);
    let mut rec = trajattn_kernels::Recorder::new(gpu);
    conv::record_conv2d(&mut rec, &tx, &tw, bias.then_some(&tb), o, &y).unwrap();
    let dispatches = rec.len();
    rec.run().unwrap();
    let b64 = to_f64(&b);
    let want = reference::conv2d(
        &to_f64(&x),
        &to_f64(&wt),
        bias.then_some(b64.as_slice()),
        (n, cin, h, w),
        (cout, k, k),
        o,
    );
    let what = format!("conv2d {d} x[{n},{cin},{h},{w}] k{k} cout{cout} {o:?} bias={bias}");
    assert_close(&what, &y.to_f32(gpu).unwrap(), &want, tol(d));
    dispatches
}

#[test]
fn conv2d_matches_reference() {
    let gpu = common::gpu();
    for d in common::dtypes(&gpu) {
        check2d(&gpu, d, (2, 5, 9, 13), (7, 3), Conv2dOpts::new(1, 1), true);
        check2d(&gpu, d, (1, 32, 7, 11), (9, 3), Conv2dOpts::new(1, 1), false); // K = 288: subgroup path
        check2d(&gpu, d, (2, 4, 9, 1), (3, 3), Conv2dOpts::new(1, 1), true); // width 1, K = 36: vec4 path
        check2d(&gpu, d, (1, 6, 11, 9), (5, 3), Conv2dOpts::new(2, 1), true); // UNet downsample
        check2d(&gpu, d, (1, 3, 10, 7), (4, 3), Conv2dOpts { stride: 2, pad: [0, 0, 1, 1] }, true); // VAE downsample
        check2d(&gpu, d, (3, 12, 5, 6), (8, 1), Conv2dOpts::new(1, 0), true); // 1×1 shortcut
    }
}

#[test]
fn conv2d_input_above_binding_limit_splits_channels() {
    // Bindings lowered to 256 KiB on any adapter: one image of 70 × 45 × 47 f32 = 592 KB does not fit, so
    // input channels are chunked and accumulated.
    let gpu = common::gpu_with_max_binding(256 << 10);
    let dispatches = check2d(&gpu, DType::F32, (1, 70, 45, 47), (2, 3), Conv2dOpts::new(1, 1), true);
    assert!(dispatches > 1, "expected a split into several dispatches, got {dispatches}");
}

fn check3d(gpu: &Gpu, d: DType, (b, f, c, h, w): (usize, usize, usize, usize, usize), cout: usize) -> usize {
    let x = input(21, b * f * c * h * w, d);
    let wt = input(22, cout * c * 3, d);
    let bias = input(23, cout, d);
    let tx = Tensor::from_f32(gpu, &x, &[b * f, c, h, w], d).unwrap();
    let tw = Tensor::from_f32(gpu, &wt, &[cout, c, 3, 1, 1], d).unwrap();
    let tb = Tensor::from_f32(gpu, &bias, &[cout], d).unwrap();
    let y = Tensor::empty(gpu, &[b * f, cout, h, w], d).unwrap();
    y.poison(gpu);
    let mut rec = trajattn_kernels::Recorder::new(gpu);
    conv::record_conv3d_temporal(&mut rec, &tx, f, &tw, Some(&tb), &y).unwrap();
    let dispatches = rec.len();
    rec.run().unwrap();
    let want = reference::conv3d_temporal(
        &to_f64(&x),
        &to_f64(&wt),
        Some(&to_f64(&bias)),
        (b * f, f, c, h * w),
        cout,
    );
    assert_close(
        &format!("conv3d {d} b{b} f{f} c{c} {h}x{w} -> {cout}"),
        &y.to_f32(gpu).unwrap(),
        &want,
        tol(d),
    );
    dispatches
}

#[test]
fn temporal_conv_matches_reference() {
    let gpu = common::gpu();
    for d in common::dtypes(&gpu) {
        check3d(&gpu, d, (2, 3, 5, 7, 9), 6);
        check3d(&gpu, d, (1, 5, 32, 3, 5), 7); // K = 96: subgroup path
        check3d(&gpu, d, (3, 1, 4, 2, 3), 4); // single-frame clips: both neighbours are padding
    }
}

#[test]
fn temporal_conv_above_binding_limit() {
    // Bindings lowered to 256 KiB on any adapter: one frame of 40 × 45 × 47 f32 = 338 KB does not fit.
    let gpu = common::gpu_with_max_binding(256 << 10);
    let dispatches = check3d(&gpu, DType::F32, (1, 2, 40, 45, 47), 1);
    assert!(dispatches > 1, "expected a split into several dispatches, got {dispatches}");
}

#[test]
fn bad_shapes_are_errors() {
    let gpu = common::gpu();
    let x = Tensor::from_f32(&gpu, &rand_vec(1, 2 * 3 * 4 * 5), &[2, 3, 4, 5], DType::F32).unwrap();
    let w = Tensor::from_f32(&gpu, &rand_vec(2, 4 * 2 * 9), &[4, 2, 3, 3], DType::F32).unwrap();
    let e = conv::conv2d(&gpu, &x, &w, None, Conv2dOpts::new(1, 1)).unwrap_err().to_string();
    assert!(e.contains("[4, 2, 3, 3]") && e.contains("[4, 3, 3, 3]"), "{e}");
    let w = Tensor::from_f32(&gpu, &rand_vec(2, 4 * 3 * 49), &[4, 3, 7, 7], DType::F32).unwrap();
    assert!(conv::conv2d(&gpu, &x, &w, None, Conv2dOpts::new(1, 0)).is_err(), "kernel larger than input");
    let w3 = Tensor::from_f32(&gpu, &rand_vec(3, 4 * 3 * 3), &[4, 3, 3, 1, 1], DType::F32).unwrap();
    let e = conv::conv3d_temporal(&gpu, &x, 3, &w3, None).unwrap_err().to_string();
    assert!(e.contains("clips"), "{e}");
}

/// GPU tier forced (the workgroup-tiled GEMM behind im2col), with an optional small binding limit.
fn gpu_tier(max_binding: Option<u64>) -> Gpu {
    use trajattn_kernels::{select::KernelSet, GpuOptions};
    Gpu::new(&GpuOptions { kernels: Some(KernelSet::Gpu), max_binding, ..Default::default() }).unwrap()
}

fn assert_tiled_gemm_ran(gpu: &Gpu) {
    let keys = gpu.pipelines().keys();
    assert!(
        gpu.pipelines().used("gemm_tiled", "gemm_tiled")
            || gpu.pipelines().used("gemm_tiled_vec4", "gemm_tiled_vec4"),
        "no tiled GEMM ran: {keys:?}"
    );
    for s in ["matmul", "matmul_vec4", "matmul_sg8"] {
        assert!(!gpu.pipelines().used(s, s), "{s} ran on the GPU tier: {keys:?}");
    }
}

#[test]
fn conv_on_the_gpu_tier_matches_reference() {
    let gpu = gpu_tier(None);
    for d in common::dtypes(&gpu) {
        check2d(&gpu, d, (2, 5, 9, 13), (7, 3), Conv2dOpts::new(1, 1), true);
        check2d(&gpu, d, (1, 32, 7, 11), (9, 3), Conv2dOpts::new(1, 1), false);
        check2d(&gpu, d, (1, 6, 11, 9), (5, 3), Conv2dOpts::new(2, 1), true);
        check2d(&gpu, d, (3, 12, 5, 6), (8, 1), Conv2dOpts::new(1, 0), true);
        check3d(&gpu, d, (2, 3, 5, 7, 9), 6);
    }
    assert_tiled_gemm_ran(&gpu);
}

#[test]
fn conv_on_the_gpu_tier_splits_channels_and_pixels() {
    // 16 KiB bindings: 13 × 20 × 20 f32 inputs are chunked over channels (accumulating GEMMs) and pixels.
    let gpu = gpu_tier(Some(16 << 10));
    for d in common::dtypes(&gpu) {
        check2d(&gpu, d, (1, 13, 20, 20), (5, 3), Conv2dOpts::new(1, 1), true);
    }
    assert_tiled_gemm_ran(&gpu);
}
