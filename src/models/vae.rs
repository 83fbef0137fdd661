//! `AutoencoderKLTemporalDecoder` (diffusers 0.27.0): the 2-D encoder (posterior mean) and the temporal
//! decoder, from any [`VaeConfig`] (docs/reference/svd-architecture.md §5). Module names mirror diffusers'
//! `vae.py`, `unet_2d_blocks.py` (`DownEncoderBlock2D`, `UNetMidBlock2D`) and
//! `autoencoder_kl_temporal_decoder.py`.

use std::collections::HashSet;
use std::path::Path;

use trajattn_kernels::ops::conv::Conv2dOpts;
use trajattn_kernels::ops::group_norm::GroupStats;
use trajattn_kernels::ops::matmul::Epilogue;
use trajattn_kernels::{DType, Gpu, Tensor};

use crate::checkpoint::{HostTensor, SafetensorsFile};
use crate::models::config::VaeConfig;
use crate::models::unet::UNetError;
use crate::nn::weights::host_dtype;
use crate::nn::{resnet, Act, Builder, Weights};

type Result<T> = std::result::Result<T, UNetError>;

fn input_err(msg: impl Into<String>) -> UNetError {
    UNetError::Input(msg.into())
}

/// The VAE's weights on the device.
pub struct Vae {
    pub cfg: VaeConfig,
    pub dtype: DType,
    weights: Weights,
}

/// Loads every tensor of a safetensors file that `keep` accepts; `{p}.to_q/k/v` triples (the attention
/// projections) are uploaded fused into `{p}.to_qkv.weight` / `.bias` only (the models read nothing else of
/// them). Returns the names in the file, for the unused-key check.
pub(crate) fn load_all(
    gpu: &Gpu,
    file: &SafetensorsFile,
    dtype: DType,
    w: &mut Weights,
    keep: &dyn Fn(&str) -> bool,
) -> Result<HashSet<String>> {
    let names: Vec<String> = file.names().map(str::to_string).collect();
    let host = host_dtype(dtype);
    for name in names.iter().filter(|n| keep(n)) {
        // Some CLIP exports carry the non-persistent int64 `position_ids` buffer: not a weight.
        if name.ends_with("position_ids") {
            continue;
        }
        let fused_part = ["to_q", "to_k", "to_v", "q_proj", "k_proj", "v_proj"]
            .iter()
            .any(|m| ["weight", "bias"].iter().any(|k| name.ends_with(&format!(".{m}.{k}"))));
        if !fused_part {
            w.load(gpu, file, name, dtype)?;
        }
        for kind in ["weight", "bias"] {
            if let Some(p) =
                name.strip_suffix(&format!(".to_q.{kind}")).or(name.strip_suffix(&format!(".q_proj.{kind}")))
            {
                let (k, v) = if name.contains(".to_q.") { ("to_k", "to_v") } else { ("k_proj", "v_proj") };
                let parts: Vec<HostTensor> =
                    [name.clone(), format!("{p}.{k}.{kind}"), format!("{p}.{v}.{kind}")]
                        .iter()
                        .map(|n| file.read(n, host))
                        .collect::<std::result::Result<_, _>>()?;
                w.upload_concat(gpu, &format!("{p}.to_qkv.{kind}"), &parts, dtype)?;
            }
        }
    }
    Ok(names.into_iter().collect())
}

