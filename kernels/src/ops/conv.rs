//! Convolutions as GEMMs (`shaders/conv_cols.wgsl` gathers columns, `ops::matmul` multiplies):
//! 2-D convolution (NCHW, PyTorch weight `[out, in, kh, kw]`, any stride and padding) and the temporal
//! 3-tap convolution of SVD's VAE decoder and temporal res-blocks (`Conv3d` kernel (3,1,1), padding (1,0,0)).
//!
//! Per image, `y[co, p] = bias[co] + Σ_k W[co, k] · cols[p, k]`: the columns of a bounded pixel chunk are
//! gathered into a pooled scratch buffer, then multiplied by the weight with the tuned matmul. Input channels are
//! split into chunks (accumulated) when one image's channels exceed a storage binding (the VAE's 128×576×1024).

use crate::bench::{parse_shape, BenchCase, BenchEntry};
use crate::dispatch::{grid, Recorder};
use crate::dtype::DType;
use crate::error::{invalid, shape_err, Result};
use crate::gpu::Gpu;
use crate::ops::matmul::{record_gemm, BiasMode, Epilogue, Gemm, Operand, WLayout};
use crate::shaders::CONV_COLS;
use crate::tensor::{items_per_binding, same_dtype, Tensor};
use bytemuck::{Pod, Zeroable};

const WG: u32 = 256;
/// Largest column scratch, in elements (64 MiB of f32).
const MAX_COLS: usize = 16 << 20;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    n_pix: u32,
    p0: u32,
    k: u32,
    h: u32,
    w: u32,
    wo: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad_t: u32,
    pad_l: u32,
    base_x: u32,
    base_y: u32,
    base_prev: u32,
    base_next: u32,
    flags: u32,
}

/// Layout of the uniform `Params` of `conv_cols.wgsl`.
pub const PARAMS_LAYOUT: crate::params::ParamsLayout = crate::params_layout!(Params {
    n_pix,
    p0,
    k,
    h,
    w,
    wo,
    kh,
    kw,
    stride,
    pad_t,
    pad_l,
    base_x,
    base_y,
    base_prev,
    base_next,
    flags
});

/// Stride and zero padding of a 2-D convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dOpts {
    /// Stride in both directions.
    pub stride: usize,
    /// Padding: top, left, bottom, right.
    pub pad: [usize; 4],
}

impl Conv2dOpts {
    /// Symmetric padding `pad` on every side.
    pub fn new(stride: usize, pad: usize) -> Self {
        Conv2dOpts { stride, pad: [pad; 4] }
    }
    /// Output height and width for an input `h × w` and kernel `kh × kw`.
    pub fn out_size(&self, h: usize, w: usize, kh: usize, kw: usize) -> Option<(usize, usize)> {
        let hp = h + self.pad[0] + self.pad[2];
        let wp = w + self.pad[1] + self.pad[3];
        if self.stride == 0 || hp < kh || wp < kw {
            return None;
        }
        Some(((hp - kh) / self.stride + 1, (wp - kw) / self.stride + 1))
    }
}

/// Input-channel chunk so that one image's channels fit a binding and the chunk's columns a scratch row;
/// a multiple of 32 when split, so K stays a multiple of 32 (the fast matmul path).
fn channel_chunk(gpu: &Gpu, cin: usize, plane: usize, taps: usize, dtype: DType) -> Result<usize> {
    let by_binding = items_per_binding(gpu, plane, dtype)?;
    let by_scratch = (MAX_COLS / taps).max(1);
    let max = by_binding.min(by_scratch);
    if cin <= max {
        return Ok(cin);
    }
    Ok(if max >= 32 { max / 32 * 32 } else { max })
}

fn cols_budget(gpu: &Gpu, dtype: DType) -> Result<usize> {
    Ok(items_per_binding(gpu, 1, dtype)?.min(MAX_COLS))
}

