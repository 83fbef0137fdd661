//! The VAE's temporal decoder (`TemporalDecoder` of diffusers' `autoencoder_kl_temporal_decoder.py`).

use trajattn_kernels::ops::conv::Conv2dOpts;
use trajattn_kernels::{Gpu, Tensor};

use super::{input_err, Result, Vae};
use crate::nn::{resnet, Act, Builder};

impl Vae {
    /// Decoder `SpatioTemporalResBlock` (temb none, eps 1e-6, temporal eps 1e-5, switched "learned" blend).
    fn st_resnet(&self, b: &mut Builder, p: &str, x: &Tensor, frames: usize) -> Result<Act> {
        let s = resnet::resnet2d(b, &self.weights, &format!("{p}.spatial_res_block"), x, 1e-6, None)?;
        self.st_temporal(b, p, &s, frames)
    }

    /// The temporal half of a `SpatioTemporalResBlock` on the output `s` of its spatial res-block: the
    /// temporal res-block over clips of `frames` rows, blended with `s`.
    fn st_temporal(&self, b: &mut Builder, p: &str, s: &Tensor, frames: usize) -> Result<Act> {
        let t = resnet::temporal_resnet(
            b,
            &self.weights,
            &format!("{p}.temporal_res_block"),
            s,
            frames,
            1e-5,
            None,
        )?;
        let m = self.weights.scalar(&format!("{p}.time_mixer.mix_factor"))?;
        let sig = 1.0 / (1.0 + (-m).exp());
        // Switched: x = (1 − σ(m))·spatial + σ(m)·temporal.
        Ok(b.blend(1.0 - sig, s, &t)?)
    }

    /// Frames per group in the per-frame stretch after the upsampler of block `i` (see
    /// [`Vae::upsample_stretch`]) for a clip of `frames` frames whose input to the stretch is `[.., c, h, w]`,
    /// on an adapter whose largest buffer is `max_buffer` bytes ([`Vae::stretch_frames`] overrides it).
    ///
    /// Every tensor of a group must fit `max_buffer`: the widest, per frame, is `max(c, next)` channels at
    /// `2h × 2w` (`next`: the next block's width). Within that, the group is kept small enough that the
    /// stretch needs no more than the level after it: that level runs with three `[frames, next, 2h, 2w]`
    /// tensors alive (a res-block's input, its norm's and its conv's outputs), while the stretch holds its
    /// input (`frames · c/4` of those channel planes), its output (`frames · next`) and, per group frame, the
    /// upsampled or convolved input and its norm (`2c`) and the first conv's output (`next`):
    /// `k ≤ frames · (2·next − c/4) / (2c + next)`, at least 1. At SVD's last upsampler (`c` 256, `next` 128)
    /// that is 0.3 × the frames.
    pub fn stretch_group(
        &self,
        max_buffer: u64,
        i: usize,
        frames: usize,
        c: usize,
        h: usize,
        w: usize,
    ) -> usize {
        let frames = frames.max(1);
        if let Some(k) = self.stretch_frames {
            return k.clamp(1, frames);
        }
        let n = self.cfg.block_out_channels.len();
        let next = self.cfg.block_out_channels[n.saturating_sub(2 + i)];
        let per_frame = (c.max(next) * 4 * h * w) as u64 * self.dtype.size();
        let fit = (max_buffer / per_frame.max(1)).min(frames as u64) as usize;
        let peak = frames * (2 * next).saturating_sub(c / 4) / (2 * c + next).max(1);
        fit.min(peak).clamp(1, frames)
    }

    /// The upsampler of block `i` (nearest 2×, conv 3×3) and the spatial res-block of the next block's first
    /// `SpatioTemporalResBlock`: every op of this stretch works on each frame alone (the temporal half mixes
    /// frames, and follows on the whole clip). It runs in groups of [`Vae::stretch_group`] frames, each
    /// writing its window of the spatial res-block's output, so that its widest full-resolution tensors exist
    /// for a group at a time only. Returns the whole first `SpatioTemporalResBlock` of block `i + 1`.
    fn upsample_stretch(&self, b: &mut Builder, i: usize, x: &Tensor, frames: usize) -> Result<Act> {
        let xs = x.shape().to_vec();
        let (nf, c, h, w) = (xs[0], xs[1], xs[2], xs[3]);
        let up = format!("decoder.up_blocks.{i}.upsamplers.0.conv");
        let (uw, ub) = (self.w(&format!("{up}.weight"))?, self.w(&format!("{up}.bias"))?);
        let p = format!("decoder.up_blocks.{}.resnets.0", i + 1);
        let sp = format!("{p}.spatial_res_block");
        let co = self.w(&format!("{sp}.conv2.weight"))?.shape()[0];
        let s = b.empty(&[nf, co, 2 * h, 2 * w])?;
        let k = self.stretch_group(b.gpu.limits.max_buffer_size, i, nf, c, h, w);
        let mut f0 = 0;
        while f0 < nf {
            let kf = k.min(nf - f0);
            let big = b.upsample2x(&x.narrow0(f0, kf)?)?;
            let y = b.conv2d(&big, uw, Some(ub), Conv2dOpts::new(1, 1))?;
            drop(big);
            resnet::resnet2d_into(b, &self.weights, &sp, &y, 1e-6, None, &s.narrow0(f0, kf)?)?;
            f0 += kf;
        }
        self.st_temporal(b, &p, &s, frames)
    }

