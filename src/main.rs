//! The `trajattn` command line.

mod cli;

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
    /// Lower the device's storage-binding limit to this many bytes (e.g. 64M), to exercise the kernels' binding
    /// splits; also `TRAJATTN_MAX_BINDING`.
    #[arg(long, global = true, value_parser = parse_byte_size)]
    max_binding: Option<u64>,
    /// Kernel tier: auto (the best the adapter runs), gpu (workgroup-tiled kernels for real GPUs) or sg8
    /// (kernels for exactly 8-lane subgroups, e.g. lavapipe); also `TRAJATTN_KERNELS`.
    #[arg(long, global = true, env = "TRAJATTN_KERNELS")]
    kernels: Option<trajattn_kernels::select::KernelSet>,
    /// Neither read nor write the persistent pipeline cache (kept in TRAJATTN_CACHE_DIR, else the user's cache
    /// directory, e.g. ~/.cache/trajattn); also `TRAJATTN_NO_PIPELINE_CACHE=1`.
    #[arg(long, global = true)]
    no_pipeline_cache: bool,
}

fn parse_byte_size(s: &str) -> std::result::Result<u64, String> {
    trajattn_kernels::gpu::parse_bytes(s)
        .ok_or_else(|| format!("'{s}' is not a byte size (e.g. 1048576, 64K, 16MiB)"))
}

