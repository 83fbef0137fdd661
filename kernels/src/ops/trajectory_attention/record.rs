//! Recording the branch on the GPU: the launch geometry, the per-head projection → attention → CSR-mean
//! dispatches (windowed to fit the binding limit) and the output projection.

use super::OP;
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

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
pub(super) struct Params {
    pub(super) seq_len: u32,
    pub(super) tokens: u32,
    pub(super) rows_per_b: u32,
    pub(super) d: u32,
    pub(super) ld: u32,
    pub(super) c_att: u32,
    pub(super) width: u32,
    pub(super) ld_out: u32,
    pub(super) col_out: u32,
    pub(super) frames: u32,
    pub(super) cells: u32,
    pub(super) n_rows: u32,
    pub(super) row0: u32,
    pub(super) b0: u32,
    pub(super) rows_bound: u32,
    pub(super) scale: f32,
    pub(super) base_q: u32,
    pub(super) base_k: u32,
    pub(super) base_v: u32,
    pub(super) base_in: u32,
    pub(super) base_out: u32,
    pub(super) _pad: [u32; 3],
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
    /// Attention sequence length (from [`check`](super::check)).
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
    /// [`Tables::table`](super::Tables::table) (`M·F` u32), [`Tables::offsets`](super::Tables::offsets) (`F·S + 1`), [`Tables::hits`](super::Tables::hits) (capacity ≥ 1).
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

pub(super) fn check_geometry(g: &Geometry) -> Result<usize> {
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
pub(super) fn attend_pipeline(
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

pub(super) fn base_params(g: &Geometry, d: usize) -> Params {
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
    // The CSR arrays (F·S + 1 and ≤ M·F u32) are bound whole: neither is ever larger than one batch element's
    // Q rows of a head group, which the attention binds whole (tests: index_tables_never_outgrow_…).
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
    // The token table (M·F u32, M ≤ 2·S) is bound whole: never larger than the Q rows bound below.
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
