//! Trajectory attention (docs/reference/trajectory-attention.md): input checks and the float64 references — a literal
//! port of the released processor (§5) and the efficient formulation of §8 (dense projections, gathered rows,
//! head outputs averaged onto the grid before the output projection). The GPU kernels are checked against these.
//!
//! Files by responsibility: this one has the call's types and input checks; `reference` the float64 references,
//! `tables` the host-built index tables, `record` the GPU dispatches of the branch, `prepare` a whole call set up on
//! the device, `bench` the benchmark cases.

use crate::error::{invalid, Result};

mod bench;
mod prepare;
mod record;
pub mod reference;
mod tables;

pub use bench::{BENCH, BENCH_GATHERED, BENCH_LITERAL};
pub use prepare::{prepare_efficient, prepare_literal, Prepared};
pub use record::{
    record_efficient, record_gathered, record_heads, record_output, Geometry, Operands, GROUP_BINDING_BUDGET,
    PARAMS_LAYOUT,
};
pub use tables::{tables, Tables};

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

/// Trajectories sampled per call: `8·⌊h·w/4⌋`, or all `n` if fewer (docs/reference/trajectory-attention.md §5.2).
pub fn samples_per_call(n: usize, h: usize, w: usize) -> usize {
    (8 * (h * w / 4)).min(n)
}

/// Checks a call; returns the sequence length `L`. Errors say what is required (docs/reference/trajectory-attention.md §7.7, docs/reference/trajectory-sources.md §11).
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
/// paired grouping an error where the reference would fail (docs/reference/trajectory-attention.md §7.7), saying what would work.
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
