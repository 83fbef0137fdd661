//! `trajattn convert`: the official trajectory checkpoint to safetensors with real key names.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use trajattn::models::config::UNetConfig;
use trajattn::models::unet::convert_trajectory_checkpoint_with_config;

/// Arguments of `trajattn convert`.
#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The official `trajattn_temp.pth` (or a safetensors file with real names, to re-check it).
    #[arg(long)]
    pub input: PathBuf,
    /// Output safetensors file (float32, the UNet's `…attn_trajectory.*` names in registration order).
    #[arg(long)]
    pub output: PathBuf,
    /// UNet configuration the weights belong to: `svd-xt` (default; the released weights), `svd`, or a
    /// diffusers `unet/config.json`.
    #[arg(long, default_value = "svd-xt")]
    pub unet_config: String,
}

/// Parses `svd`, `svd-xt` or a config file path.
pub fn unet_config(spec: &str) -> Result<UNetConfig> {
    Ok(match spec {
        "svd-xt" | "xt" => UNetConfig::svd_xt(),
        "svd" => UNetConfig::svd(),
        path => {
            UNetConfig::from_file(std::path::Path::new(path)).with_context(|| format!("reading {path}"))?
        }
    })
}

/// Runs the conversion.
pub fn run(a: &ConvertArgs) -> Result<()> {
    let cfg = unet_config(&a.unet_config)?;
    trajattn::output::not_an_input(&a.output, &[&a.input])?;
    trajattn::output::check_file(&a.output)?;
    // Written under a temporary name and renamed when complete: a failure leaves no partial file.
    let n = trajattn::output::write_atomic(&a.output, |tmp| {
        convert_trajectory_checkpoint_with_config(&a.input, tmp, &cfg)
            .with_context(|| format!("converting {}", a.input.display()))
    })?;
    println!("wrote {n} tensors to {}", a.output.display());
    Ok(())
}