/// Records `y = conv2d(x, w) + bias`: `x [N, Cin, H, W]`, `w [Cout, Cin, KH, KW]`, `bias [Cout]`,
/// `y [N, Cout, Ho, Wo]`.
pub fn record_conv2d(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    opts: Conv2dOpts,
    y: &Tensor,
) -> Result<()> {
    const OP: &str = "conv2d";
    let gpu = rec.gpu();
    let (xs, ws) = (x.shape(), w.shape());
    if xs.len() != 4 || ws.len() != 4 {
        return Err(shape_err(OP, "input [N, C, H, W] and weight [Cout, Cin, KH, KW]", xs, ws));
    }
    let (n, cin, h, wd) = (xs[0], xs[1], xs[2], xs[3]);
    let (cout, kh, kw) = (ws[0], ws[2], ws[3]);
    if ws[1] != cin {
        return Err(shape_err(OP, "weight input channels vs input", &[cout, cin, kh, kw], ws));
    }
    let (ho, wo) = opts
        .out_size(h, wd, kh, kw)
        .ok_or_else(|| invalid(OP, format!("kernel {kh}x{kw} with {opts:?} does not fit input {xs:?}")))?;
    if y.shape() != [n, cout, ho, wo] {
        return Err(shape_err(OP, "output", &[n, cout, ho, wo], y.shape()));
    }
    if let Some(b) = bias {
        if b.shape() != [cout] {
            return Err(shape_err(OP, "bias", &[cout], b.shape()));
        }
        same_dtype(OP, &[x, w, b, y])?;
    } else {
        same_dtype(OP, &[x, w, y])?;
    }
    let dtype = x.dtype();
    let taps = kh * kw;
    let plane = h * wd;
    let pout = ho * wo;
    let kfull = cin * taps;
    let cc_max = channel_chunk(gpu, cin, plane, taps, dtype)?;
    let budget = cols_budget(gpu, dtype)?;
    let pipe = gpu.pipelines().get(&gpu.device, &CONV_COLS, "im2col", dtype, &[])?;
    let pc_max = (budget / (cc_max * taps)).clamp(1, pout);
    let cols = rec.scratch(&[pc_max * cc_max * taps], dtype)?;
    for img in 0..n {
        let mut c0 = 0;
        while c0 < cin {
            let cc = cc_max.min(cin - c0);
            let kc = cc * taps;
            let pc_len = (cols.numel() / kc).clamp(1, pout);
            let xw = x.window(gpu, (img * cin + c0) * plane, cc * plane)?;
            let mut p0 = 0;
            while p0 < pout {
                let pc = pc_len.min(pout - p0);
                let cw = cols.window(gpu, 0, pc * kc)?;
                let params = Params {
                    n_pix: pc as u32,
                    p0: p0 as u32,
                    k: kc as u32,
                    h: h as u32,
                    w: wd as u32,
                    wo: wo as u32,
                    kh: kh as u32,
                    kw: kw as u32,
                    stride: opts.stride as u32,
                    pad_t: opts.pad[0] as u32,
                    pad_l: opts.pad[1] as u32,
                    base_x: xw.base,
                    base_y: cw.base,
                    ..Default::default()
                };
                let groups = grid(gpu, ((pc * kc) as u32).div_ceil(WG));
                rec.dispatch_bound(
                    &pipe,
                    bytemuck::bytes_of(&params),
                    vec![(1, xw.clone()), (2, cw)],
                    groups,
                )?;
                let g = Gemm {
                    batch: 1,
                    m: cout,
                    n: pc,
                    k: kc,
                    x: Operand { t: w, offset: c0 * taps, ld: kfull, sb: 0 },
                    w: Operand { t: &cols, offset: 0, ld: kc, sb: 0 },
                    layout: WLayout::NK,
                    bias: if c0 == 0 { bias.map(|b| (b, BiasMode::PerRow)) } else { None },
                    act: Epilogue::None,
                    y: Operand { t: y, offset: img * cout * pout + p0, ld: pout, sb: 0 },
                    accumulate: c0 > 0,
                };
                record_gemm(rec, &g, None)?;
                p0 += pc;
            }
            c0 += cc;
        }
    }
    Ok(())
}

