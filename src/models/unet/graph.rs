//! The recorded UNet graph: shapes and options, the one-off build, the conditioning prelude and the per-step
//! run.

use super::blocks::{Consts, Ctx};
use super::*;

/// Sizes one graph is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UNetShape {
    /// Batch (2 with classifier-free guidance).
    pub batch: usize,
    pub frames: usize,
    /// Latent height and width.
    pub height: usize,
    pub width: usize,
}

/// Trajectories bound to a graph (docs/reference/trajectory-attention.md §4).
#[derive(Clone, Debug)]
pub struct Trajectories {
    /// `(F, N, 2)` pixel coordinates (x, y) of the `origin_w × origin_h` frame.
    pub coords: Vec<f64>,
    /// `(F, N)` visibility.
    pub visible: Vec<bool>,
    pub n: usize,
    pub origin_w: usize,
    pub origin_h: usize,
    pub grouping: Grouping,
}

/// Options of a graph.
#[derive(Clone, Copy, Debug, Default)]
pub struct GraphOptions {
    pub time_context: TimeContext,
    /// Override of the per-chunk element budget (tests use tiny values to exercise the chunked paths).
    pub chunk_elems: Option<usize>,
}

/// One trajectory-branch call of the recorded graph (in execution order).
pub struct TrajSlot {
    /// Module path of the branch.
    pub module: String,
    /// Latent size at this level.
    pub h: usize,
    pub w: usize,
    /// Trajectories sampled per call (`8·⌊h·w/4⌋`, at most N).
    pub m: usize,
    pub(super) table: Tensor,
    pub(super) offsets: Tensor,
    pub(super) hits: Tensor,
}

/// The recorded UNet for one shape: inputs, prelude (conditioning), step recording and output.
pub struct UNetGraph {
    pub shape: UNetShape,
    sample: Tensor,
    t_sin: Tensor,
    add_sin: Tensor,
    context: Tensor,
    prelude: Recording,
    step: Recording,
    out: Tensor,
    /// Trajectory calls in execution order (empty without the branch).
    pub traj_slots: Vec<TrajSlot>,
    trajectories: Option<Trajectories>,
    _persist: Vec<Tensor>,
    /// Owners of the step's and the prelude's intermediate buffers.
    _lender: Lender,
    _pre_lender: Lender,
    dtype: DType,
    /// FLOPs of one step (matmuls, convolutions, attentions).
    pub flops: f64,
    /// FLOPs the reference implementation spends on the same step.
    pub reference_flops: f64,
    cfg: UNetConfig,
}

/// `Timesteps(dim, flip_sin_to_cos=True, shift=0)` of diffusers, in float32 as the reference computes it.
pub fn sinusoid(t: &[f32], dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let neg_ln = -(10000f64.ln()) as f32;
    let freqs: Vec<f32> = (0..half).map(|k| ((k as f32) * neg_ln / half as f32).exp()).collect();
    let mut out = Vec::with_capacity(t.len() * dim);
    for &tv in t {
        let args: Vec<f32> = freqs.iter().map(|&f| tv * f).collect();
        out.extend(args.iter().map(|a| a.cos()));
        out.extend(args.iter().map(|a| a.sin()));
    }
    out
}

/// Uploads host values into a graph input in its dtype (the UNet input of [`UNetGraph::input`]).
pub fn upload_input(gpu: &Gpu, t: &Tensor, data: &[f32]) -> Result<()> {
    upload(gpu, t, data)
}

pub(super) fn upload(gpu: &Gpu, t: &Tensor, data: &[f32]) -> Result<()> {
    if data.len() != t.numel() {
        return Err(input_err(format!(
            "expected {} values for {:?}, got {}",
            t.numel(),
            t.shape(),
            data.len()
        )));
    }
    if gpu.is_dry() {
        // A dry device's buffers are placeholders (memory plans): nothing is written.
        return Ok(());
    }
    match t.dtype() {
        DType::F32 => gpu.queue.write_buffer(t.buffer(), t.byte_offset(), bytemuck::cast_slice(data)),
        DType::F16 => {
            let h: Vec<f16> = data.iter().map(|&x| f16::from_f32(x)).collect();
            gpu.queue.write_buffer(t.buffer(), t.byte_offset(), bytemuck::cast_slice(&h))
        }
    }
    Ok(())
}

