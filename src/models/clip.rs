//! `CLIPVisionModelWithProjection` (transformers 4.33.2): patch embedding, class token, pre-LN encoder,
//! pooled class token, projection (docs/reference/svd-architecture.md §6). Names mirror `modeling_clip.py`.

use std::collections::HashSet;
use std::path::Path;

use trajattn_kernels::ops::conv::Conv2dOpts;
use trajattn_kernels::ops::elementwise::Bcast;
use trajattn_kernels::ops::layout::record_copy2d;
use trajattn_kernels::ops::matmul::Epilogue;
use trajattn_kernels::{DType, Gpu, Tensor};

use crate::checkpoint::SafetensorsFile;
use crate::models::config::ClipVisionConfig;
use crate::models::unet::UNetError;
use crate::models::vae::load_all;
use crate::nn::{Builder, Weights};

type Result<T> = std::result::Result<T, UNetError>;

/// The image encoder's weights on the device.
pub struct ClipVision {
    pub cfg: ClipVisionConfig,
    pub dtype: DType,
    weights: Weights,
}

const P: &str = "vision_model";

/// Names and shapes of the weights a CLIP of `c` holds on the device (attention projections fused into
/// `to_qkv`, as [`load_all`] uploads them).
pub fn weight_shapes(c: &ClipVisionConfig) -> Vec<(String, Vec<usize>)> {
    let (hid, inter) = (c.hidden_size, c.intermediate_size);
    let mut k = vec![
        (format!("{P}.embeddings.class_embedding"), vec![hid]),
        (
            format!("{P}.embeddings.patch_embedding.weight"),
            vec![hid, c.num_channels, c.patch_size, c.patch_size],
        ),
        (format!("{P}.embeddings.position_embedding.weight"), vec![c.num_positions(), hid]),
        ("visual_projection.weight".to_string(), vec![c.projection_dim, hid]),
    ];
    let mut wb = |p: String, w: Vec<usize>| {
        k.push((format!("{p}.bias"), vec![w[0]]));
        k.push((format!("{p}.weight"), w));
    };
    wb(format!("{P}.pre_layrnorm"), vec![hid]);
    wb(format!("{P}.post_layernorm"), vec![hid]);
    for i in 0..c.num_hidden_layers {
        let l = format!("{P}.encoder.layers.{i}");
        wb(format!("{l}.self_attn.to_qkv"), vec![3 * hid, hid]);
        wb(format!("{l}.self_attn.out_proj"), vec![hid, hid]);
        wb(format!("{l}.layer_norm1"), vec![hid]);
        wb(format!("{l}.layer_norm2"), vec![hid]);
        wb(format!("{l}.mlp.fc1"), vec![inter, hid]);
        wb(format!("{l}.mlp.fc2"), vec![hid, inter]);
    }
    k
}

impl ClipVision {
    /// Device bytes of the weights.
    pub fn weight_bytes(&self) -> u64 {
        self.weights.bytes
    }

    /// Names and shapes of the device weights, sorted by name.
    pub fn weight_list(&self) -> Vec<(String, Vec<usize>)> {
        self.weights.shapes()
    }
    /// Reads a transformers `image_encoder/` folder (`config.json`, `model[.fp16].safetensors`).
    pub fn load_dir(gpu: &Gpu, dir: &Path, dtype: DType) -> Result<ClipVision> {
        let cfg = ClipVisionConfig::from_file(&dir.join("config.json"))?;
        let path = Self::weights_path(dir);
        let file = SafetensorsFile::open(&path)?;
        let mut weights = Weights::new();
        let names = load_all(gpu, &file, dtype, &mut weights, &|_| true)?;
        let clip = ClipVision { cfg, dtype, weights };
        clip.check_names(&path, &names)?;
        Ok(clip)
    }

