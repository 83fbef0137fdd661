//! Data movement (`shaders/layout.wgsl`): axis swaps for the UNet's layout changes, nearest 2× upsampling,
//! channel concatenation; launchers, references and benchmark cases. Every op tiles its work so that each
//! binding fits the adapter's limit.

use crate::bench::{parse_shape, BenchCase, BenchEntry};
use crate::dispatch::{grid, Recorder};
use crate::dtype::DType;
use crate::error::{invalid, shape_err, Result};
use crate::gpu::Gpu;
use crate::shaders::LAYOUT;
use crate::tensor::{items_per_binding, same_dtype, Tensor};
use bytemuck::{Pod, Zeroable};

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    n: u32,
    d0: u32,
    d1: u32,
    d2: u32,
    nb: u32,
    nc: u32,
    base_x: u32,
    base_y: u32,
    ldx: u32,
    ldy: u32,
    _pad: [u32; 2],
}

/// Layout of the uniform `Params` of `layout.wgsl`.
pub const PARAMS_LAYOUT: crate::params::ParamsLayout =
    crate::params_layout!(Params { n, d0, d1, d2, nb, nc, base_x, base_y, ldx, ldy, _pad });

/// Records `y [A, C, B, D] = x [A, B, C, D]` with the axes B and C swapped. With `D = 1` this is a batched
/// transpose (`(b·f, c, h·w) ↔ (b·f, h·w, c)`); with `A = batch, B = F, C = h·w, D = c` it turns spatial
/// tokens `(b·f, h·w, c)` into temporal sequences `(b·h·w, f, c)` and back.
pub fn record_swap12(rec: &mut Recorder, x: &Tensor, dims: [usize; 4], y: &Tensor) -> Result<()> {
    const OP: &str = "swap axes";
    let [a, b, c, d] = dims;
    let n = a * b * c * d;
    if x.numel() != n || y.numel() != n {
        return Err(shape_err(OP, "element count of [A, B, C, D]", &dims, x.shape()));
    }
    same_dtype(OP, &[x, y])?;
    if n == 0 {
        return Ok(());
    }
    let gpu = rec.gpu();
    let pipe = gpu.pipelines().get(&gpu.device, &LAYOUT, "swap12", x.dtype(), &[])?;
    let fit = items_per_binding(gpu, 1, x.dtype())?;
    let mut emit = |a0: usize, na: usize, b0: usize, nb: usize, c0: usize, nc: usize| -> Result<()> {
        let xs0 = ((a0 * b + b0) * c + c0) * d;
        let xlen = (((na - 1) * b + nb - 1) * c + nc - 1) * d + d;
        let ys0 = ((a0 * c + c0) * b + b0) * d;
        let ylen = (((na - 1) * c + nc - 1) * b + nb - 1) * d + d;
        let (xw, yw) = (x.window(gpu, xs0, xlen)?, y.window(gpu, ys0, ylen)?);
        let cnt = na * nb * nc * d;
        let prm = Params {
            n: cnt as u32,
            d0: b as u32,
            d1: c as u32,
            d2: d as u32,
            nb: nb as u32,
            nc: nc as u32,
            base_x: xw.base,
            base_y: yw.base,
            ..Default::default()
        };
        rec.dispatch(&pipe, bytemuck::bytes_of(&prm), vec![xw, yw], grid(gpu, (cnt as u32).div_ceil(WG)))
    };
    let slice = b * c * d;
    if slice <= fit {
        let per = fit / slice;
        let mut a0 = 0;
        while a0 < a {
            let na = per.min(a - a0);
            emit(a0, na, 0, b, 0, c)?;
            a0 += na;
        }
        return Ok(());
    }
    // One slice exceeds a binding: tile it along B and C.
    let (nb_max, nc_max) = (fit / (c * d), fit / (b * d));
    if nb_max == 0 || nc_max == 0 {
        return Err(invalid(OP, format!("rows of {dims:?} are too long for one storage binding")));
    }
    for a0 in 0..a {
        let mut b0 = 0;
        while b0 < b {
            let nb = nb_max.min(b - b0);
            let mut c0 = 0;
            while c0 < c {
                let nc = nc_max.min(c - c0);
                emit(a0, 1, b0, nb, c0, nc)?;
                c0 += nc;
            }
            b0 += nb;
        }
    }
    Ok(())
}