impl GpuArgs {
    fn options(&self) -> GpuOptions {
        GpuOptions {
            backend: self.backend,
            adapter: self.adapter.clone(),
            disable: self
                .disable
                .iter()
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect(),
            max_binding: self.max_binding,
            kernels: self.kernels,
            no_pipeline_cache: self.no_pipeline_cache,
            cache_dir: None,
        }
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
    /// Look at a trajectory folder (the official format): summary, or previews drawn over an image.
    #[command(subcommand)]
    Trajectories(TrajCmd),
    /// Drag trajectories from a JSON file of drag paths (format in `src/trajectory/build.rs`): the dragged disks
    /// follow their paths, the rest stays still; writes the official tracks form and previews.
    Drag {
        /// The drag file.
        #[arg(long)]
        spec: std::path::PathBuf,
        /// Output folder.
        #[arg(long)]
        out: std::path::PathBuf,
        /// An image to draw previews on (its size must match the file's width and height).
        #[arg(long)]
        image: Option<std::path::PathBuf>,
    },
    /// Camera motion on a video: camera trajectories of every frame (frame t at depth t under camera t, the
    /// official video mode) merged into the video's point tracks; writes `camera/` (grid form, optional warps
    /// for NVS-solver guidance) and `merged/` (tracks form) with previews; with `--model`, generates from the
    /// first frame and the merged tracks (without NVS-solver guidance).
    VideoCamera(VideoCameraArgs),
    /// First-frame-guided video editing: the edited first frame with the source video's tracks. Validates the
    /// tracks against the frame and writes them with previews; with `--model`, generates the edited video.
    Edit {
        /// The user's edited version of the source video's first frame.
        #[arg(long)]
        edited_frame: std::path::PathBuf,
        /// Tracks of the source video (official tracks folder).
        #[arg(long)]
        tracks: std::path::PathBuf,
        /// Frames of the tracks.
        #[arg(long, default_value_t = 25)]
        frames: usize,
        /// Output folder.
        #[arg(long)]
        out: std::path::PathBuf,
        #[command(flatten)]
        chain: cli::generate::ChainArgs,
    },
    /// Camera-path trajectories for one image from its depth map (the official `cameractrl`): writes
    /// `trans_coordinates.npy` + `trans_valid.npy` (the official folder format) and previews (PNG, GIF); with
    /// `--model`, goes on to generate the video.
    Camera(CameraArgs),
    /// Convert the official trajectory checkpoint (`trajattn_temp.pth`, read without executing any pickle code)
    /// to safetensors with the UNet's real parameter names.
    Convert(cli::convert::ConvertArgs),
    /// Image (+ trajectories) to video with Stable Video Diffusion and trajectory attention. Without --model it
    /// runs the whole pipeline on a bundled tiny random model (for a quick check; its output is noise-like).
    Generate(Box<cli::generate::GenerateArgs>),
    /// Depth-Anything-V2 on an image or a folder of frames: raw disparity `.npy` like the official run.py.
    Depth(cli::depth::DepthArgs),
    /// Memory plan of one UNet step (parameters, peak activations, largest tensors) without loading weights.
    Plan(cli::plan::PlanArgs),
    /// The exact pipelines a generation would create on an adapter (`--adapter`, `--kernels`), as final WGSL and a
    /// radvstats manifest; works for adapters that cannot be opened (RADV_FORCE_FAMILY=navi21 … --adapter navi21).
    Shaders(cli::shaders::ShadersArgs),
    /// Show the chosen adapter and run every kernel once on small random data, checked against the
    /// float64 CPU reference, then time each at one real SVD shape.
    Demo {
        /// Skip the timing part.
        #[arg(long)]
        quick: bool,
        /// Where to write the demo's pictures (synthetic scene, its trajectories and previews).
        #[arg(long, default_value = "out/demo")]
        out: std::path::PathBuf,
    },
}

#[derive(Args, Debug)]
struct BenchArgs {
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

#[derive(Subcommand, Debug)]
enum TrajCmd {
    /// Print frames, trajectory count, visibility per frame and coordinate ranges.
    Inspect {
        /// Folder with trans_coordinates.npy and trans_valid.npy.
        dir: std::path::PathBuf,
        /// Frames the files were made for (the reshape needs it, as in the reference).
        #[arg(long, default_value_t = 25)]
        frames: usize,
    },
    /// Make trajectories from optical flow, or restrict existing ones with a mask or a sparser grid; writes the
    /// official tracks form `(1, F, N, 2)` + `(1, F, N)`.
    Build {
        /// Output folder.
        #[arg(long)]
        out: std::path::PathBuf,
        /// Flow from frame 0 to every frame, `.npy` `(F, H, W, 2)` (frame 0 zero).
        #[arg(long, conflicts_with = "from")]
        flow: Option<std::path::PathBuf>,
        /// Grid spacing of trajectories made from flow, in pixels.
        #[arg(long, default_value_t = 4)]
        step: usize,
        /// An existing trajectory folder to restrict.
        #[arg(long)]
        from: Option<std::path::PathBuf>,
        /// Frames of the existing folder.
        #[arg(long, default_value_t = 25)]
        frames: usize,
        /// Mask image: trajectories starting where it is dark (< 128) become invisible in every frame.
        #[arg(long)]
        mask: Option<std::path::PathBuf>,
        /// Keep only trajectories starting on a K-pixel grid.
        #[arg(long)]
        sparse: Option<usize>,
        /// An image to draw previews on.
        #[arg(long)]
        image: Option<std::path::PathBuf>,
    },
    /// Draw the trajectories over an image: PNG of the paths and an animated GIF.
    Preview {
        /// Folder with trans_coordinates.npy and trans_valid.npy.
        dir: std::path::PathBuf,
        /// The first frame to draw on.
        #[arg(long)]
        image: std::path::PathBuf,
        /// Frames the files were made for.
        #[arg(long, default_value_t = 25)]
        frames: usize,
        /// Grid spacing of the drawn trajectories, in pixels.
        #[arg(long, default_value_t = 32)]
        step: usize,
        /// Output folder (default: the trajectory folder).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

#[derive(Args, Debug)]
struct VideoCameraArgs {
    /// Folder of the video's frames (PNG/JPEG, sorted by name; the first is the conditioning frame).
    #[arg(long)]
    video_frames: std::path::PathBuf,
    /// Folder of one relative-inverse-depth `.npy` per frame (sorted by name).
    #[arg(long, required_unless_present = "depth_model", conflicts_with = "depth_model")]
    depths: Option<std::path::PathBuf>,
    /// Compute each frame's depth with Depth-Anything-V2 from these weights instead of --depths (written to
    /// OUT/depth/NNNN.npy).
    #[arg(long)]
    depth_model: Option<std::path::PathBuf>,
    #[command(flatten)]
    depth_args: cli::depth::ModelArgs,
    /// The video's point tracks (official tracks folder, e.g. CoTracker's).
    #[arg(long)]
    tracks: std::path::PathBuf,
    /// horizontal | vertical | zoomin | zoomout.
    #[arg(long, default_value = "horizontal")]
    mode: trajattn::trajectory::camera::CameraMode,
    /// Degrees per frame (the official video example uses −0.8).
    #[arg(long, default_value_t = -0.8, allow_negative_numbers = true)]
    degrees_per_frame: f64,
    /// Orbit radius R.
    #[arg(long, default_value_t = 200.0)]
    major_radius: f64,
    /// Camera-mask combination: faithful (the released index-wise AND) or corrected (per-pixel).
    #[arg(long, default_value = "faithful")]
    merge: String,
    /// Also write warped frames, hole masks and flows for NVS-solver guidance.
    #[arg(long)]
    warp: bool,
    /// Output folder.
    #[arg(long)]
    out: std::path::PathBuf,
    /// With --model: generation from the first frame and the merged trajectories (add --warp --nvs for the
    /// NVS-solver guidance of the official video results).
    #[command(flatten)]
    chain: cli::generate::ChainArgs,
}

#[derive(Args, Debug)]
struct CameraArgs {
    /// The first frame (any format the image crate reads; alpha is dropped).
    #[arg(long)]
    image: std::path::PathBuf,
    /// Relative inverse depth of the image (larger = nearer): Depth-Anything's float `.npy` (H, W), or a
    /// 16-bit greyscale PNG holding the same quantity.
    #[arg(long, required_unless_present = "depth_model", conflicts_with = "depth_model")]
    depth: Option<std::path::PathBuf>,
    /// Compute the depth here with Depth-Anything-V2 from these weights (`depth_anything_v2_vitl.pth`, as the
    /// official workflow; see weights/README.md) instead of --depth; it is written to OUT/depth.npy.
    #[arg(long)]
    depth_model: Option<std::path::PathBuf>,
    #[command(flatten)]
    depth_args: cli::depth::ModelArgs,
    /// horizontal | vertical | zoomin | zoomout (orbits around the point 200 units in front of the camera), or
    /// path:FILE for a JSON file of per-frame poses (see `src/trajectory/poses.rs`; --frames is then the pose count).
    #[arg(long, default_value = "horizontal")]
    mode: String,
    /// Degrees of orbit (or zoom phase) per frame; negative reverses the motion.
    #[arg(long, default_value_t = 0.5, allow_negative_numbers = true)]
    degrees_per_frame: f64,
    /// Frames, the unmoved first one included (25 for SVD-xt, 14 for SVD).
    #[arg(long, default_value_t = 25)]
    frames: usize,
    /// Orbit radius R (the official --major_radius).
    #[arg(long, default_value_t = 200.0)]
    major_radius: f64,
    /// Focal length in pixels (the official code uses 260 at 1024×576).
    #[arg(long, default_value_t = 260.0)]
    focal: f64,
    /// Output folder.
    #[arg(long)]
    out: std::path::PathBuf,
    /// Grid spacing, in pixels, of the trajectories drawn in the previews.
    #[arg(long, default_value_t = 32)]
    preview_step: usize,
    /// Also write the warped frames, dilated hole masks and flows of frames 1.. (`NNNN.png`,
    /// `NNNN_mask.png`, `NNNN_flow.npy`, NNNN = frame − 1), the inputs of NVS-solver guidance.
    #[arg(long)]
    warp: bool,
    #[command(flatten)]
    chain: cli::generate::ChainArgs,
}

fn main() {
    // Piping into `head` must end the program quietly, not panic in println! (Rust ignores SIGPIPE by default).
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {}", report(&e));
        std::process::exit(1);
    }
}

/// The error and its causes on one line, each cause once: a library error that already quotes its source (an
/// OS error, a JSON error) would otherwise print it twice.
fn report(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if s.is_empty() || out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Command::Info { json } => info(&cli.gpu, json),
        Command::Bench(args) => bench_cmd(&cli.gpu, args),
        Command::Demo { quick, out } => demo(&cli.gpu, quick, &out),
        Command::Camera(args) => camera_cmd(&cli.gpu, args),
        Command::Trajectories(c) => traj_cmd(c),
        Command::VideoCamera(a) => video_camera_cmd(&cli.gpu, a),
        Command::Edit { edited_frame, tracks, frames, out, chain } => {
            edit_cmd(&cli.gpu, &edited_frame, &tracks, frames, &out, &chain)
        }
        Command::Drag { spec, out, image } => drag_cmd(&spec, &out, image.as_deref()),
        Command::Convert(a) => cli::convert::run(&a),
        Command::Generate(a) => cli::generate::run(&cli.gpu.open()?, &a),
        Command::Plan(a) => cli::plan::run(&a),
        Command::Depth(a) => cli::depth::run(&cli.gpu.open()?, &a),
        Command::Shaders(a) => cli::shaders::run(&cli.gpu.options(), &a),
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
        println!("  {:<22} shape: {}", "unet-step", cli::bench_unet::SHAPE_HELP);
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
            return cli::depth::print_plan(&g.options(), &args.encoder, args.dtype);
        }
        return cli::depth::bench(&g.open()?, &args.encoder, args.dtype, args.runs, args.json);
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
        let cfg = cli::convert::unet_config(&args.unet_config)?;
        let r = cli::bench_unet::run(
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

/// Renders the synthetic scene, builds its camera-orbit trajectories and writes them with previews.
fn demo_trajectories(out: &std::path::Path) -> Result<()> {
    use trajattn::trajectory::camera::{camera_trajectories, CameraMode, CameraPath, Intrinsics};
    use trajattn::trajectory::{folder, preview, synthetic};
    let (w, h) = (512, 288);
    let k = Intrinsics { focal: 130.0, cx: 256.0, cy: 144.0 };
    let mut path = CameraPath::new(CameraMode::Horizontal, 1.0);
    path.frames = 14;
    let r = synthetic::render(&synthetic::demo_scene(), path.centers()[0], &k, w, h);
    let inv = synthetic::inverse_depth(&r.depth);
    let g = camera_trajectories(&inv, w, h, &path, &k)?;
    let dir = out.join("camera");
    folder::write_grid(&dir, &g)?;
    r.image.save(out.join("scene.png")).context("writing scene.png")?;
    let max = inv.iter().cloned().fold(f32::MIN, f32::max).max(1e-6);
    let depth_img = image::GrayImage::from_fn(w as u32, h as u32, |x, y| {
        image::Luma([(inv[y as usize * w + x as usize] / max * 255.0) as u8])
    });
    depth_img.save(out.join("inverse_depth.png")).context("writing inverse_depth.png")?;
    let t = folder::read(&dir, path.frames)?;
    preview::write_previews(&r.image, &t, 24, &dir.join("preview.png"), &dir.join("preview.gif"))
        .context("writing previews")?;
    println!(
        "  synthetic scene {w}×{h}, horizontal orbit 1°/frame × {} frames → {}/ (scene.png, inverse_depth.png, camera/)",
        path.frames,
        out.display()
    );
    Ok(())
}

fn demo(g: &GpuArgs, quick: bool, out: &std::path::Path) -> Result<()> {
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
    println!();
    println!("trajectories: camera orbit over a synthetic scene with exact depth (no weights needed)");
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    demo_trajectories(out)?;
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

fn load_depth(path: &std::path::Path) -> Result<(Vec<f32>, usize, usize)> {
    use trajattn::trajectory::npy;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    if ext == "npy" {
        let a = npy::read(path)?;
        let v =
            a.to_f64().with_context(|| format!("{}: depth must be float32 or float64", path.display()))?;
        let (h, w) = match a.shape.as_slice() {
            [h, w] | [1, h, w] => (*h, *w),
            s => bail!("{}: depth has shape {s:?}; expected (H, W)", path.display()),
        };
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            bail!(
                "{}: depth value {i} (row {}, column {}) is {}; a depth map must hold finite numbers",
                path.display(),
                i / w.max(1),
                i % w.max(1),
                v[i]
            );
        }
        return Ok((v.iter().map(|&x| x as f32).collect(), w, h));
    }
    let img = trajattn::image_input::open_oriented(path)?;
    let g = img.to_luma16();
    let (w, h) = (g.width() as usize, g.height() as usize);
    Ok((g.pixels().map(|p| p.0[0] as f32).collect(), w, h))
}

fn camera_cmd(g_args: &GpuArgs, a: CameraArgs) -> Result<()> {
    use trajattn::trajectory::camera::{CameraPath, Intrinsics};
    use trajattn::trajectory::{folder, preview};
    trajattn::output::check_dir(&a.out)?;
    let img = trajattn::image_input::open_rgb(&a.image)?;
    let (depth, w, h, depth_name) = match (&a.depth, &a.depth_model) {
        (_, Some(m)) => {
            let gpu = g_args.open()?;
            let model = cli::depth::load_model(&gpu, m, &a.depth_args)?;
            let d = cli::depth::depth_of(&gpu, &model, &img, a.depth_args.input_size)
                .with_context(|| format!("depth of {}", a.image.display()))?;
            (d, img.width() as usize, img.height() as usize, format!("the depth of {}", m.display()))
        }
        (Some(p), None) => {
            let (d, w, h) = load_depth(p)?;
            (d, w, h, format!("depth map {}", p.display()))
        }
        (None, None) => bail!("give --depth D.npy or --depth-model WEIGHTS"),
    };
    if (w, h) != (img.width() as usize, img.height() as usize) {
        bail!(
            "{depth_name} is {w}×{h} but image {} is {}×{}: they must have the same size",
            a.image.display(),
            img.width(),
            img.height()
        );
    }
    if a.frames < 2 || a.frames > 1000 {
        bail!("--frames must be between 2 and 1000, got {}", a.frames);
    }
    if !(a.focal.is_finite() && a.focal > 0.0) {
        bail!("--focal must be a positive number of pixels, got {}", a.focal);
    }
    let mut k = Intrinsics::official(w, h);
    k.focal = a.focal;
    let ts = if let Some(file) = a.mode.strip_prefix("path:") {
        let views = trajattn::trajectory::poses::read(std::path::Path::new(file))?;
        if views.len() < 2 {
            bail!("pose file {file} has {} pose(s); a camera path needs at least 2", views.len());
        }
        trajattn::trajectory::camera::relative_to_first(&views)
    } else {
        let mode = a.mode.parse().map_err(anyhow::Error::msg)?;
        if !(a.degrees_per_frame.is_finite() && a.major_radius.is_finite()) {
            bail!("--degrees-per-frame and --major-radius must be finite numbers");
        }
        let path = CameraPath {
            mode,
            degrees_per_frame: a.degrees_per_frame,
            frames: a.frames,
            major_radius: a.major_radius,
            minor_radius: 200.0,
        };
        path.relative_transforms()
    };
    let g = trajattn::trajectory::camera::trajectories_for_transforms(&depth, w, h, &ts, &k)?;
    // Everything is written into a staging folder and moved into place once complete: a failure leaves nothing.
    let stage = trajattn::output::Staging::new(&a.out)?;
    let dir = stage.path("");
    if a.depth_model.is_some() {
        trajattn::trajectory::npy::write_f32(&dir.join("depth.npy"), &[h, w], &depth)?;
    }
    if a.warp {
        let warps = trajattn::trajectory::warp::warp_frames(&img, &depth, &ts, &k);
        for (i, wf) in warps.iter().enumerate() {
            wf.image.save(dir.join(format!("{i:04}.png"))).context("writing warped frame")?;
            wf.mask.save(dir.join(format!("{i:04}_mask.png"))).context("writing hole mask")?;
            trajattn::trajectory::npy::write_f64(
                &dir.join(format!("{i:04}_flow.npy")),
                &[h, w, 2],
                &wf.flow,
            )?;
        }
        let frames: Vec<&image::RgbImage> = warps.iter().map(|wf| &wf.image).collect();
        trajattn::trajectory::warp::write_warp_gif(&img, &frames, &dir.join("warp_preview.gif"))
            .context("writing warp_preview.gif")?;
    }
    let frames = g.frames;
    folder::write_grid(&dir, &g)?;
    let t = folder::read(&dir, frames)?;
    let png = dir.join("preview.png");
    let gif = dir.join("preview.gif");
    preview::write_previews(&img, &t, a.preview_step, &png, &gif).context("writing previews")?;
    stage.commit()?;
    let (png, gif) = (a.out.join("preview.png"), a.out.join("preview.gif"));
    let n = w * h;
    println!("{} trajectories × {} frames ({}) → {}", n, frames, a.mode, a.out.display());
    let vis: Vec<String> = (0..frames)
        .map(|f| {
            format!(
                "{:.0}%",
                100.0 * g.valid[f * n..(f + 1) * n].iter().filter(|&&v| v).count() as f64 / n as f64
            )
        })
        .collect();
    println!("visible per frame: {}", vis.join(" "));
    println!("previews: {} and {}", png.display(), gif.display());
    let open = || g_args.open();
    let warps = a.warp.then_some(a.out.as_path());
    cli::generate::chain(open, &a.chain, &a.image, &a.out, frames, &a.out, warps)
}

fn traj_cmd(c: TrajCmd) -> Result<()> {
    use trajattn::trajectory::{folder, preview};
    match c {
        TrajCmd::Inspect { dir, frames } => {
            let t = folder::read(&dir, frames)?;
            println!("{}: {} frames × {} trajectories", dir.display(), t.frames, t.n);
            for f in 0..t.frames {
                let v = &t.valid[f * t.n..(f + 1) * t.n];
                let vis = v.iter().filter(|&&b| b).count();
                let (mut lo, mut hi) = ([f64::MAX; 2], [f64::MIN; 2]);
                for (i, _) in v.iter().enumerate().filter(|(_, &b)| b) {
                    for d in 0..2 {
                        let x = t.coords[2 * (f * t.n + i) + d];
                        lo[d] = lo[d].min(x);
                        hi[d] = hi[d].max(x);
                    }
                }
                if vis == 0 {
                    println!("  frame {f:>3}: no visible trajectory");
                } else {
                    println!(
                        "  frame {f:>3}: {:>5.1}% visible, x {:.1}..{:.1}, y {:.1}..{:.1}",
                        100.0 * vis as f64 / t.n.max(1) as f64,
                        lo[0],
                        hi[0],
                        lo[1],
                        hi[1]
                    );
                }
            }
            Ok(())
        }
        TrajCmd::Build { out, flow, step, from, frames, mask, sparse, image } => {
            use trajattn::trajectory::{build, npy};
            if let Some(d) = &from {
                let c = folder::COORDS;
                trajattn::output::not_an_input(&out.join(c), &[&d.join(c)])?;
            }
            trajattn::output::check_dir(&out)?;
            // The frame size the trajectories were made for, where the input says it (flow, grid-form folders).
            let mut made_for: Option<(usize, usize)> = None;
            let mut t = match (flow, from) {
                (Some(f), None) => {
                    let a = npy::read(&f)?;
                    let v = a.to_f64().with_context(|| format!("{}: flow must be floats", f.display()))?;
                    let [fr, h, w, 2] = a.shape[..] else {
                        bail!("{}: flow has shape {:?}; expected (F, H, W, 2)", f.display(), a.shape);
                    };
                    made_for = Some((w, h));
                    build::from_flow(&v, fr, w, h, step).with_context(|| format!("flow {}", f.display()))?
                }
                (None, Some(d)) => {
                    let c = npy::read(&d.join("trans_coordinates.npy"))?;
                    if let [_, h, w, 2] = c.shape[..] {
                        if c.shape[0] != 1 {
                            made_for = Some((w, h));
                        }
                    }
                    folder::read(&d, frames).with_context(|| format!("trajectories in {}", d.display()))?
                }
                _ => bail!("give --flow FILE or --from DIR"),
            };
            if let Some(m) = mask {
                let g = trajattn::image_input::open_luma(&m)?;
                if let Some((w, h)) = made_for {
                    if (g.width() as usize, g.height() as usize) != (w, h) {
                        bail!(
                            "mask {} is {}×{} but the trajectories were made for {w}×{h} frames: give a mask of \
                             the frame size",
                            m.display(),
                            g.width(),
                            g.height()
                        );
                    }
                }
                let bits: Vec<bool> = g.pixels().map(|p| p.0[0] >= 128).collect();
                t = build::apply_mask(&t, &bits, g.width() as usize, g.height() as usize)?;
            }
            if let Some(k) = sparse {
                t = build::sparse(&t, k)?;
            }
            let base = image.map(|p| trajattn::image_input::open_rgb(&p)).transpose()?;
            let stage = trajattn::output::Staging::new(&out)?;
            let dir = stage.path("");
            folder::write_tracks(&dir, &t)?;
            if let Some(img) = &base {
                preview::write_previews(img, &t, 16, &dir.join("preview.png"), &dir.join("preview.gif"))
                    .context("writing previews")?;
            }
            stage.commit()?;
            let vis = t.valid.iter().filter(|&&v| v).count() as f64 / t.valid.len().max(1) as f64;
            println!(
                "{} trajectories × {} frames ({:.0}% visible entries) → {}",
                t.n,
                t.frames,
                100.0 * vis,
                out.display()
            );
            Ok(())
        }
        TrajCmd::Preview { dir, image, frames, step, out } => {
            let t = folder::read(&dir, frames)?;
            let img = trajattn::image_input::open_rgb(&image)?;
            let out = out.unwrap_or_else(|| dir.clone());
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let (png, gif) = (out.join("preview.png"), out.join("preview.gif"));
            preview::write_previews(&img, &t, step, &png, &gif).context("writing previews")?;
            println!("previews: {} and {}", png.display(), gif.display());
            Ok(())
        }
    }
}

fn drag_cmd(spec: &std::path::Path, out: &std::path::Path, image: Option<&std::path::Path>) -> Result<()> {
    use trajattn::trajectory::{build, folder, preview};
    trajattn::output::check_dir(out)?;
    let text = std::fs::read_to_string(spec).with_context(|| format!("reading {}", spec.display()))?;
    let s = build::DragSpec::from_json(&spec.display().to_string(), &text)?;
    let t = build::drags(&s).with_context(|| format!("drag file {}", spec.display()))?;
    let base = match image {
        Some(p) => {
            let img = trajattn::image_input::open_rgb(p)?;
            if (img.width() as usize, img.height() as usize) != (s.width, s.height) {
                bail!(
                    "image {} is {}×{} but the drag file is for {}×{}",
                    p.display(),
                    img.width(),
                    img.height(),
                    s.width,
                    s.height
                );
            }
            img
        }
        None => image::RgbImage::from_pixel(s.width as u32, s.height as u32, image::Rgb([96, 96, 96])),
    };
    // Staged, then moved into place: a failure leaves nothing behind.
    let stage = trajattn::output::Staging::new(out)?;
    let dir = stage.path("");
    folder::write_tracks(&dir, &t)?;
    preview::write_previews(&base, &t, 4 * s.grid_step, &dir.join("preview.png"), &dir.join("preview.gif"))
        .context("writing previews")?;
    stage.commit()?;
    println!("{} trajectories × {} frames ({} drags) → {}", t.n, t.frames, s.drags.len(), out.display());
    Ok(())
}

fn sorted_files(dir: &std::path::Path, exts: &[&str]) -> Result<Vec<std::path::PathBuf>> {
    let mut v: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| exts.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    v.sort();
    Ok(v)
}

fn video_camera_cmd(g_args: &GpuArgs, a: VideoCameraArgs) -> Result<()> {
    use trajattn::trajectory::camera::{project_frame, trajectories_per_frame_depth, CameraPath, Intrinsics};
    use trajattn::trajectory::merge::{merge, MaskMode};
    use trajattn::trajectory::{folder, npy, preview, warp};
    let mode = match a.merge.as_str() {
        "faithful" => MaskMode::Faithful,
        "corrected" => MaskMode::Corrected,
        m => bail!("--merge must be faithful or corrected, got '{m}'"),
    };
    if !(a.degrees_per_frame.is_finite() && a.major_radius.is_finite()) {
        bail!("--degrees-per-frame and --major-radius must be finite numbers");
    }
    trajattn::output::check_dir(&a.out)?;
    let frames = sorted_files(&a.video_frames, &["png", "jpg", "jpeg"])?;
    if frames.is_empty() {
        bail!("no PNG or JPEG frames in {}", a.video_frames.display());
    }
    let depths = match &a.depths {
        Some(dir) => {
            let depths = sorted_files(dir, &["npy"])?;
            if frames.len() != depths.len() {
                bail!(
                    "{} frames in {} but {} depth maps in {}: give one depth map per frame",
                    frames.len(),
                    a.video_frames.display(),
                    depths.len(),
                    dir.display()
                );
            }
            depths
        }
        None => Vec::new(),
    };
    let f = frames.len();
    if f < 2 {
        bail!("a video needs at least 2 frames");
    }
    trajattn::limits::FRAMES
        .check(f as u64)
        .with_context(|| format!("frames in {}", a.video_frames.display()))?;
    let imgs: Vec<image::RgbImage> = frames
        .iter()
        .map(|p| trajattn::image_input::open_rgb(p).map_err(anyhow::Error::from))
        .collect::<Result<_>>()?;
    let (w, h) = (imgs[0].width() as usize, imgs[0].height() as usize);
    let mut invs = Vec::with_capacity(f);
    if let Some(m) = &a.depth_model {
        let gpu = g_args.open()?;
        let model = cli::depth::load_model(&gpu, m, &a.depth_args)?;
        for (p, img) in frames.iter().zip(&imgs) {
            if (img.width() as usize, img.height() as usize) != (w, h) {
                bail!("{}: every frame must be {w}×{h} like the first frame", p.display());
            }
            let d = cli::depth::depth_of(&gpu, &model, img, a.depth_args.input_size)
                .with_context(|| format!("depth of {}", p.display()))?;
            invs.push(d);
        }
    }
    for (p, img) in depths.iter().zip(&imgs) {
        let (d, dw, dh) = load_depth(p)?;
        if (dw, dh) != (w, h) || (img.width() as usize, img.height() as usize) != (w, h) {
            bail!("{}: every frame and depth map must be {w}×{h} like the first frame", p.display());
        }
        invs.push(d);
    }
    let path = CameraPath {
        mode: a.mode,
        degrees_per_frame: a.degrees_per_frame,
        frames: f,
        major_radius: a.major_radius,
        minor_radius: 200.0,
    };
    let ts = path.relative_transforms();
    let k = Intrinsics::official(w, h);
    let refs: Vec<&[f32]> = invs.iter().map(|v| v.as_slice()).collect();
    let cam = trajectories_per_frame_depth(&refs, w, h, &ts, &k)?;
    let stage = trajattn::output::Staging::new(&a.out)?;
    if a.depth_model.is_some() {
        std::fs::create_dir_all(stage.path("depth")).context("creating the depth folder")?;
        for (i, d) in invs.iter().enumerate() {
            npy::write_f32(&stage.path(&format!("depth/{i:04}.npy")), &[h, w], d)?;
        }
    }
    let cam_dir = stage.path("camera");
    folder::write_grid(&cam_dir, &cam)?;
    if a.warp {
        let mut pos = vec![[0.0f64; 2]; w * h];
        let mut depth = vec![0.0f64; w * h];
        for t in 1..f {
            let z = trajattn::trajectory::camera::depth_from_inverse(&invs[t]);
            project_frame(&z, w, h, &ts[t], &k, &mut pos, &mut depth);
            let wf = warp::forward_warp(&imgs[t], &pos, &depth);
            let i = t - 1;
            wf.image.save(cam_dir.join(format!("{i:04}.png"))).context("writing warped frame")?;
            wf.mask.save(cam_dir.join(format!("{i:04}_mask.png"))).context("writing hole mask")?;
            npy::write_f64(&cam_dir.join(format!("{i:04}_flow.npy")), &[h, w, 2], &wf.flow)?;
        }
    }
    let tracks = folder::read(&a.tracks, f)?;
    let merged = merge(&tracks, &cam, mode)?;
    let merged_dir = stage.path("merged");
    folder::write_tracks(&merged_dir, &merged)?;
    preview::write_previews(
        &imgs[0],
        &merged,
        32,
        &merged_dir.join("preview.png"),
        &merged_dir.join("preview.gif"),
    )
    .context("writing previews")?;
    stage.commit()?;
    let (cam_dir, merged_dir) = (a.out.join("camera"), a.out.join("merged"));
    let vis = merged.valid.iter().filter(|&&v| v).count() as f64 / merged.valid.len().max(1) as f64;
    println!(
        "{f} frames {w}×{h}: camera trajectories → {}, {} tracks merged ({:?}, {:.0}% visible entries) → {}",
        cam_dir.display(),
        merged.n,
        mode,
        100.0 * vis,
        merged_dir.display()
    );
    let open = || g_args.open();
    let warps = a.warp.then_some(cam_dir.as_path());
    cli::generate::chain(open, &a.chain, &frames[0], &merged_dir, f, &a.out, warps)
}

fn edit_cmd(
    g_args: &GpuArgs,
    edited: &std::path::Path,
    tracks: &std::path::Path,
    frames: usize,
    out: &std::path::Path,
    chain: &cli::generate::ChainArgs,
) -> Result<()> {
    use trajattn::trajectory::{folder, preview};
    trajattn::limits::FRAMES.check(frames as u64)?;
    let c = trajattn::trajectory::folder::COORDS;
    trajattn::output::not_an_input(&out.join(c), &[&tracks.join(c)])?;
    trajattn::output::check_dir(out)?;
    let img = trajattn::image_input::open_rgb(edited)?;
    let t = folder::read(tracks, frames)?;
    let (w, h) = (img.width() as f64, img.height() as f64);
    let inside = (0..t.n)
        .filter(|&i| {
            let (x, y) = (t.coords[2 * i], t.coords[2 * i + 1]);
            (0.0..w).contains(&x) && (0.0..h).contains(&y)
        })
        .count();
    if inside == 0 {
        bail!(
            "no track starts inside the {w}×{h} edited frame: the tracks belong to a video of another size"
        );
    }
    let stage = trajattn::output::Staging::new(out)?;
    let dir = stage.path("");
    folder::write_tracks(&dir, &t)?;
    preview::write_previews(&img, &t, 32, &dir.join("preview.png"), &dir.join("preview.gif"))
        .context("writing previews")?;
    stage.commit()?;
    println!(
        "{} tracks × {} frames ({} start inside the {}×{} edited frame) → {}",
        t.n,
        t.frames,
        inside,
        w,
        h,
        out.display()
    );
    let open = || g_args.open();
    cli::generate::chain(open, chain, edited, out, frames, out, None)
}
