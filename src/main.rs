//! The `trajattn` command line.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use trajattn_kernels::bench::{self, BenchResult};
use trajattn_kernels::gpu::{list_adapters, BackendChoice, Gpu, GpuOptions};
use trajattn_kernels::DType;

/// Camera- and motion-controlled video generation (Trajectory Attention on Stable Video Diffusion)
/// on any GPU through wgpu: Vulkan, Metal, DX12 (and lavapipe on CPU-only machines).
#[derive(Parser, Debug)]
#[command(name = "trajattn", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    gpu: GpuArgs,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Args, Debug, Clone)]
struct GpuArgs {
    /// Graphics API: vulkan, metal, dx12 or gl (default: the best available).
    #[arg(long, global = true, env = "TRAJATTN_BACKEND")]
    backend: Option<BackendChoice>,
    /// Use the adapter whose name contains this text (case-insensitive), e.g. "llvmpipe" or "nvidia".
    #[arg(long, global = true, env = "TRAJATTN_ADAPTER")]
    adapter: Option<String>,
    /// Optional features not to use even if present (comma separated: f16, subgroup, timestamp).
    #[arg(long, global = true, value_delimiter = ',', env = "TRAJATTN_DISABLE")]
    disable: Vec<String>,
}

impl GpuArgs {
    fn options(&self) -> GpuOptions {
        GpuOptions { backend: self.backend, adapter: self.adapter.clone(), disable: self.disable.clone() }
    }
    fn open(&self) -> Result<Gpu> {
        Gpu::new(&self.options()).context("opening the GPU")
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List every adapter: backend, type, driver, features and the limits that matter.
    Info {
        /// Print JSON (an array of adapters) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Time one kernel at a shape (warm-up, then the median of several GPU-synchronised runs).
    Bench(BenchArgs),
    /// Show the chosen adapter and run every kernel once on small random data, checked against the
    /// float64 CPU reference, then time each at one real SVD shape.
    Demo {
        /// Skip the timing part.
        #[arg(long)]
        quick: bool,
    },
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// Kernel name (see --list).
    kernel: Option<String>,
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
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Command::Info { json } => info(&cli.gpu, json),
        Command::Bench(args) => bench_cmd(&cli.gpu, args),
        Command::Demo { quick } => demo(&cli.gpu, quick),
    }
}

fn info(g: &GpuArgs, json: bool) -> Result<()> {
    let adapters = list_adapters(&g.options());
    if json {
        println!("{}", serde_json::to_string_pretty(&adapters)?);
        return Ok(());
    }
    if adapters.is_empty() {
        bail!(
            "no GPU adapter found: install a Vulkan driver (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers` \
             for lavapipe, a CPU Vulkan driver), or run on macOS (Metal) / Windows (DX12)"
        );
    }
    for (i, a) in adapters.iter().enumerate() {
        println!("adapter {i}: {}", a.name);
        println!("  backend {}  type {}  driver {} {}", a.backend, a.device_type, a.driver, a.driver_info);
        println!(
            "  shader-f16 {}  subgroup {} (size {}..{})  timestamp-query {}",
            yes(a.shader_f16),
            yes(a.subgroup),
            a.subgroup_min_size,
            a.subgroup_max_size,
            yes(a.timestamp_query)
        );
        println!(
            "  max storage binding {}  max buffer {}  workgroup storage {}  invocations/workgroup {}",
            bytes(a.max_storage_buffer_binding_size),
            bytes(a.max_buffer_size),
            bytes(a.max_compute_workgroup_storage_size as u64),
            a.max_compute_invocations_per_workgroup
        );
        println!(
            "  workgroup size {:?}  workgroups/dim {}  storage buffers/stage {}  storage offset align {}",
            a.max_compute_workgroup_size,
            a.max_compute_workgroups_per_dimension,
            a.max_storage_buffers_per_shader_stage,
            a.min_storage_buffer_offset_alignment
        );
        println!("  features: {}", a.features.join(" "));
    }
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn bytes(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
    } else if b >= 1 << 20 {
        format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64)
    } else if b >= 1 << 10 {
        format!("{:.0} KiB", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}

fn bench_cmd(g: &GpuArgs, args: BenchArgs) -> Result<()> {
    if args.list || args.kernel.is_none() {
        println!("kernels (trajattn bench NAME [--shape S] [--dtype f32|f16] [--json]):");
        for e in bench::entries() {
            println!("  {:<22} shape: {}", e.name, e.shape_help);
            println!("  {:<22} default: {}", "", e.default_shapes.join(", "));
        }
        if args.kernel.is_none() && !args.list {
            bail!("name a kernel to benchmark");
        }
        return Ok(());
    }
    let name = args.kernel.unwrap_or_default();
    let entry = bench::find(&name).with_context(|| {
        let names: Vec<&str> = bench::entries().iter().map(|e| e.name).collect();
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
        println!("adapter: {}", gpu.describe());
    }
    for shape in shapes {
        let case = (entry.build)(&gpu, &shape, args.dtype)
            .with_context(|| format!("building {name} at {shape} ({})", args.dtype))?;
        let r = bench::time_case(&gpu, &case, args.warmup, args.runs)
            .with_context(|| format!("running {name} at {shape}"))?;
        print_result(&r, args.json)?;
    }
    Ok(())
}

fn print_result(r: &BenchResult, json: bool) -> Result<()> {
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

fn demo(g: &GpuArgs, quick: bool) -> Result<()> {
    let gpu = g.open()?;
    println!("trajattn demo — adapter: {}", gpu.describe());
    println!(
        "  f16 {}  subgroups {}  max storage binding {}",
        yes(gpu.caps.shader_f16),
        yes(gpu.caps.subgroup),
        bytes(gpu.max_binding())
    );
    println!(
        "(this stage of the project has the GPU runtime and kernels; generation comes with the model issues)"
    );
    println!();
    println!("correctness: every kernel on random odd-shaped data vs its float64 CPU reference");
    for check in trajattn_kernels::selfcheck::checks() {
        let r = (check.run)(&gpu).with_context(|| format!("demo check {}", check.name))?;
        println!(
            "  {:<34} normalised error {:.2e}  (bound {:.0e})  {}",
            check.name,
            r,
            check.tol,
            if r <= check.tol { "ok" } else { "FAIL" }
        );
        if r > check.tol {
            bail!("{} exceeded its error bound", check.name);
        }
    }
    if quick {
        return Ok(());
    }
    println!();
    println!("speed: each kernel at one SVD shape (median of 3 runs)");
    for e in bench::entries() {
        let shape = e.demo_shape;
        let case = (e.build)(&gpu, shape, DType::F32).with_context(|| format!("building {}", e.name))?;
        let r = bench::time_case(&gpu, &case, 1, 3)?;
        print_result(&r, false)?;
    }
    Ok(())
}