/// `conv2d(x, w) + bias` into a new tensor, run now.
pub fn conv2d(gpu: &Gpu, x: &Tensor, w: &Tensor, bias: Option<&Tensor>, opts: Conv2dOpts) -> Result<Tensor> {
    let (xs, ws) = (x.shape(), w.shape());
    if xs.len() != 4 || ws.len() != 4 {
        return Err(shape_err("conv2d", "input [N, C, H, W] and weight [Cout, Cin, KH, KW]", xs, ws));
    }
    let (ho, wo) = opts
        .out_size(xs[2], xs[3], ws[2], ws[3])
        .ok_or_else(|| invalid("conv2d", format!("kernel {ws:?} with {opts:?} does not fit input {xs:?}")))?;
    let y = Tensor::empty(gpu, &[xs[0], ws[0], ho, wo], x.dtype())?;
    let mut rec = Recorder::new(gpu);
    record_conv2d(&mut rec, x, w, bias, opts, &y)?;
    rec.run()?;
    Ok(y)
}

/// Records the temporal 3-tap convolution on the `(B·F, C, H, W)` layout (rows `b·F + f`):
/// `y[b·F+f, co, p] = bias[co] + Σ_ci Σ_t w[co, ci, t] · x[b·F + f + t − 1, ci, p]`, zero outside the clip.
/// `w [Cout, Cin, 3, 1, 1]` (or `[Cout, Cin, 3]`), `y [B·F, Cout, H, W]`.
pub fn record_conv3d_temporal(
    rec: &mut Recorder,
    x: &Tensor,
    frames: usize,
    w: &Tensor,
    bias: Option<&Tensor>,
    y: &Tensor,
) -> Result<()> {
    const OP: &str = "conv3d temporal";
    let gpu = rec.gpu();
    let (xs, ws) = (x.shape(), w.shape());
    if xs.len() != 4 || !(ws.len() == 5 && ws[3] == 1 && ws[4] == 1 || ws.len() == 3) || ws[2] != 3 {
        return Err(shape_err(OP, "input [B·F, C, H, W] and weight [Cout, Cin, 3, 1, 1]", xs, ws));
    }
    let (rows, cin, plane) = (xs[0], xs[1], xs[2] * xs[3]);
    let cout = ws[0];
    if frames == 0 || rows % frames != 0 {
        return Err(invalid(OP, format!("{rows} rows are not a whole number of clips of {frames} frames")));
    }
    if ws[1] != cin {
        return Err(shape_err(OP, "weight input channels vs input", &[cout, cin, 3, 1, 1], ws));
    }
    if y.shape() != [rows, cout, xs[2], xs[3]] {
        return Err(shape_err(OP, "output", &[rows, cout, xs[2], xs[3]], y.shape()));
    }
    if let Some(b) = bias {
        if b.shape() != [cout] {
            return Err(shape_err(OP, "bias", &[cout], b.shape()));
        }
        same_dtype(OP, &[x, w, b, y])?;
    } else {
        same_dtype(OP, &[x, w, y])?;
    }
    let dtype = x.dtype();
    let taps = 3;
    let cc_max = channel_chunk(gpu, cin, plane, taps, dtype)?;
    let budget = cols_budget(gpu, dtype)?;
    let pipe = gpu.pipelines().get(&gpu.device, &CONV_COLS, "temporal_cols", dtype, &[])?;
    let pc_max = (budget / (cc_max * taps)).clamp(1, plane);
    let cols = rec.scratch(&[pc_max * cc_max * taps], dtype)?;
    for row in 0..rows {
        let f = row % frames;
        let mut c0 = 0;
        while c0 < cin {
            let cc = cc_max.min(cin - c0);
            let kc = cc * taps;
            let pc_len = (cols.numel() / kc).clamp(1, plane);
            let frame_win = |r: usize| x.window(gpu, (r * cin + c0) * plane, cc * plane);
            let cur = frame_win(row)?;
            let prev = if f > 0 { Some(frame_win(row - 1)?) } else { None };
            let next = if f + 1 < frames { Some(frame_win(row + 1)?) } else { None };
            let mut p0 = 0;
            while p0 < plane {
                let pc = pc_len.min(plane - p0);
                let cw = cols.window(gpu, 0, pc * kc)?;
                let params = Params {
                    n_pix: pc as u32,
                    p0: p0 as u32,
                    k: kc as u32,
                    w: plane as u32,
                    base_x: cur.base,
                    base_y: cw.base,
                    base_prev: prev.as_ref().map_or(0, |p| p.base),
                    base_next: next.as_ref().map_or(0, |p| p.base),
                    flags: prev.is_some() as u32 | (next.is_some() as u32) << 1,
                    ..Default::default()
                };
                let bound = vec![
                    (1, cur.clone()),
                    (2, cw),
                    (3, prev.clone().unwrap_or_else(|| cur.clone())),
                    (4, next.clone().unwrap_or_else(|| cur.clone())),
                ];
                let groups = grid(gpu, ((pc * kc) as u32).div_ceil(WG));
                rec.dispatch_bound(&pipe, bytemuck::bytes_of(&params), bound, groups)?;
                let g = Gemm {
                    batch: 1,
                    m: cout,
                    n: pc,
                    k: kc,
                    x: Operand { t: w, offset: c0 * taps, ld: cin * taps, sb: 0 },
                    w: Operand { t: &cols, offset: 0, ld: kc, sb: 0 },
                    layout: WLayout::NK,
                    bias: if c0 == 0 { bias.map(|b| (b, BiasMode::PerRow)) } else { None },
                    act: Epilogue::None,
                    y: Operand { t: y, offset: row * cout * plane + p0, ld: plane, sb: 0 },
                    accumulate: c0 > 0,
                };
                record_gemm(rec, &g, None)?;
                p0 += pc;
            }
            c0 += cc;
        }
    }
    Ok(())
}

