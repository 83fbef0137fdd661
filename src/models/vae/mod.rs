//! `AutoencoderKLTemporalDecoder` (diffusers 0.27.0): the 2-D encoder (posterior mean) and the temporal
//! decoder, from any [`VaeConfig`] (docs/reference/svd-architecture.md §5). Module names mirror diffusers'
//! `vae.py`, `unet_2d_blocks.py` (`DownEncoderBlock2D`, `UNetMidBlock2D`) and
//! `autoencoder_kl_temporal_decoder.py`.

mod decoder;
mod encoder;
mod shapes;

use std::collections::HashSet;
use std::path::Path;

use trajattn_kernels::ops::conv::Conv2dOpts;
use trajattn_kernels::ops::group_norm::GroupStats;
use trajattn_kernels::ops::matmul::Epilogue;
use trajattn_kernels::{DType, Gpu, Tensor};

use crate::checkpoint::{CheckpointError, HostTensor, SafetensorsFile};
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

pub use shapes::{file_shapes, weight_shapes};

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

    /// The weights file's header against the config, before anything is uploaded: every tensor the model
    /// reads exists with the shape the config implies (attention projections as separate `to_q/k/v`), the
    /// file holds nothing else, and every dtype is one the loader reads. All problems in one error naming the
    /// file and the tensors.
    fn check_keys(&self, path: &Path, file: &SafetensorsFile) -> Result<()> {
        let expected = file_shapes(&self.cfg);
        file.check(&expected, &[])?;
        if let Some((e, dt)) = file.entries().iter().find_map(|e| e.dtype.as_ref().err().map(|d| (e, d))) {
            return Err(CheckpointError::UnsupportedDType {
                path: path.display().to_string(),
                tensor: e.name.clone(),
                dtype: dt.clone(),
            }
            .into());
        }
        Ok(())
    }

    /// Names the model reads, from the config ([`file_shapes`]).
    pub fn expected_keys(&self) -> Vec<String> {
        file_shapes(&self.cfg).into_iter().map(|(n, _)| n).collect()
    }

    fn w(&self, name: &str) -> Result<&Tensor> {
        Ok(self.weights.get(name)?)
    }

    /// The head both halves end with: `{half}.conv_norm_out` (GroupNorm per frame, eps 1e-6, SiLU), then
    /// `{half}.conv_out` (3×3, padding 1). Consumes `h` so its buffer returns to the lender before the conv's.
    fn norm_out_conv(&self, b: &mut Builder, half: &str, h: Act) -> Result<Act> {
        let g = b.group_norm(
            &h,
            self.w(&format!("{half}.conv_norm_out.weight"))?,
            self.w(&format!("{half}.conv_norm_out.bias"))?,
            1e-6,
            GroupStats::PerFrame,
            true,
        )?;
        drop(h);
        let w = self.w(&format!("{half}.conv_out.weight"))?;
        Ok(b.conv2d(&g, w, Some(self.w(&format!("{half}.conv_out.bias"))?), Conv2dOpts::new(1, 1))?)
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
