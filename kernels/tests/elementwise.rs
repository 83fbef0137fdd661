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
        for (i, shape) in [[3usize, 5, 7], [1, 1, 1], [2, 37, 129], [8, 16, 3]].iter().enumerate() {
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
    // Bindings lowered to 1 MiB on any adapter; 786,436 f32 = 3 MB: the vec4 path (a multiple of 4) in windows
    // of the binding limit.
    let gpu = common::gpu_with_max_binding(1 << 20);
    let n = 786_436usize;
    assert!(n as u64 * 4 > gpu.max_binding());
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
    assert!(dispatches > 1, "a tensor above the binding limit must be split");
    let want = reference::binary(Binary::Add, &to_f64(&a), &to_f64(&b));
    assert_close("3 MB add under a 1 MiB binding limit", &y.to_f32(&gpu).unwrap(), &want, 1e-6);
}

#[test]
fn mismatched_shapes_are_errors_naming_both() {
    let gpu = common::gpu();
    let a = Tensor::from_f32(&gpu, &rand_vec(1, 6), &[2, 3], DType::F32).unwrap();
    let b = Tensor::from_f32(&gpu, &rand_vec(2, 6), &[3, 2], DType::F32).unwrap();
    let err = elementwise::binary(&gpu, Binary::Add, &a, &b).unwrap_err().to_string();
    assert!(err.contains("[2, 3]") && err.contains("[3, 2]"), "{err}");
}

use trajattn_kernels::ops::elementwise::{Alpha, Bcast};

#[test]
fn gelu_geglu_and_inplace_add() {
    let gpu = common::gpu();
    for dtype in common::dtypes(&gpu) {
        let (rows, inner) = (13, 37);
        let x: Vec<f32> = inputs(71, rows * 2 * inner, dtype).iter().map(|v| v * 4.0).collect();
        let tx = Tensor::from_f32(&gpu, &x, &[rows, 2 * inner], dtype).unwrap();
        let y = Tensor::empty(&gpu, &[rows, inner], dtype).unwrap();
        y.poison(&gpu);
        let mut rec = Recorder::new(&gpu);
        elementwise::record_geglu(&mut rec, &tx, &y).unwrap();
        rec.run().unwrap();
        assert_close(
            &format!("geglu {dtype}"),
            &y.to_f32(&gpu).unwrap(),
            &reference::geglu(&to_f64(&x), inner),
            tol(dtype),
        );
        let g = elementwise::unary(&gpu, Unary::Gelu, &tx).unwrap();
        assert_close(
            &format!("gelu {dtype}"),
            &g.to_f32(&gpu).unwrap(),
            &reference::unary(Unary::Gelu, &to_f64(&x)),
            tol(dtype),
        );
        // y += a
        let a = inputs(72, rows * 2 * inner, dtype);
        let ta = Tensor::from_f32(&gpu, &a, &[rows, 2 * inner], dtype).unwrap();
        let acc = Tensor::from_f32(&gpu, &x, &[rows, 2 * inner], dtype).unwrap();
        let mut rec = Recorder::new(&gpu);
        elementwise::record_add_inplace(&mut rec, &acc, &ta).unwrap();
        rec.run().unwrap();
        let want = reference::binary(Binary::Add, &to_f64(&x), &to_f64(&a));
        assert_close(&format!("add in place {dtype}"), &acc.to_f32(&gpu).unwrap(), &want, tol(dtype));
        assert!(
            elementwise::record_add_inplace(&mut Recorder::new(&gpu), &acc, &acc).is_err(),
            "aliasing refused"
        );
    }
}

