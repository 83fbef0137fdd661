//! Model configurations read from diffusers / transformers `config.json` files.
//!
//! Only the fields that change parameter shapes or numerics are kept. Values that the runtime does not
//! support are rejected with a [`ConfigError`] naming the field.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

/// A configuration problem: which field and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("config {path} is not valid JSON: {source}")]
    Json { path: String, source: serde_json::Error },
    #[error("config field `{field}`: {msg}")]
    Field { field: String, msg: String },
    /// A problem of the config file at `path`.
    #[error("config {path}: {source}")]
    InFile { path: String, source: Box<ConfigError> },
}

/// Names the file in a field error (I/O and JSON errors already do).
fn in_file(path: &Path, e: ConfigError) -> ConfigError {
    match e {
        ConfigError::Field { .. } => {
            ConfigError::InFile { path: path.display().to_string(), source: Box::new(e) }
        }
        other => other,
    }
}

/// Checks `value` of `field` against a resource limit (`crate::limits`).
fn limit(field: &str, lim: crate::limits::Limit, value: usize) -> Result<(), ConfigError> {
    lim.check(value as u64).map(|_| ()).map_err(|e| field_err(field, e.to_string()))
}

/// A field that does not affect the computation: read when it has the expected form, ignored (with a log line)
/// otherwise, e.g. `"sample_size": [12, 20]`, which diffusers writes for models built with a tuple.
fn lenient_field<T: for<'de> Deserialize<'de>>(obj: &Value, field: &str) -> Option<T> {
    let v = obj.get(field)?;
    match serde_json::from_value(v.clone()) {
        Ok(x) => Some(x),
        Err(_) => {
            log::info!("config field `{field}` = {v} ignored (informational only)");
            None
        }
    }
}

fn field_err(field: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::Field { field: field.to_string(), msg: msg.into() }
}

fn read_json(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Io { path: path.display().to_string(), source })?;
    serde_json::from_str(&text)
        .map_err(|source| ConfigError::Json { path: path.display().to_string(), source })
}

/// An integer or a per-block list of integers (diffusers accepts both for several fields).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum IntOrList {
    Int(usize),
    List(Vec<usize>),
}

impl IntOrList {
    /// Expand to one value per block, checking the list length.
    pub fn per_block(&self, field: &str, n: usize) -> Result<Vec<usize>, ConfigError> {
        match self {
            IntOrList::Int(v) => Ok(vec![*v; n]),
            IntOrList::List(v) if v.len() == n => Ok(v.clone()),
            IntOrList::List(v) => {
                Err(field_err(field, format!("has {} entries but there are {n} down blocks", v.len())))
            }
        }
    }
}

fn get_field<T: for<'de> Deserialize<'de>>(obj: &Value, field: &str) -> Result<Option<T>, ConfigError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| field_err(field, format!("unexpected value {v}: {e}"))),
    }
}

fn check_class(obj: &Value, field: &str, expected: &[&str]) -> Result<(), ConfigError> {
    if let Some(name) = get_field::<String>(obj, field)? {
        if !expected.contains(&name.as_str()) {
            return Err(field_err(field, format!("is {name:?}, expected one of {expected:?}")));
        }
    }
    Ok(())
}

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

