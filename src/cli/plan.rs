//! `trajattn plan`: a generation's device memory by stage and the UNet step's intermediates for a shape,
//! without weights and without allocating device memory (CLIP and the VAE are recorded on a dry device).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use trajattn::graph::generation_plan::{largest, plan_generation, GenerationShape, StagePlan};
use trajattn::graph::unet_plan::plan_unet;
use trajattn::models::config::{ClipVisionConfig, VaeConfig};
use trajattn::models::unet::TimeContext;
use trajattn_kernels::ops::trajectory_attention::Grouping;
use trajattn_kernels::{DType, Gpu, GpuOptions};

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
    /// Frames decoded together by the VAE decoder (its stage's buffers grow with it).
    #[arg(long, default_value_t = 8)]
    pub decode_chunk: usize,
    /// A diffusers SVD folder whose `vae/` and `image_encoder/` configs to plan with (default: SVD's).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Device memory to check the plan against, e.g. `8G`, `7.5GiB`, `6144M` (binary units): says whether the
    /// generation's largest stage fits and exits with an error when it does not.
    #[arg(long, value_parser = parse_bytes)]
    pub gpu_memory: Option<u64>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `8G`, `7.5GiB`, `6144M`, `512MiB`, `1T` or plain bytes (binary units, integer arithmetic on tenths).
pub fn parse_bytes(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = (t[..split].trim(), t[split..].trim().to_ascii_lowercase());
    let shift = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(format!("unknown unit in {s:?} (use K, M, G or T)")),
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let bad = || format!("{s:?} is not a size such as 8G or 7.5GiB");
    if int.is_empty() || frac.len() > 1 || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let tenths: u64 =
        format!("{int}{}", if frac.is_empty() { "0" } else { frac }).parse().map_err(|_| bad())?;
    tenths.checked_mul(1u64 << shift).map(|v| v / 10).filter(|&v| v > 0).ok_or_else(bad)
}

fn gib(b: u64) -> String {
    format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
}

/// Runs the plan (`opts` choose the adapter whose alignment, limits and kernels the plan follows).
pub fn run(opts: &GpuOptions, a: &PlanArgs) -> Result<()> {
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
    trajattn::limits::check_range("--decode-chunk", a.decode_chunk, 1, 4096, "8 by default")?;
    // A chunk longer than the video decodes the whole video at once, as in the pipeline.
    let decode_chunk = a.decode_chunk.min(frames.max(1));
    let dtype = if a.dtype == "f16" { DType::F16 } else { DType::F32 };
    let elem = dtype.size();
    let traj = (a.trajectories > 0).then_some(a.trajectories);
    let p = plan_unet(&cfg, a.batch, frames, a.height / a.vae_factor, a.width / a.vae_factor, elem, traj);
    let (vae, clip) = match &a.model {
        None => (VaeConfig::svd(), ClipVisionConfig::svd()),
        Some(d) => (
            VaeConfig::from_file(&d.join("vae/config.json"))
                .with_context(|| format!("reading {}", d.display()))?,
            ClipVisionConfig::from_file(&d.join("image_encoder/config.json"))
                .with_context(|| format!("reading {}", d.display()))?,
        ),
    };
    let f8 = 1usize << (vae.block_out_channels.len() - 1);
    if f8 != a.vae_factor {
        bail!(
            "the VAE halves {} times (factor {f8}) but --vae-factor is {}",
            vae.block_out_channels.len() - 1,
            a.vae_factor
        );
    }
    let gpu = Gpu::emulating(opts).context("opening a dry device for the plan")?;
    let shape = GenerationShape {
        unet: cfg.clone(),
        vae,
        clip,
        dtype,
        frames,
        height: a.height,
        width: a.width,
        batch: a.batch,
        trajectories: traj,
        grouping: Grouping::Pairs,
        time_context: TimeContext::Faithful,
        trajectory_weights: traj.is_some(),
        decode_chunk,
    };
    let stages = plan_generation(&gpu, &shape)?;
    let worst = largest(&stages).context("no stages")?.clone();
    let fits = a.gpu_memory.map(|m| worst.peak_bytes <= m);
    if a.json {
        let mut v = serde_json::to_value(&p)?;
        v["stages"] = serde_json::to_value(&stages)?;
        v["generation_peak_bytes"] = worst.peak_bytes.into();
        v["generation_peak_stage"] = worst.stage.clone().into();
        if let (Some(m), Some(f)) = (a.gpu_memory, fits) {
            v["gpu_memory_bytes"] = m.into();
            v["fits"] = f.into();
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_plan(a, &p, frames, traj.is_some());
        print_stages(decode_chunk, &stages, &worst, &gpu);
    }
    match (a.gpu_memory, fits) {
        (Some(m), Some(false)) => bail!(
            "the {} stage needs {} (resident UNet weights {} + the stage's weights {} + its buffers {}), more than the \
             {} given",
            worst.stage,
            gib(worst.peak_bytes),
            gib(worst.resident_bytes),
            gib(worst.weight_bytes),
            gib(worst.work_bytes),
            gib(m)
        ),
        (Some(m), Some(true)) if !a.json => println!(
            "  the generation fits in {}: yes (largest stage {}, {} to spare)",
            gib(m),
            worst.stage,
            gib(m - worst.peak_bytes)
        ),
        _ => {}
    }
    Ok(())
}

fn print_stages(decode_chunk: usize, stages: &[StagePlan], worst: &StagePlan, gpu: &Gpu) {
    println!(
        "generation by stage on {} (device pool bytes, weights included; the UNet's weights resident until the \
         VAE decoder comes, CLIP and the VAE halves only in their stage; VAE decode: one chunk of {} frames):",
        gpu.info.name, decode_chunk
    );
    for s in stages {
        println!(
            "  {:<11} {}  = resident UNet weights {} + stage weights {} + buffers {}",
            s.stage,
            gib(s.peak_bytes),
            gib(s.resident_bytes),
            gib(s.weight_bytes),
            gib(s.work_bytes)
        );
    }
    println!("  generation peak  {} ({})", gib(worst.peak_bytes), worst.stage);
}

fn print_plan(a: &PlanArgs, p: &trajattn::graph::unet_plan::UNetPlan, frames: usize, traj: bool) {
    println!(
        "UNet {} at {frames}×{}×{} (latent {}×{}), batch {}, {}{} (analytic replay of the allocation order; the \
         stage table below records the real graph)",
        a.unet_config,
        a.height,
        a.width,
        a.height / a.vae_factor,
        a.width / a.vae_factor,
        a.batch,
        a.dtype,
        if traj { ", with the trajectory branch" } else { "" }
    );
    println!("  parameters        {}", gib(p.param_bytes));
    println!(
        "  activations peak  {} (offset placement in arenas; live lower bound {})",
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
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_bytes("8G"), Ok(8 << 30));
        assert_eq!(parse_bytes("7.5GiB"), Ok(15 << 29));
        assert_eq!(parse_bytes("6144M"), Ok(6 << 30));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        for bad in ["", "G", "8X", "1.25G", "-1G", "0", "8 G B x"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }
}
