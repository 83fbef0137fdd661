//! Elementwise kernels against their float64 references.

mod common;

use trajattn_kernels::ops::elementwise::{self, reference, Binary, Unary};
use trajattn_kernels::testing::{assert_close, rand_vec, round_f16, to_f64};
use trajattn_kernels::{DType, Recorder, Tensor};

fn inputs(seed: u64, n: usize, dtype: DType) -> Vec<f32> {
    let v = rand_vec(seed, n);
    if dtype == DType::F16 {
        round_f16(&v)
    } else {
        v
    }
}

// f32: one rounding per element → 1e-6 would do; 1e-5 is the project's bound for elementwise.
// f16: storage rounding of the output (2^-11 relative) → 3e-3.
fn tol(d: DType) -> f64 {
    match d {
        DType::F32 => 1e-5,
        DType::F16 => 3e-3,
    }
}

#[test]
fn binary_and_unary_match_reference_on_odd_shapes() {
    let gpu = common::gpu();
    for dtype in common::dtypes(&gpu) {
        for (i, shape) in [[3usize, 5, 7], [1, 1, 1], [2, 37, 129]].iter().enumerate() {
            let n: usize = shape.iter().product();
            let a = inputs(10 + i as u64, n, dtype);
            let b = inputs(20 + i as u64, n, dtype);
            let ta = Tensor::from_f32(&gpu, &a, shape, dtype).unwrap();
            let tb = Tensor::from_f32(&gpu, &b, shape, dtype).unwrap();
            for op in [Binary::Add, Binary::Mul] {
                let y = Tensor::empty(&gpu, shape, dtype).unwrap();
                y.poison(&gpu);
                let mut rec = Recorder::new(&gpu);
                elementwise::record_binary(&mut rec, op, &ta, &tb, &y).unwrap();
                rec.run().unwrap();
                let want = reference::binary(op, &to_f64(&a), &to_f64(&b));
                assert_close(
                    &format!("{op:?} {shape:?} {dtype}"),
                    &y.to_f32(&gpu).unwrap(),
                    &want,
                    tol(dtype),
                );
            }
            for op in [Unary::Silu, Unary::Scale { alpha: -1.7, beta: 0.3 }] {
                let y = Tensor::empty(&gpu, shape, dtype).unwrap();
                y.poison(&gpu);
                let mut rec = Recorder::new(&gpu);
                elementwise::record_unary(&mut rec, op, &ta, &y).unwrap();
                rec.run().unwrap();
                let want = reference::unary(op, &to_f64(&a));
                assert_close(
                    &format!("{op:?} {shape:?} {dtype}"),
                    &y.to_f32(&gpu).unwrap(),
                    &want,
                    tol(dtype),
                );
            }
        }
    }
}

#[test]
fn views_at_unaligned_offsets_work() {
    // A view starting at element 3 is not aligned to the storage offset alignment: base offsets carry it.
    let gpu = common::gpu();
    let a = rand_vec(5, 1000);
    let b = rand_vec(6, 1000);
    let ta = Tensor::from_f32(&gpu, &a, &[1000], DType::F32).unwrap().reshape(&[1000, 1]).unwrap();
    let tb = Tensor::from_f32(&gpu, &b, &[1000, 1], DType::F32).unwrap();
    let va = ta.narrow0(3, 501).unwrap();
    let vb = tb.narrow0(7, 501).unwrap();
    let y = elementwise::binary(&gpu, Binary::Add, &va, &vb).unwrap();
    let want: Vec<f64> = (0..501).map(|i| a[i + 3] as f64 + b[i + 7] as f64).collect();
    assert_close("unaligned views", &y.to_f32(&gpu).unwrap(), &want, 1e-6);
}

#[test]
fn tensor_above_binding_limit_is_split() {
    // 40 M f32 = 160 MB > 128 MiB, lavapipe's (and wgpu's default) max_storage_buffer_binding_size.
    let gpu = common::gpu();
    let n = 40_000_003usize;
    assert!(n as u64 * 4 > 128 << 20);
    let a = rand_vec(7, n);
    let b = rand_vec(8, n);
    let ta = Tensor::from_f32(&gpu, &a, &[n], DType::F32).unwrap();
    let tb = Tensor::from_f32(&gpu, &b, &[n], DType::F32).unwrap();
    let y = Tensor::empty(&gpu, &[n], DType::F32).unwrap();
    y.poison(&gpu);
    let mut rec = Recorder::new(&gpu);
    elementwise::record_binary(&mut rec, Binary::Add, &ta, &tb, &y).unwrap();
    let dispatches = rec.len();
    rec.run().unwrap();
    if gpu.max_binding() < n as u64 * 4 {
        assert!(dispatches > 1, "a tensor above the binding limit must be split");
    }
    let want = reference::binary(Binary::Add, &to_f64(&a), &to_f64(&b));
    assert_close("160 MB add", &y.to_f32(&gpu).unwrap(), &want, 1e-6);
}

#[test]
fn mismatched_shapes_are_errors_naming_both() {
    let gpu = common::gpu();
    let a = Tensor::from_f32(&gpu, &rand_vec(1, 6), &[2, 3], DType::F32).unwrap();
    let b = Tensor::from_f32(&gpu, &rand_vec(2, 6), &[3, 2], DType::F32).unwrap();
    let err = elementwise::binary(&gpu, Binary::Add, &a, &b).unwrap_err().to_string();
    assert!(err.contains("[2, 3]") && err.contains("[3, 2]"), "{err}");
}