#[test]
fn broadcasts_and_blends() {
    let gpu = common::gpu();
    for dtype in common::dtypes(&gpu) {
        let shape = [3usize, 5, 7, 2];
        let n: usize = shape.iter().product();
        let a = inputs(81, n, dtype);
        let ta = Tensor::from_f32(&gpu, &a, &shape, dtype).unwrap();
        for (kind, bshape, div, modn) in [
            (Bcast::Channel, vec![5], 14, 5),
            (Bcast::SampleChannel, vec![3, 5], 14, 15),
            (Bcast::Sample, vec![3], 70, 3),
            (Bcast::Row, vec![2], 1, 2),
        ] {
            let b = inputs(82, bshape.iter().product(), dtype);
            let tb = Tensor::from_f32(&gpu, &b, &bshape, dtype).unwrap();
            let y = Tensor::empty(&gpu, &shape, dtype).unwrap();
            y.poison(&gpu);
            let mut rec = Recorder::new(&gpu);
            elementwise::record_broadcast_add(&mut rec, kind, &ta, &tb, &y).unwrap();
            rec.run().unwrap();
            let want = reference::broadcast_add(&to_f64(&a), &to_f64(&b), div, modn);
            assert_close(&format!("{kind:?} {dtype}"), &y.to_f32(&gpu).unwrap(), &want, tol(dtype));
            let wrong = Tensor::from_f32(&gpu, &inputs(83, 4, dtype), &[4], dtype).unwrap();
            let e = elementwise::record_broadcast_add(&mut Recorder::new(&gpu), kind, &ta, &wrong, &y)
                .unwrap_err();
            assert!(e.to_string().contains("[4]"), "{e}");
        }
        // A table of 4 channel-last rows over rows of 7 tokens (15 rows: the entry index wraps).
        let c = shape[shape.len() - 1];
        let b = inputs(86, 4 * c, dtype);
        let tb = Tensor::from_f32(&gpu, &b, &[4, c], dtype).unwrap();
        let y = Tensor::empty(&gpu, &shape, dtype).unwrap();
        y.poison(&gpu);
        let mut rec = Recorder::new(&gpu);
        let kind = Bcast::Table { tokens: 7, entries: 4 };
        elementwise::record_broadcast_add(&mut rec, kind, &ta, &tb, &y).unwrap();
        rec.run().unwrap();
        let want = reference::table_add(&to_f64(&a), &to_f64(&b), 7 * c, 4, c);
        assert_close(&format!("table {dtype}"), &y.to_f32(&gpu).unwrap(), &want, tol(dtype));
        // In place (y is a): the same sums, written over a copy of a.
        let ta2 = Tensor::from_f32(&gpu, &a, &shape, dtype).unwrap();
        let mut rec = Recorder::new(&gpu);
        elementwise::record_broadcast_add(&mut rec, kind, &ta2, &tb, &ta2).unwrap();
        rec.run().unwrap();
        assert_close(&format!("table in place {dtype}"), &ta2.to_f32(&gpu).unwrap(), &want, tol(dtype));
        let bad = Bcast::Table { tokens: 4, entries: 4 };
        assert!(elementwise::record_broadcast_add(&mut Recorder::new(&gpu), bad, &ta, &tb, &y).is_err());
        let b = inputs(84, n, dtype);
        let tb = Tensor::from_f32(&gpu, &b, &shape, dtype).unwrap();
        let al = trajattn_kernels::testing::rand_range(85, 3, 0.0, 1.0);
        let al = if dtype == DType::F16 { round_f16(&al) } else { al };
        let tal = Tensor::from_f32(&gpu, &al, &[3], dtype).unwrap();
        for (alpha, al64) in
            [(Alpha::Scalar(0.3), vec![0.3f32 as f64]), (Alpha::PerSample(&tal), to_f64(&al))]
        {
            let y = Tensor::empty(&gpu, &shape, dtype).unwrap();
            y.poison(&gpu);
            let mut rec = Recorder::new(&gpu);
            elementwise::record_blend(&mut rec, alpha, &ta, &tb, &y).unwrap();
            rec.run().unwrap();
            let div = if al64.len() == 1 { n } else { 70 };
            let want = reference::blend(&al64, &to_f64(&a), &to_f64(&b), div);
            assert_close(&format!("blend {alpha:?} {dtype}"), &y.to_f32(&gpu).unwrap(), &want, tol(dtype));
        }
    }
}

#[test]
fn broadcast_above_binding_limit() {
    // Bindings lowered to 1 MiB on any adapter; (9, 320, 11, 13) f32 = 183 KB per image, 1.6 MB in all: the
    // per-channel add is split into windows whose channel index must stay global.
    let gpu = common::gpu_with_max_binding(1 << 20);
    let shape = [9usize, 320, 11, 13];
    let n: usize = shape.iter().product();
    let a = rand_vec(91, n);
    let b = rand_vec(92, 320);
    let ta = Tensor::from_f32(&gpu, &a, &shape, DType::F32).unwrap();
    let tb = Tensor::from_f32(&gpu, &b, &[320], DType::F32).unwrap();
    let y = Tensor::empty(&gpu, &shape, DType::F32).unwrap();
    y.poison(&gpu);
    let mut rec = Recorder::new(&gpu);
    elementwise::record_broadcast_add(&mut rec, Bcast::Channel, &ta, &tb, &y).unwrap();
    assert!(rec.len() > 1, "expected a split into several dispatches, got {}", rec.len());
    rec.run().unwrap();
    assert_close(
        "per-channel add over windows",
        &y.to_f32(&gpu).unwrap(),
        &reference::broadcast_add(&to_f64(&a), &to_f64(&b), 11 * 13, 320),
        1e-6,
    );
}

#[test]
fn gelu_keeps_relative_accuracy_for_negative_inputs() {
    // GELU(x) for x in [-6, -2] is tiny; a 1 + erf form loses it to cancellation. Checked per element.
    let gpu = common::gpu();
    let x: Vec<f32> = (0..400).map(|i| -6.0 + i as f32 * 0.01).collect();
    let tx = Tensor::from_f32(&gpu, &x, &[400], DType::F32).unwrap();
    let y = elementwise::unary(&gpu, Unary::Gelu, &tx).unwrap().to_f32(&gpu).unwrap();
    let want = reference::unary(Unary::Gelu, &to_f64(&x));
    for (i, (g, w)) in y.iter().zip(&want).enumerate() {
        // erfc approximation (1.2e-7) and f32 exp/arithmetic: 2e-5 relative is ample.
        assert!(((*g as f64) - w).abs() <= 2e-5 * w.abs(), "x = {}: {g} vs {w}", x[i]);
    }
}