pub(super) fn upload_u32(gpu: &Gpu, t: &Tensor, data: &[u32]) {
    if gpu.is_dry() {
        return;
    }
    gpu.queue.write_buffer(t.buffer(), t.byte_offset(), bytemuck::cast_slice(data));
}

/// Attention prefixes of the model (those whose constants the prelude computes) with their widths.
pub(super) fn attention_prefixes(cfg: &UNetConfig) -> Vec<(String, usize, usize)> {
    let n = cfg.n_blocks();
    let mut v = Vec::new();
    for i in 0..n {
        if cfg.down_block_types[i] == DownBlockKind::CrossAttn {
            for j in 0..cfg.layers_per_block[i] {
                v.push((
                    format!("down_blocks.{i}.attentions.{j}"),
                    cfg.block_out_channels[i],
                    cfg.transformer_layers_per_block[i],
                ));
            }
        }
    }
    v.push((
        "mid_block.attentions.0".to_string(),
        cfg.block_out_channels[n - 1],
        cfg.transformer_layers_per_block[n - 1],
    ));
    for i in 0..n {
        if cfg.up_block_types[i] == UpBlockKind::CrossAttn {
            let r = n - 1 - i;
            for j in 0..cfg.layers_per_block[r] + 1 {
                v.push((
                    format!("up_blocks.{i}.attentions.{j}"),
                    cfg.block_out_channels[r],
                    cfg.transformer_layers_per_block[r],
                ));
            }
        }
    }
    v
}

