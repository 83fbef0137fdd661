//! Elementwise ops (`shaders/elementwise.wgsl`): launchers, float64 references, benchmark case.
//!
//! Tensors of any size: the work is split into chunks whose bindings fit the adapter's
//! `max_storage_buffer_binding_size`; each chunk binds aligned windows and passes base offsets.

use crate::bench::{parse_shape, BenchCase, BenchEntry};
use crate::dispatch::{grid, Recorder};
use crate::dtype::DType;
use crate::error::{shape_err, Result};
use crate::gpu::Gpu;
use crate::shaders::ELEMENTWISE;
use crate::tensor::{items_per_binding, Tensor};
use bytemuck::{Pod, Zeroable};

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    base_a: u32,
    base_b: u32,
    base_y: u32,
    alpha: f32,
    beta: f32,
    _pad: [u32; 2],
}

/// Binary elementwise operation on two tensors of the same shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    /// a + b
    Add,
    /// a · b
    Mul,
}

/// Unary elementwise operation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    /// x·sigmoid(x)
    Silu,
    /// alpha·x + beta
    Scale { alpha: f32, beta: f32 },
}

fn check_same(op: &'static str, a: &Tensor, b: &Tensor, what: &str) -> Result<()> {
    if a.shape() != b.shape() {
        return Err(shape_err(op, what, a.shape(), b.shape()));
    }
    if a.dtype() != b.dtype() {
        return Err(crate::error::KernelError::DType {
            op,
            found: format!("{} and {}", a.dtype(), b.dtype()),
            why: format!("{what}: operands must have the same dtype"),
        });
    }
    Ok(())
}

/// Records `y = a (op) b`; all three have the same shape and dtype.
pub fn record_binary(rec: &mut Recorder, op: Binary, a: &Tensor, b: &Tensor, y: &Tensor) -> Result<()> {
    const NAME: &str = "elementwise binary";
    check_same(NAME, a, b, "b vs a")?;
    check_same(NAME, a, y, "output vs a")?;
    let gpu = rec.gpu();
    let entry = match op {
        Binary::Add => "add",
        Binary::Mul => "mul",
    };
    let pipe = gpu.pipelines().get(&gpu.device, &ELEMENTWISE, entry, a.dtype(), &[])?;
    let n = a.numel();
    let chunk = items_per_binding(gpu, 1, a.dtype())?;
    let mut s = 0;
    while s < n {
        let len = chunk.min(n - s);
        let (wa, wb, wy) = (a.window(gpu, s, len)?, b.window(gpu, s, len)?, y.window(gpu, s, len)?);
        let params = Params {
            n: len as u32,
            base_a: wa.base,
            base_b: wb.base,
            base_y: wy.base,
            alpha: 0.0,
            beta: 0.0,
            _pad: [0; 2],
        };
        let groups = grid(gpu, (len as u32).div_ceil(WG));
        rec.dispatch(&pipe, bytemuck::bytes_of(&params), vec![wa, wb, wy], groups)?;
        s += len;
    }
    Ok(())
}

/// Records `y = op(x)`; same shape and dtype.
pub fn record_unary(rec: &mut Recorder, op: Unary, x: &Tensor, y: &Tensor) -> Result<()> {
    const NAME: &str = "elementwise unary";
    check_same(NAME, x, y, "output vs input")?;
    let gpu = rec.gpu();
    let (entry, alpha, beta) = match op {
        Unary::Silu => ("silu_op", 0.0, 0.0),
        Unary::Scale { alpha, beta } => ("scale", alpha, beta),
    };
    let pipe = gpu.pipelines().get(&gpu.device, &ELEMENTWISE, entry, x.dtype(), &[])?;
    let n = x.numel();
    let chunk = items_per_binding(gpu, 1, x.dtype())?;
    let mut s = 0;
    while s < n {
        let len = chunk.min(n - s);
        let (wa, wy) = (x.window(gpu, s, len)?, y.window(gpu, s, len)?);
        let params =
            Params { n: len as u32, base_a: wa.base, base_b: 0, base_y: wy.base, alpha, beta, _pad: [0; 2] };
        let groups = grid(gpu, (len as u32).div_ceil(WG));
        rec.dispatch_bound(&pipe, bytemuck::bytes_of(&params), vec![(1, wa), (3, wy)], groups)?;
        s += len;
    }
    Ok(())
}

/// `a (op) b` into a new tensor, run now.
pub fn binary(gpu: &Gpu, op: Binary, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let y = Tensor::empty(gpu, a.shape(), a.dtype())?;
    let mut rec = Recorder::new(gpu);
    record_binary(&mut rec, op, a, b, &y)?;
    rec.run()?;
    Ok(y)
}

/// `op(x)` into a new tensor, run now.
pub fn unary(gpu: &Gpu, op: Unary, x: &Tensor) -> Result<Tensor> {
    let y = Tensor::empty(gpu, x.shape(), x.dtype())?;
    let mut rec = Recorder::new(gpu);
    record_unary(&mut rec, op, x, &y)?;
    rec.run()?;
    Ok(y)
}

/// Float64 references.
pub mod reference {
    use super::{Binary, Unary};

    /// `a (op) b`.
    pub fn binary(op: Binary, a: &[f64], b: &[f64]) -> Vec<f64> {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| match op {
                Binary::Add => x + y,
                Binary::Mul => x * y,
            })
            .collect()
    }

    /// `op(x)`.
    pub fn unary(op: Unary, x: &[f64]) -> Vec<f64> {
        x.iter()
            .map(|&v| match op {
                Unary::Silu => v / (1.0 + (-v).exp()),
                Unary::Scale { alpha, beta } => alpha as f64 * v + beta as f64,
            })
            .collect()
    }
}

fn bench_build(gpu: &Gpu, shape: &str, dtype: DType) -> Result<BenchCase> {
    let dims = parse_shape("elementwise", shape, 0)?;
    let n: usize = dims.iter().product();
    let a = Tensor::from_f32(gpu, &crate::testing::rand_vec(1, n), &dims, dtype)?;
    let b = Tensor::from_f32(gpu, &crate::testing::rand_vec(2, n), &dims, dtype)?;
    let y = Tensor::empty(gpu, &dims, dtype)?;
    let mut rec = Recorder::new(gpu);
    record_binary(&mut rec, Binary::Add, &a, &b, &y)?;
    Ok(BenchCase {
        kernel: "elementwise",
        shape: shape.to_string(),
        dtype,
        flops: n as f64,
        bytes: 3.0 * n as f64 * dtype.size() as f64,
        recording: rec.finish(),
        keep: vec![a, b, y],
    })
}

/// Benchmark: `y = a + b` over a UNet level-0 activation.
pub const BENCH: BenchEntry = BenchEntry {
    name: "elementwise",
    shape_help: "tensor dims, e.g. 50x320x72x128 (the add of a + b of that shape)",
    default_shapes: &["50x320x72x128", "14x320x8x8"],
    build: bench_build,
};
