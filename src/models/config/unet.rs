//! `unet/config.json` of a `UNetSpatioTemporalConditionModel`.

use std::path::Path;

use serde_json::Value;

use super::{
    block_widths, check_class, field_err, get_field, in_file, lenient_field, limit, positive, read_json,
    ConfigError, IntOrList,
};

/// Down block kinds of `UNetSpatioTemporalConditionModel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownBlockKind {
    /// `CrossAttnDownBlockSpatioTemporal`
    CrossAttn,
    /// `DownBlockSpatioTemporal`
    Plain,
}

/// Up block kinds of `UNetSpatioTemporalConditionModel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpBlockKind {
    /// `CrossAttnUpBlockSpatioTemporal`
    CrossAttn,
    /// `UpBlockSpatioTemporal`
    Plain,
}

/// `unet/config.json` of a `UNetSpatioTemporalConditionModel`, with every per-block field expanded to one
/// value per down block (index `i` = `down_blocks.i`; up blocks use the reversed lists like diffusers).
#[derive(Debug, Clone, PartialEq)]
pub struct UNetConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub down_block_types: Vec<DownBlockKind>,
    pub up_block_types: Vec<UpBlockKind>,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: Vec<usize>,
    pub transformer_layers_per_block: Vec<usize>,
    pub num_attention_heads: Vec<usize>,
    pub cross_attention_dim: Vec<usize>,
    pub addition_time_embed_dim: usize,
    pub projection_class_embeddings_input_dim: usize,
    pub num_frames: usize,
    pub sample_size: Option<usize>,
}

impl UNetConfig {
    /// The configuration of `stable-video-diffusion-img2vid-xt` (docs/reference/svd-architecture.md §2.1).
    pub fn svd_xt() -> Self {
        UNetConfig {
            in_channels: 8,
            out_channels: 4,
            down_block_types: vec![
                DownBlockKind::CrossAttn,
                DownBlockKind::CrossAttn,
                DownBlockKind::CrossAttn,
                DownBlockKind::Plain,
            ],
            up_block_types: vec![
                UpBlockKind::Plain,
                UpBlockKind::CrossAttn,
                UpBlockKind::CrossAttn,
                UpBlockKind::CrossAttn,
            ],
            block_out_channels: vec![320, 640, 1280, 1280],
            layers_per_block: vec![2; 4],
            transformer_layers_per_block: vec![1; 4],
            num_attention_heads: vec![5, 10, 20, 20],
            cross_attention_dim: vec![1024; 4],
            addition_time_embed_dim: 256,
            projection_class_embeddings_input_dim: 768,
            num_frames: 25,
            sample_size: Some(96),
        }
    }

    /// The configuration of `stable-video-diffusion-img2vid` (14 frames).
    pub fn svd() -> Self {
        UNetConfig { num_frames: 14, ..Self::svd_xt() }
    }

    /// Number of down (and up) blocks.
    pub fn n_blocks(&self) -> usize {
        self.block_out_channels.len()
    }

    /// Width of the time embedding (`4 × block_out_channels[0]`).
    pub fn time_embed_dim(&self) -> usize {
        self.block_out_channels.first().copied().unwrap_or(0) * 4
    }

