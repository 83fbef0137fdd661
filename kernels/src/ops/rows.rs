//! Row-wise ops over the last dimension: layer norm (`shaders/layer_norm.wgsl`) and softmax
//! (`shaders/softmax.wgsl`); launchers, float64 references, benchmark cases. Rows are split into chunks so
//! every binding fits the adapter.

use crate::bench::{parse_shape, BenchCase, BenchEntry};
use crate::dispatch::{grid, Recorder};
use crate::dtype::DType;
use crate::error::{shape_err, KernelError, Result};
use crate::gpu::Gpu;
use crate::params::ParamsLayout;
use crate::pipelines::Pipeline;
use crate::select::Tier;
use crate::shaders::{Shader, LAYER_NORM, ROWS_VEC4, SOFTMAX};
use crate::tensor::{items_per_binding, Tensor};
use bytemuck::{Pod, Zeroable};
use std::sync::Arc;

const WG: u32 = 64;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    rows: u32,
    c: u32,
    base_x: u32,
    base_y: u32,
    /// eps (layer norm) or logit scale (softmax).
    f: f32,
    affine: u32,
    _pad0: u32,
    _pad1: u32,
}

/// Layout of the uniform `Params` of `layer_norm.wgsl`, `softmax.wgsl` and `rows_vec4.wgsl`.
pub const PARAMS_LAYOUT: ParamsLayout =
    crate::params_layout!(Params { rows, c, base_x, base_y, f, affine, _pad0, _pad1 });

/// Whether the one-workgroup-per-row kernels run on this device (the gpu tier; on lavapipe the per-row
/// invocations of the sg8 tier are faster, see BENCHMARKS.md).
fn per_workgroup(gpu: &Gpu) -> bool {
    gpu.tier == Tier::Gpu
}

/// Workgroup size of a one-workgroup-per-row kernel for rows of `items` loads (elements or vec4s): about two
/// loads per invocation, a power of two in 64..=256, within the adapter's invocation and workgroup-memory limits
/// (the reductions use three f32 per invocation).
pub fn row_workgroup(gpu: &Gpu, items: usize) -> u32 {
    let lim = gpu
        .limits
        .max_compute_invocations_per_workgroup
        .min(gpu.limits.max_compute_workgroup_storage_size / 12);
    let cap = if lim == 0 { 1 } else { 1u32 << (31 - lim.leading_zeros()) };
    (items.div_ceil(2).next_power_of_two().clamp(64, 256) as u32).min(cap)
}

