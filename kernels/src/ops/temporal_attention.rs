//! Temporal attention: many short sequences (F = 14 or 25 frames, 2F = 50 in the paired trajectory grouping),
//! tokens laid out `(sequences, L, channels)`, each sequence attending within itself per head (L ≤ [`MAX_SEQ`]).
//!
//! Two variants (see [`crate::select`]):
//! - GPU tier, `temporal_gpu` (`shaders/temporal_attention_gpu.wgsl` + `include/short_attention.wgsl`): one
//!   workgroup per (sequence, head), Q/K/V staged in workgroup memory by column chunks, the L×L scores in
//!   workgroup memory, 4×4 register tiles of named vec4s; head dims up to [`MAX_HEAD_DIM_GPU`]. Its constants
//!   come from [`ShortPlan::new`] (the adapter's workgroup limits).
//! - lavapipe tier (`Sg8`), `temporal` (`shaders/temporal_attention.wgsl`): one invocation per query, all scores
//!   of a query in registers, K/V reads uniform across 8-lane subgroups (broadcast loads on SIMD CPUs). Also the
//!   GPU tier's fallback on an adapter whose workgroup limits cannot hold the GPU plan.
//!
//! Same strided Q/K/V convention as [`crate::ops::flash_attention`] (`AttnShape.batch` = number of
//! sequences, `seq_q = seq_kv = L`), so the fused QKV projection output is read in place. Dispatches are
//! split over sequences so every binding stays within the adapter's binding limit.

use crate::bench::{BenchCase, BenchEntry};
use crate::dispatch::{grid, Recorder};
use crate::dtype::DType;
use crate::error::{invalid, Result};
use crate::gpu::Gpu;
use crate::ops::attention_windows::{for_each_run, Run};
use crate::ops::flash_attention::{batches_per_dispatch, check_call, fused_bench_case, AttnShape, Strided};
use crate::pipelines::Pipeline;
use crate::select::Tier;
use crate::shaders::{TEMPORAL_ATTENTION, TEMPORAL_ATTENTION_GPU};
use crate::tensor::Tensor;
use bytemuck::{Pod, Zeroable};
use std::sync::Arc;

/// Longest sequence (the shader's `MAXL`); longer ones belong to flash attention.
pub const MAX_SEQ: usize = 64;
/// Largest head dim every adapter runs (the lavapipe-tier shader's `4·MAXD4`); must also be a multiple of 4.
pub const MAX_HEAD_DIM: usize = 128;
/// Largest head dim of the GPU-tier kernel (it stages D in chunks, so this only bounds the index arithmetic).
pub const MAX_HEAD_DIM_GPU: usize = 256;

/// Workgroup memory per 64 invocations the GPU plan aims for: AMD RDNA has 64 KiB per CU (two SIMDs), so four
/// 64-lane waves per SIMD leave 8 KiB per wave.
const LDS_PER_WAVE: u32 = 8 << 10;

/// Override constants of the GPU-tier short-sequence attention (`include/short_attention.wgsl`), shared by
/// `temporal_gpu` and `traj_attend_gpu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShortPlan {
    /// Head dim.
    pub d: usize,
    /// Sequence length rounded up to 4.
    pub lm: usize,
    /// vec4 columns of Q and K per staged chunk.
    pub dc4: usize,
    /// Invocations per workgroup (≥ (lm/4)², a multiple of 64).
    pub wg: usize,
}

impl ShortPlan {
    /// The plan for sequences of `l` tokens and head dim `d` on `gpu`, or `None` where the kernel does not apply
    /// (`l` of 0 or above [`MAX_SEQ`], `d` not a positive multiple of 4 or above [`MAX_HEAD_DIM_GPU`], or the
    /// adapter's invocation / workgroup-memory limits too small).
    pub fn new(gpu: &Gpu, l: usize, d: usize) -> Option<Self> {
        if l == 0 || l > MAX_SEQ || d == 0 || !d.is_multiple_of(4) || d > MAX_HEAD_DIM_GPU {
            return None;
        }
        let lm = l.div_ceil(4) * 4;
        let lq = lm / 4;
        // One score tile per invocation.
        let wg = (lq * lq).div_ceil(64).max(1) * 64;
        if wg > gpu.limits.max_compute_invocations_per_workgroup as usize
            || wg > gpu.limits.max_compute_workgroup_size_x as usize
        {
            return None;
        }
        let limit = gpu.limits.max_compute_workgroup_storage_size as usize;
        let target = limit.min((wg / 64) * LDS_PER_WAVE as usize);
        let with = |dc4: usize| ShortPlan { d, lm, dc4, wg };
        // At most 4 vec4 columns (16 dims) per chunk: ACO unrolls the 16-step score loop fully, not a 32-step one.
        let cands = [4, 2, 1].into_iter().filter(|&c| c == 1 || c <= d / 4).map(with);
        cands
            .clone()
            .find(|p| p.workgroup_bytes() <= target)
            .or_else(|| cands.clone().find(|p| p.workgroup_bytes() <= limit))
    }

