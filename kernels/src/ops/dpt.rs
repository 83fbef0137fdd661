//! Ops of the DPT depth head (`shaders/dpt.wgsl`): bilinear resize with `align_corners=True`, ConvTranspose2d
//! with stride = kernel (no overlap: a GEMM against the weight as stored, then a rearrangement that adds the
//! bias), and ReLU. Launchers, float64 references and benchmark cases; every binding is windowed to fit the
//! adapter's limit.

use crate::bench::{parse_shape, BenchCase, BenchEntry};
use crate::dispatch::{grid, Recorder};
use crate::dtype::DType;
use crate::error::{invalid, shape_err, Result};
use crate::gpu::Gpu;
use crate::ops::matmul::{record_gemm, Epilogue, Gemm, Operand, WLayout};
use crate::shaders::DPT;
use crate::tensor::{items_per_binding, same_dtype, Tensor};
use bytemuck::{Pod, Zeroable};

const WG: u32 = 256;
/// Largest GEMM scratch of the transposed convolution, in elements (64 MiB of f32).
const MAX_SCRATCH: usize = 16 << 20;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    n: u32,
    h: u32,
    w: u32,
    ho: u32,
    wo: u32,
    k: u32,
    nc: u32,
    base_x: u32,
    base_y: u32,
    base_b: u32,
    rh: f32,
    rw: f32,
}

/// Layout of the uniform `Params` of `dpt.wgsl`.
pub const PARAMS_LAYOUT: crate::params::ParamsLayout =
    crate::params_layout!(Params { n, h, w, ho, wo, k, nc, base_x, base_y, base_b, rh, rw });

/// The align_corners=True source step of an axis of `n` inputs and `m` outputs, in f32 as PyTorch computes it.
pub fn ac_step(n: usize, m: usize) -> f32 {
    if m > 1 {
        (n as f32 - 1.0) / (m as f32 - 1.0)
    } else {
        0.0
    }
}

/// Records a bilinear resize with `align_corners=True`: `x [N, C, H, W]` → `y [N, C, Ho, Wo]` (PyTorch
/// `F.interpolate(mode='bilinear', align_corners=True)`; a size equal to the input's copies that axis).
pub fn record_bilinear_ac(rec: &mut Recorder, x: &Tensor, y: &Tensor) -> Result<()> {
    const OP: &str = "bilinear resize";
    let (xs, ys) = (x.shape(), y.shape());
    if xs.len() != 4 || ys.len() != 4 || xs[..2] != ys[..2] {
        return Err(shape_err(OP, "x [N, C, H, W] and y [N, C, Ho, Wo]", xs, ys));
    }
    same_dtype(OP, &[x, y])?;
    let (h, w, ho, wo) = (xs[2], xs[3], ys[2], ys[3]);
    if h == 0 || w == 0 || ho == 0 || wo == 0 {
        return Err(invalid(OP, format!("empty plane: {xs:?} → {ys:?}")));
    }
    let planes = xs[0] * xs[1];
    let gpu = rec.gpu();
    let pipe = gpu.pipelines().get(&gpu.device, &DPT, "bilinear_ac", x.dtype(), &[])?;
    let per = items_per_binding(gpu, (h * w).max(ho * wo), x.dtype())?;
    let (rh, rw) = (ac_step(h, ho), ac_step(w, wo));
    let mut p0 = 0;
    while p0 < planes {
        let np = per.min(planes - p0);
        let xw = x.window(gpu, p0 * h * w, np * h * w)?;
        let yw = y.window(gpu, p0 * ho * wo, np * ho * wo)?;
        let cnt = np * ho * wo;
        let prm = Params {
            n: cnt as u32,
            h: h as u32,
            w: w as u32,
            ho: ho as u32,
            wo: wo as u32,
            base_x: xw.base,
            base_y: yw.base,
            rh,
            rw,
            ..Default::default()
        };
        let groups = grid(gpu, (cnt as u32).div_ceil(WG));
        rec.dispatch_bound(&pipe, bytemuck::bytes_of(&prm), vec![(1, xw), (2, yw)], groups)?;
        p0 += np;
    }
    Ok(())
}