    /// Reads the config of an `image_encoder/` folder and checks the names in its weights file (nothing is
    /// uploaded).
    pub fn check_dir(dir: &Path) -> Result<ClipVisionConfig> {
        let cfg = ClipVisionConfig::from_file(&dir.join("config.json"))?;
        let path = Self::weights_path(dir);
        let file = SafetensorsFile::open(&path)?;
        let names: HashSet<String> = file.names().map(str::to_string).collect();
        let clip = ClipVision { cfg, dtype: DType::F32, weights: Weights::new() };
        clip.check_names(&path, &names)?;
        Ok(clip.cfg)
    }

    /// A CLIP of `cfg` with weights of the right shapes and no contents: for memory plans on a dry device
    /// ([`Gpu::emulating`]).
    pub fn reserved(gpu: &Gpu, cfg: &ClipVisionConfig, dtype: DType) -> Result<ClipVision> {
        let mut weights = Weights::new();
        for (name, shape) in weight_shapes(cfg) {
            weights.reserve(gpu, &name, &shape, dtype)?;
        }
        Ok(ClipVision { cfg: cfg.clone(), dtype, weights })
    }

    /// The weights file of an `image_encoder/` folder. The reference loads the `fp16` variant of the VAE and
    /// the image encoder (docs/reference/svd-architecture.md §0, §7.1): prefer it, so that even an f32 run
    /// uses the same (fp16-rounded) weights.
    fn weights_path(dir: &Path) -> std::path::PathBuf {
        let half = dir.join("model.fp16.safetensors");
        if half.exists() {
            half
        } else {
            dir.join("model.safetensors")
        }
    }

    /// Every name the model reads must be in the file and every name in the file must be read.
    fn check_names(&self, path: &Path, names: &HashSet<String>) -> Result<()> {
        let expected: HashSet<String> = self.expected_keys().into_iter().collect();
        let mut problems: Vec<String> = expected
            .iter()
            .filter(|k| !names.contains(*k))
            .map(|k| format!("missing tensor `{k}`"))
            .collect();
        let mut extra: Vec<&String> =
            names.iter().filter(|k| !expected.contains(*k) && !k.ends_with("position_ids")).collect();
        extra.sort();
        problems.extend(extra.into_iter().map(|k| format!("unexpected tensor `{k}`")));
        problems.sort();
        if !problems.is_empty() {
            let n = problems.len();
            problems.truncate(8);
            return Err(UNetError::Input(format!(
                "{}: {n} tensor problem(s): {}",
                path.display(),
                problems.join("; ")
            )));
        }
        Ok(())
    }

