//! Elementwise ops (`shaders/elementwise.wgsl`): launchers, float64 references, benchmark case.
//!
//! Tensors of any size: the work is split into chunks whose bindings fit the adapter's
//! `max_storage_buffer_binding_size`; each chunk binds aligned windows and passes base offsets.

use crate::bench::{parse_shape, BenchCase, BenchEntry};
use crate::dispatch::{grid, Recorder};
use crate::dtype::DType;
use crate::error::{shape_err, Result};
use crate::gpu::Gpu;
use crate::shaders::{ELEMENTWISE, ELEMENTWISE_VEC4};
use crate::tensor::{items_per_binding, Tensor};
use bytemuck::{Pod, Zeroable};

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    n: u32,
    base_a: u32,
    base_b: u32,
    base_y: u32,
    alpha: f32,
    beta: f32,
    div: u32,
    modn: u32,
    first: u32,
    inner: u32,
    _pad: [u32; 2],
}

/// Layout of the uniform `Params` of `elementwise.wgsl` and `elementwise_vec4.wgsl`.
pub const PARAMS_LAYOUT: crate::params::ParamsLayout =
    crate::params_layout!(Params { n, base_a, base_b, base_y, alpha, beta, div, modn, first, inner, _pad });

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
    /// Exact GELU, 0.5·x·(1 + erf(x/√2)).
    Gelu,
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
    let pipe4 = if op == Binary::Add {
        Some(gpu.pipelines().get(&gpu.device, &ELEMENTWISE_VEC4, "add4", a.dtype(), &[])?)
    } else {
        None
    };
    let n = a.numel();
    // Multiples of 4 keep every window start on the vec4 path.
    let chunk = (items_per_binding(gpu, 1, a.dtype())? / 4 * 4).max(4);
    let mut s = 0;
    while s < n {
        let len = chunk.min(n - s);
        let (wa, wb, wy) = (a.window(gpu, s, len)?, b.window(gpu, s, len)?, y.window(gpu, s, len)?);
        let params =
            Params { n: len as u32, base_a: wa.base, base_b: wb.base, base_y: wy.base, ..Default::default() };
        let aligned = len % 4 == 0 && wa.base % 4 == 0 && wb.base % 4 == 0 && wy.base % 4 == 0;
        match (&pipe4, aligned) {
            (Some(p4), true) => {
                let groups = grid(gpu, (len as u32 / 4).div_ceil(WG));
                rec.dispatch(p4, bytemuck::bytes_of(&params), vec![wa, wb, wy], groups)?;
            }
            _ => {
                let groups = grid(gpu, (len as u32).div_ceil(WG));
                rec.dispatch(&pipe, bytemuck::bytes_of(&params), vec![wa, wb, wy], groups)?;
            }
        }
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
        Unary::Gelu => ("gelu_op", 0.0, 0.0),
    };
    let pipe = gpu.pipelines().get(&gpu.device, &ELEMENTWISE, entry, x.dtype(), &[])?;
    let n = x.numel();
    let chunk = items_per_binding(gpu, 1, x.dtype())?;
    let mut s = 0;
    while s < n {
        let len = chunk.min(n - s);
        let (wa, wy) = (x.window(gpu, s, len)?, y.window(gpu, s, len)?);
        let params =
            Params { n: len as u32, base_a: wa.base, base_y: wy.base, alpha, beta, ..Default::default() };
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

/// Which axis a broadcast operand follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bcast {
    /// `a [N, C, *]` + `b [C]`.
    Channel,
    /// `a [N, C, *]` + `b [N, C]` (e.g. the res-block time embedding).
    SampleChannel,
    /// `a [N, *]` + `b [N]`.
    Sample,
    /// `a [.., C]` + `b [C]` (a row vector added to every row).
    Row,
    /// `a` viewed as `[R, tokens, C]` + `b [entries, C]`, row `r` adding entry `r mod entries`
    /// (per-frame or per-batch vectors over channel-last tokens).
    Table { tokens: usize, entries: usize },
}