    /// Decodes `latents [n, C, h, w]` (already divided by the scaling factor) as one clip of `n` frames:
    /// `[n, 3, H, W]` f32 on the host.
    pub fn decode_clip(&self, gpu: &Gpu, latents: &[f32], n: usize, h: usize, w: usize) -> Result<Vec<f32>> {
        let lc = self.cfg.latent_channels;
        if latents.len() != n * lc * h * w || n == 0 {
            return Err(input_err(format!(
                "latents: expected {n}×{lc}×{h}×{w} values, got {}",
                latents.len()
            )));
        }
        let x = Tensor::from_f32(gpu, latents, &[n, lc, h, w], self.dtype)?;
        let mut b = Builder::new(gpu, self.dtype);
        let y = self.record_decode(&mut b, &x, n)?;
        b.rec.run()?;
        if gpu.is_dry() {
            return Ok(vec![0.0; y.numel()]);
        }
        Ok(y.to_f32(gpu)?)
    }

    /// Decodes `latents [F, C, h, w]` (already divided by the scaling factor) in chunks of `chunk` frames,
    /// as the pipeline does (each chunk is its own clip), calling `progress` after each chunk.
    #[allow(clippy::too_many_arguments)]
    pub fn decode(
        &self,
        gpu: &Gpu,
        latents: &[f32],
        frames: usize,
        h: usize,
        w: usize,
        chunk: usize,
        mut progress: impl FnMut(usize),
    ) -> Result<Vec<f32>> {
        let lc = self.cfg.latent_channels;
        let per = lc * h * w;
        if chunk == 0 {
            return Err(input_err("decode chunk must be at least 1 frame"));
        }
        let mut out = Vec::new();
        let mut f0 = 0;
        while f0 < frames {
            let n = chunk.min(frames - f0);
            out.extend(self.decode_clip(gpu, &latents[f0 * per..(f0 + n) * per], n, h, w)?);
            f0 += n;
            progress(f0);
        }
        Ok(out)
    }

    fn record_decode(&self, b: &mut Builder, x: &Tensor, frames: usize) -> Result<Act> {
        let c = &self.cfg;
        let n = c.block_out_channels.len();
        let mut h = b.conv2d(
            x,
            self.w("decoder.conv_in.weight")?,
            Some(self.w("decoder.conv_in.bias")?),
            Conv2dOpts::new(1, 1),
        )?;
        // diffusers zips resnets[1:] with its single attention: resnets.0, then (attention, resnets.1) if there
        // are at least two res-blocks; any further res-blocks are never run (and with one, neither is the
        // attention).
        h = self.st_resnet(b, "decoder.mid_block.resnets.0", &h, frames)?;
        if c.layers_per_block >= 2 {
            h = self.attention(b, "decoder.mid_block.attentions.0", &h)?;
            h = self.st_resnet(b, "decoder.mid_block.resnets.1", &h, frames)?;
        }
        for i in 0..n {
            // After an upsampler, the first res-block ran in its stretch.
            for j in usize::from(i > 0)..c.layers_per_block + 1 {
                h = self.st_resnet(b, &format!("decoder.up_blocks.{i}.resnets.{j}"), &h, frames)?;
            }
            if i + 1 < n {
                h = self.upsample_stretch(b, i, &h, frames)?;
            }
        }
        let o = self.norm_out_conv(b, "decoder", h)?;
        Ok(b.conv3d_temporal(
            &o,
            frames,
            self.w("decoder.time_conv_out.weight")?,
            Some(self.w("decoder.time_conv_out.bias")?),
        )?)
    }
}