    /// Workgroup memory the plan uses, bytes: the Q/K (or V) chunk, the L×L scores and the 1/sum quads (vec4s),
    /// the per-token row bases (4 u32 per token).
    pub fn workgroup_bytes(&self) -> usize {
        let lq = self.lm / 4;
        16 * (2 * self.lm * self.dc4 + self.lm * lq + lq) + 16 * self.lm
    }

    /// The override constants.
    pub fn constants(&self) -> [(&'static str, f64); 4] {
        [("D", self.d as f64), ("LM", self.lm as f64), ("DC4", self.dc4 as f64), ("WG", self.wg as f64)]
    }
}

/// Target lanes per workgroup.
const WG_TARGET: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    seq: u32,
    nseq: u32,
    heads: u32,
    groups: u32,
    q_base: u32,
    k_base: u32,
    v_base: u32,
    o_base: u32,
    q_stride: u32,
    k_stride: u32,
    v_stride: u32,
    o_stride: u32,
    sblocks: u32,
    scale: f32,
    _pad: [u32; 2],
}

/// Layout of the uniform `Params` of `temporal_attention.wgsl`.
pub const PARAMS_LAYOUT: crate::params::ParamsLayout = crate::params_layout!(Params {
    seq,
    nseq,
    heads,
    groups,
    q_base,
    k_base,
    v_base,
    o_base,
    q_stride,
    k_stride,
    v_stride,
    o_stride,
    sblocks,
    scale,
    _pad
});

/// Records `out = softmax(scale · q kᵀ) v` within each of `s.batch` sequences of `s.seq_q` tokens
/// (scale defaults to `1/sqrt(head_dim)`); `out` is dense `(s.batch, L, heads·head_dim)`.
pub fn record_temporal_attention(
    rec: &mut Recorder,
    s: AttnShape,
    q: Strided,
    k: Strided,
    v: Strided,
    out: &Tensor,
    scale: Option<f32>,
) -> Result<()> {
    const NAME: &str = "temporal attention";
    if s.seq_q != s.seq_kv {
        return Err(invalid(
            NAME,
            format!("sequence lengths of queries ({}) and keys ({}) must match", s.seq_q, s.seq_kv),
        ));
    }
    if s.seq_q > MAX_SEQ {
        return Err(invalid(
            NAME,
            format!("sequence length {} exceeds {MAX_SEQ}; use flash attention", s.seq_q),
        ));
    }
    let d = s.head_dim;
    let gpu = rec.gpu();
    let l = s.seq_q;
    let plan = ShortPlan::new(gpu, l, d);
    if !d.is_multiple_of(4) || (d > MAX_HEAD_DIM && plan.is_none()) {
        // Up to MAX_HEAD_DIM_GPU where the GPU kernel fits this adapter's workgroup limits.
        let max = if ShortPlan::new(gpu, l, 4).is_some() { MAX_HEAD_DIM_GPU } else { MAX_HEAD_DIM };
        return Err(invalid(NAME, format!("head dim {d} must be a multiple of 4 and at most {max}")));
    }
    let dtype = check_call(NAME, &s, &q, &k, &v, out)?;
    match plan {
        Some(plan) if gpu.tier == Tier::Gpu || d > MAX_HEAD_DIM => {
            record_gpu(rec, s, (q, k, v), out, scale.unwrap_or(1.0 / (d as f32).sqrt()), plan, dtype)
        }
        _ => record_sg8(rec, s, (q, k, v), out, scale.unwrap_or(1.0 / (d as f32).sqrt()), dtype),
    }
}

