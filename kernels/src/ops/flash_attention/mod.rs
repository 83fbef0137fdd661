//! Flash-style self-attention: `o = softmax(scale · q kᵀ) v` per (batch,
//! head) with an online softmax; the score matrix is never materialised.
//!
//! Q, K and V are read through [`Strided`] views, so the fused QKV projection output `[b, seq, 3·heads·d]`
//! is read in place (no transposes). The output is dense `(b, seq_q, heads·d)`.
//!
//! Every head dim takes `attn_fa2` (`shaders/flash_attention_fa2.wgsl`, the FlashAttention-2 form: a workgroup
//! owns a block of queries of one (batch, head), K/V tiles staged in workgroup memory, register tiles for the
//! scores and the output, the head dim split over invocations), with tile constants from the adapter's limits
//! ([`Fa2Tiles::choose`]); except on the 8-lane-subgroup tier ([`Tier::Sg8`], lavapipe), where head dims that
//! are multiples of 32 up to 128 take `attn_sg8` (`shaders/flash_attention_sg8.wgsl`: one query per invocation,
//! K/V rows read once per subgroup and broadcast), faster there than `attn_fa2` (BENCHMARKS.md). Dispatches are
//! split over batches so every binding stays within the adapter's binding limit; where one batch's Q or output
//! exceeds a binding, over blocks of its query rows (each block a dispatch reading all of the batch's keys). One
//! batch's K and V must each fit one binding.

use crate::bench::{parse_shape, BenchCase, BenchEntry};
use crate::dispatch::{grid, Recorder};
use crate::dtype::DType;
use crate::error::{invalid, shape_err, KernelError, Result};
use crate::gpu::Gpu;
use crate::ops::attention_windows::{for_each_query_block, for_each_run, EntryRows, Run};
use crate::select::Tier;
use crate::shaders::{FLASH_ATTENTION_FA2, FLASH_ATTENTION_SG8};
use crate::tensor::{items_per_binding, Tensor};
use bytemuck::{Pod, Zeroable};

mod tiles;

pub use tiles::Fa2Tiles;

/// `attn_sg8`: queries (invocations) per workgroup.
const SG8_QB: u32 = 64;
/// `attn_sg8`: largest head dim (the shader's `4·MAXD4`).
const SG8_MAX_HEAD_DIM: usize = 128;
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    seq_q: u32,
    seq_kv: u32,
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
    qblocks: u32,
    scale: f32,
    d: u32,
    chunks: u32,
}

/// Layout of the uniform `Params` of `flash_attention_fa2.wgsl` and `flash_attention_sg8.wgsl`.
pub const PARAMS_LAYOUT: crate::params::ParamsLayout = crate::params_layout!(Params {
    seq_q,
    seq_kv,
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
    qblocks,
    scale,
    d,
    chunks
});

/// A strided row view of Q, K or V: element `(b, s, h, j)` is at
/// `(b·seq + s)·row_stride + col + h·head_dim + j` of `tensor` (whose element count must be
/// `batch·seq·row_stride`).
#[derive(Clone, Copy, Debug)]
pub struct Strided<'a> {
    /// The tensor holding the rows.
    pub tensor: &'a Tensor,
    /// Column (element) offset of head 0 inside a row.
    pub col: usize,
    /// Elements between consecutive rows.
    pub row_stride: usize,
}

impl<'a> Strided<'a> {
    /// A dense `(.., heads·head_dim)` tensor: column 0, row stride = its last dim.
    pub fn dense(tensor: &'a Tensor) -> Self {
        let row_stride = tensor.shape().last().copied().unwrap_or(1);
        Strided { tensor, col: 0, row_stride }
    }
    /// Part `which` (0 = Q, 1 = K, 2 = V) of a fused `[.., 3·width]` projection output (`width = heads·d`).
    pub fn fused(tensor: &'a Tensor, which: usize, width: usize) -> Self {
        Strided { tensor, col: which * width, row_stride: 3 * width }
    }
}

/// Sizes of one attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnShape {
    /// Independent batches (for temporal attention: sequences).
    pub batch: usize,
    /// Query rows per batch.
    pub seq_q: usize,
    /// Key/value rows per batch.
    pub seq_kv: usize,
    /// Heads.
    pub heads: usize,
    /// Head dim.
    pub head_dim: usize,
}