/// `(div, modn, inner, b shape)`: element `i` of `a` adds `b[((i / div) % modn)·inner + i % inner]`.
fn bcast_geometry(kind: Bcast, a: &[usize]) -> Option<(usize, usize, usize, Vec<usize>)> {
    let rest = |from: usize| a.get(from..).map(|r| r.iter().product::<usize>());
    match kind {
        Bcast::Channel if a.len() >= 2 => Some((rest(2)?, a[1], 1, vec![a[1]])),
        Bcast::SampleChannel if a.len() >= 2 => Some((rest(2)?, a[0] * a[1], 1, vec![a[0], a[1]])),
        Bcast::Sample if !a.is_empty() => Some((rest(1)?, a[0], 1, vec![a[0]])),
        Bcast::Row if !a.is_empty() => Some((1, a[a.len() - 1], 1, vec![a[a.len() - 1]])),
        Bcast::Table { tokens, entries } if !a.is_empty() && tokens > 0 && entries > 0 => {
            let c = a[a.len() - 1];
            let n: usize = a.iter().product();
            if c == 0 || !n.is_multiple_of(tokens * c) {
                return None;
            }
            Some((tokens * c, entries, c, vec![entries, c]))
        }
        _ => None,
    }
}

/// Runs `f(start, len)` over element chunks of `n` whose bindings fit the adapter.
fn chunks(gpu: &Gpu, n: usize, dtype: DType, mut f: impl FnMut(usize, usize) -> Result<()>) -> Result<()> {
    let chunk = items_per_binding(gpu, 1, dtype)?;
    let mut s = 0;
    while s < n {
        let len = chunk.min(n - s);
        f(s, len)?;
        s += len;
    }
    Ok(())
}

/// Records `y = a + b` with `b` broadcast along `kind`. `y` may be `a` itself (the same view): the add then
/// happens in place.
pub fn record_broadcast_add(
    rec: &mut Recorder,
    kind: Bcast,
    a: &Tensor,
    b: &Tensor,
    y: &Tensor,
) -> Result<()> {
    const NAME: &str = "broadcast add";
    check_same(NAME, a, y, "output vs a")?;
    let (div, modn, inner, want_b) = bcast_geometry(kind, a.shape())
        .ok_or_else(|| shape_err(NAME, format!("{kind:?} input"), &[0, 0], a.shape()))?;
    if b.shape() != want_b.as_slice() {
        return Err(shape_err(NAME, format!("{kind:?} operand"), &want_b, b.shape()));
    }
    if b.dtype() != a.dtype() {
        return Err(crate::error::KernelError::DType {
            op: NAME,
            found: b.dtype().to_string(),
            why: "b dtype".into(),
        });
    }
    let in_place = a.same_storage(y);
    if in_place && a.byte_offset() != y.byte_offset() {
        return Err(crate::error::invalid(NAME, "a and y share a buffer at different offsets"));
    }
    let gpu = rec.gpu();
    let entry = if in_place { "broadcast_add_inplace" } else { "broadcast_add" };
    let pipe = gpu.pipelines().get(&gpu.device, &ELEMENTWISE, entry, a.dtype(), &[])?;
    let bw = b.whole(gpu)?;
    chunks(gpu, a.numel(), a.dtype(), |s, len| {
        let (wa, wy) = (a.window(gpu, s, len)?, y.window(gpu, s, len)?);
        let prm = Params {
            n: len as u32,
            base_a: wa.base,
            base_b: bw.base,
            base_y: wy.base,
            div: div.max(1) as u32,
            modn: modn.max(1) as u32,
            first: s as u32,
            inner: inner as u32,
            ..Default::default()
        };
        let bound =
            if in_place { vec![(2, bw.clone()), (3, wy)] } else { vec![(1, wa), (2, bw.clone()), (3, wy)] };
        rec.dispatch_bound(&pipe, bytemuck::bytes_of(&prm), bound, grid(gpu, (len as u32).div_ceil(WG)))
    })
}