/// Bindings of one dispatch: per-sequence element counts of Q, K, V and the output.
fn per_seq(s: &AttnShape, q: &Strided, k: &Strided, v: &Strided) -> [(&'static str, usize); 4] {
    let l = s.seq_q;
    [
        ("Q", l * q.row_stride),
        ("K", l * k.row_stride),
        ("V", l * v.row_stride),
        ("output", l * s.heads * s.head_dim),
    ]
}

/// GPU tier: one workgroup per (sequence, head), dispatches split over sequences to fit the binding limit.
fn record_gpu(
    rec: &mut Recorder,
    s: AttnShape,
    qkv: (Strided, Strided, Strided),
    out: &Tensor,
    scale: f32,
    plan: ShortPlan,
    dtype: DType,
) -> Result<()> {
    let gpu = rec.gpu();
    let pipe = gpu.pipelines().get(
        &gpu.device,
        &TEMPORAL_ATTENTION_GPU,
        "temporal_gpu",
        dtype,
        &plan.constants(),
    )?;
    record_runs(rec, (&pipe, 1), s, qkv, out, scale, dtype)
}

/// Lavapipe tier: one invocation per query, `SPW` sequences of `LR` lanes per workgroup.
fn record_sg8(
    rec: &mut Recorder,
    s: AttnShape,
    qkv: (Strided, Strided, Strided),
    out: &Tensor,
    scale: f32,
    dtype: DType,
) -> Result<()> {
    let gpu = rec.gpu();
    let (l, d) = (s.seq_q, s.head_dim);
    let lr = l.div_ceil(8) * 8;
    let spw = (WG_TARGET / lr).max(1);
    let pipe = gpu.pipelines().get(
        &gpu.device,
        &TEMPORAL_ATTENTION,
        "temporal",
        dtype,
        &[("D", d as f64), ("LR", lr as f64), ("SPW", spw as f64)],
    )?;
    record_runs(rec, (&pipe, spw), s, qkv, out, scale, dtype)
}

/// Records `pipe` (either tier's kernel, with `spw` sequences per workgroup and head) over runs of sequences whose
/// Q, K, V and output each fit one binding, one dispatch of `ceil(run / spw) · heads` workgroups per run.
fn record_runs(
    rec: &mut Recorder,
    (pipe, spw): (&Arc<Pipeline>, usize),
    s: AttnShape,
    (q, k, v): (Strided, Strided, Strided),
    out: &Tensor,
    scale: f32,
    dtype: DType,
) -> Result<()> {
    const NAME: &str = "temporal attention";
    let gpu = rec.gpu();
    let width = s.heads * s.head_dim;
    let per_seq = per_seq(&s, &q, &k, &v);
    let max_groups = gpu.limits.max_compute_workgroups_per_dimension as usize;
    let nb_max = batches_per_dispatch(gpu, NAME, "sequence", &per_seq, dtype)?
        .min((max_groups * max_groups / s.heads).max(1) * spw);
    for_each_run(gpu, s.batch, nb_max, &per_seq, [q.tensor, k.tensor, v.tensor, out], |run| {
        let Run { count: nb, q: wq, k: wk, v: wv, out: wo } = run;
        let sblocks = nb.div_ceil(spw);
        let groups = sblocks * s.heads;
        let prm = Params {
            seq: s.seq_q as u32,
            nseq: nb as u32,
            heads: s.heads as u32,
            groups: groups as u32,
            q_base: wq.base + q.col as u32,
            k_base: wk.base + k.col as u32,
            v_base: wv.base + v.col as u32,
            o_base: wo.base,
            q_stride: q.row_stride as u32,
            k_stride: k.row_stride as u32,
            v_stride: v.row_stride as u32,
            o_stride: width as u32,
            sblocks: sblocks as u32,
            scale,
            _pad: [0; 2],
        };
        rec.dispatch(pipe, bytemuck::bytes_of(&prm), vec![wq, wk, wv, wo], grid(gpu, groups as u32))
    })
}

fn bench_build(gpu: &Gpu, shape: &str, dtype: DType) -> Result<BenchCase> {
    fused_bench_case(gpu, "temporal-attention", shape, dtype, record_temporal_attention)
}

/// Benchmark: temporal self-attention over a fused QKV projection output.
pub const BENCH: BenchEntry = BenchEntry {
    name: "temporal-attention",
    shape_help: "SEQUENCESxHEADSxFRAMESxHEAD_DIM, e.g. 9216x5x25x64 (one batch element's level-0 temporal \
                 attention, fused QKV input)",
    default_shapes: &["9216x5x25x64", "9216x5x50x64", "2304x10x25x64"],
    demo_shape: "2304x5x25x64",
    build: bench_build,
};
