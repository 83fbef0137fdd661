//! The builder of each diffusers block the UNet graph records (res-blocks, spatial and temporal transformer
//! blocks with the trajectory branch, down/up samplers), on a [`Ctx`] that carries the builder and the per-block
//! constants.

use super::*;

/// Per-block constants computed by the prelude.
pub(super) struct Consts {
    /// `to_out(to_v(context))` of spatial / temporal `attn2`, `[B, C]`, by module prefix.
    pub(super) cross: HashMap<String, Tensor>,
    /// Frame position embeddings `[B·F, C]` by attention prefix.
    pub(super) pos: HashMap<String, Tensor>,
}

pub(super) struct Ctx<'a, 'g> {
    pub(super) u: &'a UNet,
    pub(super) b: Builder<'g>,
    pub(super) shape: UNetShape,
    pub(super) consts: Consts,
    pub(super) emb_act: Act,
    pub(super) traj: Option<&'a Trajectories>,
    pub(super) slots: Vec<TrajSlot>,
    pub(super) opts: GraphOptions,
    /// FLOPs the reference spends beyond ours (full cross-attention, trajectory projections of gathered tokens).
    pub(super) ref_extra: f64,
}

impl Ctx<'_, '_> {
    pub(super) fn chunk(&self) -> usize {
        self.opts.chunk_elems.unwrap_or(CHUNK_ELEMS).max(1)
    }

    /// `SpatioTemporalResBlock` (docs/reference/svd-architecture.md §3.6).
    pub(super) fn resnet(&mut self, p: &str, x: &Tensor, eps: f32) -> Result<Act> {
        let (w, e, f) = (&self.u.weights, Some(&*self.emb_act), self.shape.frames);
        let s = resnet::resnet2d(&mut self.b, w, &format!("{p}.spatial_res_block"), x, eps, e)?;
        let t = resnet::temporal_resnet(&mut self.b, w, &format!("{p}.temporal_res_block"), &s, f, eps, e)?;
        let alpha = self.u.alpha(&format!("{p}.time_mixer.mix_factor"))?;
        Ok(self.b.blend(alpha, &s, &t)?)
    }

    /// `x += ff(LN(x))` with a GEGLU feed-forward, over row chunks so the 8·C-wide projection stays small.
    pub(super) fn feed_forward(&mut self, x: &Tensor, norm: &str, ff: &str) -> Result<()> {
        let u = self.u;
        let c = *x.shape().last().unwrap_or(&1);
        let rows = x.numel() / c.max(1);
        let chunk = (self.chunk() / (8 * c)).clamp(1, rows.max(1));
        let x2 = x.reshape(&[rows, c])?;
        let mut r0 = 0;
        while r0 < rows {
            let nr = chunk.min(rows - r0);
            let xs = x2.narrow0(r0, nr)?;
            let n = self.b.layer_norm(
                &xs,
                u.w(&format!("{norm}.weight"))?,
                u.w(&format!("{norm}.bias"))?,
                1e-5,
            )?;
            let (pw, pb) = (u.w(&format!("{ff}.net.0.proj.weight"))?, u.w(&format!("{ff}.net.0.proj.bias"))?);
            // The GPU tier fuses the GEGLU into the projection's GEMM (the 8·C-wide projection is never written).
            let a = if self.b.geglu_fused() {
                let a = self.b.linear_geglu(&n, pw, Some(pb))?;
                drop(n);
                a
            } else {
                let g = self.b.linear(&n, pw, Some(pb), Epilogue::None)?;
                drop(n);
                let a = self.b.geglu(&g)?;
                drop(g);
                a
            };
            self.b.linear_acc(
                &xs,
                &a,
                u.w(&format!("{ff}.net.2.weight"))?,
                Some(u.w(&format!("{ff}.net.2.bias"))?),
            )?;
            r0 += nr;
        }
        Ok(())
    }

    /// `x += to_out(attention(to_qkv(n)))` over `seqs` independent sequences of `len` tokens, in chunks of
    /// sequences so the fused QKV tensor stays small.
    pub(super) fn self_attention_acc(
        &mut self,
        x: &Tensor,
        n: &Tensor,
        p: &str,
        seqs: usize,
        len: usize,
        heads: usize,
    ) -> Result<()> {
        let u = self.u;
        let c = *x.shape().last().unwrap_or(&1);
        let chunk = (self.chunk() / (3 * c * len).max(1)).clamp(1, seqs.max(1));
        let (x2, n2) = (x.reshape(&[seqs * len, c])?, n.reshape(&[seqs * len, c])?);
        let mut s0 = 0;
        while s0 < seqs {
            let ns = chunk.min(seqs - s0);
            let (xs, nsub) = (x2.narrow0(s0 * len, ns * len)?, n2.narrow0(s0 * len, ns * len)?);
            let qkv = self.b.linear(&nsub, u.w(&fused_qkv_name(p))?, None, Epilogue::None)?;
            let a = self.b.self_attention(&qkv, ns, len, heads)?;
            drop(qkv);
            self.b.linear_acc(
                &xs,
                &a,
                u.w(&format!("{p}.to_out.0.weight"))?,
                Some(u.w(&format!("{p}.to_out.0.bias"))?),
            )?;
            s0 += ns;
        }
        Ok(())
    }