impl AttnShape {
    /// Self-attention: `seq_q = seq_kv = seq`.
    pub fn self_attn(batch: usize, seq: usize, heads: usize, head_dim: usize) -> Self {
        AttnShape { batch, seq_q: seq, seq_kv: seq, heads, head_dim }
    }
    fn dims(&self) -> [usize; 5] {
        [self.batch, self.seq_q, self.seq_kv, self.heads, self.head_dim]
    }
}

/// Validates one strided operand; `rows` rows per batch.
pub(crate) fn check_strided(
    op: &'static str,
    name: &str,
    x: &Strided,
    s: &AttnShape,
    rows: usize,
    dtype: DType,
) -> Result<()> {
    let width = s.heads * s.head_dim;
    if x.col + width > x.row_stride {
        return Err(invalid(
            op,
            format!(
                "{name}: column offset {} + heads·head_dim {} ({}×{}) exceeds the row stride {} (tensor {:?})",
                x.col,
                width,
                s.heads,
                s.head_dim,
                x.row_stride,
                x.tensor.shape()
            ),
        ));
    }
    let want = s.batch * rows * x.row_stride;
    if x.tensor.numel() != want {
        return Err(shape_err(
            op,
            format!("{name} rows (batch {}, seq {rows}, row stride {})", s.batch, x.row_stride),
            &[s.batch, rows, x.row_stride],
            x.tensor.shape(),
        ));
    }
    if x.tensor.dtype() != dtype {
        return Err(KernelError::DType {
            op,
            found: x.tensor.dtype().to_string(),
            why: format!("{name} must have the dtype of Q ({dtype})"),
        });
    }
    Ok(())
}

/// Shared validation of an attention call; returns the dtype.
pub(crate) fn check_call(
    op: &'static str,
    s: &AttnShape,
    q: &Strided,
    k: &Strided,
    v: &Strided,
    out: &Tensor,
) -> Result<DType> {
    if s.dims().contains(&0) {
        return Err(invalid(
            op,
            format!("empty attention shape (batch, seq_q, seq_kv, heads, head_dim) = {:?}", s.dims()),
        ));
    }
    let dtype = q.tensor.dtype();
    check_strided(op, "Q", q, s, s.seq_q, dtype)?;
    check_strided(op, "K", k, s, s.seq_kv, dtype)?;
    check_strided(op, "V", v, s, s.seq_kv, dtype)?;
    let want = [s.batch, s.seq_q, s.heads * s.head_dim];
    if out.numel() != want.iter().product::<usize>() {
        return Err(shape_err(op, "output (batch, seq_q, heads·head_dim)", &want, out.shape()));
    }
    if out.dtype() != dtype {
        return Err(KernelError::DType {
            op,
            found: out.dtype().to_string(),
            why: format!("output must have the dtype of Q ({dtype})"),
        });
    }
    for (n, x) in [("Q", q), ("K", k), ("V", v)] {
        if out.same_storage(x.tensor) {
            return Err(invalid(op, format!("output shares its buffer with {n}; use a separate tensor")));
        }
    }
    Ok(dtype)
}

/// How many items (batches, or `unit`s) fit one binding for every operand; `operands` names each operand and
/// the elements one item spans in it.
pub(crate) fn batches_per_dispatch(
    gpu: &Gpu,
    op: &'static str,
    unit: &str,
    operands: &[(&str, usize)],
    dtype: DType,
) -> Result<usize> {
    let mut n = usize::MAX;
    for &(name, elems) in operands {
        let k = items_per_binding(gpu, elems, dtype).map_err(|e| match e {
            KernelError::TooLarge { bytes, limit, limit_name, .. } => KernelError::TooLarge {
                what: format!("{op}: {name} of one {unit} ({elems} elements)"),
                bytes,
                limit,
                limit_name,
            },
            e => e,
        })?;
        n = n.min(k);
    }
    Ok(n)
}