/// Names and shapes of the weights a VAE of `cfg` holds on the device (attention projections fused into
/// `to_qkv`, as [`load_all`] uploads them).
pub fn weight_shapes(c: &VaeConfig) -> Vec<(String, Vec<usize>)> {
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    let mut wb = |p: String, w: Vec<usize>| {
        out.push((format!("{p}.bias"), vec![w[0]]));
        out.push((format!("{p}.weight"), w));
    };
    fn resnet(wb: &mut dyn FnMut(String, Vec<usize>), p: &str, cin: usize, co: usize) {
        wb(format!("{p}.norm1"), vec![cin]);
        wb(format!("{p}.conv1"), vec![co, cin, 3, 3]);
        wb(format!("{p}.norm2"), vec![co]);
        wb(format!("{p}.conv2"), vec![co, co, 3, 3]);
        if cin != co {
            wb(format!("{p}.conv_shortcut"), vec![co, cin, 1, 1]);
        }
    }
    fn attn(wb: &mut dyn FnMut(String, Vec<usize>), p: &str, c: usize) {
        wb(format!("{p}.group_norm"), vec![c]);
        wb(format!("{p}.to_qkv"), vec![3 * c, c]);
        wb(format!("{p}.to_out.0"), vec![c, c]);
    }
    let n = c.block_out_channels.len();
    let (c0, top, lc) = (c.block_out_channels[0], c.block_out_channels[n - 1], c.latent_channels);
    wb("encoder.conv_in".into(), vec![c0, c.in_channels, 3, 3]);
    let mut cin = c0;
    for (i, &co) in c.block_out_channels.iter().enumerate() {
        for j in 0..c.layers_per_block {
            resnet(
                &mut wb,
                &format!("encoder.down_blocks.{i}.resnets.{j}"),
                if j == 0 { cin } else { co },
                co,
            );
        }
        if i + 1 < n {
            wb(format!("encoder.down_blocks.{i}.downsamplers.0.conv"), vec![co, co, 3, 3]);
        }
        cin = co;
    }
    resnet(&mut wb, "encoder.mid_block.resnets.0", top, top);
    attn(&mut wb, "encoder.mid_block.attentions.0", top);
    resnet(&mut wb, "encoder.mid_block.resnets.1", top, top);
    wb("encoder.conv_norm_out".into(), vec![top]);
    wb("encoder.conv_out".into(), vec![2 * lc, top, 3, 3]);
    wb("quant_conv".into(), vec![2 * lc, 2 * lc, 1, 1]);
    wb("decoder.conv_in".into(), vec![top, lc, 3, 3]);
    let mut mixers = Vec::new();
    let mut st = |wb: &mut dyn FnMut(String, Vec<usize>), p: &str, cin: usize, co: usize| {
        resnet(wb, &format!("{p}.spatial_res_block"), cin, co);
        let t = format!("{p}.temporal_res_block");
        wb(format!("{t}.norm1"), vec![co]);
        wb(format!("{t}.conv1"), vec![co, co, 3, 1, 1]);
        wb(format!("{t}.norm2"), vec![co]);
        wb(format!("{t}.conv2"), vec![co, co, 3, 1, 1]);
        mixers.push(format!("{p}.time_mixer.mix_factor"));
    };
    for j in 0..c.layers_per_block {
        st(&mut wb, &format!("decoder.mid_block.resnets.{j}"), top, top);
    }
    attn(&mut wb, "decoder.mid_block.attentions.0", top);
    let mut prev = top;
    for i in 0..n {
        let co = c.block_out_channels[n - 1 - i];
        for j in 0..c.layers_per_block + 1 {
            st(&mut wb, &format!("decoder.up_blocks.{i}.resnets.{j}"), if j == 0 { prev } else { co }, co);
        }
        if i + 1 < n {
            wb(format!("decoder.up_blocks.{i}.upsamplers.0.conv"), vec![co, co, 3, 3]);
        }
        prev = co;
    }
    wb("decoder.conv_norm_out".into(), vec![c0]);
    wb("decoder.conv_out".into(), vec![c.out_channels, c0, 3, 3]);
    wb("decoder.time_conv_out".into(), vec![c.out_channels, c.out_channels, 3, 1, 1]);
    out.extend(mixers.into_iter().map(|m| (m, vec![1])));
    out
}

/// Which half of the VAE to put on the device: the encoder (`encoder.*`, `quant_conv`) for conditioning, the
/// decoder (`decoder.*`) after denoising, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VaePart {
    Encoder,
    Decoder,
    Both,
}

impl VaePart {
    /// Whether the weight `name` belongs to this part.
    pub fn holds(self, name: &str) -> bool {
        let enc = name.starts_with("encoder.") || name.starts_with("quant_conv.");
        match self {
            VaePart::Both => true,
            VaePart::Encoder => enc,
            VaePart::Decoder => !enc,
        }
    }
}

impl Vae {
    /// Reads a diffusers `vae/` folder (`config.json`, weights full precision or fp16).
    pub fn load_dir(gpu: &Gpu, dir: &Path, dtype: DType) -> Result<Vae> {
        Self::load_dir_part(gpu, dir, dtype, VaePart::Both)
    }