impl UNetGraph {
    /// Records the UNet for `shape`. With `trajectories`, every temporal block runs the trajectory branch
    /// (the weights must be loaded).
    pub fn build(
        gpu: &Gpu,
        u: &UNet,
        shape: UNetShape,
        opts: GraphOptions,
        trajectories: Option<Trajectories>,
    ) -> Result<UNetGraph> {
        let cfg = &u.cfg;
        let UNetShape { batch: b, frames: f, height: h0, width: w0 } = shape;
        if b == 0 || f == 0 || h0 == 0 || w0 == 0 {
            return Err(input_err(format!("empty UNet shape {shape:?}")));
        }
        let levels = cfg.n_blocks() - 1;
        let unit = 1usize << levels;
        if !h0.is_multiple_of(unit) || !w0.is_multiple_of(unit) {
            return Err(input_err(format!(
                "latent size {h0}×{w0} must be a multiple of {unit} (the UNet halves it {levels} times and doubles it back; \
                 pixel sizes must be multiples of {})",
                unit * 8
            )));
        }
        if let Some(tr) = &trajectories {
            if !u.has_trajectory {
                return Err(input_err("trajectories given but no trajectory weights are loaded"));
            }
            if tr.coords.len() != f * tr.n * 2 || tr.visible.len() != f * tr.n {
                return Err(input_err(format!(
                    "trajectories hold {} coordinates and {} visibility flags; {f} frames × {} trajectories need {} and {}",
                    tr.coords.len(),
                    tr.visible.len(),
                    tr.n,
                    f * tr.n * 2,
                    f * tr.n
                )));
            }
            if tr.n == 0 {
                return Err(input_err("no trajectories"));
            }
            if let Some(i) = tr.coords.iter().position(|v| !v.is_finite()) {
                return Err(input_err(format!(
                    "trajectory {} in frame {} has a non-finite coordinate",
                    i / 2 % tr.n,
                    i / 2 / tr.n
                )));
            }
        }
        let dtype = u.dtype;
        let bf = b * f;
        let ted = cfg.time_embed_dim();
        let c0 = cfg.block_out_channels[0];
        let adt = cfg.addition_time_embed_dim;
        let sample = Tensor::empty(gpu, &[bf, cfg.in_channels, h0, w0], dtype)?;
        let t_sin = Tensor::empty(gpu, &[bf, c0], dtype)?;
        let add_sin = Tensor::empty(gpu, &[bf, 3 * adt], dtype)?;
        let cross_dim = cfg.cross_attention_dim[0];
        if cfg.cross_attention_dim.iter().any(|&d| d != cross_dim) {
            return Err(input_err("per-block cross_attention_dim values that differ are not supported"));
        }
        let context = Tensor::empty(gpu, &[b, cross_dim], dtype)?;

        // Prelude: conditioning constants.
        let mut pre = Builder::new(gpu, dtype);
        let mut consts = Consts { cross: HashMap::new(), pos: HashMap::new() };
        let mut persist = Vec::new();
        let frame_idx: Vec<f32> = (0..bf).map(|r| (r % f) as f32).collect();
        for (p, c, layers) in attention_prefixes(cfg) {
            let sin = sinusoid(&frame_idx, c);
            let sin_t = Tensor::from_f32(gpu, &sin, &[bf, c], dtype)?;
            let hid = pre.linear(
                &sin_t,
                u.w(&format!("{p}.time_pos_embed.linear_1.weight"))?,
                Some(u.w(&format!("{p}.time_pos_embed.linear_1.bias"))?),
                Epilogue::Silu,
            )?;
            let pos = Tensor::empty(gpu, &[bf, c], dtype)?;
            trajattn_kernels::ops::matmul::record(
                &mut pre.rec,
                &hid,
                u.w(&format!("{p}.time_pos_embed.linear_2.weight"))?,
                trajattn_kernels::ops::matmul::WLayout::NK,
                Some(u.w(&format!("{p}.time_pos_embed.linear_2.bias"))?),
                Epilogue::None,
                &pos,
                None,
            )?;
            drop(hid);
            persist.push(sin_t);
            consts.pos.insert(p.clone(), pos);
            for l in 0..layers {
                for blk in [
                    format!("{p}.transformer_blocks.{l}.attn2"),
                    format!("{p}.temporal_transformer_blocks.{l}.attn2"),
                ] {
                    let v =
                        pre.linear(&context, u.w(&format!("{blk}.to_v.weight"))?, None, Epilogue::None)?;
                    let o = Tensor::empty(gpu, &[b, c], dtype)?;
                    trajattn_kernels::ops::matmul::record(
                        &mut pre.rec,
                        &v,
                        u.w(&format!("{blk}.to_out.0.weight"))?,
                        trajattn_kernels::ops::matmul::WLayout::NK,
                        Some(u.w(&format!("{blk}.to_out.0.bias"))?),
                        Epilogue::None,
                        &o,
                        None,
                    )?;
                    consts.cross.insert(blk, o);
                }
            }
        }
        let pre_lender = pre.lender();
        let prelude = pre.rec.finish();

        // Step graph.
        let mut bd = Builder::new(gpu, dtype);
        let emb_act = {
            let t1 = bd.linear(
                &t_sin,
                u.w("time_embedding.linear_1.weight")?,
                Some(u.w("time_embedding.linear_1.bias")?),
                Epilogue::Silu,
            )?;
            let temb = bd.linear(
                &t1,
                u.w("time_embedding.linear_2.weight")?,
                Some(u.w("time_embedding.linear_2.bias")?),
                Epilogue::None,
            )?;
            drop(t1);
            let a1 = bd.linear(
                &add_sin,
                u.w("add_embedding.linear_1.weight")?,
                Some(u.w("add_embedding.linear_1.bias")?),
                Epilogue::Silu,
            )?;
            bd.linear_acc(
                &temb,
                &a1,
                u.w("add_embedding.linear_2.weight")?,
                Some(u.w("add_embedding.linear_2.bias")?),
            )?;
            drop(a1);
            // Every res-block applies SiLU to the embedding before its projection: do it once.
            let act = bd.empty(&[bf, ted])?;
            trajattn_kernels::ops::elementwise::record_unary(
                &mut bd.rec,
                trajattn_kernels::ops::elementwise::Unary::Silu,
                &temb,
                &act,
            )?;
            act
        };
        let mut cx = Ctx {
            u,
            b: bd,
            shape,
            consts,
            emb_act,
            traj: trajectories.as_ref(),
            slots: Vec::new(),
            opts,
            ref_extra: 0.0,
        };
        let n = cfg.n_blocks();
        // Activations are shared with the skip list: a buffer returns to the lender when its last holder drops.
        let mut x: Rc<Act> = Rc::new(cx.b.conv2d(
            &sample,
            u.w("conv_in.weight")?,
            Some(u.w("conv_in.bias")?),
            Conv2dOpts::new(1, 1),
        )?);
        let mut skips: Vec<Rc<Act>> = vec![x.clone()];
        for i in 0..n {
            let p = format!("down_blocks.{i}");
            let eps = if cfg.down_block_types[i] == DownBlockKind::CrossAttn { 1e-6 } else { 1e-5 };
            for j in 0..cfg.layers_per_block[i] {
                x = Rc::new(cx.resnet(&format!("{p}.resnets.{j}"), &x, eps)?);
                if cfg.down_block_types[i] == DownBlockKind::CrossAttn {
                    x = Rc::new(cx.transformer(
                        &format!("{p}.attentions.{j}"),
                        &x,
                        cfg.num_attention_heads[i],
                        cfg.transformer_layers_per_block[i],
                    )?);
                }
                skips.push(x.clone());
            }
            if i + 1 < n {
                x = Rc::new(cx.downsample(&format!("{p}.downsamplers.0"), &x)?);
                skips.push(x.clone());
            }
        }
        let y: Act = cx.resnet("mid_block.resnets.0", &x, 1e-5)?;
        drop(x);
        let mut x = y;
        let tl = cfg.transformer_layers_per_block[n - 1];
        x = cx.transformer("mid_block.attentions.0", &x, cfg.num_attention_heads[n - 1], tl)?;
        x = cx.resnet("mid_block.resnets.1", &x, 1e-5)?;
        for i in 0..n {
            let p = format!("up_blocks.{i}");
            let r = n - 1 - i;
            for j in 0..cfg.layers_per_block[r] + 1 {
                let skip = skips.pop().ok_or_else(|| input_err("skip list exhausted"))?;
                let cat = cx.b.concat_channels(&x, &skip)?;
                // Both halves live on in the concatenation: release them before the res-block allocates.
                drop(skip);
                drop(x);
                x = cx.resnet(&format!("{p}.resnets.{j}"), &cat, 1e-6)?;
                drop(cat);
                if cfg.up_block_types[i] == UpBlockKind::CrossAttn {
                    x = cx.transformer(
                        &format!("{p}.attentions.{j}"),
                        &x,
                        cfg.num_attention_heads[r],
                        cfg.transformer_layers_per_block[r],
                    )?;
                }
            }
            if i + 1 < n {
                x = cx.upsample(&format!("{p}.upsamplers.0"), &x)?;
            }
        }
        let u2 = cx.u;
        let y = cx.b.group_norm(
            &x,
            u2.w("conv_norm_out.weight")?,
            u2.w("conv_norm_out.bias")?,
            1e-5,
            GroupStats::PerFrame,
            true,
        )?;
        drop(x);
        let out = Tensor::empty(gpu, &[b, f, cfg.out_channels, h0, w0], dtype)?;
        {
            let o4 = out.reshape(&[bf, cfg.out_channels, h0, w0])?;
            trajattn_kernels::ops::conv::record_conv2d(
                &mut cx.b.rec,
                &y,
                u2.w("conv_out.weight")?,
                Some(u2.w("conv_out.bias")?),
                Conv2dOpts::new(1, 1),
                &o4,
            )?;
        }
        drop(y);
        drop(skips);
        cx.b.flops += 2.0 * (bf * cfg.out_channels * h0 * w0 * 9 * cfg.block_out_channels[0]) as f64;
        let Ctx { b: bd, slots, consts, emb_act, ref_extra, .. } = cx;
        let flops = bd.flops;
        let lender = bd.lender();
        drop(emb_act);
        let step = bd.rec.finish();
        persist.extend(consts.cross.into_values());
        persist.extend(consts.pos.into_values());
        Ok(UNetGraph {
            shape,
            sample,
            t_sin,
            add_sin,
            context,
            prelude,
            step,
            out,
            traj_slots: slots,
            trajectories,
            _persist: persist,
            _lender: lender,
            _pre_lender: pre_lender,
            dtype,
            flops,
            reference_flops: flops + ref_extra,
            cfg: cfg.clone(),
        })
    }