/// Temporal conv into a new tensor, run now.
pub fn conv3d_temporal(
    gpu: &Gpu,
    x: &Tensor,
    frames: usize,
    w: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    let xs = x.shape();
    if xs.len() != 4 || w.shape().is_empty() {
        return Err(shape_err("conv3d temporal", "input [B·F, C, H, W]", &[0, 0, 0, 0], xs));
    }
    let y = Tensor::empty(gpu, &[xs[0], w.shape()[0], xs[2], xs[3]], x.dtype())?;
    let mut rec = Recorder::new(gpu);
    record_conv3d_temporal(&mut rec, x, frames, w, bias, &y)?;
    rec.run()?;
    Ok(y)
}

/// Float64 references.
pub mod reference {
    use super::Conv2dOpts;

    /// Direct 2-D convolution: `x [n, cin, h, w]`, `w [cout, cin, kh, kw]`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d(
        x: &[f64],
        w: &[f64],
        bias: Option<&[f64]>,
        (n, cin, h, wd): (usize, usize, usize, usize),
        (cout, kh, kw): (usize, usize, usize),
        o: Conv2dOpts,
    ) -> Vec<f64> {
        let (ho, wo) = o.out_size(h, wd, kh, kw).expect("valid conv geometry");
        let mut y = vec![0.0; n * cout * ho * wo];
        for b in 0..n {
            for co in 0..cout {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let mut s = bias.map_or(0.0, |bv| bv[co]);
                        for ci in 0..cin {
                            for ky in 0..kh {
                                let iy = (oy * o.stride + ky) as isize - o.pad[0] as isize;
                                if iy < 0 || iy >= h as isize {
                                    continue;
                                }
                                for kx in 0..kw {
                                    let ix = (ox * o.stride + kx) as isize - o.pad[1] as isize;
                                    if ix < 0 || ix >= wd as isize {
                                        continue;
                                    }
                                    s += w[((co * cin + ci) * kh + ky) * kw + kx]
                                        * x[((b * cin + ci) * h + iy as usize) * wd + ix as usize];
                                }
                            }
                        }
                        y[((b * cout + co) * ho + oy) * wo + ox] = s;
                    }
                }
            }
        }
        y
    }

    /// Temporal 3-tap convolution on `(rows = b·F + f, cin, plane)`, weight `[cout, cin, 3]`.
    pub fn conv3d_temporal(
        x: &[f64],
        w: &[f64],
        bias: Option<&[f64]>,
        (rows, frames, cin, plane): (usize, usize, usize, usize),
        cout: usize,
    ) -> Vec<f64> {
        let mut y = vec![0.0; rows * cout * plane];
        for r in 0..rows {
            let f = r % frames;
            for co in 0..cout {
                for p in 0..plane {
                    let mut s = bias.map_or(0.0, |bv| bv[co]);
                    for t in 0..3 {
                        let ff = f as isize + t as isize - 1;
                        if ff < 0 || ff >= frames as isize {
                            continue;
                        }
                        let src = r - f + ff as usize;
                        for ci in 0..cin {
                            s += w[(co * cin + ci) * 3 + t] * x[(src * cin + ci) * plane + p];
                        }
                    }
                    y[(r * cout + co) * plane + p] = s;
                }
            }
        }
        y
    }
}

