//! Model configurations read from diffusers / transformers `config.json` files.
//!
//! Only the fields that change parameter shapes or numerics are kept. Values that the runtime does not
//! support are rejected with a [`ConfigError`] naming the field.
//!
//! Files: this one holds the error and the JSON field readers shared by the three configs; `unet.rs`,
//! `vae.rs` and `clip.rs` one configuration each. The UNet's total size is checked against its parameter
//! list, which lives above the config (`models::unet_keys::check_model_size`).

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

mod clip;
mod unet;
mod vae;

pub use clip::ClipVisionConfig;
pub use unet::{DownBlockKind, UNetConfig, UpBlockKind};
pub use vae::VaeConfig;

/// GroupNorm in the reference always uses 32 groups.
pub const NORM_GROUPS: usize = 32;

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
pub(super) fn in_file(path: &Path, e: ConfigError) -> ConfigError {
    match e {
        ConfigError::Field { .. } => {
            ConfigError::InFile { path: path.display().to_string(), source: Box::new(e) }
        }
        other => other,
    }
}

/// Checks `value` of `field` against a resource limit (`crate::limits`).
pub(super) fn limit(field: &str, lim: crate::limits::Limit, value: usize) -> Result<(), ConfigError> {
    lim.check(value as u64).map(|_| ()).map_err(|e| field_err(field, e.to_string()))
}

/// `Err` naming `field` unless `value` is positive and within the resource limit `lim`.
pub(super) fn positive(field: &str, lim: crate::limits::Limit, value: usize) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(field_err(field, "must be positive"));
    }
    limit(field, lim, value)
}

/// The levels' widths (`block_out_channels` of the UNet and the VAE): one level at least, `LEVELS` at most, each
/// a positive multiple of [`NORM_GROUPS`] within `CHANNELS`.
pub(super) fn block_widths(widths: &[usize]) -> Result<(), ConfigError> {
    use crate::limits::{CHANNELS, LEVELS};
    const FIELD: &str = "block_out_channels";
    if widths.is_empty() {
        return Err(field_err(FIELD, "is empty"));
    }
    limit(FIELD, LEVELS, widths.len())?;
    for &c in widths {
        if c == 0 || c % NORM_GROUPS != 0 {
            return Err(field_err(
                FIELD,
                format!("{c} is not a positive multiple of {NORM_GROUPS} (GroupNorm groups)"),
            ));
        }
        limit(FIELD, CHANNELS, c)?;
    }
    Ok(())
}

/// A configuration's estimated parameter count against `MODEL_PARAMS`, the error naming `field`.
pub(super) fn model_size(field: &str, estimate: u128) -> Result<(), ConfigError> {
    let est = u64::try_from(estimate).unwrap_or(u64::MAX);
    crate::limits::MODEL_PARAMS.check(est).map(|_| ()).map_err(|e| field_err(field, e.to_string()))
}

/// A field that does not affect the computation: read when it has the expected form, ignored (with a log line)
/// otherwise, e.g. `"sample_size": [12, 20]`, which diffusers writes for models built with a tuple.
pub(super) fn lenient_field<T: for<'de> Deserialize<'de>>(obj: &Value, field: &str) -> Option<T> {
    let v = obj.get(field)?;
    match serde_json::from_value(v.clone()) {
        Ok(x) => Some(x),
        Err(_) => {
            log::info!("config field `{field}` = {v} ignored (informational only)");
            None
        }
    }
}

pub(super) fn field_err(field: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::Field { field: field.to_string(), msg: msg.into() }
}

pub(super) fn read_json(path: &Path) -> Result<Value, ConfigError> {
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

pub(super) fn get_field<T: for<'de> Deserialize<'de>>(
    obj: &Value,
    field: &str,
) -> Result<Option<T>, ConfigError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| field_err(field, format!("unexpected value {v}: {e}"))),
    }
}

pub(super) fn check_class(obj: &Value, field: &str, expected: &[&str]) -> Result<(), ConfigError> {
    if let Some(name) = get_field::<String>(obj, field)? {
        if !expected.contains(&name.as_str()) {
            return Err(field_err(field, format!("is {name:?}, expected one of {expected:?}")));
        }
    }
    Ok(())
}