    /// `BasicTransformerBlock` (docs/reference/svd-architecture.md §3.9) on `(B·F·S, C)` tokens, in place.
    pub(super) fn spatial_block(&mut self, p: &str, x: &Tensor, heads: usize, s: usize) -> Result<()> {
        let u = self.u;
        let bf = self.shape.batch * self.shape.frames;
        let n = self.b.layer_norm(
            x,
            u.w(&format!("{p}.norm1.weight"))?,
            u.w(&format!("{p}.norm1.bias"))?,
            1e-5,
        )?;
        self.self_attention_acc(x, &n, &format!("{p}.attn1"), bf, s, heads)?;
        drop(n);
        // Single-token cross-attention: a constant per batch element (rows of F·S tokens).
        let k = &self.consts.cross[&format!("{p}.attn2")];
        let f = self.shape.frames;
        let (rows, c) = (x.numel() / k.shape()[1], k.shape()[1] as f64);
        // The reference projects every token through to_q and to_out and attends to the single key.
        self.ref_extra += 4.0 * rows as f64 * c * c + 4.0 * rows as f64 * c;
        self.b.bcast_add_inplace(Bcast::Table { tokens: f * s, entries: self.shape.batch }, x, k)?;
        self.feed_forward(x, &format!("{p}.norm3"), &format!("{p}.ff"))
    }

    /// `TemporalBasicTransformerBlock` (docs/reference/svd-architecture.md §3.10) on `(B, S, F, C)`
    /// sequences, in place, with the trajectory branch when trajectories are bound.
    pub(super) fn temporal_block(
        &mut self,
        p: &str,
        x: &Tensor,
        heads: usize,
        hw: (usize, usize),
    ) -> Result<()> {
        let u = self.u;
        let UNetShape { batch: b, frames: f, .. } = self.shape;
        let s = hw.0 * hw.1;
        self.feed_forward(x, &format!("{p}.norm_in"), &format!("{p}.ff_in"))?;
        let n = self.b.layer_norm(
            x,
            u.w(&format!("{p}.norm1.weight"))?,
            u.w(&format!("{p}.norm1.bias"))?,
            1e-5,
        )?;
        self.self_attention_acc(x, &n, &format!("{p}.attn1"), b * s, f, heads)?;
        if let Some(tr) = self.traj {
            self.trajectory_branch(&format!("{p}.attn_trajectory"), x, &n, heads, hw, tr)?;
        }
        drop(n);
        let k = &self.consts.cross[&format!("{p}.attn2")];
        let (rows, c) = (x.numel() / k.shape()[1], k.shape()[1] as f64);
        self.ref_extra += 4.0 * rows as f64 * c * c + 4.0 * rows as f64 * c;
        let kind = match self.opts.time_context {
            TimeContext::Faithful => Bcast::Table { tokens: f, entries: b },
            TimeContext::PerBatch => Bcast::Table { tokens: s * f, entries: b },
        };
        self.b.bcast_add_inplace(kind, x, k)?;
        self.feed_forward(x, &format!("{p}.norm3"), &format!("{p}.ff"))
    }