/// Records `y += a` (residual accumulation; `y` and `a` must not share storage).
pub fn record_add_inplace(rec: &mut Recorder, y: &Tensor, a: &Tensor) -> Result<()> {
    const NAME: &str = "add in place";
    check_same(NAME, y, a, "a vs y")?;
    if y.same_storage(a) {
        return Err(crate::error::invalid(
            NAME,
            "y and a share one buffer; use record_binary into a new tensor",
        ));
    }
    let gpu = rec.gpu();
    let pipe = gpu.pipelines().get(&gpu.device, &ELEMENTWISE, "add_inplace", y.dtype(), &[])?;
    chunks(gpu, y.numel(), y.dtype(), |s, len| {
        let (wa, wy) = (a.window(gpu, s, len)?, y.window(gpu, s, len)?);
        let prm = Params { n: len as u32, base_a: wa.base, base_y: wy.base, ..Default::default() };
        rec.dispatch_bound(
            &pipe,
            bytemuck::bytes_of(&prm),
            vec![(1, wa), (3, wy)],
            grid(gpu, (len as u32).div_ceil(WG)),
        )
    })
}

/// Blend weight of [`record_blend`].
#[derive(Clone, Copy, Debug)]
pub enum Alpha<'a> {
    /// One α for every element.
    Scalar(f32),
    /// α per sample: a tensor `[N]` for inputs `[N, *]`.
    PerSample(&'a Tensor),
}

/// Records `y = α·a + (1 − α)·b` (SVD's AlphaBlender).
pub fn record_blend(rec: &mut Recorder, alpha: Alpha, a: &Tensor, b: &Tensor, y: &Tensor) -> Result<()> {
    const NAME: &str = "blend";
    check_same(NAME, a, b, "b vs a")?;
    check_same(NAME, a, y, "output vs a")?;
    let gpu = rec.gpu();
    let shape = a.shape();
    let n0 = *shape.first().unwrap_or(&1);
    let per_sample = a.numel() / n0.max(1);
    let (entry, alpha_w, al) = match alpha {
        Alpha::Scalar(v) => ("blend", None, v),
        Alpha::PerSample(t) => {
            if t.shape() != [n0] {
                return Err(shape_err(NAME, "per-sample alpha", &[n0], t.shape()));
            }
            check_same(NAME, t, t, "alpha")?;
            if t.dtype() != a.dtype() {
                return Err(crate::error::KernelError::DType {
                    op: NAME,
                    found: t.dtype().to_string(),
                    why: "alpha dtype".into(),
                });
            }
            ("blend_per_sample", Some(t.whole(gpu)?), 0.0)
        }
    };
    let pipe = gpu.pipelines().get(&gpu.device, &ELEMENTWISE, entry, a.dtype(), &[])?;
    chunks(gpu, a.numel(), a.dtype(), |s, len| {
        let (wa, wb, wy) = (a.window(gpu, s, len)?, b.window(gpu, s, len)?, y.window(gpu, s, len)?);
        let prm = Params {
            n: len as u32,
            base_a: wa.base,
            base_b: wb.base,
            base_y: wy.base,
            alpha: al,
            div: per_sample.max(1) as u32,
            modn: n0.max(1) as u32,
            first: s as u32,
            ..Default::default()
        };
        let mut bound = vec![(1, wa), (2, wb), (3, wy)];
        if let Some(w) = &alpha_w {
            bound.push((4, w.clone()));
        }
        rec.dispatch_bound(&pipe, bytemuck::bytes_of(&prm), bound, grid(gpu, (len as u32).div_ceil(WG)))
    })
}

