//! The `trajattn` command line.

mod cli;

use anyhow::Result;
use clap::{Parser, Subcommand};
use cli::gpu_args::GpuArgs;

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

#[derive(Subcommand, Debug)]
enum Command {
    /// List every adapter: backend, type, driver, features and the limits that matter.
    Info(cli::info::InfoArgs),
    /// Time one kernel at a shape (warm-up, then the median of several GPU-synchronised runs).
    Bench(cli::bench::BenchArgs),
    /// Look at a trajectory folder (the official format): summary, or previews drawn over an image.
    #[command(subcommand)]
    Trajectories(cli::trajectories::TrajCmd),
    /// Drag trajectories from a JSON file of drag paths (format in `src/trajectory/build.rs`): the dragged disks
    /// follow their paths, the rest stays still; writes the official tracks form and previews.
    Drag(cli::drag::DragArgs),
    /// Measure a generated video against the motion it was asked for (`eval drag`: path error of the dragged
    /// regions, drift of the still ones, in pixels).
    #[command(subcommand)]
    Eval(cli::eval::EvalCmd),
    /// Camera motion on a video: camera trajectories of every frame (frame t at depth t under camera t, the
    /// official video mode) merged into the video's point tracks; writes `camera/` (grid form, optional warps
    /// for NVS-solver guidance) and `merged/` (tracks form) with previews; with `--model`, generates from the
    /// first frame and the merged tracks (without NVS-solver guidance).
    VideoCamera(cli::video_camera::VideoCameraArgs),
    /// First-frame-guided video editing: the edited first frame with the source video's tracks. Validates the
    /// tracks against the frame and writes them with previews; with `--model`, generates the edited video.
    Edit(cli::edit::EditArgs),
    /// Camera-path trajectories for one image from its depth map (the official `cameractrl`): writes
    /// `trans_coordinates.npy` + `trans_valid.npy` (the official folder format) and previews (PNG, GIF); with
    /// `--model`, goes on to generate the video.
    Camera(cli::camera::CameraArgs),
    /// Convert the official trajectory checkpoint (`trajattn_temp.pth`, read without executing any pickle code)
    /// to safetensors with the UNet's real parameter names.
    Convert(cli::convert::ConvertArgs),
    /// Image (+ trajectories) to video with Stable Video Diffusion and trajectory attention. Without --model it
    /// runs the whole pipeline on a bundled tiny random model (for a quick check; its output is noise-like).
    Generate(Box<cli::generate::GenerateArgs>),
    /// Depth-Anything-V2 on an image or a folder of frames: raw disparity `.npy` like the official run.py.
    Depth(cli::depth::DepthArgs),
    /// Memory plan of a generation by stage (CLIP, VAE encode, UNet step, VAE decode) and of one UNet step's
    /// intermediates, without loading weights or allocating device memory.
    Plan(cli::plan::PlanArgs),
    /// The exact pipelines a generation would create on an adapter (`--adapter`, `--kernels`), as final WGSL and a
    /// radvstats manifest; works for adapters that cannot be opened (RADV_FORCE_FAMILY=navi21 … --adapter navi21).
    Shaders(cli::shaders::ShadersArgs),
    /// Show the chosen adapter and run every kernel once on small random data, checked against the
    /// float64 CPU reference, then time each at one real SVD shape.
    Demo(cli::demo::DemoArgs),
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
        Command::Info(a) => cli::info::run(&cli.gpu, &a),
        Command::Bench(a) => cli::bench::run(&cli.gpu, &a),
        Command::Demo(a) => cli::demo::run(&cli.gpu, &a),
        Command::Camera(a) => cli::camera::run(&cli.gpu, &a),
        Command::Trajectories(c) => cli::trajectories::run(c),
        Command::VideoCamera(a) => cli::video_camera::run(&cli.gpu, &a),
        Command::Edit(a) => cli::edit::run(&cli.gpu, &a),
        Command::Drag(a) => cli::drag::run(&a),
        Command::Eval(c) => cli::eval::run(&c),
        Command::Convert(a) => cli::convert::run(&a),
        Command::Generate(a) => cli::generate::run(&cli.gpu.open()?, &a),
        Command::Plan(a) => cli::plan::run(&cli.gpu.options(), &a),
        Command::Depth(a) => cli::depth::run(&cli.gpu.open()?, &a),
        Command::Shaders(a) => cli::shaders::run(&cli.gpu.options(), &a),
    }
}
