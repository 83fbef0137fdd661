//! `trajattn plan`: the UNet's memory for a shape, without weights or a device.

use anyhow::{bail, Result};
use clap::Args;
use trajattn::graph::unet_plan::plan_unet;

use super::convert::unet_config;

/// Arguments of `trajattn plan`.
#[derive(Args, Debug)]
pub struct PlanArgs {
    /// `svd-xt`, `svd`, or a diffusers `unet/config.json`.
    #[arg(long, default_value = "svd-xt")]
    pub unet_config: String,
    /// Frames (default: the config's num_frames).
    #[arg(long)]
    pub frames: Option<usize>,
    /// Height in pixels (a multiple of 64 for SVD).
    #[arg(long, default_value_t = 576)]
    pub height: usize,
    /// Width in pixels.
    #[arg(long, default_value_t = 1024)]
    pub width: usize,
    /// Device precision.
    #[arg(long, default_value = "f16", value_parser = ["f16", "f32"])]
    pub dtype: String,
    /// Batch through the UNet (2 with classifier-free guidance).
    #[arg(long, default_value_t = 2)]
    pub batch: usize,
    /// Plan with the trajectory branch and this many trajectories (0: without the branch).
    #[arg(long, default_value_t = 589_824)]
    pub trajectories: usize,
    /// VAE spatial downsampling factor (8 for SVD).
    #[arg(long, default_value_t = 8)]
    pub vae_factor: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn gib(b: u64) -> String {
    format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
}

/// Runs the plan.
pub fn run(a: &PlanArgs) -> Result<()> {
    let cfg = unet_config(&a.unet_config)?;
    let frames = a.frames.unwrap_or(cfg.num_frames);
    let unit = a.vae_factor << (cfg.n_blocks() - 1);
    if a.height == 0 || a.width == 0 || !a.height.is_multiple_of(unit) || !a.width.is_multiple_of(unit) {
        bail!(
            "height and width must be positive multiples of {unit} pixels for this UNet (got {}×{})",
            a.width,
            a.height
        );
    }
    if frames == 0 || a.batch == 0 {
        bail!("frames and batch must be positive");
    }
    trajattn::limits::check_video(frames, a.width, a.height)?;
    trajattn::limits::check_range("--batch", a.batch, 1, 64, "2 with classifier-free guidance")?;
    trajattn::limits::check_range("--vae-factor", a.vae_factor, 1, 64, "8 for SVD")?;
    // The branch samples at most one trajectory per latent cell and frame pair; far more is a typo.
    trajattn::limits::check_range("--trajectories", a.trajectories, 0, 1usize << 32, "")?;
    let elem = if a.dtype == "f16" { 2 } else { 4 };
    let traj = (a.trajectories > 0).then_some(a.trajectories);
    let p = plan_unet(&cfg, a.batch, frames, a.height / a.vae_factor, a.width / a.vae_factor, elem, traj);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
        return Ok(());
    }
    println!(
        "UNet {} at {frames}×{}×{} (latent {}×{}), batch {}, {}{}",
        a.unet_config,
        a.height,
        a.width,
        a.height / a.vae_factor,
        a.width / a.vae_factor,
        a.batch,
        a.dtype,
        if traj.is_some() { ", with the trajectory branch" } else { "" }
    );
    println!("  parameters        {}", gib(p.param_bytes));
    println!(
        "  activations peak  {} (live lower bound {})",
        gib(p.peak_activation_bytes),
        gib(p.peak_live_bytes)
    );
    println!("  persistent        {}", gib(p.persistent_bytes));
    println!("  peak total        {}", gib(p.peak_total_bytes));
    println!("  alive at the peak:");
    for (name, shape, bytes) in &p.alive_at_peak {
        println!("    {name:<28} {shape:?}  {}", gib(*bytes));
    }
    println!("  largest intermediates:");
    for (name, shape, bytes) in &p.largest {
        println!("    {name:<28} {shape:?}  {}", gib(*bytes));
    }
    Ok(())
}
