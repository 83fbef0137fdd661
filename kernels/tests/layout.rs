//! Axis swaps, nearest upsampling and channel concatenation: exact copies, so the tolerance is 0.

mod common;

use trajattn_kernels::ops::layout::{self, reference};
use trajattn_kernels::testing::{rand_vec, round_f16, to_f64};
use trajattn_kernels::{DType, Recorder, Tensor};

fn exact(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(*g as f64 == *w, "{what}: element {i}: {g} vs {w}");
    }
}

fn data(seed: u64, n: usize, d: DType) -> Vec<f32> {
    let v = rand_vec(seed, n);
    if d == DType::F16 {
        round_f16(&v)
    } else {
        v
    }
}

#[test]
fn swaps_are_exact() {
    let gpu = common::gpu();
    for d in common::dtypes(&gpu) {
        for dims in [[3usize, 5, 7, 1], [2, 3, 11, 5], [1, 1, 9, 4], [4, 13, 1, 3]] {
            let n: usize = dims.iter().product();
            let x = data(101, n, d);
            let tx = Tensor::from_f32(&gpu, &x, &[n], d).unwrap();
            let y = Tensor::empty(&gpu, &[n], d).unwrap();
            y.poison(&gpu);
            let mut rec = Recorder::new(&gpu);
            layout::record_swap12(&mut rec, &tx, dims, &y).unwrap();
            rec.run().unwrap();
            exact(
                &format!("swap {dims:?} {d}"),
                &y.to_f32(&gpu).unwrap(),
                &reference::swap12(&to_f64(&x), dims),
            );
        }
    }
}

#[test]
fn swap_of_a_slice_above_binding_limit_is_tiled() {
    // Bindings lowered to 1 MiB on any adapter: one A-slice of 25 × 41 × 331 f32 = 1.4 MB does not fit, so it is
    // tiled along B and C.
    let gpu = common::gpu_with_max_binding(1 << 20);
    let dims = [1usize, 25, 41, 331];
    let n: usize = dims.iter().product();
    let x = rand_vec(102, n);
    let tx = Tensor::from_f32(&gpu, &x, &[n], DType::F32).unwrap();
    let y = Tensor::empty(&gpu, &[n], DType::F32).unwrap();
    y.poison(&gpu);
    let mut rec = Recorder::new(&gpu);
    layout::record_swap12(&mut rec, &tx, dims, &y).unwrap();
    assert!(rec.len() > 1, "expected a split into several dispatches, got {}", rec.len());
    rec.run().unwrap();
    exact("swap of a 1.4 MB slice", &y.to_f32(&gpu).unwrap(), &reference::swap12(&to_f64(&x), dims));
}

#[test]
fn upsample_and_concat_are_exact() {
    let gpu = common::gpu();
    for d in common::dtypes(&gpu) {
        let (n, c, h, w) = (2, 3, 5, 7);
        let x = data(103, n * c * h * w, d);
        let tx = Tensor::from_f32(&gpu, &x, &[n, c, h, w], d).unwrap();
        let y = Tensor::empty(&gpu, &[n, c, 2 * h, 2 * w], d).unwrap();
        y.poison(&gpu);
        let mut rec = Recorder::new(&gpu);
        layout::record_upsample2x(&mut rec, &tx, &y).unwrap();
        rec.run().unwrap();
        exact(&format!("upsample {d}"), &y.to_f32(&gpu).unwrap(), &reference::upsample2x(&to_f64(&x), h, w));
        let b = data(104, n * 5 * h * w, d);
        let tb = Tensor::from_f32(&gpu, &b, &[n, 5, h, w], d).unwrap();
        let cat = Tensor::empty(&gpu, &[n, c + 5, h, w], d).unwrap();
        cat.poison(&gpu);
        let mut rec = Recorder::new(&gpu);
        layout::record_concat_channels(&mut rec, &tx, &tb, &cat).unwrap();
        rec.run().unwrap();
        let mut want = Vec::new();
        for i in 0..n {
            want.extend_from_slice(&x[i * c * h * w..(i + 1) * c * h * w]);
            want.extend_from_slice(&b[i * 5 * h * w..(i + 1) * 5 * h * w]);
        }
        exact(&format!("concat {d}"), &cat.to_f32(&gpu).unwrap(), &to_f64(&want));
        let bad = Tensor::empty(&gpu, &[n, 5, h, w + 1], d).unwrap();
        assert!(layout::record_concat_channels(&mut Recorder::new(&gpu), &tx, &bad, &cat).is_err());
    }
}