    /// Read `unet/config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        Self::from_json_value(&read_json(path)?).map_err(|e| in_file(path, e))
    }

    /// Parse the text of a `config.json`.
    pub fn from_json_str(text: &str) -> Result<Self, ConfigError> {
        let v: Value = serde_json::from_str(text)
            .map_err(|source| ConfigError::Json { path: "<string>".into(), source })?;
        Self::from_json_value(&v)
    }

    /// Parse a parsed `config.json` object. Missing fields take diffusers' defaults.
    pub fn from_json_value(v: &Value) -> Result<Self, ConfigError> {
        if !v.is_object() {
            return Err(field_err("<root>", "config.json must hold a JSON object"));
        }
        check_class(v, "_class_name", &["UNetSpatioTemporalConditionModel"])?;
        let d = Self::svd_xt();
        let block_out_channels: Vec<usize> =
            get_field(v, "block_out_channels")?.unwrap_or(d.block_out_channels.clone());
        let n = block_out_channels.len();
        if n == 0 {
            return Err(field_err("block_out_channels", "is empty"));
        }
        let down_names: Vec<String> = get_field(v, "down_block_types")?.unwrap_or_else(|| {
            vec![
                "CrossAttnDownBlockSpatioTemporal".into(),
                "CrossAttnDownBlockSpatioTemporal".into(),
                "CrossAttnDownBlockSpatioTemporal".into(),
                "DownBlockSpatioTemporal".into(),
            ]
        });
        let up_names: Vec<String> = get_field(v, "up_block_types")?.unwrap_or_else(|| {
            vec![
                "UpBlockSpatioTemporal".into(),
                "CrossAttnUpBlockSpatioTemporal".into(),
                "CrossAttnUpBlockSpatioTemporal".into(),
                "CrossAttnUpBlockSpatioTemporal".into(),
            ]
        });
        if down_names.len() != n {
            return Err(field_err(
                "down_block_types",
                format!("has {} entries but block_out_channels has {n}", down_names.len()),
            ));
        }
        if up_names.len() != n {
            return Err(field_err(
                "up_block_types",
                format!("has {} entries but block_out_channels has {n}", up_names.len()),
            ));
        }
        let down_block_types = down_names
            .iter()
            .map(|s| match s.as_str() {
                "CrossAttnDownBlockSpatioTemporal" => Ok(DownBlockKind::CrossAttn),
                "DownBlockSpatioTemporal" => Ok(DownBlockKind::Plain),
                other => Err(field_err("down_block_types", format!("unsupported block type {other:?}"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let up_block_types = up_names
            .iter()
            .map(|s| match s.as_str() {
                "CrossAttnUpBlockSpatioTemporal" => Ok(UpBlockKind::CrossAttn),
                "UpBlockSpatioTemporal" => Ok(UpBlockKind::Plain),
                other => Err(field_err("up_block_types", format!("unsupported block type {other:?}"))),
            })
            .collect::<Result<Vec<_>, _>>()?;

        let per_block = |field: &str, default: IntOrList| -> Result<Vec<usize>, ConfigError> {
            let raw: Option<Value> = v.get(field).cloned().filter(|x| !x.is_null());
            let val = match raw {
                None => default,
                Some(x) => serde_json::from_value::<IntOrList>(x.clone()).map_err(|_| {
                    field_err(field, format!("must be an integer or a list of integers, got {x}"))
                })?,
            };
            val.per_block(field, n)
        };
        let cfg = UNetConfig {
            in_channels: get_field(v, "in_channels")?.unwrap_or(d.in_channels),
            out_channels: get_field(v, "out_channels")?.unwrap_or(d.out_channels),
            layers_per_block: per_block("layers_per_block", IntOrList::Int(2))?,
            transformer_layers_per_block: per_block("transformer_layers_per_block", IntOrList::Int(1))?,
            num_attention_heads: per_block("num_attention_heads", IntOrList::List(vec![5, 10, 20, 20]))?,
            cross_attention_dim: per_block("cross_attention_dim", IntOrList::Int(1024))?,
            addition_time_embed_dim: get_field(v, "addition_time_embed_dim")?
                .unwrap_or(d.addition_time_embed_dim),
            projection_class_embeddings_input_dim: get_field(v, "projection_class_embeddings_input_dim")?
                .unwrap_or(d.projection_class_embeddings_input_dim),
            num_frames: get_field(v, "num_frames")?.unwrap_or(d.num_frames),
            sample_size: lenient_field(v, "sample_size"),
            block_out_channels,
            down_block_types,
            up_block_types,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check that the configuration describes a model the runtime can build, field by field (its total size is
    /// checked against its parameter list by `models::unet_keys::check_model_size`, which loading runs).
    pub fn validate(&self) -> Result<(), ConfigError> {
        use crate::limits::{CHANNELS, FRAMES, HEADS, LAYERS};
        let n = self.n_blocks();
        block_widths(&self.block_out_channels)?;
        for (field, lim, vals) in [
            ("layers_per_block", LAYERS, &self.layers_per_block),
            ("transformer_layers_per_block", LAYERS, &self.transformer_layers_per_block),
            ("num_attention_heads", HEADS, &self.num_attention_heads),
            ("cross_attention_dim", CHANNELS, &self.cross_attention_dim),
        ] {
            for &v in vals.iter() {
                limit(field, lim, v)?;
            }
        }
        for (field, lim, v) in [
            ("in_channels", CHANNELS, self.in_channels),
            ("out_channels", CHANNELS, self.out_channels),
            ("projection_class_embeddings_input_dim", CHANNELS, self.projection_class_embeddings_input_dim),
            ("num_frames", FRAMES, self.num_frames),
        ] {
            positive(field, lim, v)?;
        }
        limit("addition_time_embed_dim", CHANNELS, self.addition_time_embed_dim)?;
        for (field, len) in [
            ("down_block_types", self.down_block_types.len()),
            ("up_block_types", self.up_block_types.len()),
            ("layers_per_block", self.layers_per_block.len()),
            ("transformer_layers_per_block", self.transformer_layers_per_block.len()),
            ("num_attention_heads", self.num_attention_heads.len()),
            ("cross_attention_dim", self.cross_attention_dim.len()),
        ] {
            if len != n {
                return Err(field_err(field, format!("has {len} entries, expected {n}")));
            }
        }
        for i in 0..n {
            let has_attn = self.down_block_types[i] == DownBlockKind::CrossAttn
                || self.up_block_types[n - 1 - i] == UpBlockKind::CrossAttn
                || i == n - 1;
            if self.layers_per_block[i] == 0 {
                return Err(field_err("layers_per_block", "must be at least 1"));
            }
            if has_attn {
                let (c, h) = (self.block_out_channels[i], self.num_attention_heads[i]);
                if h == 0 || c % h != 0 {
                    return Err(field_err(
                        "num_attention_heads",
                        format!("{h} heads do not divide the block width {c}"),
                    ));
                }
                if self.transformer_layers_per_block[i] == 0 {
                    return Err(field_err("transformer_layers_per_block", "must be at least 1"));
                }
                if self.cross_attention_dim[i] == 0 {
                    return Err(field_err("cross_attention_dim", "must be positive"));
                }
            }
        }
        if self.addition_time_embed_dim == 0 || !self.addition_time_embed_dim.is_multiple_of(2) {
            return Err(field_err("addition_time_embed_dim", "must be a positive even number"));
        }
        if self.projection_class_embeddings_input_dim != 3 * self.addition_time_embed_dim {
            return Err(field_err(
                "projection_class_embeddings_input_dim",
                format!(
                    "is {} but the three added time ids embed to 3 × addition_time_embed_dim = {}",
                    self.projection_class_embeddings_input_dim,
                    3 * self.addition_time_embed_dim
                ),
            ));
        }
        Ok(())
    }
}