/// Records `y = max(x, 0)` (same shape and dtype; `y` must not be `x`).
pub fn record_relu(rec: &mut Recorder, x: &Tensor, y: &Tensor) -> Result<()> {
    const OP: &str = "relu";
    if x.shape() != y.shape() {
        return Err(shape_err(OP, "output vs input", x.shape(), y.shape()));
    }
    same_dtype(OP, &[x, y])?;
    let gpu = rec.gpu();
    let pipe = gpu.pipelines().get(&gpu.device, &DPT, "relu", x.dtype(), &[])?;
    let n = x.numel();
    let chunk = items_per_binding(gpu, 1, x.dtype())?;
    let mut s = 0;
    while s < n {
        let len = chunk.min(n - s);
        let (xw, yw) = (x.window(gpu, s, len)?, y.window(gpu, s, len)?);
        let prm = Params { n: len as u32, base_x: xw.base, base_y: yw.base, ..Default::default() };
        let groups = grid(gpu, (len as u32).div_ceil(WG));
        rec.dispatch_bound(&pipe, bytemuck::bytes_of(&prm), vec![(1, xw), (2, yw)], groups)?;
        s += len;
    }
    Ok(())
}

/// Records `y = max(y, 0)` in place.
pub fn record_relu_inplace(rec: &mut Recorder, y: &Tensor) -> Result<()> {
    let gpu = rec.gpu();
    let pipe = gpu.pipelines().get(&gpu.device, &DPT, "relu_inplace", y.dtype(), &[])?;
    let n = y.numel();
    let chunk = items_per_binding(gpu, 1, y.dtype())?;
    let mut s = 0;
    while s < n {
        let len = chunk.min(n - s);
        let yw = y.window(gpu, s, len)?;
        let prm = Params { n: len as u32, base_y: yw.base, ..Default::default() };
        let groups = grid(gpu, (len as u32).div_ceil(WG));
        rec.dispatch_bound(&pipe, bytemuck::bytes_of(&prm), vec![(2, yw)], groups)?;
        s += len;
    }
    Ok(())
}