fn conv2d_bench(gpu: &Gpu, shape: &str, dtype: DType) -> Result<BenchCase> {
    let d = parse_shape("conv2d", shape, 0)?;
    if d.len() < 5 || d.len() > 7 {
        return Err(invalid("conv2d", "shape is NxCINxCOUTxHxW[xK[xSTRIDE]]"));
    }
    let (n, cin, cout, h, w) = (d[0], d[1], d[2], d[3], d[4]);
    let k = d.get(5).copied().unwrap_or(3);
    let stride = d.get(6).copied().unwrap_or(1);
    let opts = Conv2dOpts::new(stride, k / 2);
    let (ho, wo) = opts.out_size(h, w, k, k).ok_or_else(|| invalid("conv2d", "kernel larger than input"))?;
    let x = Tensor::from_f32(gpu, &crate::bench::random_data(1, n * cin * h * w), &[n, cin, h, w], dtype)?;
    let wt =
        Tensor::from_f32(gpu, &crate::bench::random_data(2, cout * cin * k * k), &[cout, cin, k, k], dtype)?;
    let b = Tensor::from_f32(gpu, &crate::bench::random_data(3, cout), &[cout], dtype)?;
    let y = Tensor::empty(gpu, &[n, cout, ho, wo], dtype)?;
    let mut rec = Recorder::new(gpu);
    record_conv2d(&mut rec, &x, &wt, Some(&b), opts, &y)?;
    let es = dtype.size() as f64;
    Ok(BenchCase {
        kernel: "conv2d",
        shape: shape.to_string(),
        dtype,
        flops: 2.0 * (n * cout * ho * wo * cin * k * k) as f64,
        bytes: es * (n * cin * h * w + cout * cin * k * k + n * cout * ho * wo) as f64,
        recording: rec.finish(),
        keep: vec![x, wt, b, y],
    })
}

fn conv3d_bench(gpu: &Gpu, shape: &str, dtype: DType) -> Result<BenchCase> {
    let d = parse_shape("conv3d-temporal", shape, 5)?;
    let (b, f, c, h, w) = (d[0], d[1], d[2], d[3], d[4]);
    let x =
        Tensor::from_f32(gpu, &crate::bench::random_data(1, b * f * c * h * w), &[b * f, c, h, w], dtype)?;
    let wt = Tensor::from_f32(gpu, &crate::bench::random_data(2, c * c * 3), &[c, c, 3, 1, 1], dtype)?;
    let bias = Tensor::from_f32(gpu, &crate::bench::random_data(3, c), &[c], dtype)?;
    let y = Tensor::empty(gpu, &[b * f, c, h, w], dtype)?;
    let mut rec = Recorder::new(gpu);
    record_conv3d_temporal(&mut rec, &x, f, &wt, Some(&bias), &y)?;
    let es = dtype.size() as f64;
    Ok(BenchCase {
        kernel: "conv3d-temporal",
        shape: shape.to_string(),
        dtype,
        flops: 2.0 * (b * f * c * h * w * c * 3) as f64,
        bytes: es * (2 * b * f * c * h * w + 3 * c * c) as f64,
        recording: rec.finish(),
        keep: vec![x, wt, bias, y],
    })
}

/// Benchmark: 2-D convolution.
pub const BENCH_CONV2D: BenchEntry = BenchEntry {
    name: "conv2d",
    shape_help: "NxCINxCOUTxHxW[xK[xSTRIDE]] (K×K kernel, padding K/2; default K=3, stride 1)",
    default_shapes: &["1x320x320x72x128", "1x320x320x72x128x3x2", "1x640x640x36x64", "1x1280x1280x18x32"],
    demo_shape: "1x320x320x36x64",
    build: conv2d_bench,
};

/// Benchmark: temporal 3-tap convolution.
pub const BENCH_CONV3D: BenchEntry = BenchEntry {
    name: "conv3d-temporal",
    shape_help: "BxFxCxHxW on the (B·F, C, H, W) layout, C→C channels",
    default_shapes: &["1x14x320x36x64", "1x25x128x72x128"],
    demo_shape: "1x14x320x36x64",
    build: conv3d_bench,
};
