//! `trajattn bench`: time one kernel (or a whole UNet step) at one or more shapes.

use anyhow::{bail, Context, Result};
use clap::Args;
use trajattn_kernels::bench::{self, BenchResult};
use trajattn_kernels::DType;

use super::gpu_args::GpuArgs;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Kernel name (see --list).
    kernel: Option<String>,
    /// depth: the encoder (vits, vitb, vitl) of the Depth-Anything-V2 network to time.
    #[arg(long, default_value = "vits")]
    encoder: String,
    /// Shape(s) to run, e.g. 4096x4096x1024 (meaning per kernel: see --list); default: SVD's real shapes.
    #[arg(long)]
    shape: Vec<String>,
    /// Storage dtype.
    #[arg(long, default_value = "f32")]
    dtype: DType,
    /// Print one JSON object per result.
    #[arg(long)]
    json: bool,
    /// Timed runs (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Untimed warm-up runs.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// List the kernels, their shape syntax and default shapes.
    #[arg(long)]
    list: bool,
    /// Variant of a kernel with several formulations (trajectory-attention: efficient | literal).
    #[arg(long)]
    variant: Option<String>,
    /// unet-step: also time every dispatch (one compute pass each, GPU timestamps) and print the time per kernel
    /// family and its share of the step.
    #[arg(long)]
    profile: bool,
    /// unet-step: UNet widths (`svd`, `svd-xt` or a diffusers `unet/config.json`, e.g. the bundled tiny model's
    /// `tests/fixtures/pipeline/svd/unet/config.json`).
    #[arg(long, default_value = "svd")]
    unet_config: String,
}

pub fn run(g: &GpuArgs, args: &BenchArgs) -> Result<()> {
    if args.list || args.kernel.is_none() {
        println!("kernels (trajattn bench NAME [--shape S] [--dtype f32|f16] [--json]):");
        for e in trajattn_kernels::ops::bench_entries() {
            println!("  {:<22} shape: {}", e.name, e.shape_help);
            println!("  {:<22} default: {}", "", e.default_shapes.join(", "));
        }
        println!("  {:<22} shape: {}", "unet-step", super::bench_unet::SHAPE_HELP);
        println!("  {:<22} default: 64x64x14", "");
        println!(
            "  {:<22} Depth-Anything-V2 at 1024x576 (--encoder vits|vitb|vitl), random weights",
            "depth"
        );
        if args.kernel.is_none() && !args.list {
            bail!("name a kernel to benchmark");
        }
        return Ok(());
    }
    let mut name = args.kernel.clone().unwrap_or_default();
    match (name.as_str(), args.variant.as_deref()) {
        (_, None) | ("trajectory-attention", Some("efficient")) => {}
        ("trajectory-attention", Some("literal")) => name = "trajectory-attention-literal".into(),
        (k, Some(v)) => {
            bail!("kernel '{k}' has no variant '{v}' (trajectory-attention: efficient | literal)")
        }
    }
    if name == "depth" {
        if args.runs == 0 {
            // Memory only: a dry device allocates every buffer of one forward and runs nothing.
            return super::depth::print_plan(&g.options(), &args.encoder, args.dtype);
        }
        return super::depth::bench(&g.open()?, &args.encoder, args.dtype, args.runs, args.json);
    }
    if name == "unet-step" {
        let gpu = g.open()?;
        if args.dtype == DType::F16 && !gpu.caps.shader_f16 {
            bail!("--dtype f16 needs SHADER_F16, which {} does not offer", gpu.describe());
        }
        if args.profile && !gpu.caps.timestamp {
            bail!(
                "--profile needs GPU timestamps (TIMESTAMP_QUERY), absent or disabled on {}",
                gpu.describe()
            );
        }
        let cfg = super::convert::unet_config(&args.unet_config)?;
        let r = super::bench_unet::run(
            &gpu,
            cfg,
            &args.shape,
            args.dtype,
            args.warmup,
            args.runs,
            args.json,
            args.profile,
        );
        gpu.save_pipeline_cache();
        return r;
    }
    if args.profile {
        bail!("--profile is for unet-step");
    }
    let entry = trajattn_kernels::ops::find_bench(&name).with_context(|| {
        let names: Vec<&str> = trajattn_kernels::ops::bench_entries().iter().map(|e| e.name).collect();
        format!("unknown kernel '{name}'; known: {}", names.join(", "))
    })?;
    let gpu = g.open()?;
    if args.dtype == DType::F16 && !gpu.caps.shader_f16 {
        bail!("--dtype f16 needs SHADER_F16, which {} does not offer", gpu.describe());
    }
    let shapes: Vec<String> = if args.shape.is_empty() {
        entry.default_shapes.iter().map(|s| s.to_string()).collect()
    } else {
        args.shape.clone()
    };
    if !args.json {
        println!(
            "adapter: {}  timing: {}  pipeline cache: {}",
            gpu.describe(),
            if gpu.caps.timestamp { "GPU timestamps" } else { "wall clock (no timestamps)" },
            gpu.pipeline_cache_status()
        );
    }
    for shape in shapes {
        let before = gpu.pipelines().compile_stats();
        let case = (entry.build)(&gpu, &shape, args.dtype)
            .with_context(|| format!("building {name} at {shape} ({})", args.dtype))?;
        let after = gpu.pipelines().compile_stats();
        let mut r = bench::time_case(&gpu, &case, args.warmup, args.runs)
            .with_context(|| format!("running {name} at {shape}"))?;
        r.compile_ms = (after.seconds - before.seconds) * 1e3;
        print_result(&r, args.json)?;
        if !args.json && after.pipelines > before.pipelines {
            println!(
                "{:<20} pipelines: {} created in {:.1} ms",
                "",
                after.pipelines - before.pipelines,
                r.compile_ms
            );
        }
    }
    gpu.save_pipeline_cache();
    Ok(())
}

/// One result as a table row or a JSON object.
pub fn print_result(r: &BenchResult, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
    } else {
        println!(
            "{:<20} {:<24} {}  median {:>9.3} ms  (min {:.3})  {:>8.2} GFLOP/s  {:>7.2} GB/s",
            r.kernel, r.shape, r.dtype, r.median_ms, r.min_ms, r.gflops, r.gbps
        );
    }
    Ok(())
}
