//! A whole call prepared on the device: inputs and tables uploaded, the efficient or literal branch recorded.

use super::record::{attend_pipeline, base_params, check_geometry, Params};
use super::{record_efficient, tables, Call, Geometry, Operands, Tables, Weights};
use crate::dispatch::{grid, Recorder};
use crate::dtype::DType;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::ops::matmul::{self, Epilogue, WLayout};
use crate::shaders::TRAJECTORY_ATTENTION;
use crate::tensor::Tensor;

/// A recorded run of the branch: the dispatches, the output tensor and everything they bind.
pub struct Prepared {
    /// The dispatches of one call (per head: Q/K/V projection → attention → CSR mean; then out-projection → bias).
    pub recording: crate::dispatch::Recording,
    /// `(B·S·F, C)` output rows `(b·S + cell)·F + f`.
    pub out: Tensor,
    /// Inputs, tables and intermediates the recording binds.
    pub keep: Vec<Tensor>,
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

/// The literal formulation on the GPU (docs/reference/trajectory-attention.md §5, for comparison): gather the sampled tokens (zeros where
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
