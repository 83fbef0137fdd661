//! `AutoencoderKLTemporalDecoder` (diffusers 0.27.0): the 2-D encoder (posterior mean) and the temporal
//! decoder, from any [`VaeConfig`] (docs/reference/svd-architecture.md §5). Module names mirror diffusers'
//! `vae.py`, `unet_2d_blocks.py` (`DownEncoderBlock2D`, `UNetMidBlock2D`) and
//! `autoencoder_kl_temporal_decoder.py`.

mod decoder;
mod encoder;
mod shapes;

use std::collections::HashSet;
use std::path::Path;

use trajattn_kernels::ops::group_norm::GroupStats;
use trajattn_kernels::ops::matmul::Epilogue;
use trajattn_kernels::{DType, Gpu, Tensor};

use crate::checkpoint::{HostTensor, SafetensorsFile};
use crate::models::config::VaeConfig;
use crate::models::unet::UNetError;
use crate::nn::weights::host_dtype;
use crate::nn::{Act, Builder, Weights};

type Result<T> = std::result::Result<T, UNetError>;

fn input_err(msg: impl Into<String>) -> UNetError {
    UNetError::Input(msg.into())
}

/// The VAE's weights on the device.
pub struct Vae {
    pub cfg: VaeConfig,
    pub dtype: DType,
    weights: Weights,
    /// Frames per group in the decoder's per-frame stretches ([`Vae::stretch_group`]); `None`: chosen from
    /// the adapter's limits (tests set it to compare groupings).
    pub stretch_frames: Option<usize>,
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

pub use shapes::weight_shapes;

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
        let vae = Vae { cfg, dtype: DType::F32, weights: Weights::new(), stretch_frames: None };
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
        let vae = Vae { cfg, dtype, weights, stretch_frames: None };
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
        Ok(Vae { cfg: cfg.clone(), dtype, weights, stretch_frames: None })
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
