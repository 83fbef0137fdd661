//! Depth-Anything-V2 configurations (docs/reference/depth-anything-v2.md §1) and their official state-dict keys (§8.1), and
//! the inference of the configuration from a checkpoint's tensor shapes.

use std::collections::HashMap;
use std::fmt;

/// A released encoder size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoder {
    Vits,
    Vitb,
    Vitl,
    Vitg,
}

impl Encoder {
    /// Parses `vits`, `vitb`, `vitl`, `vitg`.
    pub fn parse(s: &str) -> Option<Encoder> {
        Some(match s {
            "vits" => Encoder::Vits,
            "vitb" => Encoder::Vitb,
            "vitl" => Encoder::Vitl,
            "vitg" => Encoder::Vitg,
            _ => return None,
        })
    }
    /// Name as the official code writes it.
    pub fn name(self) -> &'static str {
        match self {
            Encoder::Vits => "vits",
            Encoder::Vitb => "vitb",
            Encoder::Vitl => "vitl",
            Encoder::Vitg => "vitg",
        }
    }
}

impl fmt::Display for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One model configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepthConfig {
    /// The released encoder this is, if any (the reduced test model is none).
    pub encoder: Option<Encoder>,
    /// Embedding width D.
    pub embed_dim: usize,
    /// Transformer blocks.
    pub blocks: usize,
    /// Attention heads (head dim = D / heads).
    pub heads: usize,
    /// MLP hidden width (4·D).
    pub mlp_hidden: usize,
    /// DPT `features` F.
    pub features: usize,
    /// DPT `out_channels` C0..C3.
    pub out_channels: [usize; 4],
    /// Blocks whose outputs feed the head (0-based).
    pub take: [usize; 4],
    /// Patch size (14).
    pub patch: usize,
    /// Side of the position-embedding grid (37 = 518 / 14).
    pub pos_grid: usize,
}

/// Layer-norm epsilon of DINOv2.
pub const LN_EPS: f32 = 1e-6;
/// Channels of the head's second output convolution (`head_features_2`).
pub const HEAD_FEATURES_2: usize = 32;

impl DepthConfig {
    /// The official configuration of `enc` (§1).
    pub fn preset(enc: Encoder) -> DepthConfig {
        let (d, blocks, features, oc, take) = match enc {
            Encoder::Vits => (384, 12, 64, [48, 96, 192, 384], [2, 5, 8, 11]),
            Encoder::Vitb => (768, 12, 128, [96, 192, 384, 768], [2, 5, 8, 11]),
            Encoder::Vitl => (1024, 24, 256, [256, 512, 1024, 1024], [4, 11, 17, 23]),
            Encoder::Vitg => (1536, 40, 384, [1536; 4], [9, 19, 29, 39]),
        };
        DepthConfig {
            encoder: Some(enc),
            embed_dim: d,
            blocks,
            heads: d / 64,
            mlp_hidden: 4 * d,
            features,
            out_channels: oc,
            take,
            patch: 14,
            pos_grid: 37,
        }
    }

    /// Head dimension.
    pub fn head_dim(&self) -> usize {
        self.embed_dim / self.heads.max(1)
    }

    /// Short description for messages.
    pub fn describe(&self) -> String {
        let name = self.encoder.map(|e| e.name().to_string()).unwrap_or_else(|| "custom".into());
        format!(
            "{name} (D={}, {} blocks, {} heads, features {}, out_channels {:?})",
            self.embed_dim, self.blocks, self.heads, self.features, self.out_channels
        )
    }