/// Records a ConvTranspose2d whose stride equals its kernel `K` (padding 0): input in token-major
/// (channels-last) layout `x [gh·gw, Cin]` (token `yy·gw + xx`), PyTorch weight `w [Cin, Cout, K, K]`, bias
/// `b [Cout]`, output NCHW `y [1, Cout, K·gh, K·gw]`:
/// `y[o, K·yy + i, K·xx + j] = b[o] + Σ_c x[yy·gw + xx, c] · w[c, o, i, j]`.
/// Per chunk of output channels: a GEMM `x · w[:, chunk]` into scratch, then the rearrangement.
pub fn record_conv_transpose_ks(
    rec: &mut Recorder,
    x: &Tensor,
    grid_hw: (usize, usize),
    w: &Tensor,
    b: &Tensor,
    y: &Tensor,
) -> Result<()> {
    const OP: &str = "conv transpose (stride = kernel)";
    let (gh, gw) = grid_hw;
    let (xs, ws) = (x.shape(), w.shape());
    if ws.len() != 4 || ws[2] != ws[3] || ws[2] == 0 {
        return Err(shape_err(OP, "weight [Cin, Cout, K, K]", &[0, 0, 0, 0], ws));
    }
    let (cin, cout, k) = (ws[0], ws[1], ws[2]);
    if xs != [gh * gw, cin] || gh == 0 || gw == 0 {
        return Err(shape_err(OP, "input [gh·gw, Cin] (token-major)", &[gh * gw, cin], xs));
    }
    if b.shape() != [cout] {
        return Err(shape_err(OP, "bias", &[cout], b.shape()));
    }
    let want = [1, cout, k * gh, k * gw];
    if y.shape() != want {
        return Err(shape_err(OP, "output", &want, y.shape()));
    }
    same_dtype(OP, &[x, w, b, y])?;
    let gpu = rec.gpu();
    let dtype = x.dtype();
    let pipe = gpu.pipelines().get(&gpu.device, &DPT, "rearrange_ks", dtype, &[])?;
    let tokens = gh * gw;
    let taps = k * k;
    let plane = taps * tokens;
    // Channels per chunk: the scratch [tokens, nc·K·K] and the output window [nc, K·gh, K·gw] hold the same
    // count, bounded by the scratch budget and one binding.
    let per = items_per_binding(gpu, plane, dtype)?.min((MAX_SCRATCH / plane).max(1)).min(cout);
    let scratch = rec.scratch(&[per * plane], dtype)?;
    let mut o0 = 0;
    while o0 < cout {
        let nc = per.min(cout - o0);
        let g = Gemm {
            batch: 1,
            m: tokens,
            n: nc * taps,
            k: cin,
            x: Operand { t: x, offset: 0, ld: cin, sb: 0 },
            w: Operand { t: w, offset: o0 * taps, ld: cout * taps, sb: 0 },
            layout: WLayout::KN,
            bias: None,
            act: Epilogue::None,
            y: Operand { t: &scratch, offset: 0, ld: nc * taps, sb: 0 },
            accumulate: false,
        };
        record_gemm(rec, &g, None)?;
        let sw = scratch.window(gpu, 0, nc * plane)?;
        let yw = y.window(gpu, o0 * plane, nc * plane)?;
        let bw = b.window(gpu, o0, nc)?;
        let cnt = nc * plane;
        let prm = Params {
            n: cnt as u32,
            h: gh as u32,
            w: gw as u32,
            ho: (k * gh) as u32,
            wo: (k * gw) as u32,
            k: k as u32,
            nc: nc as u32,
            base_x: sw.base,
            base_y: yw.base,
            base_b: bw.base,
            ..Default::default()
        };
        let groups = grid(gpu, (cnt as u32).div_ceil(WG));
        rec.dispatch_bound(&pipe, bytemuck::bytes_of(&prm), vec![(1, sw), (2, yw), (3, bw)], groups)?;
        o0 += nc;
    }
    Ok(())
}

/// Float64 references.
pub mod reference {
    /// Bilinear, align_corners=True, `(planes, h, w)` → `(planes, ho, wo)`; the source coordinate is PyTorch's
    /// f32 value (`step · o` with the f32 [`super::ac_step`]), the interpolation in f64.
    pub fn bilinear_ac(x: &[f64], h: usize, w: usize, ho: usize, wo: usize) -> Vec<f64> {
        let axis = |n: usize, m: usize| -> Vec<(usize, usize, f64)> {
            let r = super::ac_step(n, m);
            (0..m)
                .map(|o| {
                    let s = (r * o as f32) as f64;
                    let i0 = (s.floor() as usize).min(n - 1);
                    let l = (s - i0 as f64).clamp(0.0, 1.0);
                    (i0, if i0 < n - 1 { i0 + 1 } else { i0 }, l)
                })
                .collect()
        };
        let (ay, ax) = (axis(h, ho), axis(w, wo));
        let mut y = Vec::with_capacity(x.len() / (h * w) * ho * wo);
        for p in x.chunks(h * w) {
            for &(y0, y1, ly) in &ay {
                for &(x0, x1, lx) in &ax {
                    let top = (1.0 - lx) * p[y0 * w + x0] + lx * p[y0 * w + x1];
                    let bot = (1.0 - lx) * p[y1 * w + x0] + lx * p[y1 * w + x1];
                    y.push((1.0 - ly) * top + ly * bot);
                }
            }
        }
        y
    }