    pub(super) fn trajectory_branch(
        &mut self,
        p: &str,
        x: &Tensor,
        n: &Tensor,
        heads: usize,
        (h, w): (usize, usize),
        tr: &Trajectories,
    ) -> Result<()> {
        let UNetShape { batch: b, frames: f, .. } = self.shape;
        let s = h * w;
        let c = n.shape()[1];
        let m = traj::samples_per_call(tr.n, h, w);
        let gpu = self.b.gpu;
        if m == 0 {
            // Below 4 latent cells the reference samples no trajectory (8·⌊h·w/4⌋ = 0): the branch adds nothing,
            // but its randperm is still drawn, so the call keeps its slot.
            let empty = || Tensor::from_u32(gpu, &[0], &[1]);
            self.slots.push(TrajSlot {
                module: p.to_string(),
                h,
                w,
                m,
                table: empty()?,
                offsets: empty()?,
                hits: empty()?,
            });
            return Ok(());
        }
        let seq_len =
            traj::sequence_length(tr.grouping, m, f, h, w).map_err(|e| input_err(format!("{p}: {e}")))?;
        let table = Tensor::from_u32(gpu, &vec![u32::MAX; m * f], &[m * f])?;
        let offsets = Tensor::from_u32(gpu, &vec![0u32; f * s + 1], &[f * s + 1])?;
        let hits = Tensor::from_u32(gpu, &vec![0u32; (m * f).max(1)], &[(m * f).max(1)])?;
        let g = traj::Geometry { b, h, w, f, c, heads, m, seq_len };
        let wqkv = self.u.w(&fused_qkv_name(p))?;
        // One group of heads at a time (as many as fit one binding per batch element, see heads_per_group): the
        // group's Q/K/V and attention scratch (reused group after group, bound in windows that fit the adapter) and
        // the means of all heads; the scratch dies before the output is allocated.
        // (In this order the arena's peak matches the plan on the fixtures; the means first lent case a's larger
        // free buffers to the scratch, 1.24× the plan.)
        let group = g.heads_per_group(n.dtype().size(), gpu.max_binding());
        let qkv = self.b.empty(&g.qkv_scratch_shape(group))?;
        let att = self.b.empty(&g.att_scratch_shape(group))?;
        let abar = self.b.empty(&[b * s * f, c])?;
        traj::record_heads(&mut self.b.rec, &g, n, wqkv, &table, &offsets, &hits, &qkv, &att, &abar)?;
        drop((qkv, att));
        let out = self.b.empty(&[b * s * f, c])?;
        let (wo, bo) = (self.u.w(&format!("{p}.to_out.0.weight"))?, self.u.w(&format!("{p}.to_out.0.bias"))?);
        traj::record_output(&mut self.b.rec, &g, &abar, &offsets, wo, bo, &out)?;
        drop(abar);
        // Ours: Q/K/V and output projections of the dense grid; the reference projects the B·M·F gathered
        // tokens instead (twice the grid at the standard sizes). Same attention.
        let (rows, gathered, cf) = ((b * s * f) as f64, (b * m * f) as f64, c as f64);
        self.b.flops +=
            8.0 * rows * cf * cf + 4.0 * (b * m * f / seq_len) as f64 * (seq_len * seq_len) as f64 * cf;
        self.ref_extra += 8.0 * (gathered - rows) * cf * cf;
        self.b.add_inplace(x, &out)?;
        self.slots.push(TrajSlot { module: p.to_string(), h, w, m, table, offsets, hits });
        Ok(())
    }

    /// `TransformerSpatioTemporalModel` (docs/reference/svd-architecture.md §3.11) on `(B·F, C, h, w)`.
    pub(super) fn transformer(&mut self, p: &str, x: &Tensor, heads: usize, layers: usize) -> Result<Act> {
        let u = self.u;
        let UNetShape { batch: b, frames: f, .. } = self.shape;
        let xs = x.shape().to_vec();
        let (bf, c, hh, ww) = (xs[0], xs[1], xs[2], xs[3]);
        let s = hh * ww;
        let n = self.b.group_norm(
            x,
            u.w(&format!("{p}.norm.weight"))?,
            u.w(&format!("{p}.norm.bias"))?,
            1e-6,
            GroupStats::PerFrame,
            false,
        )?;
        let t = self.b.swap12(&n, [bf, c, s, 1], &[bf * s, c])?;
        drop(n);
        let mut h = self.b.linear(
            &t,
            u.w(&format!("{p}.proj_in.weight"))?,
            Some(u.w(&format!("{p}.proj_in.bias"))?),
            Epilogue::None,
        )?;
        drop(t);
        let alpha = u.alpha(&format!("{p}.time_mixer.mix_factor"))?;
        for l in 0..layers {
            self.spatial_block(&format!("{p}.transformer_blocks.{l}"), &h, heads, s)?;
            let pos = self.consts.pos[p].clone();
            let mix = self.b.bcast_add(Bcast::Table { tokens: s, entries: bf }, &h, &pos)?;
            // (B, F, S, C) → (B, S, F, C): one temporal sequence per pixel.
            let tm = self.b.swap12(&mix, [b, f, s, c], &[b * s * f, c])?;
            drop(mix);
            self.temporal_block(&format!("{p}.temporal_transformer_blocks.{l}"), &tm, heads, (hh, ww))?;
            let back = self.b.swap12(&tm, [b, s, f, c], &[bf * s, c])?;
            drop(tm);
            h = self.b.blend(alpha, &h, &back)?;
        }
        let o = self.b.linear(
            &h,
            u.w(&format!("{p}.proj_out.weight"))?,
            Some(u.w(&format!("{p}.proj_out.bias"))?),
            Epilogue::None,
        )?;
        drop(h);
        let y = self.b.swap12(&o, [bf, s, c, 1], &[bf, c, hh, ww])?;
        drop(o);
        self.b.add_inplace(&y, x)?;
        Ok(y)
    }

    pub(super) fn downsample(&mut self, p: &str, x: &Tensor) -> Result<Act> {
        let u = self.u;
        Ok(self.b.conv2d(
            x,
            u.w(&format!("{p}.conv.weight"))?,
            Some(u.w(&format!("{p}.conv.bias"))?),
            Conv2dOpts::new(2, 1),
        )?)
    }

    pub(super) fn upsample(&mut self, p: &str, x: &Tensor) -> Result<Act> {
        let u = self.u;
        let up = self.b.upsample2x(x)?;
        Ok(self.b.conv2d(
            &up,
            u.w(&format!("{p}.conv.weight"))?,
            Some(u.w(&format!("{p}.conv.bias"))?),
            Conv2dOpts::new(1, 1),
        )?)
    }
}
