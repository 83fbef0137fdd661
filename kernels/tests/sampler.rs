//! The GPU denoising step (scaled input, CFG, Euler update) against its float64 reference on odd layouts.

mod common;

use trajattn_kernels::ops::sampler::{
    record_cfg_euler, record_scale_input, reference, StepLayout, StepScalars,
};
use trajattn_kernels::testing::{rand_range, rand_vec, round_f16, to_f64};
use trajattn_kernels::{DType, Recorder, Tensor};

fn round(v: Vec<f32>, dtype: DType) -> Vec<f32> {
    if dtype == DType::F16 {
        round_f16(&v)
    } else {
        v
    }
}

/// |got − want| within `ulps` units in the last place of the dtype (f16: 2⁻¹⁰ relative; f32: 2⁻²³) of the
/// larger of the result and `scale` (the magnitude of the operands a result may cancel from).
fn check(what: &str, got: &[f32], want: &[f64], scale: &[f32], dtype: DType, ulps: f64) {
    let eps = if dtype == DType::F16 { 2f64.powi(-10) } else { 2f64.powi(-23) };
    let mut worst = 0f64;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(g.is_finite(), "{what} ({dtype}): element {i} is {g}");
        let mag = w.abs().max(scale.get(i).map_or(0.0, |&x| x.abs() as f64)).max(1e-3);
        let d = (g as f64 - w).abs() / (eps * mag);
        assert!(d <= ulps, "{what} ({dtype}): element {i}: {g} vs {w} ({d:.2} ulp)");
        worst = worst.max(d);
    }
    eprintln!("{what} ({dtype}): worst {worst:.2} ulp");
}

#[test]
fn step_kernels_match_the_float64_reference() {
    step_kernels_match_on(&common::gpu(), &[(2, 5, 37, 80), (1, 3, 61, 61), (2, 1, 1000, 2003)]);
}

#[test]
fn step_kernels_split_frames_beyond_a_lowered_binding_limit() {
    // 8 KiB bindings: the latents (f32), the UNet input and the model output each exceed one binding, one frame of
    // each fits, so both kernels run in frame chunks (odd counts: 7 frames in chunks of 3 in f32), one UNet-input
    // batch entry per dispatch, the two CFG halves of the output bound as separate windows.
    let limit = 8u64 << 10;
    let gpu = common::gpu_with_max_binding(limit);
    assert_eq!(gpu.max_binding(), limit);
    let layouts = [(2, 7, 301, 650), (1, 7, 700, 701)];
    for &(batch, frames, plane, stride) in &layouts {
        // Unsplit, these bindings would be refused (TooLarge): the split is what makes the run possible.
        assert!((frames * plane * 4) as u64 > limit && (batch * frames * stride * 2) as u64 > limit);
    }
    step_kernels_match_on(&gpu, &layouts);
}

/// Both step kernels on `gpu` for every (batch, frames, plane, stride) layout, f32 and (if supported) f16.
fn step_kernels_match_on(gpu: &trajattn_kernels::Gpu, layouts: &[(usize, usize, usize, usize)]) {
    for dtype in common::dtypes(gpu) {
        for &(batch, frames, plane, stride) in layouts {
            let l = StepLayout { frames, plane, batch, stride };
            let s = StepScalars::new(7.3, 5.1);
            let n = frames * plane;
            let lat = round(rand_range(1, n, -20.0, 20.0), dtype);
            // UNet input: the image-latent channels hold data that must survive; the noisy part is poisoned.
            let mut sample = round(rand_vec(2, batch * frames * stride), dtype);
            let want_sample = reference::scale_input(&to_f64(&lat), &to_f64(&sample), &l, &s, dtype);
            for b in 0..batch {
                for f in 0..frames {
                    sample[(b * frames + f) * stride..][..plane].fill(f32::NAN);
                }
            }
            let lat_t = Tensor::from_f32(gpu, &lat, &[n], DType::F32).unwrap();
            let sample_t = Tensor::from_f32(gpu, &sample, &[sample.len()], dtype).unwrap();
            let v = round(rand_vec(3, batch * n), dtype);
            let scales = round(rand_range(4, frames, 1.0, 3.0), dtype);
            let want_lat = reference::cfg_euler(&to_f64(&v), &to_f64(&scales), &to_f64(&lat), &l, &s, dtype);
            let v_t = Tensor::from_f32(gpu, &v, &[v.len()], dtype).unwrap();
            let sc_t = Tensor::from_f32(gpu, &scales, &[frames], DType::F32).unwrap();
            let flag = Tensor::from_f32(gpu, &[0.0], &[1], DType::F32).unwrap();
            let mut rec = Recorder::new(gpu);
            record_scale_input(&mut rec, &lat_t, &sample_t, &l, &s).unwrap();
            record_cfg_euler(&mut rec, &v_t, &sc_t, &lat_t, &flag, &l, &s).unwrap();
            rec.run().unwrap();
            let what = format!("batch {batch}, {frames}×{plane}, stride {stride}");
            check(
                &format!("scale_input {what}"),
                &sample_t.to_f32(gpu).unwrap(),
                &want_sample,
                &[],
                dtype,
                1.0,
            );
            // f32: a few ulp (WGSL division is within 2.5 ulp); f16: one ulp where a rounding tie flips.
            check(&format!("cfg_euler {what}"), &lat_t.to_f32(gpu).unwrap(), &want_lat, &lat, dtype, 8.0);
            assert_eq!(flag.to_f32(gpu).unwrap()[0].to_bits(), 0, "no non-finite value, no flag");
        }
    }
}

#[test]
fn a_non_finite_result_sets_the_flag() {
    let gpu = common::gpu();
    let l = StepLayout { frames: 2, plane: 33, batch: 2, stride: 66 };
    let s = StepScalars::new(2.0, 1.0);
    let lat = Tensor::from_f32(&gpu, &rand_vec(5, 66), &[66], DType::F32).unwrap();
    let mut v = rand_vec(6, 132);
    v[100] = f32::INFINITY;
    let v = Tensor::from_f32(&gpu, &v, &[132], DType::F32).unwrap();
    let sc = Tensor::from_f32(&gpu, &[1.0, 2.0], &[2], DType::F32).unwrap();
    let flag = Tensor::from_f32(&gpu, &[0.0], &[1], DType::F32).unwrap();
    let mut rec = Recorder::new(&gpu);
    record_cfg_euler(&mut rec, &v, &sc, &lat, &flag, &l, &s).unwrap();
    rec.run().unwrap();
    assert_ne!(flag.to_f32(&gpu).unwrap()[0].to_bits(), 0);
    // Mismatched sizes are errors naming the operand.
    let small = Tensor::from_f32(&gpu, &[0.0; 3], &[3], DType::F32).unwrap();
    let mut rec = Recorder::new(&gpu);
    let e = record_cfg_euler(&mut rec, &small, &sc, &lat, &flag, &l, &s).unwrap_err().to_string();
    assert!(e.contains("model output"), "{e}");
}
