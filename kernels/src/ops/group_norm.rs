//! Group normalisation (`shaders/group_norm.wgsl`): launcher, float64 reference, benchmark case.
//!
//! Statistics per frame (spatial res-blocks) or across the F frames of each sample (SVD's temporal
//! res-blocks, where the reference permutes to (B, C, F, H, W)); the tensor stays in the (B·F, C, H, W) layout.
//!
//! Every tier runs the same kernels: every (row, group) segment is split into chunks of 16 loads per invocation,
//! one workgroup each, with shifted two-pass chunk statistics, a workgroup-wide Chan merge per (sample, group) and
//! a vec4 apply pass where H·W and the windows allow (`*_wg`, `group_norm_vec4.wgsl`'s `*_wg4`). The former
//! one-workgroup-per-segment statistics were slower on lavapipe too (BENCHMARKS.md), so there is no sg8 variant.

use crate::bench::{parse_shape, BenchCase, BenchEntry};
use crate::dispatch::{grid, Recorder};
use crate::dtype::DType;
use crate::error::{invalid, shape_err, KernelError, Result};
use crate::gpu::Gpu;
use crate::params::ParamsLayout;
use crate::shaders::{GROUP_NORM, GROUP_NORM_VEC4};
use crate::tensor::{items_per_binding, numel, Tensor};
use bytemuck::{Pod, Zeroable};

const OP: &str = "group norm";

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    n: u32,
    seg_len: u32,
    groups: u32,
    channels: u32,
    hw: u32,
    frames: u32,
    base_x: u32,
    base_y: u32,
    first: u32,
    silu: u32,
    eps: f32,
    splits: u32,
    chunk: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

/// Layout of the uniform `Params` of `group_norm.wgsl` and `group_norm_vec4.wgsl`.
pub const PARAMS_LAYOUT: ParamsLayout = crate::params_layout!(Params {
    n,
    seg_len,
    groups,
    channels,
    hw,
    frames,
    base_x,
    base_y,
    first,
    silu,
    eps,
    splits,
    chunk,
    _pad0,
    _pad1,
    _pad2
});

/// Loads per invocation in one statistics chunk (a chunk is `16 · WG` elements: a short serial
/// sum per invocation, then the workgroup tree; the chunk stays in cache for its second pass).
const CHUNK_LOADS: usize = 16;

/// Which elements share one mean and variance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupStats {
    /// Each row (frame) on its own: statistics over C/G × H × W.
    PerFrame,
    /// The `frames` consecutive rows of one sample together: statistics over C/G × F × H × W.
    AcrossFrames(usize),
}

/// Settings of one group norm.
#[derive(Clone, Copy, Debug)]
pub struct GroupNormOpts {
    /// Number of groups (32 in SVD).
    pub groups: usize,
    /// Added to the variance.
    pub eps: f32,
    /// Statistics per frame or across frames.
    pub stats: GroupStats,
    /// Apply SiLU after the affine transform.
    pub silu: bool,
}

/// Records `y = GroupNorm(x)·γ + β` (optionally SiLU): `x, y [rows, C, *spatial]`, `gamma, beta [C]`.
pub fn record(
    rec: &mut Recorder,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    o: GroupNormOpts,
    y: &Tensor,
) -> Result<()> {
    let xs = x.shape();
    if xs.len() < 2 {
        return Err(shape_err(OP, "input [rows, C, ...]", &[0, 0], xs));
    }
    let (rows, c) = (xs[0], xs[1]);
    let hw = numel(&xs[2..]);
    if o.groups == 0 || c % o.groups != 0 {
        return Err(invalid(OP, format!("{c} channels do not split into {} groups", o.groups)));
    }
    for (t, what) in [(gamma, "gamma"), (beta, "beta")] {
        if t.shape() != [c] {
            return Err(shape_err(OP, what, &[c], t.shape()));
        }
    }
    if y.shape() != xs {
        return Err(shape_err(OP, "output", xs, y.shape()));
    }
    let dtype = x.dtype();
    if [gamma, beta, y].iter().any(|t| t.dtype() != dtype) {
        return Err(KernelError::DType {
            op: OP,
            found: dtype.to_string(),
            why: "x, gamma, beta, y must share a dtype".into(),
        });
    }
    let frames = match o.stats {
        GroupStats::PerFrame => 1,
        GroupStats::AcrossFrames(f) => f,
    };
    if frames == 0 || rows % frames != 0 {
        return Err(invalid(OP, format!("{rows} rows are not a whole number of samples of {frames} frames")));
    }
    if rows == 0 || hw == 0 {
        return Ok(());
    }
    record_wg(rec, x, gamma, beta, o.silu, o.eps, (rows, c, hw, o.groups, frames), y)
}

