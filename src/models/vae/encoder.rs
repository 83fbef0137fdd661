//! The VAE's 2-D encoder: the posterior mean of images (diffusers' `Encoder` + `quant_conv`).

use trajattn_kernels::ops::conv::Conv2dOpts;
use trajattn_kernels::{Gpu, Tensor};

use super::{input_err, Result, Vae};
use crate::nn::{resnet, Act, Builder};

impl Vae {
    /// Posterior mean of `image [N, 3, H, W]` in [-1, 1] (H, W multiples of the downsampling factor):
    /// `[N, latent_channels, H/f, W/f]`, f32 on the host.
    pub fn encode(&self, gpu: &Gpu, image: &[f32], n: usize, h: usize, w: usize) -> Result<Vec<f32>> {
        let cin = self.cfg.in_channels;
        if image.len() != n * cin * h * w {
            return Err(input_err(format!("image: expected {n}×{cin}×{h}×{w} values, got {}", image.len())));
        }
        let x = Tensor::from_f32(gpu, image, &[n, cin, h, w], self.dtype)?;
        let mut b = Builder::new(gpu, self.dtype);
        // The result stays on loan (its buffer untouched) until it is downloaded after the run.
        let mean = self.record_encode(&mut b, &x)?;
        b.rec.run()?;
        if gpu.is_dry() {
            // A dry device (memory plans) runs nothing: there is nothing to read.
            return Ok(vec![0.0; mean.numel()]);
        }
        Ok(mean.to_f32(gpu)?)
    }

    fn record_encode(&self, b: &mut Builder, x: &Tensor) -> Result<Act> {
        let c = &self.cfg;
        let eps = 1e-6;
        let mut h = b.conv2d(
            x,
            self.w("encoder.conv_in.weight")?,
            Some(self.w("encoder.conv_in.bias")?),
            Conv2dOpts::new(1, 1),
        )?;
        let n = c.block_out_channels.len();
        for i in 0..n {
            for j in 0..c.layers_per_block {
                let p = format!("encoder.down_blocks.{i}.resnets.{j}");
                h = resnet::resnet2d(b, &self.weights, &p, &h, eps, None)?;
            }
            if i + 1 < n {
                // Downsample2D(padding=0): pad one zero row at the bottom and one column at the right, stride 2.
                let p = format!("encoder.down_blocks.{i}.downsamplers.0.conv");
                let o = Conv2dOpts { stride: 2, pad: [0, 0, 1, 1] };
                h = b.conv2d(&h, self.w(&format!("{p}.weight"))?, Some(self.w(&format!("{p}.bias"))?), o)?;
            }
        }
        h = resnet::resnet2d(b, &self.weights, "encoder.mid_block.resnets.0", &h, eps, None)?;
        h = self.attention(b, "encoder.mid_block.attentions.0", &h)?;
        h = resnet::resnet2d(b, &self.weights, "encoder.mid_block.resnets.1", &h, eps, None)?;
        let o = self.norm_out_conv(b, "encoder", h)?;
        let q = b.conv2d(
            &o,
            self.w("quant_conv.weight")?,
            Some(self.w("quant_conv.bias")?),
            Conv2dOpts::new(1, 0),
        )?;
        drop(o);
        // Channels 0..latent are the mean (the rest is the log-variance, unused by mode()).
        let s = q.shape().to_vec();
        let lc = self.cfg.latent_channels;
        if s[1] < lc {
            return Err(input_err(format!(
                "quant_conv gives {} channels, fewer than latent_channels {lc}",
                s[1]
            )));
        }
        let mean = b.empty(&[s[0], lc, s[2], s[3]])?;
        let plane = s[2] * s[3];
        trajattn_kernels::ops::layout::record_copy2d(
            &mut b.rec,
            &q,
            0,
            s[1] * plane,
            &mean,
            0,
            lc * plane,
            s[0],
            lc * plane,
        )?;
        Ok(mean)
    }
}