/// GroupNorm in the reference always uses 32 groups.
pub const NORM_GROUPS: usize = 32;

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

    /// Check that the configuration describes a model the runtime can build.
    pub fn validate(&self) -> Result<(), ConfigError> {
        use crate::limits::{CHANNELS, FRAMES, HEADS, LAYERS, LEVELS};
        let n = self.n_blocks();
        if n == 0 {
            return Err(field_err("block_out_channels", "is empty"));
        }
        limit("block_out_channels", LEVELS, n)?;
        for (field, lim, vals) in [
            ("block_out_channels", CHANNELS, &self.block_out_channels),
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
            ("addition_time_embed_dim", CHANNELS, self.addition_time_embed_dim),
            ("projection_class_embeddings_input_dim", CHANNELS, self.projection_class_embeddings_input_dim),
            ("num_frames", FRAMES, self.num_frames),
        ] {
            limit(field, lim, v)?;
        }
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
        if self.in_channels == 0 {
            return Err(field_err("in_channels", "must be positive"));
        }
        if self.out_channels == 0 {
            return Err(field_err("out_channels", "must be positive"));
        }
        for &c in &self.block_out_channels {
            if c == 0 || c % NORM_GROUPS != 0 {
                return Err(field_err(
                    "block_out_channels",
                    format!("{c} is not a positive multiple of {NORM_GROUPS} (GroupNorm groups)"),
                ));
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
        if self.projection_class_embeddings_input_dim == 0 {
            return Err(field_err("projection_class_embeddings_input_dim", "must be positive"));
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
        if self.num_frames == 0 {
            return Err(field_err("num_frames", "must be positive"));
        }
        self.check_model_size()
    }

    /// Refuses a configuration whose tensors (each, and all together) exceed the resource limits, before anything
    /// is allocated for it.
    fn check_model_size(&self) -> Result<(), ConfigError> {
        use crate::limits::{product, MODEL_PARAMS, TENSOR_ELEMS};
        let mut total: u64 = 0;
        for (name, shape) in crate::models::unet_keys::expected_unet_keys(self, true) {
            let n = product(&name, &shape).map_err(|e| field_err("block_out_channels", e.to_string()))?;
            TENSOR_ELEMS
                .check(n as u64)
                .map_err(|e| field_err("block_out_channels", format!("{name}: {e}")))?;
            total = total.saturating_add(n as u64);
        }
        MODEL_PARAMS.check(total).map_err(|e| field_err("layers_per_block", e.to_string()))?;
        Ok(())
    }
}

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
        if cfg.block_out_channels.is_empty() {
            return Err(field_err("block_out_channels", "is empty"));
        }
        if let Some(c) = cfg.block_out_channels.iter().find(|&&c| c == 0 || c % NORM_GROUPS != 0) {
            return Err(field_err("block_out_channels", format!("{c} is not a positive multiple of 32")));
        }
        if cfg.layers_per_block == 0 {
            return Err(field_err("layers_per_block", "must be at least 1"));
        }
        {
            use crate::limits::{CHANNELS, LAYERS, LEVELS};
            limit("block_out_channels", LEVELS, cfg.block_out_channels.len())?;
            for &c in &cfg.block_out_channels {
                limit("block_out_channels", CHANNELS, c)?;
            }
            limit("layers_per_block", LAYERS, cfg.layers_per_block)?;
            for (field, v) in [
                ("in_channels", cfg.in_channels),
                ("out_channels", cfg.out_channels),
                ("latent_channels", cfg.latent_channels),
            ] {
                limit(field, CHANNELS, v)?;
                if v == 0 {
                    return Err(field_err(field, "must be positive"));
                }
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
            let est = u64::try_from(est).unwrap_or(u64::MAX);
            crate::limits::MODEL_PARAMS
                .check(est)
                .map_err(|e| field_err("block_out_channels", e.to_string()))?;
        }
        if cfg.latent_channels == 0 {
            return Err(field_err("latent_channels", "must be positive"));
        }
        if !(cfg.scaling_factor.is_finite() && cfg.scaling_factor > 0.0) {
            return Err(field_err("scaling_factor", "must be a positive number"));
        }
        Ok(cfg)
    }
}

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
        for (field, val) in [
            ("hidden_size", cfg.hidden_size),
            ("intermediate_size", cfg.intermediate_size),
            ("num_attention_heads", cfg.num_attention_heads),
            ("num_hidden_layers", cfg.num_hidden_layers),
            ("patch_size", cfg.patch_size),
            ("num_channels", cfg.num_channels),
            ("projection_dim", cfg.projection_dim),
        ] {
            if val == 0 {
                return Err(field_err(field, "must be positive"));
            }
        }
        {
            use crate::limits::{CHANNELS, CLIP_SIDE, HEADS, LAYERS};
            for (field, lim, v) in [
                ("hidden_size", CHANNELS, cfg.hidden_size),
                ("intermediate_size", CHANNELS, cfg.intermediate_size),
                ("projection_dim", CHANNELS, cfg.projection_dim),
                ("num_channels", CHANNELS, cfg.num_channels),
                ("num_attention_heads", HEADS, cfg.num_attention_heads),
                ("num_hidden_layers", LAYERS, cfg.num_hidden_layers),
                ("image_size", CLIP_SIDE, cfg.image_size),
            ] {
                limit(field, lim, v)?;
            }
        }
        {
            let (h, i) = (cfg.hidden_size as u128, cfg.intermediate_size as u128);
            let side = (cfg.image_size / cfg.patch_size.max(1)) as u128;
            let per_layer = 4 * h * h + 2 * h * i + 9 * h;
            let est = per_layer * cfg.num_hidden_layers as u128
                + (side * side + 1) * h
                + (cfg.patch_size as u128).pow(2) * cfg.num_channels as u128 * h
                + h * cfg.projection_dim as u128;
            let est = u64::try_from(est).unwrap_or(u64::MAX);
            crate::limits::MODEL_PARAMS
                .check(est)
                .map_err(|e| field_err("num_hidden_layers", e.to_string()))?;
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