/// The recording: chunk statistics, per-(sample, group) merge, apply (see the module doc).
#[allow(clippy::too_many_arguments)]
fn record_wg(
    rec: &mut Recorder,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    silu: bool,
    eps: f32,
    (rows, c, hw, g, frames): (usize, usize, usize, usize, usize),
    y: &Tensor,
) -> Result<()> {
    let gpu = rec.gpu();
    let dtype = x.dtype();
    let seg_len = c / g * hw;
    let segs = rows * g;
    let samples = rows / frames;
    let wg = crate::ops::rows::row_workgroup(gpu, 512);
    let chunk = wg as usize * CHUNK_LOADS;
    let splits = seg_len.div_ceil(chunk);
    let part = rec.scratch(&[segs * splits * 4], DType::F32)?;
    let stats = rec.scratch(&[samples * g * 4], DType::F32)?;
    let base = Params {
        seg_len: seg_len as u32,
        groups: g as u32,
        channels: c as u32,
        hw: hw as u32,
        frames: frames as u32,
        silu: silu as u32,
        eps,
        splits: splits as u32,
        chunk: chunk as u32,
        ..Default::default()
    };
    let o = [("WG", wg as f64)];
    let get = |shader, entry| gpu.pipelines().get(&gpu.device, shader, entry, dtype, &o);
    // Pipelines are fetched where a dispatch picks them (the cache makes that a lookup), so a variant no window
    // uses is never compiled.
    let p_fin = get(&GROUP_NORM, "gn_finalize_wg")?;
    // 1. Chunk statistics, as many whole segments per dispatch as one binding holds.
    let per = items_per_binding(gpu, seg_len, dtype)?;
    let mut s0 = 0;
    while s0 < segs {
        let ns = per.min(segs - s0);
        let xw = x.window(gpu, s0 * seg_len, ns * seg_len)?;
        let prm = Params { n: (ns * splits) as u32, base_x: xw.base, first: (s0 * splits) as u32, ..base };
        let pipe = if seg_len % 4 == 0 && xw.base % 4 == 0 {
            get(&GROUP_NORM_VEC4, "gn_stats_wg4")?
        } else {
            get(&GROUP_NORM, "gn_stats_wg")?
        };
        let groups = grid(gpu, (ns * splits) as u32);
        rec.dispatch_bound(&pipe, bytemuck::bytes_of(&prm), vec![(1, xw), (2, part.whole(gpu)?)], groups)?;
        s0 += ns;
    }
    // 2. One workgroup per (sample, group) merges its chunks.
    let prm = Params { n: (samples * g) as u32, ..base };
    let bound = vec![(2, part.whole(gpu)?), (3, stats.whole(gpu)?)];
    rec.dispatch_bound(&p_fin, bytemuck::bytes_of(&prm), bound, grid(gpu, (samples * g) as u32))?;
    // 3. Normalise by element windows (multiples of 4, so every window start stays on the vec4 path).
    let n = x.numel();
    let step = (items_per_binding(gpu, 1, dtype)? / 4 * 4).max(4);
    let mut e0 = 0;
    while e0 < n {
        let len = step.min(n - e0);
        let (xw, yw) = (x.window(gpu, e0, len)?, y.window(gpu, e0, len)?);
        let prm = Params { n: len as u32, base_x: xw.base, base_y: yw.base, first: e0 as u32, ..base };
        let aligned = len % 4 == 0 && xw.base % 4 == 0 && yw.base % 4 == 0;
        let (pipe, items) = if hw % 4 == 0 && aligned {
            (get(&GROUP_NORM_VEC4, "gn_apply_wg4")?, len / 4)
        } else {
            (get(&GROUP_NORM, "gn_apply_wg")?, len)
        };
        let bound =
            vec![(1, xw), (4, stats.whole(gpu)?), (5, gamma.whole(gpu)?), (6, beta.whole(gpu)?), (7, yw)];
        rec.dispatch_bound(&pipe, bytemuck::bytes_of(&prm), bound, grid(gpu, (items as u32).div_ceil(wg)))?;
        e0 += len;
    }
    Ok(())
}

