//! One UNet call from files: a diffusers-layout model folder, an inputs file, an output file.
//!
//! ```text
//! cargo run --release --example unet_forward -- --model DIR --inputs IN.safetensors --output OUT.safetensors [--dtype f32|f16]
//! ```
//! DIR holds `unet/config.json` and `unet/diffusion_pytorch_model[.fp16].safetensors`, and optionally the
//! trajectory weights as `trajattn_temp.pth` or `trajattn_temp.safetensors` (in DIR or DIR/unet). The input
//! tensors and metadata are documented in `trajattn::models::unet_io` (the fixtures of tests/fixtures/unet/
//! are such files). OUT receives `out` [B, F, C_out, h, w] f32. Trajectories in IN switch the branch on.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;
use trajattn::models::unet::{GraphOptions, TimeContext, UNet, UNetGraph, UNetShape};
use trajattn::models::unet_io::UNetInputs;
use trajattn_kernels::{DType, Gpu, GpuOptions};

#[derive(Parser)]
#[command(about = "Run one UNet forward pass from a diffusers folder and a safetensors inputs file")]
struct Args {
    /// Model folder (diffusers layout; needs unet/).
    #[arg(long)]
    model: PathBuf,
    /// Inputs (sample, timestep, encoder_hidden_states, added_time_ids[, trajectories, visibility, trajectory_indices.k]).
    #[arg(long)]
    inputs: PathBuf,
    /// Output file (tensor `out`).
    #[arg(long)]
    output: PathBuf,
    /// Device precision of weights and activations.
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16"])]
    dtype: String,
    /// Use diffusers ≥ 0.28's per-batch temporal context instead of 0.27.0's (the official code's).
    #[arg(long)]
    per_batch_time_context: bool,
}

fn main() -> Result<()> {
    env_logger::init();
    let a = Args::parse();
    let dtype = if a.dtype == "f16" { DType::F16 } else { DType::F32 };
    let gpu = Gpu::new(&GpuOptions::default().with_env()?)?;
    let inp = UNetInputs::read(&a.inputs)?;
    let unet_dir = a.model.join("unet");
    let traj = [
        "trajattn_temp.pth",
        "trajattn_temp.safetensors",
        "unet/trajattn_temp.pth",
        "unet/trajattn_temp.safetensors",
    ]
    .iter()
    .map(|p| a.model.join(p))
    .find(|p| p.exists());
    if inp.trajectories.is_some() && traj.is_none() {
        bail!(
            "the inputs hold trajectories but {} has no trajattn_temp.pth / .safetensors",
            a.model.display()
        );
    }
    let unet = UNet::load_dir(&gpu, &unet_dir, traj.as_deref(), dtype)
        .with_context(|| format!("loading {}", unet_dir.display()))?;
    let s = &inp.sample_shape;
    let shape = UNetShape { batch: s[0], frames: s[1], height: s[3], width: s[4] };
    let opts = GraphOptions {
        time_context: if a.per_batch_time_context { TimeContext::PerBatch } else { TimeContext::Faithful },
        chunk_elems: None,
    };
    let g = UNetGraph::build(&gpu, &unet, shape, opts, inp.trajectories.clone())?;
    if g.traj_slots.len() != inp.indices.len() {
        bail!(
            "the graph makes {} trajectory calls but the inputs give {} `trajectory_indices.k` tensors",
            g.traj_slots.len(),
            inp.indices.len()
        );
    }
    g.set_conditioning(&gpu, &inp.context, &inp.added_time_ids)?;
    let t = std::time::Instant::now();
    g.run(&gpu, &inp.sample, &inp.timestep, &inp.indices)?;
    let out = g.output().to_f32(&gpu)?;
    eprintln!(
        "UNet {:?} {dtype}: {} dispatches, {:.2} s, intermediates {:.1} MiB",
        shape,
        g.dispatches(),
        t.elapsed().as_secs_f64(),
        g.arena_stats().allocated_bytes as f64 / (1 << 20) as f64
    );
    let shape_out = g.output().shape().to_vec();
    let bytes: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape_out, &bytes)?;
    safetensors::serialize_to_file([("out", view)], None, &a.output)
        .with_context(|| format!("writing {}", a.output.display()))?;
    Ok(())
}