/// Records `out = softmax(scale · q kᵀ) v` (scale defaults to `1/sqrt(head_dim)`).
pub fn record_flash_attention(
    rec: &mut Recorder,
    s: AttnShape,
    q: Strided,
    k: Strided,
    v: Strided,
    out: &Tensor,
    scale: Option<f32>,
) -> Result<()> {
    const NAME: &str = "flash attention";
    let dtype = check_call(NAME, &s, &q, &k, &v, out)?;
    let gpu = rec.gpu();
    let d = s.head_dim;
    let scale = scale.unwrap_or(1.0 / (d as f32).sqrt());
    // (pipeline, queries per workgroup)
    let (pipe, qb) = if gpu.tier == Tier::Sg8 && d.is_multiple_of(32) && d <= SG8_MAX_HEAD_DIM {
        // 8-lane subgroups (lavapipe on AVX2): K/V rows read once per subgroup and shared by broadcast.
        let consts = [("D", d as f64), ("QB", SG8_QB as f64)];
        let pipe = gpu.pipelines().get(&gpu.device, &FLASH_ATTENTION_SG8, "attn_sg8", dtype, &consts)?;
        (pipe, SG8_QB as usize)
    } else {
        let lim = &gpu.limits;
        let t = Fa2Tiles::choose(
            d,
            lim.max_compute_workgroup_storage_size,
            lim.max_compute_invocations_per_workgroup,
        )
        .ok_or_else(|| {
            invalid(
                NAME,
                format!(
                    "head dim {d}: no attn_fa2 tiles fit {} bytes of workgroup memory and {} invocations",
                    lim.max_compute_workgroup_storage_size, lim.max_compute_invocations_per_workgroup
                ),
            )
        })?;
        let pipe =
            gpu.pipelines().get(&gpu.device, &FLASH_ATTENTION_FA2, "attn_fa2", dtype, &t.constants())?;
        (pipe, t.bq() as usize)
    };
    let width = s.heads * d;
    let strides = [q.row_stride, k.row_stride, v.row_stride, width];
    let per_batch = [
        ("Q", s.seq_q * strides[0]),
        ("K", s.seq_kv * strides[1]),
        ("V", s.seq_kv * strides[2]),
        ("output", s.seq_q * strides[3]),
    ];
    let tensors = [q.tensor, k.tensor, v.tensor, out];
    // One dispatch over `nb` batches of `seq_q` query rows (nb = 1 for a block of one batch's rows).
    let mut dispatch = |nb: usize, seq_q: usize, run: Run| {
        let Run { q: wq, k: wk, v: wv, out: wo, .. } = run;
        let qblocks = seq_q.div_ceil(qb);
        let groups = nb * s.heads * qblocks;
        let prm = Params {
            seq_q: seq_q as u32,
            seq_kv: s.seq_kv as u32,
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
            qblocks: qblocks as u32,
            scale,
            d: d as u32,
            chunks: 1,
        };
        rec.dispatch(&pipe, bytemuck::bytes_of(&prm), vec![wq, wk, wv, wo], grid(gpu, groups as u32))
    };
    // Every query block reads all keys of its batch: one batch's K and V must each fit a binding.
    batches_per_dispatch(gpu, NAME, "batch", &per_batch[1..3], dtype)?;
    let rows =
        batches_per_dispatch(gpu, NAME, "query row", &[("Q", strides[0]), ("output", strides[3])], dtype)?;
    // Keep the workgroup count of one dispatch within a 2-D grid.
    let max_groups = gpu.limits.max_compute_workgroups_per_dimension as usize;
    let max_grid = (max_groups * max_groups).max(1);
    if rows < s.seq_q {
        // One batch's Q or output exceeds a binding: blocks of whole workgroups' queries where a binding holds
        // at least one workgroup's, else as many rows as fit.
        let block = if rows >= qb { rows / qb * qb } else { rows };
        let block = block.min((max_grid / s.heads).max(1) * qb);
        let e = EntryRows { entries: s.batch, seq_q: s.seq_q, seq_kv: s.seq_kv, strides };
        return for_each_query_block(gpu, e, block, tensors, |run| dispatch(1, run.count, run));
    }
    let nb_max = batches_per_dispatch(gpu, NAME, "batch", &per_batch, dtype)?;
    let per_batch_groups = s.heads * s.seq_q.div_ceil(qb);
    let nb_max = nb_max.min((max_grid / per_batch_groups).max(1));
    for_each_run(gpu, s.batch, nb_max, &per_batch, tensors, |run| dispatch(run.count, s.seq_q, run))
}

/// Attention into a new dense `(batch, seq_q, heads·head_dim)` tensor, run now.
pub fn flash_attention(
    gpu: &Gpu,
    s: AttnShape,
    q: Strided,
    k: Strided,
    v: Strided,
    scale: Option<f32>,
) -> Result<Tensor> {
    let out = Tensor::empty(gpu, &[s.batch, s.seq_q, s.heads * s.head_dim], q.tensor.dtype())?;
    let mut rec = Recorder::new(gpu);
    record_flash_attention(&mut rec, s, q, k, v, &out, scale)?;
    rec.run()?;
    Ok(out)
}

