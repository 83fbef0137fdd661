//! Trajectory attention (spec trajectory-attention.md): input checks and the float64 references — a literal
//! port of the released processor (§5) and the efficient formulation of §8 (dense projections, gathered rows,
//! head outputs averaged onto the grid before the output projection). The GPU kernels are checked against these.

use crate::dispatch::{grid, Recorder};
use crate::dtype::DType;
use crate::error::{invalid, Result};
use crate::gpu::Gpu;
use crate::ops::matmul::{self, Epilogue, WLayout};
use crate::ops::temporal_attention::{ShortPlan, MAX_HEAD_DIM_GPU};
use crate::select::Tier;
use crate::shaders::{TRAJECTORY_ATTENTION, TRAJECTORY_ATTENTION_GPU, TRAJECTORY_ATTENTION_SG8};
use crate::tensor::{items_per_binding, Tensor};
use bytemuck::{Pod, Zeroable};

/// How sampled tokens are grouped into attention sequences.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grouping {
    /// The released torch-2 processor: the flat `(B, M, F)` token stream cut into `B·S` sequences of
    /// `L = M·F/S` tokens (pairs of trajectories at the standard sizes). Faithful default.
    Pairs,
    /// The paper's attention along each trajectory: `L = F`.
    PerTrajectory,
}

/// Everything one processor call sees (float64 reference form).
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    /// Normalised temporal sequences `(B·S, F, C)`, row `b·S + y·w + x`.
    pub hidden: &'a [f64],
    /// Batch (2 with classifier-free guidance).
    pub b: usize,
    /// Latent height at this level.
    pub h: usize,
    /// Latent width at this level.
    pub w: usize,
    /// Frames.
    pub f: usize,
    /// Channels.
    pub c: usize,
    /// Heads (`C / 64` in SVD).
    pub heads: usize,
    /// Trajectories `(F, N, 2)` in pixels of the `origin_w × origin_h` frame (x, y).
    pub traj: &'a [f64],
    /// Visibility `(F, N)`.
    pub mask: &'a [bool],
    /// Trajectories in the file.
    pub n: usize,
    /// Width of the frame the trajectories were made for (1024).
    pub origin_w: usize,
    /// Height of that frame (576).
    pub origin_h: usize,
    /// This call's sampled trajectory indices (`randperm(N)[:M_req]`).
    pub idx: &'a [usize],
    /// Grouping of the attention sequences.
    pub grouping: Grouping,
}

/// The branch's weights, PyTorch layout `[out, in]`.
#[derive(Clone, Copy, Debug)]
pub struct Weights<'a> {
    pub wq: &'a [f64],
    pub wk: &'a [f64],
    pub wv: &'a [f64],
    pub wo: &'a [f64],
    pub bo: &'a [f64],
}

const OP: &str = "trajectory attention";

/// Trajectories sampled per call: `8·⌊h·w/4⌋`, or all `n` if fewer (spec §5.2).
pub fn samples_per_call(n: usize, h: usize, w: usize) -> usize {
    (8 * (h * w / 4)).min(n)
}

/// Checks a call; returns the sequence length `L`. Errors say what is required (spec §7.7, §11).
pub fn check(call: &Call) -> Result<usize> {
    let Call { b, h, w, f, c, .. } = *call;
    if call.hidden.len() != b * h * w * f * c {
        return Err(invalid(
            OP,
            format!(
                "hidden states have {} values, expected B·S·F·C = {}",
                call.hidden.len(),
                b * h * w * f * c
            ),
        ));
    }
    check_tables(call)
}

/// [`check`] without the hidden states (what building the index tables needs).
pub fn check_tables(call: &Call) -> Result<usize> {
    let Call { b, h, w, f, c, heads, n, .. } = *call;
    let s = h * w;
    if b == 0 || s == 0 || f == 0 || c == 0 || heads == 0 || !c.is_multiple_of(heads) {
        return Err(invalid(OP, format!("bad geometry: B {b}, {h}×{w}, F {f}, C {c}, heads {heads}")));
    }
    if call.traj.len() != f * n * 2 {
        return Err(invalid(
            OP,
            format!("trajectories have {} values, expected F·N·2 = {}", call.traj.len(), f * n * 2),
        ));
    }
    if call.mask.len() != f * n {
        return Err(invalid(
            OP,
            format!("visibility mask has {} entries, expected F·N = {}", call.mask.len(), f * n),
        ));
    }
    if let Some(i) = call.traj.iter().position(|v| !v.is_finite()) {
        return Err(invalid(
            OP,
            format!(
                "trajectory {} in frame {} has a non-finite coordinate",
                i / 2 % n.max(1),
                i / 2 / n.max(1)
            ),
        ));
    }
    if call.origin_w == 0 || call.origin_h == 0 {
        return Err(invalid(OP, "origin size must be positive"));
    }
    if let Some(&bad) = call.idx.iter().find(|&&i| i >= n) {
        return Err(invalid(OP, format!("sampled index {bad} is out of range for {n} trajectories")));
    }
    let m = call.idx.len();
    if m == 0 {
        return Err(invalid(OP, "no trajectories sampled"));
    }
    sequence_length(call.grouping, m, f, h, w)
}

/// Attention sequence length `L` of a call sampling `m` trajectories over `f` frames at latent `h × w`; in the
/// paired grouping an error where the reference would fail (spec §7.7), saying what would work.
pub fn sequence_length(grouping: Grouping, m: usize, f: usize, h: usize, w: usize) -> Result<usize> {
    let s = h * w;
    match grouping {
        Grouping::PerTrajectory => Ok(f),
        Grouping::Pairs => {
            if s == 0 || !(m * f).is_multiple_of(s) {
                return Err(invalid(
                    OP,
                    format!(
                        "at latent {h}×{w} the paired grouping cuts {m}·{f} sampled tokens into {s} sequences, which does \
                         not divide (the reference would fail here): use at least 2·{h}·{w} = {} trajectories at the finest \
                         level's size, a count N with N·F divisible by h·w at every level, or per-trajectory grouping",
                        2 * s
                    ),
                ));
            }
            Ok(m * f / s)
        }
    }
}

/// Float64 references.
pub mod reference {
    use super::{check, Call, Weights};
    use crate::error::Result;

    /// `y[r, :] = x[r, :] · Wᵀ` for rows of width `c`.
    fn project(x: &[f64], wt: &[f64], c: usize) -> Vec<f64> {
        let mut y = vec![0.0; x.len()];
        for (yr, xr) in y.chunks_mut(c).zip(x.chunks(c)) {
            for (o, yv) in yr.iter_mut().enumerate() {
                *yv = (0..c).map(|i| xr[i] * wt[o * c + i]).sum();
            }
        }
        y
    }