    /// The weights file of a `vae/` folder. The reference loads the `fp16` variant of the VAE and the image
    /// encoder (docs/reference/svd-architecture.md §0, §7.1): prefer it, so that even an f32 run uses the same
    /// (fp16-rounded) weights.
    fn weights_path(dir: &Path) -> std::path::PathBuf {
        let half = dir.join("diffusion_pytorch_model.fp16.safetensors");
        if half.exists() {
            half
        } else {
            dir.join("diffusion_pytorch_model.safetensors")
        }
    }

    /// Reads the config of a `vae/` folder and checks the names in its weights file (nothing is uploaded).
    pub fn check_dir(dir: &Path) -> Result<VaeConfig> {
        let cfg = VaeConfig::from_file(&dir.join("config.json"))?;
        let path = Self::weights_path(dir);
        let file = SafetensorsFile::open(&path)?;
        let vae = Vae { cfg, dtype: DType::F32, weights: Weights::new() };
        vae.check_keys(&path, &file)?;
        Ok(vae.cfg)
    }

    /// Reads a `vae/` folder and uploads only `part` of the weights (the names of the whole file are checked).
    pub fn load_dir_part(gpu: &Gpu, dir: &Path, dtype: DType, part: VaePart) -> Result<Vae> {
        let cfg = VaeConfig::from_file(&dir.join("config.json"))?;
        let path = Self::weights_path(dir);
        let file = SafetensorsFile::open(&path)?;
        let mut weights = Weights::new();
        load_all(gpu, &file, dtype, &mut weights, &|n| part.holds(n))?;
        let vae = Vae { cfg, dtype, weights };
        vae.check_keys(&path, &file)?;
        Ok(vae)
    }

    /// `part` of a VAE of `cfg` with weights of the right shapes and no contents: for memory plans on a dry
    /// device ([`Gpu::emulating`]).
    pub fn reserved(gpu: &Gpu, cfg: &VaeConfig, dtype: DType, part: VaePart) -> Result<Vae> {
        let mut weights = Weights::new();
        for (name, shape) in weight_shapes(cfg) {
            if part.holds(&name) {
                weights.reserve(gpu, &name, &shape, dtype)?;
            }
        }
        Ok(Vae { cfg: cfg.clone(), dtype, weights })
    }