/// Records nearest 2× upsampling: `x [N, C, H, W]` → `y [N, C, 2H, 2W]`.
pub fn record_upsample2x(rec: &mut Recorder, x: &Tensor, y: &Tensor) -> Result<()> {
    const OP: &str = "upsample 2x";
    let xs = x.shape();
    if xs.len() != 4 {
        return Err(shape_err(OP, "input [N, C, H, W]", &[0, 0, 0, 0], xs));
    }
    let want = [xs[0], xs[1], 2 * xs[2], 2 * xs[3]];
    if y.shape() != want {
        return Err(shape_err(OP, "output", &want, y.shape()));
    }
    same_dtype(OP, &[x, y])?;
    let gpu = rec.gpu();
    let pipe = gpu.pipelines().get(&gpu.device, &LAYOUT, "upsample2x", x.dtype(), &[])?;
    let (planes, hw) = (xs[0] * xs[1], xs[2] * xs[3]);
    let per = items_per_binding(gpu, 4 * hw, x.dtype())?;
    let mut p0 = 0;
    while p0 < planes {
        let np = per.min(planes - p0);
        let (xw, yw) = (x.window(gpu, p0 * hw, np * hw)?, y.window(gpu, p0 * 4 * hw, np * 4 * hw)?);
        let cnt = np * 4 * hw;
        let prm = Params {
            n: cnt as u32,
            d0: xs[2] as u32,
            d1: xs[3] as u32,
            base_x: xw.base,
            base_y: yw.base,
            ..Default::default()
        };
        rec.dispatch(&pipe, bytemuck::bytes_of(&prm), vec![xw, yw], grid(gpu, (cnt as u32).div_ceil(WG)))?;
        p0 += np;
    }
    Ok(())
}

/// Records a strided copy of `rows × cols` elements: `y[y_off + r·ldy + j] = x[x_off + r·ldx + j]`.
#[allow(clippy::too_many_arguments)]
pub fn record_copy2d(
    rec: &mut Recorder,
    x: &Tensor,
    x_off: usize,
    ldx: usize,
    y: &Tensor,
    y_off: usize,
    ldy: usize,
    rows: usize,
    cols: usize,
) -> Result<()> {
    const OP: &str = "copy";
    same_dtype(OP, &[x, y])?;
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    if x_off + (rows - 1) * ldx + cols > x.numel() || y_off + (rows - 1) * ldy + cols > y.numel() {
        return Err(invalid(OP, format!("{rows}×{cols} block leaves {:?} or {:?}", x.shape(), y.shape())));
    }
    let gpu = rec.gpu();
    let pipe = gpu.pipelines().get(&gpu.device, &LAYOUT, "copy2d", x.dtype(), &[])?;
    let fit = items_per_binding(gpu, 1, x.dtype())?;
    let col_chunk = cols.min(fit);
    let rows_per = (fit / ldx.max(ldy).max(col_chunk)).max(1);
    let mut j0 = 0;
    while j0 < cols {
        let nc = col_chunk.min(cols - j0);
        let mut r0 = 0;
        while r0 < rows {
            let nr = if nc == cols { rows_per.min(rows - r0) } else { 1 };
            let xw = x.window(gpu, x_off + r0 * ldx + j0, (nr - 1) * ldx + nc)?;
            let yw = y.window(gpu, y_off + r0 * ldy + j0, (nr - 1) * ldy + nc)?;
            let cnt = nr * nc;
            let prm = Params {
                n: cnt as u32,
                d0: nc as u32,
                base_x: xw.base,
                base_y: yw.base,
                ldx: ldx as u32,
                ldy: ldy as u32,
                ..Default::default()
            };
            rec.dispatch(
                &pipe,
                bytemuck::bytes_of(&prm),
                vec![xw, yw],
                grid(gpu, (cnt as u32).div_ceil(WG)),
            )?;
            r0 += nr;
        }
        j0 += nc;
    }
    Ok(())
}

