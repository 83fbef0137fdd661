//! `vae/config.json` of an `AutoencoderKLTemporalDecoder`.

use std::path::Path;

use serde_json::Value;

use super::{
    block_widths, check_class, field_err, get_field, in_file, limit, model_size, positive, read_json,
    ConfigError,
};

/// `vae/config.json` of an `AutoencoderKLTemporalDecoder`.
#[derive(Debug, Clone, PartialEq)]
pub struct VaeConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub latent_channels: usize,
    pub scaling_factor: f64,
    pub force_upcast: bool,
}

impl VaeConfig {
    /// The SVD VAE (docs/reference/svd-architecture.md §2.2).
    pub fn svd() -> Self {
        VaeConfig {
            in_channels: 3,
            out_channels: 3,
            block_out_channels: vec![128, 256, 512, 512],
            layers_per_block: 2,
            latent_channels: 4,
            scaling_factor: 0.18215,
            force_upcast: true,
        }
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        Self::from_json_value(&read_json(path)?).map_err(|e| in_file(path, e))
    }

    pub fn from_json_value(v: &Value) -> Result<Self, ConfigError> {
        if !v.is_object() {
            return Err(field_err("<root>", "config.json must hold a JSON object"));
        }
        check_class(v, "_class_name", &["AutoencoderKLTemporalDecoder"])?;
        let d = Self::svd();
        let block_out_channels: Vec<usize> =
            get_field(v, "block_out_channels")?.unwrap_or(d.block_out_channels.clone());
        if let Some(types) = get_field::<Vec<String>>(v, "down_block_types")? {
            if types.len() != block_out_channels.len() {
                return Err(field_err("down_block_types", "length differs from block_out_channels"));
            }
            if let Some(t) = types.iter().find(|t| t.as_str() != "DownEncoderBlock2D") {
                return Err(field_err("down_block_types", format!("unsupported block type {t:?}")));
            }
        }
        let cfg = VaeConfig {
            in_channels: get_field(v, "in_channels")?.unwrap_or(d.in_channels),
            out_channels: get_field(v, "out_channels")?.unwrap_or(d.out_channels),
            layers_per_block: get_field(v, "layers_per_block")?.unwrap_or(d.layers_per_block),
            latent_channels: get_field(v, "latent_channels")?.unwrap_or(d.latent_channels),
            scaling_factor: get_field(v, "scaling_factor")?.unwrap_or(d.scaling_factor),
            force_upcast: get_field(v, "force_upcast")?.unwrap_or(d.force_upcast),
            block_out_channels,
        };
        block_widths(&cfg.block_out_channels)?;
        if cfg.layers_per_block == 0 {
            return Err(field_err("layers_per_block", "must be at least 1"));
        }
        {
            use crate::limits::{CHANNELS, LAYERS};
            limit("layers_per_block", LAYERS, cfg.layers_per_block)?;
            for (field, v) in [
                ("in_channels", cfg.in_channels),
                ("out_channels", cfg.out_channels),
                ("latent_channels", cfg.latent_channels),
            ] {
                positive(field, CHANNELS, v)?;
            }
        }
        {
            // Encoder + temporal decoder: two 3×3 convolutions per resnet, (layers + 2) resnets a level in each,
            // plus the decoder's temporal mixing; an over-estimate is fine for a resource bound.
            let est: u128 = cfg
                .block_out_channels
                .iter()
                .map(|&c| 4 * 9 * (c as u128) * (c as u128) * (cfg.layers_per_block as u128 + 2))
                .sum();
            model_size("block_out_channels", est)?;
        }
        if !(cfg.scaling_factor.is_finite() && cfg.scaling_factor > 0.0) {
            return Err(field_err("scaling_factor", "must be a positive number"));
        }
        Ok(cfg)
    }
}