/// Group norm into a new tensor, run now.
pub fn group_norm(gpu: &Gpu, x: &Tensor, gamma: &Tensor, beta: &Tensor, o: GroupNormOpts) -> Result<Tensor> {
    let y = Tensor::empty(gpu, x.shape(), x.dtype())?;
    let mut rec = Recorder::new(gpu);
    record(&mut rec, x, gamma, beta, o, &y)?;
    rec.run()?;
    Ok(y)
}

/// Float64 reference.
pub mod reference {
    use super::{GroupNormOpts, GroupStats};

    /// Group norm of `x [rows, c, hw]`.
    pub fn group_norm(
        x: &[f64],
        gamma: &[f64],
        beta: &[f64],
        rows: usize,
        c: usize,
        hw: usize,
        o: GroupNormOpts,
    ) -> Vec<f64> {
        let frames = match o.stats {
            GroupStats::PerFrame => 1,
            GroupStats::AcrossFrames(f) => f,
        };
        let cg = c / o.groups;
        let mut y = vec![0.0; x.len()];
        for s in 0..rows / frames {
            for g in 0..o.groups {
                let idx = |f: usize, ci: usize, p: usize| (((s * frames + f) * c) + g * cg + ci) * hw + p;
                let mut sum = 0.0;
                for f in 0..frames {
                    for ci in 0..cg {
                        for p in 0..hw {
                            sum += x[idx(f, ci, p)];
                        }
                    }
                }
                let cnt = (frames * cg * hw) as f64;
                let mean = sum / cnt;
                let mut var = 0.0;
                for f in 0..frames {
                    for ci in 0..cg {
                        for p in 0..hw {
                            var += (x[idx(f, ci, p)] - mean).powi(2);
                        }
                    }
                }
                let rstd = 1.0 / (var / cnt + o.eps as f64).sqrt();
                for f in 0..frames {
                    for ci in 0..cg {
                        let ch = g * cg + ci;
                        for p in 0..hw {
                            let i = idx(f, ci, p);
                            let v = (x[i] - mean) * rstd * gamma[ch] + beta[ch];
                            y[i] = if o.silu { v / (1.0 + (-v).exp()) } else { v };
                        }
                    }
                }
            }
        }
        y
    }
}

fn bench_build(gpu: &Gpu, shape: &str, dtype: DType) -> Result<BenchCase> {
    let d = parse_shape("group-norm", shape, 0)?;
    if d.len() != 4 && d.len() != 5 {
        return Err(invalid("group-norm", "shape is ROWSxCxHxW (per frame) or BxFxCxHxW (across frames)"));
    }
    let (rows, c, h, w, stats) = if d.len() == 5 {
        (d[0] * d[1], d[2], d[3], d[4], GroupStats::AcrossFrames(d[1]))
    } else {
        (d[0], d[1], d[2], d[3], GroupStats::PerFrame)
    };
    let n = rows * c * h * w;
    let x = Tensor::from_f32(gpu, &crate::bench::random_data(1, n), &[rows, c, h, w], dtype)?;
    let ga = Tensor::from_f32(gpu, &crate::bench::random_data(2, c), &[c], dtype)?;
    let be = Tensor::from_f32(gpu, &crate::bench::random_data(3, c), &[c], dtype)?;
    let y = Tensor::empty(gpu, &[rows, c, h, w], dtype)?;
    let mut rec = Recorder::new(gpu);
    record(&mut rec, &x, &ga, &be, GroupNormOpts { groups: 32, eps: 1e-6, stats, silu: true }, &y)?;
    Ok(BenchCase {
        kernel: "group-norm",
        shape: shape.to_string(),
        dtype,
        flops: 8.0 * n as f64,
        // Statistics read x twice, the apply pass reads it once and writes y.
        bytes: 4.0 * n as f64 * dtype.size() as f64,
        recording: rec.finish(),
        keep: vec![x, ga, be, y],
    })
}

/// Benchmark: group norm (32 groups) + SiLU.
pub const BENCH: BenchEntry = BenchEntry {
    name: "group-norm",
    shape_help: "ROWSxCxHxW (statistics per frame) or BxFxCxHxW (statistics across the F frames)",
    default_shapes: &["50x320x72x128", "2x25x320x72x128", "4x128x576x1024"],
    demo_shape: "14x320x72x128",
    build: bench_build,
};