    /// Names the model reads.
    pub fn expected_keys(&self) -> Vec<String> {
        let mut k = vec![
            format!("{P}.embeddings.class_embedding"),
            format!("{P}.embeddings.patch_embedding.weight"),
            format!("{P}.embeddings.position_embedding.weight"),
            "visual_projection.weight".to_string(),
        ];
        let mut wb = |p: String| {
            k.push(format!("{p}.weight"));
            k.push(format!("{p}.bias"));
        };
        wb(format!("{P}.pre_layrnorm"));
        wb(format!("{P}.post_layernorm"));
        for i in 0..self.cfg.num_hidden_layers {
            let l = format!("{P}.encoder.layers.{i}");
            for m in ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"] {
                wb(format!("{l}.{m}"));
            }
            for m in ["layer_norm1", "layer_norm2", "mlp.fc1", "mlp.fc2"] {
                wb(format!("{l}.{m}"));
            }
        }
        k
    }

    fn w(&self, name: &str) -> Result<&Tensor> {
        Ok(self.weights.get(name)?)
    }

    /// `image_embeds [N, projection_dim]` of normalised `pixel_values [N, 3, S, S]` (S = image_size).
    pub fn encode(&self, gpu: &Gpu, pixels: &[f32], n: usize) -> Result<Vec<f32>> {
        let c = &self.cfg;
        let s = c.image_size;
        if pixels.len() != n * c.num_channels * s * s || n == 0 {
            return Err(UNetError::Input(format!(
                "pixel_values: expected {n}×{}×{s}×{s} values, got {}",
                c.num_channels,
                pixels.len()
            )));
        }
        let eps = c.layer_norm_eps as f32;
        let hid = c.hidden_size;
        let side = s / c.patch_size;
        let np = side * side;
        let tokens = np + 1;
        let x = Tensor::from_f32(gpu, pixels, &[n, c.num_channels, s, s], self.dtype)?;
        let mut b = Builder::new(gpu, self.dtype);
        let pe = b.conv2d(
            &x,
            self.w(&format!("{P}.embeddings.patch_embedding.weight"))?,
            None,
            Conv2dOpts::new(c.patch_size, 0),
        )?;
        // (N, hidden, side, side) → (N, patches, hidden), then [class | patches] + positions.
        let pt = b.swap12(&pe, [n, hid, np, 1], &[n * np, hid])?;
        drop(pe);
        let emb = b.empty(&[n * tokens, hid])?;
        let cls = self.w(&format!("{P}.embeddings.class_embedding"))?;
        for i in 0..n {
            record_copy2d(&mut b.rec, cls, 0, hid, &emb, i * tokens * hid, hid, 1, hid)?;
            record_copy2d(&mut b.rec, &pt, i * np * hid, hid, &emb, (i * tokens + 1) * hid, hid, np, hid)?;
        }
        drop(pt);
        let pos = self.w(&format!("{P}.embeddings.position_embedding.weight"))?.reshape(&[tokens * hid])?;
        let emb2 = emb.reshaped(&[n, tokens * hid])?;
        let e = b.bcast_add(Bcast::Row, &emb2, &pos)?.reshaped(&[n * tokens, hid])?;
        drop(emb2);
        let h = b.layer_norm(
            &e,
            self.w(&format!("{P}.pre_layrnorm.weight"))?,
            self.w(&format!("{P}.pre_layrnorm.bias"))?,
            eps,
        )?;
        drop(e);
        for i in 0..c.num_hidden_layers {
            let l = format!("{P}.encoder.layers.{i}");
            let ln = b.layer_norm(
                &h,
                self.w(&format!("{l}.layer_norm1.weight"))?,
                self.w(&format!("{l}.layer_norm1.bias"))?,
                eps,
            )?;
            let qkv = b.linear(
                &ln,
                self.w(&format!("{l}.self_attn.to_qkv.weight"))?,
                Some(self.w(&format!("{l}.self_attn.to_qkv.bias"))?),
                Epilogue::None,
            )?;
            drop(ln);
            let a = b.self_attention(&qkv, n, tokens, c.num_attention_heads)?;
            drop(qkv);
            b.linear_acc(
                &h,
                &a,
                self.w(&format!("{l}.self_attn.out_proj.weight"))?,
                Some(self.w(&format!("{l}.self_attn.out_proj.bias"))?),
            )?;
            drop(a);
            let ln = b.layer_norm(
                &h,
                self.w(&format!("{l}.layer_norm2.weight"))?,
                self.w(&format!("{l}.layer_norm2.bias"))?,
                eps,
            )?;
            let f1 = b.linear(
                &ln,
                self.w(&format!("{l}.mlp.fc1.weight"))?,
                Some(self.w(&format!("{l}.mlp.fc1.bias"))?),
                Epilogue::GeluErf,
            )?;
            drop(ln);
            b.linear_acc(
                &h,
                &f1,
                self.w(&format!("{l}.mlp.fc2.weight"))?,
                Some(self.w(&format!("{l}.mlp.fc2.bias"))?),
            )?;
            drop(f1);
        }
        let pooled = b.empty(&[n, hid])?;
        record_copy2d(&mut b.rec, &h, 0, tokens * hid, &pooled, 0, hid, n, hid)?;
        drop(h);
        let pn = b.layer_norm(
            &pooled,
            self.w(&format!("{P}.post_layernorm.weight"))?,
            self.w(&format!("{P}.post_layernorm.bias"))?,
            eps,
        )?;
        let proj = b.linear(&pn, self.w("visual_projection.weight")?, None, Epilogue::None)?;
        drop((pn, pooled));
        b.rec.run()?;
        if gpu.is_dry() {
            // A dry device (memory plans) runs nothing: there is nothing to read.
            return Ok(vec![0.0; proj.numel()]);
        }
        Ok(proj.to_f32(gpu)?)
    }
}
