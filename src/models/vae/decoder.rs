//! The VAE's temporal decoder (`TemporalDecoder` of diffusers' `autoencoder_kl_temporal_decoder.py`).

use trajattn_kernels::ops::conv::Conv2dOpts;
use trajattn_kernels::ops::group_norm::GroupStats;
use trajattn_kernels::{Gpu, Tensor};

use super::{input_err, Result, Vae};
use crate::nn::{resnet, Act, Builder};

impl Vae {
    /// Decoder `SpatioTemporalResBlock` (temb none, eps 1e-6, temporal eps 1e-5, switched "learned" blend).
    fn st_resnet(&self, b: &mut Builder, p: &str, x: &Tensor, frames: usize) -> Result<Act> {
        let s = resnet::resnet2d(b, &self.weights, &format!("{p}.spatial_res_block"), x, 1e-6, None)?;
        let t = resnet::temporal_resnet(
            b,
            &self.weights,
            &format!("{p}.temporal_res_block"),
            &s,
            frames,
            1e-5,
            None,
        )?;
        let m = self.weights.scalar(&format!("{p}.time_mixer.mix_factor"))?;
        let sig = 1.0 / (1.0 + (-m).exp());
        // Switched: x = (1 − σ(m))·spatial + σ(m)·temporal.
        Ok(b.blend(1.0 - sig, &s, &t)?)
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
            for j in 0..c.layers_per_block + 1 {
                h = self.st_resnet(b, &format!("decoder.up_blocks.{i}.resnets.{j}"), &h, frames)?;
            }
            if i + 1 < n {
                let p = format!("decoder.up_blocks.{i}.upsamplers.0.conv");
                let up = b.upsample2x(&h)?;
                h = b.conv2d(
                    &up,
                    self.w(&format!("{p}.weight"))?,
                    Some(self.w(&format!("{p}.bias"))?),
                    Conv2dOpts::new(1, 1),
                )?;
            }
        }
        let g = b.group_norm(
            &h,
            self.w("decoder.conv_norm_out.weight")?,
            self.w("decoder.conv_norm_out.bias")?,
            1e-6,
            GroupStats::PerFrame,
            true,
        )?;
        drop(h);
        let o = b.conv2d(
            &g,
            self.w("decoder.conv_out.weight")?,
            Some(self.w("decoder.conv_out.bias")?),
            Conv2dOpts::new(1, 1),
        )?;
        drop(g);
        Ok(b.conv3d_temporal(
            &o,
            frames,
            self.w("decoder.time_conv_out.weight")?,
            Some(self.w("decoder.time_conv_out.bias")?),
        )?)
    }
}