/// Records the channel concatenation `y [N, Ca + Cb, *] = [a [N, Ca, *], b [N, Cb, *]]`.
pub fn record_concat_channels(rec: &mut Recorder, a: &Tensor, b: &Tensor, y: &Tensor) -> Result<()> {
    const OP: &str = "concat";
    let (sa, sb) = (a.shape(), b.shape());
    if sa.len() < 2 || sb.len() != sa.len() || sa[0] != sb[0] || sa[2..] != sb[2..] {
        return Err(shape_err(OP, "b must match a except in channels", sa, sb));
    }
    let mut want = sa.to_vec();
    want[1] = sa[1] + sb[1];
    if y.shape() != want.as_slice() {
        return Err(shape_err(OP, "output", &want, y.shape()));
    }
    same_dtype(OP, &[a, b])?;
    let rest: usize = sa[2..].iter().product();
    let (ca, cb) = (sa[1] * rest, sb[1] * rest);
    record_copy2d(rec, a, 0, ca, y, 0, ca + cb, sa[0], ca)?;
    record_copy2d(rec, b, 0, cb, y, ca, ca + cb, sa[0], cb)
}

/// Float64 (index-exact) references.
pub mod reference {
    /// `[A, B, C, D]` → `[A, C, B, D]`.
    pub fn swap12(x: &[f64], [a, b, c, d]: [usize; 4]) -> Vec<f64> {
        let mut y = vec![0.0; x.len()];
        for ia in 0..a {
            for ib in 0..b {
                for ic in 0..c {
                    for id in 0..d {
                        y[((ia * c + ic) * b + ib) * d + id] = x[((ia * b + ib) * c + ic) * d + id];
                    }
                }
            }
        }
        y
    }

    /// Nearest 2× upsampling of `(planes, h, w)`.
    pub fn upsample2x(x: &[f64], h: usize, w: usize) -> Vec<f64> {
        let mut y = Vec::with_capacity(x.len() * 4);
        for plane in x.chunks(h * w) {
            for oy in 0..2 * h {
                for ox in 0..2 * w {
                    y.push(plane[(oy / 2) * w + ox / 2]);
                }
            }
        }
        y
    }
}

fn swap_bench(gpu: &Gpu, shape: &str, dtype: DType) -> Result<BenchCase> {
    let d = parse_shape("transpose", shape, 4)?;
    let n: usize = d.iter().product();
    let x = Tensor::from_f32(gpu, &crate::bench::random_data(1, n), &[n], dtype)?;
    let y = Tensor::empty(gpu, &[n], dtype)?;
    let mut rec = Recorder::new(gpu);
    record_swap12(&mut rec, &x, [d[0], d[1], d[2], d[3]], &y)?;
    Ok(BenchCase {
        kernel: "transpose",
        shape: shape.to_string(),
        dtype,
        flops: 0.0,
        bytes: 2.0 * n as f64 * dtype.size() as f64,
        recording: rec.finish(),
        keep: vec![x, y],
    })
}

fn up_bench(gpu: &Gpu, shape: &str, dtype: DType) -> Result<BenchCase> {
    let d = parse_shape("upsample", shape, 4)?;
    let n: usize = d.iter().product();
    let x = Tensor::from_f32(gpu, &crate::bench::random_data(1, n), &d, dtype)?;
    let y = Tensor::empty(gpu, &[d[0], d[1], 2 * d[2], 2 * d[3]], dtype)?;
    let mut rec = Recorder::new(gpu);
    record_upsample2x(&mut rec, &x, &y)?;
    Ok(BenchCase {
        kernel: "upsample",
        shape: shape.to_string(),
        dtype,
        flops: 0.0,
        bytes: 5.0 * n as f64 * dtype.size() as f64,
        recording: rec.finish(),
        keep: vec![x, y],
    })
}

/// Benchmark: axis swap `[A, B, C, D] → [A, C, B, D]`.
pub const BENCH_TRANSPOSE: BenchEntry = BenchEntry {
    name: "transpose",
    shape_help: "AxBxCxD, swapping B and C (e.g. 50x320x9216x1 = NCHW→tokens, 2x25x9216x320 = tokens→frames)",
    default_shapes: &["50x320x9216x1", "2x25x9216x320"],
    demo_shape: "14x320x9216x1",
    build: swap_bench,
};

/// Benchmark: nearest 2× upsampling.
pub const BENCH_UPSAMPLE: BenchEntry = BenchEntry {
    name: "upsample",
    shape_help: "NxCxHxW input",
    default_shapes: &["50x1280x18x32", "50x640x36x64", "4x512x144x256"],
    demo_shape: "14x640x36x64",
    build: up_bench,
};