/// The pipeline one window of a row kernel dispatches: on the gpu tier `entries[2]` of `rows_vec4.wgsl` for
/// aligned rows of a multiple of 4 (`vec4`) else `entries[1]` of `shader`, both with workgroup size `wg`; on the sg8
/// tier `entries[0]` of `shader`. Fetched per window, so a variant no window takes is never compiled.
fn row_pipeline(
    gpu: &Gpu,
    shader: &Shader,
    entries: [&'static str; 3],
    dtype: DType,
    wg: u32,
    vec4: bool,
) -> Result<Arc<Pipeline>> {
    let o = [("WG", wg as f64)];
    match (per_workgroup(gpu), vec4) {
        (true, true) => gpu.pipelines().get(&gpu.device, &ROWS_VEC4, entries[2], dtype, &o),
        (true, false) => gpu.pipelines().get(&gpu.device, shader, entries[1], dtype, &o),
        (false, _) => gpu.pipelines().get(&gpu.device, shader, entries[0], dtype, &[]),
    }
}

fn rows_of(op: &'static str, x: &Tensor, y: &Tensor) -> Result<(usize, usize)> {
    let xs = x.shape();
    let c = *xs.last().ok_or_else(|| shape_err(op, "input [.., C]", &[0], xs))?;
    if y.shape() != xs {
        return Err(shape_err(op, "output", xs, y.shape()));
    }
    if x.dtype() != y.dtype() {
        return Err(KernelError::DType {
            op,
            found: format!("{} and {}", x.dtype(), y.dtype()),
            why: "x and y".into(),
        });
    }
    Ok((x.numel() / c.max(1), c))
}

/// Records `y = LayerNorm(x)` over the last dim `C` (`gamma, beta [C]`, or no affine).
pub fn record_layer_norm(
    rec: &mut Recorder,
    x: &Tensor,
    affine: Option<(&Tensor, &Tensor)>,
    eps: f32,
    y: &Tensor,
) -> Result<()> {
    const OP: &str = "layer norm";
    let gpu = rec.gpu();
    let (rows, c) = rows_of(OP, x, y)?;
    if let Some((g, b)) = affine {
        for (t, what) in [(g, "gamma"), (b, "beta")] {
            if t.shape() != [c] {
                return Err(shape_err(OP, what, &[c], t.shape()));
            }
            if t.dtype() != x.dtype() {
                return Err(KernelError::DType {
                    op: OP,
                    found: t.dtype().to_string(),
                    why: format!("{what} dtype"),
                });
            }
        }
    }
    if rows == 0 || c == 0 {
        return Ok(());
    }
    let dtype = x.dtype();
    let wide = per_workgroup(gpu);
    let wg = if wide { row_workgroup(gpu, if c % 4 == 0 { c / 4 } else { c }) } else { WG };
    let pipeline = |vec4| {
        row_pipeline(gpu, &LAYER_NORM, ["layer_norm", "layer_norm_wg", "layer_norm_wg4"], dtype, wg, vec4)
    };
    let per = items_per_binding(gpu, c, dtype)?;
    let mut r0 = 0;
    while r0 < rows {
        let nr = per.min(rows - r0);
        let (xw, yw) = (x.window(gpu, r0 * c, nr * c)?, y.window(gpu, r0 * c, nr * c)?);
        let (gw, bw) = match affine {
            Some((g, b)) => (g.whole(gpu)?, b.whole(gpu)?),
            None => (xw.clone(), xw.clone()),
        };
        let prm = Params {
            rows: nr as u32,
            c: c as u32,
            base_x: xw.base,
            base_y: yw.base,
            f: eps,
            affine: affine.is_some() as u32,
            ..Default::default()
        };
        let aligned = [xw.base, yw.base, gw.base, bw.base].iter().all(|b| b % 4 == 0)
            && (affine.is_none() || (gw.base == 0 && bw.base == 0));
        let groups = grid(gpu, if wide { nr as u32 } else { (nr as u32).div_ceil(wg) });
        let pipe = pipeline(wide && c % 4 == 0 && aligned)?;
        rec.dispatch(&pipe, bytemuck::bytes_of(&prm), vec![xw, gw, bw, yw], groups)?;
        r0 += nr;
    }
    Ok(())
}

/// Records `y = softmax(scale · x)` over the last dim.
pub fn record_softmax(rec: &mut Recorder, x: &Tensor, scale: f32, y: &Tensor) -> Result<()> {
    const OP: &str = "softmax";
    let gpu = rec.gpu();
    let (rows, c) = rows_of(OP, x, y)?;
    if rows == 0 || c == 0 {
        return Ok(());
    }
    let dtype = x.dtype();
    let wide = per_workgroup(gpu);
    let wg = if wide { row_workgroup(gpu, if c % 4 == 0 { c / 4 } else { c }) } else { WG };
    let pipeline =
        |vec4| row_pipeline(gpu, &SOFTMAX, ["softmax", "softmax_wg", "softmax_wg4"], dtype, wg, vec4);
    let per = items_per_binding(gpu, c, dtype)?;
    let mut r0 = 0;
    while r0 < rows {
        let nr = per.min(rows - r0);
        let (xw, yw) = (x.window(gpu, r0 * c, nr * c)?, y.window(gpu, r0 * c, nr * c)?);
        let prm = Params {
            rows: nr as u32,
            c: c as u32,
            base_x: xw.base,
            base_y: yw.base,
            f: scale,
            ..Default::default()
        };
        let groups = grid(gpu, if wide { nr as u32 } else { (nr as u32).div_ceil(wg) });
        if wide && c % 4 == 0 && xw.base % 4 == 0 && yw.base % 4 == 0 {
            let p4 = pipeline(true)?;
            rec.dispatch_bound(&p4, bytemuck::bytes_of(&prm), vec![(1, xw), (4, yw)], groups)?
        } else {
            rec.dispatch(&pipeline(false)?, bytemuck::bytes_of(&prm), vec![xw, yw], groups)?
        }
        r0 += nr;
    }
    Ok(())
}

/// Layer norm into a new tensor, run now.
pub fn layer_norm(gpu: &Gpu, x: &Tensor, affine: Option<(&Tensor, &Tensor)>, eps: f32) -> Result<Tensor> {
    let y = Tensor::empty(gpu, x.shape(), x.dtype())?;
    let mut rec = Recorder::new(gpu);
    record_layer_norm(&mut rec, x, affine, eps, &y)?;
    rec.run()?;
    Ok(y)
}

/// Softmax into a new tensor, run now.
pub fn softmax(gpu: &Gpu, x: &Tensor, scale: f32) -> Result<Tensor> {
    let y = Tensor::empty(gpu, x.shape(), x.dtype())?;
    let mut rec = Recorder::new(gpu);
    record_softmax(&mut rec, x, scale, &y)?;
    rec.run()?;
    Ok(y)
}

/// Float64 references.
pub mod reference {
    /// Layer norm of rows of length `c`.
    pub fn layer_norm(x: &[f64], c: usize, affine: Option<(&[f64], &[f64])>, eps: f64) -> Vec<f64> {
        let mut y = Vec::with_capacity(x.len());
        for row in x.chunks(c) {
            let mean = row.iter().sum::<f64>() / c as f64;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / c as f64;
            let rstd = 1.0 / (var + eps).sqrt();
            for (i, v) in row.iter().enumerate() {
                let n = (v - mean) * rstd;
                y.push(affine.map_or(n, |(g, b)| n * g[i] + b[i]));
            }
        }
        y
    }

    /// Softmax of rows of length `c` after multiplying by `scale`.
    pub fn softmax(x: &[f64], c: usize, scale: f64) -> Vec<f64> {
        let mut y = Vec::with_capacity(x.len());
        for row in x.chunks(c) {
            let m = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b * scale));
            let s: f64 = row.iter().map(|v| (v * scale - m).exp()).sum();
            y.extend(row.iter().map(|v| (v * scale - m).exp() / s));
        }
        y
    }
}