    /// ConvTranspose2d with stride = kernel `k`: `x [gh·gw, cin]` token-major, `w [cin, cout, k, k]`, `b [cout]`
    /// → `[cout, k·gh, k·gw]`.
    pub fn conv_transpose_ks(x: &[f64], gh: usize, gw: usize, w: &[f64], b: &[f64], k: usize) -> Vec<f64> {
        let cout = b.len();
        let cin = x.len() / (gh * gw);
        let (ho, wo) = (k * gh, k * gw);
        let mut y = vec![0.0; cout * ho * wo];
        for o in 0..cout {
            for oy in 0..ho {
                for ox in 0..wo {
                    let (yy, i, xx, j) = (oy / k, oy % k, ox / k, ox % k);
                    let t = yy * gw + xx;
                    let mut s = b[o];
                    for c in 0..cin {
                        s += x[t * cin + c] * w[((c * cout + o) * k + i) * k + j];
                    }
                    y[(o * ho + oy) * wo + ox] = s;
                }
            }
        }
        y
    }
}

fn resize_bench(gpu: &Gpu, shape: &str, dtype: DType) -> Result<BenchCase> {
    let d = parse_shape("bilinear", shape, 4)?;
    let (c, h, w, f) = (d[0], d[1], d[2], d[3]);
    let (ho, wo) = (h * f, w * f);
    let x = Tensor::from_f32(gpu, &crate::bench::random_data(1, c * h * w), &[1, c, h, w], dtype)?;
    let y = Tensor::empty(gpu, &[1, c, ho, wo], dtype)?;
    let mut rec = Recorder::new(gpu);
    record_bilinear_ac(&mut rec, &x, &y)?;
    Ok(BenchCase {
        kernel: "bilinear",
        shape: shape.to_string(),
        dtype,
        flops: 0.0,
        bytes: (c * (h * w + ho * wo)) as f64 * dtype.size() as f64,
        recording: rec.finish(),
        keep: vec![x, y],
    })
}

fn convt_bench(gpu: &Gpu, shape: &str, dtype: DType) -> Result<BenchCase> {
    let d = parse_shape("conv_transpose", shape, 4)?;
    let (c, gh, gw, k) = (d[0], d[1], d[2], d[3]);
    let x = Tensor::from_f32(gpu, &crate::bench::random_data(1, gh * gw * c), &[gh * gw, c], dtype)?;
    let w = Tensor::from_f32(gpu, &crate::bench::random_data(2, c * c * k * k), &[c, c, k, k], dtype)?;
    let b = Tensor::from_f32(gpu, &crate::bench::random_data(3, c), &[c], dtype)?;
    let y = Tensor::empty(gpu, &[1, c, k * gh, k * gw], dtype)?;
    let mut rec = Recorder::new(gpu);
    record_conv_transpose_ks(&mut rec, &x, (gh, gw), &w, &b, &y)?;
    let outs = (c * k * k * gh * gw) as f64;
    Ok(BenchCase {
        kernel: "conv_transpose",
        shape: shape.to_string(),
        dtype,
        flops: 2.0 * outs * c as f64,
        bytes: (2.0 * outs + (gh * gw * c + c * c * k * k) as f64) * dtype.size() as f64,
        recording: rec.finish(),
        keep: vec![x, w, b, y],
    })
}

/// Benchmark: bilinear resize (align_corners=True).
pub const BENCH_BILINEAR: BenchEntry = BenchEntry {
    name: "bilinear",
    shape_help:
        "CxHxWxF: C planes of H×W scaled F× (e.g. 256x148x264x2 = vitl path_1, 128x296x528x2 ≈ its head)",
    default_shapes: &["256x148x264x2", "128x259x462x2"],
    demo_shape: "64x74x132x2",
    build: resize_bench,
};

/// Benchmark: ConvTranspose2d with stride = kernel.
pub const BENCH_CONV_TRANSPOSE: BenchEntry = BenchEntry {
    name: "conv_transpose",
    shape_help: "CxGHxGWxK: C→C channels over a GH×GW token grid, kernel = stride K (e.g. 256x37x66x4 = vitl resize 0)",
    default_shapes: &["256x37x66x4", "512x37x66x2"],
    demo_shape: "48x37x66x4",
    build: convt_bench,
};