    /// Memory of the step graph's intermediates (and op scratch): the arenas its recording placed them in.
    pub fn arena_stats(&self) -> LenderStats {
        self.step.arena_stats()
    }

    /// The recorded dispatches of one step (for profiling; [`UNetGraph::run`] uploads the inputs first).
    pub fn step_recording(&self) -> &Recording {
        &self.step
    }

    /// Dispatches per step.
    pub fn dispatches(&self) -> usize {
        self.step.len()
    }

    /// Sets the conditioning: `context [B, D]` (the CLIP embeddings, unconditional first) and
    /// `added_time_ids [B, 3]` (fps − 1, motion bucket, noise augmentation). Runs the prelude.
    pub fn set_conditioning(&self, gpu: &Gpu, context: &[f32], added_time_ids: &[f32]) -> Result<()> {
        let b = self.shape.batch;
        if added_time_ids.len() != 3 * b {
            return Err(input_err(format!(
                "added_time_ids: expected {} values, got {}",
                3 * b,
                added_time_ids.len()
            )));
        }
        upload(gpu, &self.context, context)?;
        // The reference casts the ids to the model dtype before embedding them (0.02 → 0.0200042724609375 in fp16).
        let ids: Vec<f32> = match self.dtype {
            DType::F16 => added_time_ids.iter().map(|&v| f16::from_f32(v).to_f32()).collect(),
            DType::F32 => added_time_ids.to_vec(),
        };
        let adt = self.cfg.addition_time_embed_dim;
        let emb = sinusoid(&ids, adt); // (3B, adt) = (B, 3·adt)
        let f = self.shape.frames;
        let mut rep = Vec::with_capacity(b * f * 3 * adt);
        for bi in 0..b {
            for _ in 0..f {
                rep.extend_from_slice(&emb[bi * 3 * adt..(bi + 1) * 3 * adt]);
            }
        }
        upload(gpu, &self.add_sin, &rep)?;
        self.prelude.submit(gpu, true)?;
        Ok(())
    }