fn ln_bench(gpu: &Gpu, shape: &str, dtype: DType) -> Result<BenchCase> {
    let d = parse_shape("layer-norm", shape, 2)?;
    let (rows, c) = (d[0], d[1]);
    let x = Tensor::from_f32(gpu, &crate::bench::random_data(1, rows * c), &[rows, c], dtype)?;
    let g = Tensor::from_f32(gpu, &crate::bench::random_data(2, c), &[c], dtype)?;
    let b = Tensor::from_f32(gpu, &crate::bench::random_data(3, c), &[c], dtype)?;
    let y = Tensor::empty(gpu, &[rows, c], dtype)?;
    let mut rec = Recorder::new(gpu);
    record_layer_norm(&mut rec, &x, Some((&g, &b)), 1e-5, &y)?;
    Ok(BenchCase {
        kernel: "layer-norm",
        shape: shape.to_string(),
        dtype,
        flops: 8.0 * (rows * c) as f64,
        bytes: 2.0 * (rows * c) as f64 * dtype.size() as f64,
        recording: rec.finish(),
        keep: vec![x, g, b, y],
    })
}

fn sm_bench(gpu: &Gpu, shape: &str, dtype: DType) -> Result<BenchCase> {
    let d = parse_shape("softmax", shape, 2)?;
    let (rows, c) = (d[0], d[1]);
    let x = Tensor::from_f32(gpu, &crate::bench::random_data(1, rows * c), &[rows, c], dtype)?;
    let y = Tensor::empty(gpu, &[rows, c], dtype)?;
    let mut rec = Recorder::new(gpu);
    record_softmax(&mut rec, &x, 0.125, &y)?;
    Ok(BenchCase {
        kernel: "softmax",
        shape: shape.to_string(),
        dtype,
        flops: 5.0 * (rows * c) as f64,
        bytes: 2.0 * (rows * c) as f64 * dtype.size() as f64,
        recording: rec.finish(),
        keep: vec![x, y],
    })
}

/// Benchmark: layer norm over C.
pub const BENCH_LAYER_NORM: BenchEntry = BenchEntry {
    name: "layer-norm",
    shape_help: "ROWSxC (rows = tokens)",
    default_shapes: &["129024x320", "32256x640", "8064x1280"],
    demo_shape: "32256x640",
    build: ln_bench,
};

/// Benchmark: softmax over the last dim.
pub const BENCH_SOFTMAX: BenchEntry = BenchEntry {
    name: "softmax",
    shape_help: "ROWSxC",
    default_shapes: &["92160x50", "4112x257"],
    demo_shape: "92160x50",
    build: sm_bench,
};