/// Records GEGLU: `x [.., 2·inner]` → `y [.., inner]` = first half · GELU(second half).
pub fn record_geglu(rec: &mut Recorder, x: &Tensor, y: &Tensor) -> Result<()> {
    const NAME: &str = "geglu";
    let xs = x.shape();
    let two = *xs.last().unwrap_or(&0);
    if two == 0 || !two.is_multiple_of(2) {
        return Err(shape_err(NAME, "input [.., 2·inner]", &[2], xs));
    }
    let inner = two / 2;
    let mut want = xs.to_vec();
    if let Some(l) = want.last_mut() {
        *l = inner;
    }
    if y.shape() != want.as_slice() {
        return Err(shape_err(NAME, "output", &want, y.shape()));
    }
    if x.dtype() != y.dtype() {
        return Err(crate::error::KernelError::DType {
            op: NAME,
            found: y.dtype().to_string(),
            why: "x and y".into(),
        });
    }
    let gpu = rec.gpu();
    let pipe = gpu.pipelines().get(&gpu.device, &ELEMENTWISE, "geglu", x.dtype(), &[])?;
    let rows = x.numel() / two;
    let per = items_per_binding(gpu, two, x.dtype())?;
    let mut r0 = 0;
    while r0 < rows {
        let nr = per.min(rows - r0);
        let (wx, wy) = (x.window(gpu, r0 * two, nr * two)?, y.window(gpu, r0 * inner, nr * inner)?);
        let prm = Params {
            n: (nr * inner) as u32,
            base_a: wx.base,
            base_y: wy.base,
            inner: inner as u32,
            ..Default::default()
        };
        let groups = grid(gpu, ((nr * inner) as u32).div_ceil(WG));
        rec.dispatch_bound(&pipe, bytemuck::bytes_of(&prm), vec![(1, wx), (3, wy)], groups)?;
        r0 += nr;
    }
    Ok(())
}

/// Float64 references.
pub mod reference {
    use super::{Binary, Unary};
    use crate::ops::activation::{gelu, silu};

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
                Unary::Silu => silu(v),
                Unary::Scale { alpha, beta } => alpha as f64 * v + beta as f64,
                Unary::Gelu => gelu(v),
            })
            .collect()
    }

    /// `a + b[(i / div) % modn]`.
    pub fn broadcast_add(a: &[f64], b: &[f64], div: usize, modn: usize) -> Vec<f64> {
        a.iter().enumerate().map(|(i, &x)| x + b[(i / div) % modn]).collect()
    }

    /// `a + b[((i / div) % modn)·inner + i % inner]` ([`super::Bcast::Table`] with `div = tokens·C`, `inner = C`).
    pub fn table_add(a: &[f64], b: &[f64], div: usize, modn: usize, inner: usize) -> Vec<f64> {
        a.iter().enumerate().map(|(i, &x)| x + b[(i / div) % modn * inner + i % inner]).collect()
    }

    /// `α·a + (1 − α)·b` with α per block of `div` elements (cycled over `alpha`).
    pub fn blend(alpha: &[f64], a: &[f64], b: &[f64], div: usize) -> Vec<f64> {
        (0..a.len())
            .map(|i| {
                let al = alpha[(i / div) % alpha.len()];
                al * a[i] + (1.0 - al) * b[i]
            })
            .collect()
    }

    /// GEGLU over rows of `2·inner`.
    pub fn geglu(x: &[f64], inner: usize) -> Vec<f64> {
        let mut y = Vec::with_capacity(x.len() / 2);
        for row in x.chunks(2 * inner) {
            for j in 0..inner {
                let g = row[inner + j];
                y.push(row[j] * gelu(g));
            }
        }
        y
    }
}

fn bench_build(gpu: &Gpu, shape: &str, dtype: DType) -> Result<BenchCase> {
    let dims = parse_shape("elementwise", shape, 0)?;
    let n: usize = dims.iter().product();
    let a = Tensor::from_f32(gpu, &crate::bench::random_data(1, n), &dims, dtype)?;
    let b = Tensor::from_f32(gpu, &crate::bench::random_data(2, n), &dims, dtype)?;
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
    demo_shape: "14x320x72x128",
    build: bench_build,
};