    /// Every key the model reads must exist (its error names it) and every key in the file must be read.
    fn check_keys(&self, path: &Path, file: &SafetensorsFile) -> Result<()> {
        let expected = self.expected_keys();
        let found: HashSet<&str> = file.names().collect();
        let mut problems = Vec::new();
        for k in &expected {
            if !found.contains(k.as_str()) {
                problems.push(format!("missing tensor `{k}`"));
            }
        }
        let exp: HashSet<&str> = expected.iter().map(String::as_str).collect();
        let mut extra: Vec<&&str> = found.iter().filter(|k| !exp.contains(**k)).collect();
        extra.sort();
        for k in extra {
            problems.push(format!("unexpected tensor `{k}`"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            let n = problems.len();
            problems.truncate(8);
            Err(input_err(format!("{}: {n} tensor problem(s): {}", path.display(), problems.join("; "))))
        }
    }

    /// Names the model reads, from the config (shapes are checked by each op against its input).
    pub fn expected_keys(&self) -> Vec<String> {
        let c = &self.cfg;
        let mut k = Vec::new();
        let mut wb = |p: String| {
            k.push(format!("{p}.weight"));
            k.push(format!("{p}.bias"));
        };
        let resnet = |wb: &mut dyn FnMut(String), p: &str, shortcut: bool| {
            for m in ["norm1", "conv1", "norm2", "conv2"] {
                wb(format!("{p}.{m}"));
            }
            if shortcut {
                wb(format!("{p}.conv_shortcut"));
            }
        };
        let attn = |wb: &mut dyn FnMut(String), p: &str| {
            for m in ["group_norm", "to_q", "to_k", "to_v", "to_out.0"] {
                wb(format!("{p}.{m}"));
            }
        };
        wb("encoder.conv_in".into());
        let n = c.block_out_channels.len();
        let mut cin = c.block_out_channels[0];
        for (i, &co) in c.block_out_channels.iter().enumerate() {
            for j in 0..c.layers_per_block {
                resnet(&mut wb, &format!("encoder.down_blocks.{i}.resnets.{j}"), j == 0 && cin != co);
            }
            if i + 1 < n {
                wb(format!("encoder.down_blocks.{i}.downsamplers.0.conv"));
            }
            cin = co;
        }
        let top = c.block_out_channels[n - 1];
        resnet(&mut wb, "encoder.mid_block.resnets.0", false);
        attn(&mut wb, "encoder.mid_block.attentions.0");
        resnet(&mut wb, "encoder.mid_block.resnets.1", false);
        wb("encoder.conv_norm_out".into());
        wb("encoder.conv_out".into());
        wb("quant_conv".into());
        wb("decoder.conv_in".into());
        let st = |wb: &mut dyn FnMut(String), p: &str, shortcut: bool| {
            resnet(wb, &format!("{p}.spatial_res_block"), shortcut);
            for m in ["norm1", "conv1", "norm2", "conv2"] {
                wb(format!("{p}.temporal_res_block.{m}"));
            }
        };
        // MidBlockTemporalDecoder: `layers_per_block` res-blocks and one attention.
        for j in 0..c.layers_per_block {
            st(&mut wb, &format!("decoder.mid_block.resnets.{j}"), false);
        }
        attn(&mut wb, "decoder.mid_block.attentions.0");
        let mut prev = top;
        for i in 0..n {
            let co = c.block_out_channels[n - 1 - i];
            for j in 0..c.layers_per_block + 1 {
                st(&mut wb, &format!("decoder.up_blocks.{i}.resnets.{j}"), j == 0 && prev != co);
            }
            if i + 1 < n {
                wb(format!("decoder.up_blocks.{i}.upsamplers.0.conv"));
            }
            prev = co;
        }
        wb("decoder.conv_norm_out".into());
        wb("decoder.conv_out".into());
        wb("decoder.time_conv_out".into());
        let mut out = k;
        let mixers: Vec<String> = out
            .iter()
            .filter_map(|s| s.strip_suffix(".temporal_res_block.norm1.weight"))
            .map(|p| format!("{p}.time_mixer.mix_factor"))
            .collect();
        out.extend(mixers);
        out
    }

    fn w(&self, name: &str) -> Result<&Tensor> {
        Ok(self.weights.get(name)?)
    }

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
        let g = b.group_norm(
            &h,
            self.w("encoder.conv_norm_out.weight")?,
            self.w("encoder.conv_norm_out.bias")?,
            eps,
            GroupStats::PerFrame,
            true,
        )?;
        drop(h);
        let o = b.conv2d(
            &g,
            self.w("encoder.conv_out.weight")?,
            Some(self.w("encoder.conv_out.bias")?),
            Conv2dOpts::new(1, 1),
        )?;
        drop(g);
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

    /// The mid-block attention: GroupNorm, one head over the pixels of each image (Q/K/V with bias),
    /// output projection, residual.
    fn attention(&self, b: &mut Builder, p: &str, x: &Tensor) -> Result<Act> {
        let s = x.shape().to_vec();
        let (n, c, hw) = (s[0], s[1], s[2] * s[3]);
        let g = b.group_norm(
            x,
            self.w(&format!("{p}.group_norm.weight"))?,
            self.w(&format!("{p}.group_norm.bias"))?,
            1e-6,
            GroupStats::PerFrame,
            false,
        )?;
        let t = b.swap12(&g, [n, c, hw, 1], &[n * hw, c])?;
        drop(g);
        let qkv = b.linear(
            &t,
            self.w(&format!("{p}.to_qkv.weight"))?,
            Some(self.w(&format!("{p}.to_qkv.bias"))?),
            Epilogue::None,
        )?;
        drop(t);
        let a = b.self_attention(&qkv, n, hw, 1)?;
        drop(qkv);
        let o = b.linear(
            &a,
            self.w(&format!("{p}.to_out.0.weight"))?,
            Some(self.w(&format!("{p}.to_out.0.bias"))?),
            Epilogue::None,
        )?;
        drop(a);
        let y = b.swap12(&o, [n, hw, c, 1], &s)?;
        drop(o);
        b.add_inplace(&y, x)?;
        Ok(y)
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

    /// Device bytes of the weights.
    pub fn weight_bytes(&self) -> u64 {
        self.weights.bytes
    }

    /// Names and shapes of the device weights, sorted by name.
    pub fn weight_list(&self) -> Vec<(String, Vec<usize>)> {
        self.weights.shapes()
    }

    /// Spatial downsampling factor (`2^(blocks − 1)`).
    pub fn scale_factor(&self) -> usize {
        1 << (self.cfg.block_out_channels.len() - 1)
    }
}