    /// Attention within consecutive sequences of `l` tokens (rows of width `c`, `heads` heads, scale 1/√d).
    fn attend(q: &[f64], k: &[f64], v: &[f64], l: usize, c: usize, heads: usize) -> Vec<f64> {
        let d = c / heads;
        let scale = 1.0 / (d as f64).sqrt();
        let mut out = vec![0.0; q.len()];
        for s0 in (0..q.len() / c).step_by(l) {
            for hd in 0..heads {
                for i in 0..l {
                    let qi = &q[(s0 + i) * c + hd * d..(s0 + i) * c + hd * d + d];
                    let logits: Vec<f64> = (0..l)
                        .map(|j| {
                            qi.iter().zip(&k[(s0 + j) * c + hd * d..]).map(|(a, b)| a * b).sum::<f64>()
                                * scale
                        })
                        .collect();
                    let mx = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = logits.iter().map(|x| (x - mx).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for (j, ej) in e.iter().enumerate() {
                        for t in 0..d {
                            out[(s0 + i) * c + hd * d + t] += ej / sum * v[(s0 + j) * c + hd * d + t];
                        }
                    }
                }
            }
        }
        out
    }

    /// Clamped integer cells `(F, M)` of the sampled trajectories at this level, and their visibility.
    pub fn cells(call: &Call) -> (Vec<(usize, usize)>, Vec<bool>) {
        let (f, n, m) = (call.f, call.n, call.idx.len());
        let (sx, sy) = (call.w as f64 / call.origin_w as f64, call.h as f64 / call.origin_h as f64);
        let mut cell = Vec::with_capacity(f * m);
        let mut valid = Vec::with_capacity(f * m);
        for fr in 0..f {
            for &i in call.idx {
                let (x, y) = (call.traj[2 * (fr * n + i)] * sx, call.traj[2 * (fr * n + i) + 1] * sy);
                let xi = (x.trunc() as i64).clamp(0, call.w as i64 - 1) as usize;
                let yi = (y.trunc() as i64).clamp(0, call.h as i64 - 1) as usize;
                cell.push((yi, xi));
                valid.push(call.mask[fr * n + i]);
            }
        }
        (cell, valid)
    }

    /// The released processor, step by step (spec §5): gather, project, attend, out-project, scatter-mean.
    /// Returns `(B·S, F, C)`.
    pub fn literal(call: &Call, wts: &Weights) -> Result<Vec<f64>> {
        let l = check(call)?;
        let Call { b, h, w, f, c, .. } = *call;
        let (s, m) = (h * w, call.idx.len());
        let (cell, valid) = cells(call);
        // G (B, M, F, C), invalid tokens zero.
        let mut g = vec![0.0; b * m * f * c];
        for bi in 0..b {
            for mi in 0..m {
                for fr in 0..f {
                    if !valid[fr * m + mi] {
                        continue;
                    }
                    let (yi, xi) = cell[fr * m + mi];
                    let src = ((bi * s + yi * w + xi) * f + fr) * c;
                    let dst = ((bi * m + mi) * f + fr) * c;
                    g[dst..dst + c].copy_from_slice(&call.hidden[src..src + c]);
                }
            }
        }
        let (q, k, v) = (project(&g, wts.wq, c), project(&g, wts.wk, c), project(&g, wts.wv, c));
        let a = attend(&q, &k, &v, l, c, call.heads);
        let mut o = project(&a, wts.wo, c);
        for row in o.chunks_mut(c) {
            for (x, bias) in row.iter_mut().zip(wts.bo) {
                *x += bias;
            }
        }
        let mut acc = vec![0.0; b * f * s * c];
        let mut cnt = vec![0.0; b * f * s];
        for bi in 0..b {
            for fr in 0..f {
                for mi in 0..m {
                    if !valid[fr * m + mi] {
                        continue;
                    }
                    let (yi, xi) = cell[fr * m + mi];
                    let cidx = (bi * f + fr) * s + yi * w + xi;
                    cnt[cidx] += 1.0;
                    let src = ((bi * m + mi) * f + fr) * c;
                    for t in 0..c {
                        acc[cidx * c + t] += o[src + t];
                    }
                }
            }
        }
        let mut out = vec![0.0; b * s * f * c];
        for bi in 0..b {
            for fr in 0..f {
                for p in 0..s {
                    let cidx = (bi * f + fr) * s + p;
                    if cnt[cidx] > 0.0 {
                        for t in 0..c {
                            out[((bi * s + p) * f + fr) * c + t] = acc[cidx * c + t] / cnt[cidx];
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// The efficient formulation (spec §8): dense Q/K/V of every grid token, rows gathered per sample (zero if
    /// invisible), head outputs averaged onto the grid through a per-cell list of hits in increasing sample order,
    /// then one output projection per reached cell. Equal to [`literal`] in exact arithmetic.
    pub fn efficient(call: &Call, wts: &Weights) -> Result<Vec<f64>> {
        let l = check(call)?;
        let Call { b, h, w, f, c, .. } = *call;
        let (s, m) = (h * w, call.idx.len());
        let (cell, valid) = cells(call);
        let (qd, kd, vd) = (
            project(call.hidden, wts.wq, c),
            project(call.hidden, wts.wk, c),
            project(call.hidden, wts.wv, c),
        );
        let gather = |dense: &[f64]| {
            let mut g = vec![0.0; b * m * f * c];
            for bi in 0..b {
                for mi in 0..m {
                    for fr in 0..f {
                        if valid[fr * m + mi] {
                            let (yi, xi) = cell[fr * m + mi];
                            let src = ((bi * s + yi * w + xi) * f + fr) * c;
                            let dst = ((bi * m + mi) * f + fr) * c;
                            g[dst..dst + c].copy_from_slice(&dense[src..src + c]);
                        }
                    }
                }
            }
            g
        };
        let a = attend(&gather(&qd), &gather(&kd), &gather(&vd), l, c, call.heads);
        // Inverse map: for each (f, cell), the samples that land there, in increasing m.
        let mut hits: Vec<Vec<usize>> = vec![Vec::new(); f * s];
        for fr in 0..f {
            for mi in 0..m {
                if valid[fr * m + mi] {
                    let (yi, xi) = cell[fr * m + mi];
                    hits[fr * s + yi * w + xi].push(mi);
                }
            }
        }
        let mut out = vec![0.0; b * s * f * c];
        let mut mean = vec![0.0; c];
        for bi in 0..b {
            for fr in 0..f {
                for p in 0..s {
                    let list = &hits[fr * s + p];
                    if list.is_empty() {
                        continue;
                    }
                    mean.iter_mut().for_each(|x| *x = 0.0);
                    for &mi in list {
                        let src = ((bi * m + mi) * f + fr) * c;
                        for t in 0..c {
                            mean[t] += a[src + t];
                        }
                    }
                    let dst = ((bi * s + p) * f + fr) * c;
                    for o in 0..c {
                        let dotv: f64 = (0..c).map(|i| mean[i] / list.len() as f64 * wts.wo[o * c + i]).sum();
                        out[dst + o] = dotv + wts.bo[o];
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Host-built index tables of one call, for the GPU kernels.
#[derive(Clone, Debug)]
pub struct Tables {
    /// For token `t = m·F + f` of a batch element: its grid row `cell·F + f`, or `u32::MAX` if invisible.
    pub table: Vec<u32>,
    /// CSR offsets over `(f, cell)`: `F·S + 1` entries.
    pub offsets: Vec<u32>,
    /// Sample index `m` of every hit, grouped by `(f, cell)`, increasing `m` inside a group.
    pub hits: Vec<u32>,
    /// Sequence length `L`.
    pub seq_len: usize,
    /// Sampled trajectories `M`.
    pub m: usize,
}

/// Builds the token table and the inverse (CSR) map of a call, deterministically.
pub fn tables(call: &Call) -> Result<Tables> {
    let seq_len = check_tables(call)?;
    let (f, s, m) = (call.f, call.h * call.w, call.idx.len());
    let (cell, valid) = reference::cells(call);
    let mut table = vec![u32::MAX; m * f];
    let mut counts = vec![0u32; f * s + 1];
    for fr in 0..f {
        for mi in 0..m {
            if valid[fr * m + mi] {
                let (yi, xi) = cell[fr * m + mi];
                let p = yi * call.w + xi;
                table[mi * f + fr] = (p * f + fr) as u32;
                counts[fr * s + p + 1] += 1;
            }
        }
    }
    let mut offsets = counts;
    for i in 1..offsets.len() {
        offsets[i] += offsets[i - 1];
    }
    let mut fill = offsets.clone();
    let mut hits = vec![0u32; offsets[f * s] as usize];
    for fr in 0..f {
        for mi in 0..m {
            if valid[fr * m + mi] {
                let (yi, xi) = cell[fr * m + mi];
                let k = fr * s + yi * call.w + xi;
                hits[fill[k] as usize] = mi as u32;
                fill[k] += 1;
            }
        }
    }
    Ok(Tables { table, offsets, hits, seq_len, m })
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    seq_len: u32,
    tokens: u32,
    rows_per_b: u32,
    d: u32,
    ld: u32,
    c_att: u32,
    width: u32,
    ld_out: u32,
    col_out: u32,
    frames: u32,
    cells: u32,
    n_rows: u32,
    row0: u32,
    b0: u32,
    rows_bound: u32,
    scale: f32,
    base_q: u32,
    base_k: u32,
    base_v: u32,
    base_in: u32,
    base_out: u32,
    _pad: [u32; 3],
}

/// Layout of the uniform `Params` of `trajectory_attention.wgsl` and `trajectory_attention_sg8.wgsl`.
pub const PARAMS_LAYOUT: crate::params::ParamsLayout = crate::params_layout!(Params {
    seq_len,
    tokens,
    rows_per_b,
    d,
    ld,
    c_att,
    width,
    ld_out,
    col_out,
    frames,
    cells,
    n_rows,
    row0,
    b0,
    rows_bound,
    scale,
    base_q,
    base_k,
    base_v,
    base_in,
    base_out,
    _pad
});

/// A recorded run of the branch: the dispatches, the output tensor and everything they bind.
pub struct Prepared {
    /// The dispatches of one call (per head: Q/K/V projection → attention → CSR mean; then out-projection → bias).
    pub recording: crate::dispatch::Recording,
    /// `(B·S·F, C)` output rows `(b·S + cell)·F + f`.
    pub out: Tensor,
    /// Inputs, tables and intermediates the recording binds.
    pub keep: Vec<Tensor>,
}

/// Sizes of one recorded branch call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub b: usize,
    pub h: usize,
    pub w: usize,
    pub f: usize,
    pub c: usize,
    pub heads: usize,
    /// Sampled trajectories per call.
    pub m: usize,
    /// Attention sequence length (from [`check`]).
    pub seq_len: usize,
}

impl Geometry {
    /// Grid rows `B·S·F`.
    pub fn rows(&self) -> usize {
        self.b * self.h * self.w * self.f
    }
    /// Gathered tokens `B·M·F`.
    pub fn tokens(&self) -> usize {
        self.b * self.m * self.f
    }
    /// Head dimension `C / heads` (0 for a bad geometry; [`record_heads`] checks it).
    pub fn head_dim(&self) -> usize {
        self.c.checked_div(self.heads).unwrap_or(0)
    }
    /// Heads projected and attended together ([`record_heads`]): the largest divisor `k` of `heads` whose
    /// per-batch-element operands — the Q, K or V rows `(S·F, k·d)` and the attention rows `(M·F, k·d)` — each
    /// fit `min(max_binding, GROUP_BINDING_BUDGET)` bytes in a dtype of `elem` bytes, and whose scratch
    /// `(3·B·S·F + B·M·F) × k·d` is no larger than the means `(B·S·F, C)` (so the branch's transient memory stays
    /// within twice the means); 1 if none is. Wider groups make wider, faster GEMMs. A function of the shapes and
    /// the budget only, so the memory plan can mirror it.
    pub fn heads_per_group(&self, elem: u64, max_binding: u64) -> usize {
        let budget = max_binding.min(GROUP_BINDING_BUDGET);
        let d = self.head_dim();
        let per_b = (self.h * self.w * self.f).max(self.m * self.f) as u64;
        let scratch_rows = 3 * self.rows() + self.tokens();
        (1..=self.heads.max(1))
            .rev()
            .find(|&k| {
                self.heads.is_multiple_of(k)
                    && per_b * (k * d) as u64 * elem + 1024 <= budget
                    && scratch_rows * k * d <= self.rows() * self.c
            })
            .unwrap_or(1)
    }
    /// Shape of the Q/K/V scratch of a group of `group` heads: three `(B·S·F, group·d)` blocks, Q then K then V.
    pub fn qkv_scratch_shape(&self, group: usize) -> [usize; 2] {
        [3 * self.rows(), group * self.head_dim()]
    }
    /// Shape of the attention scratch of a group of `group` heads, `(B·M·F, group·d)`.
    pub fn att_scratch_shape(&self, group: usize) -> [usize; 2] {
        [self.tokens(), group * self.head_dim()]
    }
    /// Bytes a dense all-heads fused Q/K/V projection `(B·S·F, 3C)` would take (what the branch no longer binds).
    pub fn dense_qkv_bytes(&self, dtype: DType) -> u64 {
        (self.rows() * 3 * self.c) as u64 * dtype.size()
    }
}

/// The binding size [`Geometry::heads_per_group`] plans head groups for at most (128 MiB, WebGPU's default and
/// lavapipe's limit): on larger adapters the groups, hence the memory plan, stay the same.
pub const GROUP_BINDING_BUDGET: u64 = 128 << 20;

/// Device operands of [`record_efficient`]: the branch input, weights, the call's tables and scratch.
pub struct Operands<'a> {
    /// Normalised temporal sequences `(B·S·F, C)`, rows `(b·S + cell)·F + f`.
    pub hidden: &'a Tensor,
    /// Fused `[3C, C]` Q/K/V weight (Q rows first).
    pub wqkv: &'a Tensor,
    /// `to_out.0` weight `[C, C]` and bias `[C]`.
    pub wo: &'a Tensor,
    pub bo: &'a Tensor,
    /// [`Tables::table`] (`M·F` u32), [`Tables::offsets`] (`F·S + 1`), [`Tables::hits`] (capacity ≥ 1).
    pub table: &'a Tensor,
    pub offsets: &'a Tensor,
    pub hits: &'a Tensor,
    /// Scratch of a head group, reused group after group: [`Geometry::qkv_scratch_shape`] `(3·B·S·F, group·d)`
    /// and [`Geometry::att_scratch_shape`] `(B·M·F, group·d)` (their width sets the group); the head means
    /// `abar (B·S·F, C)`.
    pub qkv: &'a Tensor,
    pub att: &'a Tensor,
    pub abar: &'a Tensor,
    /// Output `(B·S·F, C)`: the branch's contribution (0 on unreached rows).
    pub out: &'a Tensor,
}

/// Records the branch, efficient formulation: per head, the head's Q/K/V projection of the dense grid, the
/// gathered attention and the CSR mean into the head's columns of `abar`; then the output projection and the
/// bias on reached rows. The tables may be rewritten between replays (same `m`). Every binding fits
/// [`Gpu::max_binding`]: operands are bound through windows, split by rows where needed (see [`record_heads`]).
pub fn record_efficient(rec: &mut Recorder, g: &Geometry, o: &Operands) -> Result<()> {
    record_heads(rec, g, o.hidden, o.wqkv, o.table, o.offsets, o.hits, o.qkv, o.att, o.abar)?;
    record_output(rec, g, o.abar, o.offsets, o.wo, o.bo, o.out)
}

fn check_geometry(g: &Geometry) -> Result<usize> {
    let Geometry { b, f, c, heads, m, seq_len, .. } = *g;
    if heads == 0
        || c == 0
        || !c.is_multiple_of(heads)
        || seq_len == 0
        || m == 0
        || b * g.h * g.w == 0
        || f == 0
        || !(m * f).is_multiple_of(seq_len)
    {
        return Err(invalid(OP, format!("bad geometry {g:?}")));
    }
    let d = c / heads;
    if d > MAX_HEAD_DIM_GPU {
        return Err(invalid(OP, format!("head dim {d} exceeds the kernels' {MAX_HEAD_DIM_GPU}")));
    }
    // Kernel indices are u32: every operand's element count must fit (Tensor::empty enforces it for the
    // buffers; this covers the index arithmetic over rows).
    if g.rows().max(g.tokens()).checked_mul(3 * c).is_none_or(|n| n > u32::MAX as usize) {
        return Err(invalid(OP, format!("geometry {g:?} exceeds the kernels' u32 indexing")));
    }
    Ok(d)
}

fn check_shapes(list: &[(&str, &Tensor, Vec<usize>)]) -> Result<()> {
    for (name, t, want) in list {
        if t.shape() != want.as_slice() {
            return Err(crate::error::shape_err(OP, name.to_string(), want, t.shape()));
        }
    }
    Ok(())
}

/// The gathered attention's pipeline (all three bind the same slots and take the same grid: one workgroup per
/// (sequence, head)):
/// - lavapipe tier: `traj_attend_sg8` (K/V rows shared by subgroup broadcast) for head dims that are multiples of
///   32 up to 128, `traj_attend` for other head dims up to 128;
/// - GPU tier (and head dims above 128 on any tier): `traj_attend_gpu` (sequence staged in workgroup memory,
///   constants from [`ShortPlan`]), or `traj_attend` where the adapter's workgroup limits cannot hold its plan.
fn attend_pipeline(
    gpu: &Gpu,
    dtype: DType,
    d: usize,
    seq_len: usize,
) -> Result<std::sync::Arc<crate::pipelines::Pipeline>> {
    let plan = ShortPlan::new(gpu, seq_len, d);
    match plan {
        Some(plan) if gpu.tier == Tier::Gpu || d > 128 => {
            gpu.pipelines().get(&gpu.device, &TRAJECTORY_ATTENTION_GPU, "traj_attend_gpu", dtype, &plan.constants())
        }
        _ if d > 128 => Err(invalid(
            OP,
            format!(
                "head dim {d} above 128 needs the workgroup-memory kernel, which does not fit this adapter for \
                 sequences of {seq_len}"
            ),
        )),
        _ if gpu.subgroup8() && d.is_multiple_of(32) => {
            let o = [("D", d as f64)];
            gpu.pipelines().get(&gpu.device, &TRAJECTORY_ATTENTION_SG8, "traj_attend_sg8", dtype, &o)
        }
        _ => gpu.pipelines().get(&gpu.device, &TRAJECTORY_ATTENTION, "traj_attend", dtype, &[]),
    }
}

fn base_params(g: &Geometry, d: usize) -> Params {
    let Geometry { h, w, f, m, seq_len, .. } = *g;
    Params {
        seq_len: seq_len as u32,
        tokens: (m * f) as u32,
        rows_per_b: (h * w * f) as u32,
        d: d as u32,
        frames: f as u32,
        cells: (h * w) as u32,
        scale: 1.0 / (d as f32).sqrt(),
        ..Default::default()
    }
}

/// Largest count of consecutive items of `item` elements one binding holds (a `TooLarge` naming `what` if none).
fn per_binding(gpu: &Gpu, item: usize, dtype: DType, what: &str) -> Result<usize> {
    items_per_binding(gpu, item, dtype).map_err(|e| match e {
        crate::error::KernelError::TooLarge { bytes, limit, limit_name, .. } => {
            crate::error::KernelError::TooLarge { what: format!("{OP}: {what}"), bytes, limit, limit_name }
        }
        other => other,
    })
}

/// Splits `0..n` into consecutive ranges of at most `per` items.
fn ranges(n: usize, per: usize) -> impl Iterator<Item = (usize, usize)> {
    let per = per.max(1);
    (0..n.div_ceil(per)).map(move |i| (i * per, per.min(n - i * per)))
}

/// First half of the branch, one group of heads at a time (the scratch is reused; its width `group·d` sets the
/// group, see [`Geometry::heads_per_group`]): the group's Q/K/V projection of the dense grid into
/// `qkv (3·B·S·F, group·d)` (blocks Q, K, V), the gathered attention into `att (B·M·F, group·d)`, and the CSR mean
/// of `att` into the group's columns of `abar (B·S·F, C)`.
///
/// Bindings: the projection splits rows itself ([`matmul::record_gemm`]); the attention binds the Q, K and V rows
/// of as many whole batch elements as fit one binding (a sequence gathers from anywhere in its batch element) and
/// splits its output by sequences; the mean binds the attention rows of as many whole batch elements as fit and
/// splits its output by rows. Fails with [`crate::error::KernelError::TooLarge`] only when one batch element's
/// `(S·F, group·d)` Q, K or V rows, or its `(M·F, group·d)` attention rows, exceed one binding.
#[allow(clippy::too_many_arguments)]
pub fn record_heads(
    rec: &mut Recorder,
    g: &Geometry,
    hidden: &Tensor,
    wqkv: &Tensor,
    table: &Tensor,
    offsets: &Tensor,
    hits: &Tensor,
    qkv: &Tensor,
    att: &Tensor,
    abar: &Tensor,
) -> Result<()> {
    let gpu = rec.gpu();
    let d = check_geometry(g)?;
    let Geometry { b, h, w, f, c, heads, m, .. } = *g;
    let rows = g.rows();
    let group = qkv.shape().get(1).copied().unwrap_or(0) / d;
    if group == 0 || !heads.is_multiple_of(group) {
        return Err(invalid(
            OP,
            format!("Q/K/V scratch {:?}: its width must be k·{d} with k dividing {heads}", qkv.shape()),
        ));
    }
    let gd = group * d;
    check_shapes(&[
        ("hidden", hidden, vec![rows, c]),
        ("head-group qkv scratch", qkv, g.qkv_scratch_shape(group).to_vec()),
        ("head-group attention scratch", att, g.att_scratch_shape(group).to_vec()),
        ("mean scratch", abar, vec![rows, c]),
        ("fused QKV weight", wqkv, vec![3 * c, c]),
    ])?;
    if table.numel() != m * f {
        return Err(invalid(OP, "token table size does not match the geometry"));
    }
    if offsets.numel() != f * h * w + 1 || hits.numel() == 0 {
        return Err(invalid(OP, "CSR table sizes do not match the geometry"));
    }
    let dtype = hidden.dtype();
    let pipe = |entry| gpu.pipelines().get(&gpu.device, &TRAJECTORY_ATTENTION, entry, dtype, &[]);
    let mean = pipe("traj_mean")?;
    let base = base_params(g, d);
    let (rows_b, tokens_b) = (h * w * f, m * f);
    // Whole batch elements of attention rows per binding of the mean, rows per output binding (the gathered
    // attention windows its own operands: record_gathered).
    let nb_att =
        per_binding(gpu, tokens_b * gd, dtype, "one batch element's attention rows of a head group")?.min(b);
    let rows_win = per_binding(gpu, c, dtype, "one row of the mean")?;
    let (ow, hw) = (offsets.whole(gpu)?, hits.whole(gpu)?);
    for h0 in (0..heads).step_by(group) {
        // Q, K, V of heads h0..h0+group: rows h0·d.. of each C-row block of the fused weight, as a batch of three
        // GEMMs writing the blocks of the scratch.
        matmul::record_gemm(
            rec,
            &matmul::Gemm {
                batch: 3,
                m: rows,
                n: gd,
                k: c,
                x: matmul::Operand { t: hidden, offset: 0, ld: c, sb: 0 },
                w: matmul::Operand { t: wqkv, offset: h0 * d * c, ld: c, sb: c * c },
                layout: WLayout::NK,
                bias: None,
                act: Epilogue::None,
                y: matmul::Operand { t: qkv, offset: 0, ld: gd, sb: rows * gd },
                accumulate: false,
            },
            None,
        )?;
        record_gathered(rec, g, table, qkv, att)?;
        for (b0, nb) in ranges(b, nb_att) {
            let aw = att.window(gpu, b0 * tokens_b * gd, nb * tokens_b * gd)?;
            for (r0, nr) in ranges(nb * rows_b, rows_win) {
                let r0 = b0 * rows_b + r0;
                let bw = abar.window(gpu, r0 * c + h0 * d, (nr - 1) * c + gd)?;
                let prm = Params {
                    c_att: gd as u32,
                    width: gd as u32,
                    ld_out: c as u32,
                    n_rows: nr as u32,
                    row0: r0 as u32,
                    b0: b0 as u32,
                    rows_bound: (nb * tokens_b) as u32,
                    base_in: aw.base,
                    base_out: bw.base,
                    ..base
                };
                rec.dispatch_bound(
                    &mean,
                    bytemuck::bytes_of(&prm),
                    vec![(4, aw.clone()), (5, ow.clone()), (6, hw.clone()), (7, bw)],
                    grid(gpu, ((nr * gd) as u32).div_ceil(64)),
                )?;
            }
        }
    }
    Ok(())
}

/// The gathered attention of one head group (part of [`record_heads`]): sequences of `g.seq_len` tokens gathered
/// through `table` from the group's Q, K and V blocks of `qkv (3·B·S·F, group·d)` into `att (B·M·F, group·d)`,
/// binding the Q/K/V rows of as many whole batch elements as fit one binding and splitting the output by sequences.
pub fn record_gathered(
    rec: &mut Recorder,
    g: &Geometry,
    table: &Tensor,
    qkv: &Tensor,
    att: &Tensor,
) -> Result<()> {
    let gpu = rec.gpu();
    let d = check_geometry(g)?;
    let Geometry { b, h, w, f, m, seq_len, .. } = *g;
    let gd = qkv.shape().get(1).copied().unwrap_or(0);
    let group = gd / d;
    if group == 0 || gd != group * d {
        return Err(invalid(
            OP,
            format!("Q/K/V scratch {:?}: its width must be a multiple of {d}", qkv.shape()),
        ));
    }
    check_shapes(&[
        ("head-group qkv scratch", qkv, g.qkv_scratch_shape(group).to_vec()),
        ("head-group attention scratch", att, g.att_scratch_shape(group).to_vec()),
    ])?;
    if table.numel() != m * f {
        return Err(invalid(OP, "token table size does not match the geometry"));
    }
    let dtype = qkv.dtype();
    let attend = attend_pipeline(gpu, dtype, d, seq_len)?;
    let base = base_params(g, d);
    let rows = g.rows();
    let (rows_b, seqs_b) = (h * w * f, m * f / seq_len);
    let nb_qkv =
        per_binding(gpu, rows_b * gd, dtype, "one batch element's Q, K or V rows of a head group")?.min(b);
    let seqs_win =
        per_binding(gpu, seq_len * gd, dtype, "one attention sequence of a head group")?.min(65535 * 65535);
    let tw = table.whole(gpu)?;
    for (b0, nb) in ranges(b, nb_qkv) {
        let span = nb * rows_b * gd;
        let start = b0 * rows_b * gd;
        let (qw, kw, vw) = (
            qkv.window(gpu, start, span)?,
            qkv.window(gpu, rows * gd + start, span)?,
            qkv.window(gpu, 2 * rows * gd + start, span)?,
        );
        for (s0, ns) in ranges(nb * seqs_b, seqs_win) {
            let s0 = b0 * seqs_b + s0;
            let aw = att.window(gpu, s0 * seq_len * gd, ns * seq_len * gd)?;
            let prm = Params {
                ld: gd as u32,
                c_att: gd as u32,
                n_rows: ns as u32,
                row0: s0 as u32,
                b0: b0 as u32,
                rows_bound: (nb * rows_b) as u32,
                base_q: qw.base,
                base_k: kw.base,
                base_v: vw.base,
                base_out: aw.base,
                ..base
            };
            let groups = [ns.min(65535) as u32, ns.div_ceil(65535) as u32, group as u32];
            rec.dispatch_bound(
                &attend,
                bytemuck::bytes_of(&prm),
                vec![(1, qw.clone()), (2, tw.clone()), (3, aw), (9, kw.clone()), (10, vw.clone())],
                groups,
            )?;
        }
    }
    Ok(())
}

/// Second half: the output projection `out = abar · woᵀ` and the bias on reached rows, bound in row windows.
pub fn record_output(
    rec: &mut Recorder,
    g: &Geometry,
    abar: &Tensor,
    offsets: &Tensor,
    wo: &Tensor,
    bo: &Tensor,
    out: &Tensor,
) -> Result<()> {
    let gpu = rec.gpu();
    let d = check_geometry(g)?;
    let Geometry { h, w, f, c, .. } = *g;
    let rows = g.rows();
    check_shapes(&[
        ("mean scratch", abar, vec![rows, c]),
        ("output", out, vec![rows, c]),
        ("out weight", wo, vec![c, c]),
        ("out bias", bo, vec![c]),
    ])?;
    if offsets.numel() != f * h * w + 1 {
        return Err(invalid(OP, "CSR table sizes do not match the geometry"));
    }
    matmul::record(rec, abar, wo, WLayout::NK, None, Epilogue::None, out, None)?;
    let pipe = gpu.pipelines().get(&gpu.device, &TRAJECTORY_ATTENTION, "traj_bias", out.dtype(), &[])?;
    let (ow, bw) = (offsets.whole(gpu)?, bo.whole(gpu)?);
    for (r0, nr) in ranges(rows, per_binding(gpu, c, out.dtype(), "one output row")?) {
        let outw = out.window(gpu, r0 * c, nr * c)?;
        let prm = Params {
            width: c as u32,
            ld_out: c as u32,
            n_rows: nr as u32,
            row0: r0 as u32,
            base_out: outw.base,
            ..base_params(g, d)
        };
        rec.dispatch_bound(
            &pipe,
            bytemuck::bytes_of(&prm),
            vec![(5, ow.clone()), (7, outw), (8, bw.clone())],
            grid(gpu, ((nr * c) as u32).div_ceil(64)),
        )?;
    }
    Ok(())
}

/// A call's inputs on the device: hidden states, fused Q/K/V weight, output projection, token table.
struct Uploaded {
    hidden: Tensor,
    wqkv: Tensor,
    wo: Tensor,
    bo: Tensor,
    table: Tensor,
}

fn upload(gpu: &Gpu, call: &Call, wts: &Weights, t: &Tables, dtype: DType) -> Result<Uploaded> {
    let (rows, c) = (call.b * call.h * call.w * call.f, call.c);
    let to32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let mut wqkv = to32(wts.wq);
    wqkv.extend(to32(wts.wk));
    wqkv.extend(to32(wts.wv));
    Ok(Uploaded {
        hidden: Tensor::from_f32(gpu, &to32(call.hidden), &[rows, c], dtype)?,
        wqkv: Tensor::from_f32(gpu, &wqkv, &[3 * c, c], dtype)?,
        wo: Tensor::from_f32(gpu, &to32(wts.wo), &[c, c], dtype)?,
        bo: Tensor::from_f32(gpu, &to32(wts.bo), &[c], dtype)?,
        table: Tensor::from_u32(gpu, &t.table, &[t.table.len()])?,
    })
}

/// Uploads one call and records the branch on the GPU ([`record_efficient`] with fresh buffers).
pub fn prepare_efficient(gpu: &Gpu, call: &Call, wts: &Weights, dtype: DType) -> Result<Prepared> {
    let t = tables(call)?;
    let Call { b, h, w, f, c, heads, .. } = *call;
    let Uploaded { hidden, wqkv, wo, bo, table } = upload(gpu, call, wts, &t, dtype)?;
    let offsets = Tensor::from_u32(gpu, &t.offsets, &[t.offsets.len()])?;
    let hits = Tensor::from_u32(gpu, &t.hits, &[t.hits.len().max(1)])?;
    let g = Geometry { b, h, w, f, c, heads, m: t.m, seq_len: t.seq_len };
    check_geometry(&g)?;
    let group = g.heads_per_group(dtype.size(), gpu.max_binding());
    let qkv = Tensor::empty(gpu, &g.qkv_scratch_shape(group), dtype)?;
    let att = Tensor::empty(gpu, &g.att_scratch_shape(group), dtype)?;
    let abar = Tensor::empty(gpu, &[g.rows(), c], dtype)?;
    let out = Tensor::empty(gpu, &[g.rows(), c], dtype)?;
    let mut rec = Recorder::new(gpu);
    let ops = Operands {
        hidden: &hidden,
        wqkv: &wqkv,
        wo: &wo,
        bo: &bo,
        table: &table,
        offsets: &offsets,
        hits: &hits,
        qkv: &qkv,
        att: &att,
        abar: &abar,
        out: &out,
    };
    record_efficient(&mut rec, &g, &ops)?;
    let keep = vec![hidden, wqkv, wo, bo, table, offsets, hits, qkv, att, abar];
    Ok(Prepared { recording: rec.finish(), out, keep })
}

/// The literal formulation on the GPU (spec §5, for comparison): gather the sampled tokens (zeros where
/// invisible), project them, attend, project out (bias included), scatter-mean onto the grid (0 where unreached).
/// Binds its operands whole (a comparison path: fails with a clear error where one exceeds the binding limit).
pub fn prepare_literal(gpu: &Gpu, call: &Call, wts: &Weights, dtype: DType) -> Result<Prepared> {
    let t = tables(call)?;
    let Call { b, h, w, f, c, heads, .. } = *call;
    let g = Geometry { b, h, w, f, c, heads, m: t.m, seq_len: t.seq_len };
    let d = check_geometry(&g)?;
    let (s, m) = (h * w, t.m);
    let Uploaded { hidden, wqkv, wo, bo, table } = upload(gpu, call, wts, &t, dtype)?;
    let identity: Vec<u32> = (0..(m * f) as u32).collect();
    let ident = Tensor::from_u32(gpu, &identity, &[m * f])?;
    let offsets = Tensor::from_u32(gpu, &t.offsets, &[t.offsets.len()])?;
    let hits = Tensor::from_u32(gpu, &t.hits, &[t.hits.len().max(1)])?;
    let gathered = Tensor::empty(gpu, &[b * m * f, c], dtype)?;
    let qkv = Tensor::empty(gpu, &[b * m * f, 3 * c], dtype)?;
    let att = Tensor::empty(gpu, &[b * m * f, c], dtype)?;
    let o = Tensor::empty(gpu, &[b * m * f, c], dtype)?;
    let out = Tensor::empty(gpu, &[b * s * f, c], dtype)?;
    let mut rec = Recorder::new(gpu);
    let pipe = |entry| gpu.pipelines().get(&gpu.device, &TRAJECTORY_ATTENTION, entry, dtype, &[]);
    let base = base_params(&g, d);
    let rows_g = b * m * f;
    // Gather (§5.4).
    let (hw, tw, gw) = (hidden.whole(gpu)?, table.whole(gpu)?, gathered.whole(gpu)?);
    let prm = Params {
        n_rows: rows_g as u32,
        width: c as u32,
        ld: c as u32,
        rows_bound: (b * s * f) as u32,
        base_q: hw.base,
        base_out: gw.base,
        ..base
    };
    let grp = grid(gpu, ((rows_g * c) as u32).div_ceil(64));
    rec.dispatch_bound(
        &pipe("traj_gather")?,
        bytemuck::bytes_of(&prm),
        vec![(1, hw), (2, tw), (3, gw)],
        grp,
    )?;
    // Projections of the gathered tokens (§5.5), attention over the same sequences (§5.6): an identity table,
    // all heads in one dispatch (grid z), Q/K/V the column blocks of the fused rows.
    matmul::record(&mut rec, &gathered, &wqkv, WLayout::NK, None, Epilogue::None, &qkv, None)?;
    let n_seq = rows_g / t.seq_len;
    let (qw, iw, aw) = (qkv.whole(gpu)?, ident.whole(gpu)?, att.whole(gpu)?);
    let prm = Params {
        n_rows: n_seq as u32,
        rows_per_b: (m * f) as u32,
        rows_bound: rows_g as u32,
        ld: (3 * c) as u32,
        c_att: c as u32,
        base_q: qw.base,
        base_k: qw.base + c as u32,
        base_v: qw.base + 2 * c as u32,
        base_out: aw.base,
        ..base
    };
    let groups = [n_seq.min(65535) as u32, n_seq.div_ceil(65535) as u32, heads as u32];
    rec.dispatch_bound(
        &attend_pipeline(gpu, hidden.dtype(), d, t.seq_len)?,
        bytemuck::bytes_of(&prm),
        vec![(1, qw.clone()), (2, iw), (3, aw), (9, qw.clone()), (10, qw)],
        groups,
    )?;
    // Output projection of every token, bias included (§5.7), then the scatter-mean (§5.8).
    matmul::record(&mut rec, &att, &wo, WLayout::NK, Some(&bo), Epilogue::None, &o, None)?;
    let rows = b * s * f;
    let (ow_, ofw, hiw, outw) = (o.whole(gpu)?, offsets.whole(gpu)?, hits.whole(gpu)?, out.whole(gpu)?);
    let prm = Params {
        n_rows: rows as u32,
        c_att: c as u32,
        width: c as u32,
        ld_out: c as u32,
        rows_bound: rows_g as u32,
        base_in: ow_.base,
        base_out: outw.base,
        ..base
    };
    let grp = grid(gpu, ((rows * c) as u32).div_ceil(64));
    rec.dispatch_bound(
        &pipe("traj_mean")?,
        bytemuck::bytes_of(&prm),
        vec![(4, ow_), (5, ofw), (6, hiw), (7, outw)],
        grp,
    )?;
    let keep = vec![hidden, wqkv, wo, bo, table, ident, offsets, hits, gathered, qkv, att, o];
    Ok(Prepared { recording: rec.finish(), out, keep })
}

impl Prepared {
    /// Runs the recording once on an output poisoned with NaN (so an element no dispatch writes shows up) and
    /// downloads it as `(B·S, F, C)` f32: the checking path of tests and `trajattn demo`.
    pub fn run_checked(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        self.out.poison(gpu);
        self.recording.submit(gpu, true)?;
        self.out.to_f32(gpu)
    }
}

fn bench_build(gpu: &Gpu, shape: &str, dtype: DType) -> Result<crate::bench::BenchCase> {
    bench_variant(gpu, shape, dtype, BenchPart::Efficient)
}

fn bench_build_literal(gpu: &Gpu, shape: &str, dtype: DType) -> Result<crate::bench::BenchCase> {
    bench_variant(gpu, shape, dtype, BenchPart::Literal)
}

fn bench_build_gathered(gpu: &Gpu, shape: &str, dtype: DType) -> Result<crate::bench::BenchCase> {
    bench_variant(gpu, shape, dtype, BenchPart::Gathered)
}

/// What a trajectory-attention benchmark times.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BenchPart {
    /// The whole branch, efficient formulation.
    Efficient,
    /// The whole branch, literal formulation.
    Literal,
    /// Only the gathered attention of every head group ([`record_gathered`]) on random Q/K/V.
    Gathered,
}

/// The gathered attention alone, as the efficient branch records it (one dispatch series per head group).
fn bench_gathered(gpu: &Gpu, call: &Call, dtype: DType) -> Result<(crate::dispatch::Recording, Vec<Tensor>)> {
    let t = tables(call)?;
    let Call { b, h, w, f, c, heads, .. } = *call;
    let g = Geometry { b, h, w, f, c, heads, m: t.m, seq_len: t.seq_len };
    let group = g.heads_per_group(dtype.size(), gpu.max_binding());
    let [qr, qc] = g.qkv_scratch_shape(group);
    let qkv = Tensor::from_f32(gpu, &crate::bench::random_data(3, qr * qc), &[qr, qc], dtype)?;
    let att = Tensor::empty(gpu, &g.att_scratch_shape(group), dtype)?;
    let table = Tensor::from_u32(gpu, &t.table, &[t.table.len()])?;
    let mut rec = Recorder::new(gpu);
    for _ in (0..heads).step_by(group) {
        record_gathered(&mut rec, &g, &table, &qkv, &att)?;
    }
    Ok((rec.finish(), vec![qkv, att, table]))
}

fn bench_variant(gpu: &Gpu, shape: &str, dtype: DType, part: BenchPart) -> Result<crate::bench::BenchCase> {
    let d = crate::bench::parse_shape("trajectory-attention", shape, 5)?;
    let (b, f, h, w, c) = (d[0], d[1], d[2], d[3], d[4]);
    if c % 64 != 0 {
        return Err(invalid(OP, "C must be a multiple of 64 (heads of 64)"));
    }
    let (s, heads) = (h * w, c / 64);
    let n = 2 * s;
    let rnd =
        |seed, len| crate::bench::random_data(seed, len).iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let hidden = rnd(1, b * s * f * c);
    let (ow, oh) = (w * 8, h * 8);
    let traj: Vec<f64> = rnd(2, f * n * 2)
        .iter()
        .enumerate()
        .map(|(i, &r)| (r * 0.5 + 0.5) * if i % 2 == 0 { ow as f64 } else { oh as f64 })
        .collect();
    let mask = vec![true; f * n];
    let idx: Vec<usize> = (0..samples_per_call(n, h, w)).map(|i| (i * 7919) % n).collect();
    let ws: Vec<Vec<f64>> = (0..4).map(|k| rnd(10 + k, c * c)).collect();
    let bo = rnd(20, c);
    let call = Call {
        hidden: &hidden,
        b,
        h,
        w,
        f,
        c,
        heads,
        traj: &traj,
        mask: &mask,
        n,
        origin_w: ow,
        origin_h: oh,
        idx: &idx,
        grouping: Grouping::Pairs,
    };
    let wts = Weights { wq: &ws[0], wk: &ws[1], wv: &ws[2], wo: &ws[3], bo: &bo };
    let m = idx.len();
    let tokens = b * m * f;
    let l = m * f / s;
    if part == BenchPart::Gathered {
        let (recording, keep) = bench_gathered(gpu, &call, dtype)?;
        return Ok(crate::bench::BenchCase {
            kernel: "trajectory-gathered-attention",
            shape: shape.to_string(),
            dtype,
            // QKᵀ and AV over L-token sequences, every head.
            flops: 4.0 * tokens as f64 * l as f64 * c as f64,
            // Gathered Q, K, V rows read, attention rows written.
            bytes: dtype.size() as f64 * (4 * tokens * c) as f64,
            recording,
            keep,
        });
    }
    let literal = part == BenchPart::Literal;
    let p = if literal {
        prepare_literal(gpu, &call, &wts, dtype)?
    } else {
        prepare_efficient(gpu, &call, &wts, dtype)?
    };
    // QKV and out projections (of the dense grid, or of the gathered tokens for the literal variant) + attention
    // (QKᵀ and AV over L-token sequences).
    let projected = if literal { tokens } else { b * s * f };
    let flops =
        2.0 * projected as f64 * (c * 3 * c + c * c) as f64 + 4.0 * tokens as f64 * l as f64 * c as f64;
    let mut keep = p.keep;
    keep.push(p.out);
    Ok(crate::bench::BenchCase {
        kernel: if literal { "trajectory-attention-literal" } else { "trajectory-attention" },
        shape: shape.to_string(),
        dtype,
        flops,
        bytes: dtype.size() as f64 * (b * s * f * c * 5 + tokens * c * 2) as f64,
        recording: p.recording,
        keep,
    })
}

/// Benchmark: the whole branch (efficient formulation) at one UNet level, faithful pair grouping.
pub const BENCH: crate::bench::BenchEntry = crate::bench::BenchEntry {
    name: "trajectory-attention",
    shape_help: "BxFxHxWxC: batch, frames, latent size and channels of one level (N = 2·h·w trajectories)",
    default_shapes: &["2x25x9x16x1280"],
    demo_shape: "2x14x9x16x320",
    build: bench_build,
};

/// Benchmark: the gathered attention alone (the kernel tiers' `traj_attend*`), every head group of one level.
pub const BENCH_GATHERED: crate::bench::BenchEntry = crate::bench::BenchEntry {
    name: "trajectory-gathered-attention",
    shape_help: "BxFxHxWxC: as trajectory-attention; only the gathered attention over random Q/K/V",
    default_shapes: &["2x25x9x16x1280", "2x14x9x16x320"],
    demo_shape: "2x14x9x16x320",
    build: bench_build_gathered,
};

/// Benchmark: the whole branch, literal formulation (gather, project the gathered tokens, attend, project out,
/// scatter-mean), for comparison with [`BENCH`].
pub const BENCH_LITERAL: crate::bench::BenchEntry = crate::bench::BenchEntry {
    name: "trajectory-attention-literal",
    shape_help: "BxFxHxWxC: as trajectory-attention",
    default_shapes: &["2x25x9x16x1280"],
    demo_shape: "2x14x9x16x320",
    build: bench_build_literal,
};