    /// Every official state-dict key with its shape, in state-dict order (§8.1).
    pub fn expected(&self) -> Vec<(String, Vec<usize>)> {
        let d = self.embed_dim;
        let f = self.features;
        let c = self.out_channels;
        let g = self.pos_grid;
        let mut v: Vec<(String, Vec<usize>)> = Vec::new();
        let mut add = |k: String, s: &[usize]| v.push((k, s.to_vec()));
        add("pretrained.cls_token".into(), &[1, 1, d]);
        add("pretrained.pos_embed".into(), &[1, 1 + g * g, d]);
        add("pretrained.mask_token".into(), &[1, d]);
        add("pretrained.patch_embed.proj.weight".into(), &[d, 3, self.patch, self.patch]);
        add("pretrained.patch_embed.proj.bias".into(), &[d]);
        for i in 0..self.blocks {
            let p = format!("pretrained.blocks.{i}");
            add(format!("{p}.norm1.weight"), &[d]);
            add(format!("{p}.norm1.bias"), &[d]);
            add(format!("{p}.attn.qkv.weight"), &[3 * d, d]);
            add(format!("{p}.attn.qkv.bias"), &[3 * d]);
            add(format!("{p}.attn.proj.weight"), &[d, d]);
            add(format!("{p}.attn.proj.bias"), &[d]);
            add(format!("{p}.ls1.gamma"), &[d]);
            add(format!("{p}.norm2.weight"), &[d]);
            add(format!("{p}.norm2.bias"), &[d]);
            add(format!("{p}.mlp.fc1.weight"), &[self.mlp_hidden, d]);
            add(format!("{p}.mlp.fc1.bias"), &[self.mlp_hidden]);
            add(format!("{p}.mlp.fc2.weight"), &[d, self.mlp_hidden]);
            add(format!("{p}.mlp.fc2.bias"), &[d]);
            add(format!("{p}.ls2.gamma"), &[d]);
        }
        add("pretrained.norm.weight".into(), &[d]);
        add("pretrained.norm.bias".into(), &[d]);
        let h = "depth_head";
        for (k, &ck) in c.iter().enumerate() {
            add(format!("{h}.projects.{k}.weight"), &[ck, d, 1, 1]);
            add(format!("{h}.projects.{k}.bias"), &[ck]);
        }
        add(format!("{h}.resize_layers.0.weight"), &[c[0], c[0], 4, 4]);
        add(format!("{h}.resize_layers.0.bias"), &[c[0]]);
        add(format!("{h}.resize_layers.1.weight"), &[c[1], c[1], 2, 2]);
        add(format!("{h}.resize_layers.1.bias"), &[c[1]]);
        add(format!("{h}.resize_layers.3.weight"), &[c[3], c[3], 3, 3]);
        add(format!("{h}.resize_layers.3.bias"), &[c[3]]);
        for (k, &ck) in c.iter().enumerate() {
            add(format!("{h}.scratch.layer{}_rn.weight", k + 1), &[f, ck, 3, 3]);
        }
        for n in 1..=4 {
            let p = format!("{h}.scratch.refinenet{n}");
            add(format!("{p}.out_conv.weight"), &[f, f, 1, 1]);
            add(format!("{p}.out_conv.bias"), &[f]);
            for u in 1..=2 {
                for cv in 1..=2 {
                    add(format!("{p}.resConfUnit{u}.conv{cv}.weight"), &[f, f, 3, 3]);
                    add(format!("{p}.resConfUnit{u}.conv{cv}.bias"), &[f]);
                }
            }
        }
        add(format!("{h}.scratch.output_conv1.weight"), &[f / 2, f, 3, 3]);
        add(format!("{h}.scratch.output_conv1.bias"), &[f / 2]);
        add(format!("{h}.scratch.output_conv2.0.weight"), &[HEAD_FEATURES_2, f / 2, 3, 3]);
        add(format!("{h}.scratch.output_conv2.0.bias"), &[HEAD_FEATURES_2]);
        add(format!("{h}.scratch.output_conv2.2.weight"), &[1, HEAD_FEATURES_2, 1, 1]);
        add(format!("{h}.scratch.output_conv2.2.bias"), &[1]);
        v
    }

