//! Temporal attention (`shaders/temporal_attention.wgsl`): many short sequences (F = 14 or 25 frames, 2F = 50
//! in the paired trajectory grouping), tokens laid out `(sequences, L, channels)`, each sequence attending
//! within itself per head. All scores of a query stay in registers (L ≤ [`MAX_SEQ`]).
//!
//! Same strided Q/K/V convention as [`crate::ops::flash_attention`] (`AttnShape.batch` = number of
//! sequences, `seq_q = seq_kv = L`), so the fused QKV projection output is read in place. Dispatches are
//! split over sequences so every binding stays within the adapter's binding limit.

use crate::bench::{parse_shape, BenchCase, BenchEntry};
use crate::dispatch::{grid, Recorder};
use crate::dtype::DType;
use crate::error::{invalid, Result};
use crate::gpu::Gpu;
use crate::ops::flash_attention::{batches_per_dispatch, check_call, fused_bench_case, AttnShape, Strided};
use crate::shaders::TEMPORAL_ATTENTION;
use crate::tensor::Tensor;
use bytemuck::{Pod, Zeroable};

/// Longest sequence (the shader's `MAXL`); longer ones belong to flash attention.
pub const MAX_SEQ: usize = 64;
/// Largest head dim (the shader's `4·MAXD4`); must also be a multiple of 4.
pub const MAX_HEAD_DIM: usize = 128;
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
    if !d.is_multiple_of(4) || d > MAX_HEAD_DIM {
        return Err(invalid(
            NAME,
            format!("head dim {d} must be a multiple of 4 and at most {MAX_HEAD_DIM}"),
        ));
    }
    let dtype = check_call(NAME, &s, &q, &k, &v, out)?;
    let gpu = rec.gpu();
    let l = s.seq_q;
    let lr = l.div_ceil(8) * 8;
    let spw = (WG_TARGET / lr).max(1);
    let pipe = gpu.pipelines().get(
        &gpu.device,
        &TEMPORAL_ATTENTION,
        "temporal",
        dtype,
        &[("D", d as f64), ("LR", lr as f64), ("SPW", spw as f64)],
    )?;
    let width = s.heads * d;
    let per_seq =
        [("Q", l * q.row_stride), ("K", l * k.row_stride), ("V", l * v.row_stride), ("output", l * width)];
    let max_groups = gpu.limits.max_compute_workgroups_per_dimension as usize;
    let nb_max = batches_per_dispatch(gpu, NAME, &per_seq, dtype)?
        .min((max_groups * max_groups / s.heads).max(1) * spw);
    let scale = scale.unwrap_or(1.0 / (d as f32).sqrt());
    let mut n0 = 0;
    while n0 < s.batch {
        let nb = nb_max.min(s.batch - n0);
        let wq = q.tensor.window(gpu, n0 * per_seq[0].1, nb * per_seq[0].1)?;
        let wk = k.tensor.window(gpu, n0 * per_seq[1].1, nb * per_seq[1].1)?;
        let wv = v.tensor.window(gpu, n0 * per_seq[2].1, nb * per_seq[2].1)?;
        let wo = out.window(gpu, n0 * per_seq[3].1, nb * per_seq[3].1)?;
        let sblocks = nb.div_ceil(spw);
        let groups = sblocks * s.heads;
        let prm = Params {
            seq: l as u32,
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
        rec.dispatch(&pipe, bytemuck::bytes_of(&prm), vec![wq, wk, wv, wo], grid(gpu, groups as u32))?;
        n0 += nb;
    }
    Ok(())
}

fn bench_build(gpu: &Gpu, shape: &str, dtype: DType) -> Result<BenchCase> {
    let d = parse_shape("temporal-attention", shape, 4)?;
    let case = fused_bench_case(
        gpu,
        "temporal-attention",
        (d[0], d[1], d[2], d[3]),
        dtype,
        record_temporal_attention,
    )?;
    Ok(BenchCase { shape: shape.to_string(), ..case })
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