    /// Runs one UNet call: `sample [B, F, Cin, h, w]`, one `timestep` (c_noise) per batch element, and for
    /// each trajectory call (execution order) its sampled indices. Output in [`UNetGraph::output`].
    pub fn run(&self, gpu: &Gpu, sample: &[f32], timestep: &[f32], indices: &[Vec<usize>]) -> Result<()> {
        upload(gpu, &self.sample, sample)?;
        self.run_on_input(gpu, timestep, indices)
    }

    /// The UNet input tensor `[B, F, in_channels, h, w]` (model dtype), for callers that fill it on the device.
    pub fn input(&self) -> &Tensor {
        &self.sample
    }

    /// Like [`UNetGraph::run`] on whatever [`UNetGraph::input`] already holds (written on the device).
    pub fn run_on_input(&self, gpu: &Gpu, timestep: &[f32], indices: &[Vec<usize>]) -> Result<()> {
        let UNetShape { batch: b, frames: f, .. } = self.shape;
        if timestep.len() != b {
            return Err(input_err(format!("timestep: expected {b} values, got {}", timestep.len())));
        }
        let t: Vec<f32> = (0..b * f).map(|r| timestep[r / f]).collect();
        upload(gpu, &self.t_sin, &sinusoid(&t, self.cfg.block_out_channels[0]))?;
        if let Some(tr) = &self.trajectories {
            if indices.len() != self.traj_slots.len() {
                return Err(input_err(format!(
                    "{} trajectory index sets given; the graph makes {} trajectory calls",
                    indices.len(),
                    self.traj_slots.len()
                )));
            }
            for (slot, idx) in self.traj_slots.iter().zip(indices) {
                if slot.m == 0 && idx.is_empty() {
                    continue;
                }
                if idx.len() != slot.m {
                    return Err(input_err(format!(
                        "{}: {} sampled indices given, the call samples {}",
                        slot.module,
                        idx.len(),
                        slot.m
                    )));
                }
                let call = traj::Call {
                    hidden: &[],
                    b,
                    h: slot.h,
                    w: slot.w,
                    f,
                    c: 1,
                    heads: 1,
                    traj: &tr.coords,
                    mask: &tr.visible,
                    n: tr.n,
                    origin_w: tr.origin_w,
                    origin_h: tr.origin_h,
                    idx,
                    grouping: tr.grouping,
                };
                let t = traj::tables(&call)?;
                upload_u32(gpu, &slot.table, &t.table);
                upload_u32(gpu, &slot.offsets, &t.offsets);
                if !t.hits.is_empty() {
                    upload_u32(gpu, &slot.hits, &t.hits);
                }
            }
        }
        self.step.submit(gpu, true)?;
        Ok(())
    }

    /// The last output `[B, F, out_channels, h, w]`.
    pub fn output(&self) -> &Tensor {
        &self.out
    }
}