/// Float64 CPU references.
pub mod reference {
    use super::AttnShape;

    /// Plain softmax attention on host slices in the same strided convention:
    /// `(data, col, row_stride)` for each of Q, K, V; returns dense `(batch, seq_q, heads·head_dim)`.
    pub fn attention(
        s: &AttnShape,
        q: (&[f64], usize, usize),
        k: (&[f64], usize, usize),
        v: (&[f64], usize, usize),
        scale: f64,
    ) -> Vec<f64> {
        let d = s.head_dim;
        let w = s.heads * d;
        let mut out = vec![0.0; s.batch * s.seq_q * w];
        let mut sc = vec![0.0; s.seq_kv];
        for b in 0..s.batch {
            for h in 0..s.heads {
                for i in 0..s.seq_q {
                    let qr = (b * s.seq_q + i) * q.2 + q.1 + h * d;
                    let mut m = f64::NEG_INFINITY;
                    for (j, scj) in sc.iter_mut().enumerate() {
                        let kr = (b * s.seq_kv + j) * k.2 + k.1 + h * d;
                        let dot: f64 = (0..d).map(|t| q.0[qr + t] * k.0[kr + t]).sum();
                        *scj = dot * scale;
                        m = m.max(*scj);
                    }
                    let mut l = 0.0;
                    for x in sc.iter_mut() {
                        *x = (*x - m).exp();
                        l += *x;
                    }
                    let or = (b * s.seq_q + i) * w + h * d;
                    for (j, &pj) in sc.iter().enumerate() {
                        let vr = (b * s.seq_kv + j) * v.2 + v.1 + h * d;
                        for t in 0..d {
                            out[or + t] += pj / l * v.0[vr + t];
                        }
                    }
                }
            }
        }
        out
    }
}

/// A self-attention launcher with [`record_flash_attention`]'s signature.
pub type AttnLauncher =
    fn(&mut Recorder, AttnShape, Strided, Strided, Strided, &Tensor, Option<f32>) -> Result<()>;

/// Bench case of an attention launcher on a random fused QKV tensor `[b, seq, 3·heads·d]`, `shape` being
/// `BxHEADSxSEQxHEAD_DIM` (the bench entries of flash and temporal attention).
pub(crate) fn fused_bench_case(
    gpu: &Gpu,
    kernel: &'static str,
    shape: &str,
    dtype: DType,
    launch: AttnLauncher,
) -> Result<BenchCase> {
    let dims = parse_shape(kernel, shape, 4)?;
    let (b, h, seq, d) = (dims[0], dims[1], dims[2], dims[3]);
    let width = h * d;
    let n = b * seq * 3 * width;
    let qkv = Tensor::from_f32(gpu, &crate::bench::random_data(1, n), &[b, seq, 3 * width], dtype)?;
    let out = Tensor::empty(gpu, &[b, seq, width], dtype)?;
    let mut rec = Recorder::new(gpu);
    let (q, k, v) =
        (Strided::fused(&qkv, 0, width), Strided::fused(&qkv, 1, width), Strided::fused(&qkv, 2, width));
    launch(&mut rec, AttnShape::self_attn(b, seq, h, d), q, k, v, &out, None)?;
    Ok(BenchCase {
        kernel,
        shape: shape.to_string(),
        dtype,
        flops: 4.0 * (b * h) as f64 * (seq * seq) as f64 * d as f64,
        bytes: (n + b * seq * width) as f64 * dtype.size() as f64,
        recording: rec.finish(),
        keep: vec![qkv, out],
    })
}

fn bench_build(gpu: &Gpu, shape: &str, dtype: DType) -> Result<BenchCase> {
    fused_bench_case(gpu, "flash-attention", shape, dtype, record_flash_attention)
}

/// Benchmark: self-attention reading a fused QKV projection output.
pub const BENCH: BenchEntry = BenchEntry {
    name: "flash-attention",
    shape_help:
        "BxHEADSxSEQxHEAD_DIM, e.g. 1x5x9216x64 (one frame's level-0 UNet self-attention, fused QKV input)",
    default_shapes: &["1x5x9216x64", "1x10x2304x64", "1x16x257x80", "1x1x2304x512"],
    demo_shape: "1x5x2304x64",
    build: bench_build,
};
