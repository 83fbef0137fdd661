//! `image_encoder/config.json` of a `CLIPVisionModelWithProjection`.

use std::path::Path;

use serde_json::Value;

use super::{field_err, get_field, in_file, limit, model_size, positive, read_json, ConfigError};

/// `image_encoder/config.json` of a `CLIPVisionModelWithProjection`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipVisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub num_channels: usize,
    pub projection_dim: usize,
    pub layer_norm_eps: f64,
}

impl ClipVisionConfig {
    /// OpenCLIP ViT-H/14 vision tower used by SVD (docs/reference/svd-architecture.md §2.3).
    pub fn svd() -> Self {
        ClipVisionConfig {
            hidden_size: 1280,
            intermediate_size: 5120,
            num_attention_heads: 16,
            num_hidden_layers: 32,
            image_size: 224,
            patch_size: 14,
            num_channels: 3,
            projection_dim: 1024,
            layer_norm_eps: 1e-5,
        }
    }

    /// Number of position embeddings (patches + class token).
    pub fn num_positions(&self) -> usize {
        let side = self.image_size / self.patch_size.max(1);
        side * side + 1
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        Self::from_json_value(&read_json(path)?).map_err(|e| in_file(path, e))
    }

    /// Accepts the vision config itself or a full `CLIPConfig` holding a `vision_config` object.
    pub fn from_json_value(v: &Value) -> Result<Self, ConfigError> {
        if !v.is_object() {
            return Err(field_err("<root>", "config.json must hold a JSON object"));
        }
        let v = match v.get("vision_config") {
            Some(inner) if inner.is_object() && v.get("hidden_size").is_none() => inner,
            _ => v,
        };
        if let Some(act) = get_field::<String>(v, "hidden_act")? {
            if act != "gelu" {
                return Err(field_err("hidden_act", format!("unsupported activation {act:?} (only gelu)")));
            }
        }
        let d = Self::svd();
        let cfg = ClipVisionConfig {
            hidden_size: get_field(v, "hidden_size")?.unwrap_or(d.hidden_size),
            intermediate_size: get_field(v, "intermediate_size")?.unwrap_or(d.intermediate_size),
            num_attention_heads: get_field(v, "num_attention_heads")?.unwrap_or(d.num_attention_heads),
            num_hidden_layers: get_field(v, "num_hidden_layers")?.unwrap_or(d.num_hidden_layers),
            image_size: get_field(v, "image_size")?.unwrap_or(d.image_size),
            patch_size: get_field(v, "patch_size")?.unwrap_or(d.patch_size),
            num_channels: get_field(v, "num_channels")?.unwrap_or(d.num_channels),
            projection_dim: get_field(v, "projection_dim")?.unwrap_or(d.projection_dim),
            layer_norm_eps: get_field(v, "layer_norm_eps")?.unwrap_or(d.layer_norm_eps),
        };
        {
            use crate::limits::{CHANNELS, CLIP_SIDE, HEADS, LAYERS};
            for (field, lim, v) in [
                ("hidden_size", CHANNELS, cfg.hidden_size),
                ("intermediate_size", CHANNELS, cfg.intermediate_size),
                ("num_attention_heads", HEADS, cfg.num_attention_heads),
                ("num_hidden_layers", LAYERS, cfg.num_hidden_layers),
                ("num_channels", CHANNELS, cfg.num_channels),
                ("projection_dim", CHANNELS, cfg.projection_dim),
            ] {
                positive(field, lim, v)?;
            }
            limit("image_size", CLIP_SIDE, cfg.image_size)?;
        }
        if cfg.patch_size == 0 {
            return Err(field_err("patch_size", "must be positive"));
        }
        {
            let (h, i) = (cfg.hidden_size as u128, cfg.intermediate_size as u128);
            let side = (cfg.image_size / cfg.patch_size.max(1)) as u128;
            let per_layer = 4 * h * h + 2 * h * i + 9 * h;
            let est = per_layer * cfg.num_hidden_layers as u128
                + (side * side + 1) * h
                + (cfg.patch_size as u128).pow(2) * cfg.num_channels as u128 * h
                + h * cfg.projection_dim as u128;
            model_size("num_hidden_layers", est)?;
        }
        if !(cfg.layer_norm_eps.is_finite() && cfg.layer_norm_eps > 0.0 && cfg.layer_norm_eps < 1.0) {
            return Err(field_err(
                "layer_norm_eps",
                format!("is {}; it must be a positive number below 1 (CLIP uses 1e-5)", cfg.layer_norm_eps),
            ));
        }
        if !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads) {
            return Err(field_err("num_attention_heads", "does not divide hidden_size"));
        }
        if cfg.image_size < cfg.patch_size || !cfg.image_size.is_multiple_of(cfg.patch_size) {
            return Err(field_err("image_size", "must be a positive multiple of patch_size"));
        }
        Ok(cfg)
    }
}