    /// The configuration a transformers `config.json` (`DepthAnythingForDepthEstimation`) describes:
    /// `backbone_config.{hidden_size, num_hidden_layers, num_attention_heads, out_indices, patch_size, image_size,
    /// mlp_ratio}`, `fusion_hidden_size`, `neck_hidden_sizes`. HF `out_indices` count the embeddings as 0.
    pub fn from_hf_json(text: &str) -> Result<DepthConfig, String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("config.json: {e}"))?;
        let bb = v.get("backbone_config").ok_or("config.json has no `backbone_config`")?;
        let num = |o: &serde_json::Value, k: &str| -> Result<usize, String> {
            o.get(k)
                .and_then(|x| x.as_u64())
                .map(|x| x as usize)
                .ok_or(format!("config.json: no integer `{k}`"))
        };
        let list = |o: &serde_json::Value, k: &str| -> Result<Vec<usize>, String> {
            o.get(k)
                .and_then(|x| x.as_array())
                .map(|a| a.iter().filter_map(|x| x.as_u64().map(|x| x as usize)).collect::<Vec<_>>())
                .filter(|a| a.len() == 4)
                .ok_or(format!("config.json: `{k}` is not a list of 4 integers"))
        };
        let d = num(bb, "hidden_size")?;
        let blocks = num(bb, "num_hidden_layers")?;
        let heads = num(bb, "num_attention_heads")?;
        let patch = bb.get("patch_size").and_then(|x| x.as_u64()).unwrap_or(14) as usize;
        let image = bb.get("image_size").and_then(|x| x.as_u64()).unwrap_or(518) as usize;
        let ratio = bb.get("mlp_ratio").and_then(|x| x.as_f64()).unwrap_or(4.0);
        let oi = list(bb, "out_indices")?;
        let oc = list(&v, "neck_hidden_sizes")?;
        let features = num(&v, "fusion_hidden_size")?;
        for (what, x) in [("hidden_size", d), ("num_hidden_layers", blocks), ("num_attention_heads", heads)] {
            crate::limits::CHANNELS.check(x as u64).map_err(|e| format!("config.json: {what}: {e}"))?;
        }
        if heads == 0 || d == 0 || !d.is_multiple_of(heads) || patch != 14 || image != 518 || ratio != 4.0 {
            return Err(format!(
                "config.json: hidden_size {d}, {heads} heads, patch {patch}, image {image}, mlp_ratio {ratio} is not                  a Depth-Anything-V2 layout (patch 14, image 518, mlp_ratio 4, heads dividing the width)"
            ));
        }
        if oi.iter().any(|&j| j == 0 || j > blocks) || features < 2 || features % 2 != 0 {
            return Err(format!(
                "config.json: out_indices {oi:?} or fusion_hidden_size {features} do not fit {blocks} layers"
            ));
        }
        let mut cfg = DepthConfig {
            encoder: None,
            embed_dim: d,
            blocks,
            heads,
            mlp_hidden: 4 * d,
            features,
            out_channels: [oc[0], oc[1], oc[2], oc[3]],
            take: [oi[0] - 1, oi[1] - 1, oi[2] - 1, oi[3] - 1],
            patch,
            pos_grid: 37,
        };
        for enc in [Encoder::Vits, Encoder::Vitb, Encoder::Vitl] {
            let p = DepthConfig::preset(enc);
            if (DepthConfig { encoder: Some(enc), ..cfg.clone() }) == p {
                cfg.encoder = Some(enc);
            }
        }
        Ok(cfg)
    }

    /// Parameters (sum of the expected tensors' elements).
    pub fn params(&self) -> usize {
        self.expected().iter().map(|(_, s)| s.iter().product::<usize>()).sum()
    }

    /// The released configuration whose shapes these are (official key names → shapes). A checkpoint of
    /// another architecture is an error that says what was found.
    pub fn infer(shapes: &HashMap<String, Vec<usize>>) -> Result<DepthConfig, String> {
        let Some(cls) = shapes.get("pretrained.cls_token") else {
            return Err(
                "no `pretrained.cls_token` / `backbone.embeddings.cls_token` tensor: not a Depth-Anything-V2 \
                 checkpoint"
                    .into(),
            );
        };
        let d = cls.last().copied().unwrap_or(0);
        let blocks =
            (0..).take_while(|i| shapes.contains_key(&format!("pretrained.blocks.{i}.norm1.weight"))).count();
        let features = shapes
            .get("depth_head.scratch.refinenet1.out_conv.weight")
            .and_then(|s| s.first().copied())
            .unwrap_or(0);
        for enc in [Encoder::Vits, Encoder::Vitb, Encoder::Vitl, Encoder::Vitg] {
            let p = DepthConfig::preset(enc);
            if p.embed_dim == d && p.blocks == blocks && p.features == features {
                if enc == Encoder::Vitg {
                    return Err(
                        "these are vitg (ViT-giant, SwiGLU) weights, which Depth-Anything-V2 has not \
                                released and this runtime does not implement; use vits, vitb or vitl"
                            .into(),
                    );
                }
                return Ok(p);
            }
        }
        Err(format!(
            "embedding width {d}, {blocks} transformer blocks and DPT features {features} match none of the \
             Depth-Anything-V2 encoders (vits: 384/12/64, vitb: 768/12/128, vitl: 1024/24/256)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_the_published_key_and_parameter_counts() {
        // §1: keys 239 / 239 / 407 and parameters 24,785,089 / 97,470,785 / 335,315,649.
        for (enc, keys, params) in [
            (Encoder::Vits, 239, 24_785_089),
            (Encoder::Vitb, 239, 97_470_785),
            (Encoder::Vitl, 407, 335_315_649),
        ] {
            let c = DepthConfig::preset(enc);
            assert_eq!(c.expected().len(), keys, "{enc}");
            assert_eq!(c.params(), params, "{enc}");
        }
    }

    #[test]
    fn inference_finds_each_encoder_and_refuses_others() {
        for enc in [Encoder::Vits, Encoder::Vitb, Encoder::Vitl] {
            let shapes: HashMap<_, _> = DepthConfig::preset(enc).expected().into_iter().collect();
            assert_eq!(DepthConfig::infer(&shapes).unwrap().encoder, Some(enc));
        }
        let mut shapes: HashMap<_, _> = DepthConfig::preset(Encoder::Vits).expected().into_iter().collect();
        shapes.remove("pretrained.blocks.11.norm1.weight");
        assert!(DepthConfig::infer(&shapes).unwrap_err().contains("11 transformer blocks"));
        assert!(DepthConfig::infer(&HashMap::new()).unwrap_err().contains("not a Depth-Anything-V2"));
    }
}
