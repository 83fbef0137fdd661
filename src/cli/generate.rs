//! `trajattn generate`: image (+ trajectories) → video with SVD, from a diffusers folder or the bundled demo model
//! (a tiny SVD trained on synthetic shapes, with a bundled image and drag; assets/demo/README.md).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use trajattn::models::unet::{TimeContext, Trajectories};
use trajattn::output;
use trajattn::pipeline::nvs_guidance::{NvsConditioning, NvsParams};
use trajattn::pipeline::{generate, resize, GenerateOptions, Progress, Svd};
use trajattn_kernels::ops::trajectory_attention::Grouping;
use trajattn_kernels::{DType, Gpu};

/// Defaults for a real model (the demo's are in `trajattn::demo`).
const STEPS: usize = 25;
const MAX_GUIDANCE: f32 = 3.0;

/// Arguments of `trajattn generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// A diffusers-format SVD folder (stabilityai/stable-video-diffusion-img2vid[-xt]; see weights/README.md).
    /// Without it, the bundled DEMO model runs: a tiny SVD with the trajectory branch trained on synthetic videos
    /// of coloured shapes, with a bundled image and drag (one shape pulled along a curve, one held still).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Input image (PNG/JPEG); resized to the output size with Pillow's bicubic filter, as the reference.
    /// Default with the demo model: its image.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Trajectory folder in the official format (trans_coordinates.npy + trans_valid.npy), in pixels of the
    /// output size, one entry per frame. A folder from `trajattn drag` (it holds drag.json) also gets the drag
    /// measured in the result (preview.gif, path error). Default with the demo model: its bundled drag.
    #[arg(long)]
    pub trajectories: Option<PathBuf>,
    /// Demo model only: generate without the bundled drag (no trajectories), to see that they do the work.
    #[arg(long, conflicts_with_all = ["model", "trajectories"])]
    pub no_drag: bool,
    /// Trajectory weights (`trajattn_temp.pth` or converted safetensors). Default: `trajattn_temp.pth` in the
    /// model folder.
    #[arg(long)]
    pub trajectory_weights: Option<PathBuf>,
    /// Frames (default: the UNet config's num_frames: 25 for -xt, 14 for img2vid).
    #[arg(long)]
    pub frames: Option<usize>,
    /// Denoising steps (default 25; 6 with the demo model).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Seed of the reference random stream (`torch.manual_seed`).
    #[arg(long, default_value_t = 12345)]
    pub seed: u64,
    /// Output width in pixels (default 1024; 64 with the demo model).
    #[arg(long)]
    pub width: Option<usize>,
    /// Output height in pixels (default 576; 64 with the demo model).
    #[arg(long)]
    pub height: Option<usize>,
    /// Frames per second the model is conditioned on (it sees fps − 1) and the GIF/MP4 rate.
    #[arg(long, default_value_t = 7)]
    pub fps: usize,
    /// Motion bucket id (more motion when higher).
    #[arg(long, default_value_t = 127)]
    pub motion_bucket: usize,
    /// Noise added to the conditioning image.
    #[arg(long, default_value_t = 0.02)]
    pub noise_aug: f32,
    /// Guidance of the first frame (linearly up to --max-guidance at the last).
    #[arg(long, default_value_t = 1.0)]
    pub min_guidance: f32,
    /// Guidance of the last frame (default 3; 1 with the demo model: no classifier-free guidance, as it was
    /// trained). At 1 or below, each step runs the UNet once instead of twice.
    #[arg(long)]
    pub max_guidance: Option<f32>,
    /// Frames decoded together by the temporal VAE decoder (more = smoother, more memory).
    #[arg(long, default_value_t = 8)]
    pub decode_chunk: usize,
    /// Device memory to stay within, e.g. `8G` (binary units): the run is refused before any GPU work when the
    /// plan of its UNet stage needs more.
    #[arg(long, value_parser = super::plan::parse_bytes)]
    pub gpu_memory: Option<u64>,
    /// Device precision of UNet, CLIP and VAE decoder (the VAE encoder always runs in f32). Default: f16 when
    /// the adapter supports it (as the reference), else f32.
    #[arg(long, value_parser = ["f32", "f16"])]
    pub dtype: Option<String>,
    /// Attention grouping of the trajectory branch: `pairs` (the released code) or `per-trajectory` (the paper).
    #[arg(long, default_value = "pairs", value_parser = ["pairs", "per-trajectory"])]
    pub grouping: String,
    /// Use the per-batch temporal context of diffusers ≥ 0.28 instead of 0.27.0's (the official code's).
    #[arg(long)]
    pub per_batch_time_context: bool,
    /// NVS-solver guidance (the official video workflow's `--use_nvs_solver`): a folder with the warped frames
    /// `NNNN.png` and hole masks `NNNN_mask.png` of frames 1.. at the output size (`trajattn camera --warp` or
    /// `video-camera --warp` write them). Each step then runs four extra UNet passes on crops (about 2× the time per step).
    #[arg(long)]
    pub nvs: Option<PathBuf>,
    /// Step size of the NVS-solver guidance.
    #[arg(long, default_value_t = trajattn::pipeline::nvs_guidance::LR)]
    pub nvs_lr: f32,
    /// Also store the final latents ([F, 4, h, w], tensor `latents`) before decoding.
    #[arg(long)]
    pub save_latents: Option<PathBuf>,
    /// Precision of the initial noise draw: f16 (default) draws what the official fp16 run draws, so a seed gives
    /// the same video at --dtype f32 and f16; f32 reproduces a float32 diffusers run.
    #[arg(long, default_value = "f16", value_parser = ["f32", "f16"])]
    pub noise_dtype: String,
    /// Output folder: video.gif, frames/frame_NNN.png, video.mp4 (when ffmpeg is installed). An earlier run's
    /// results there (only those files) are replaced once the new video is complete, so frames never mix.
    #[arg(long, default_value = "out/generate")]
    pub out: PathBuf,
}

/// What `generate` writes into its output folder.
const OUT_FILES: [&str; 8] = [
    "video.gif",
    "video.mp4",
    "preview.gif",
    "trajectories/trans_coordinates.npy",
    "trajectories/trans_valid.npy",
    "trajectories/drag.json",
    "trajectories/preview.png",
    "trajectories/preview.gif",
];
/// Output frame names (in `frames/`).
fn is_frame_png(name: &str) -> bool {
    name.starts_with("frame_") && name.ends_with(".png")
}

fn dtype_arg(s: &str) -> DType {
    if s == "f16" {
        DType::F16
    } else {
        DType::F32
    }
}

/// Everything about the outputs and the numeric options that can be checked before loading anything.
fn check_early(a: &GenerateArgs, image: Option<&Path>) -> Result<()> {
    // Options (frames and size get their model defaults later; check what was given).
    let probe = GenerateOptions {
        frames: a.frames.unwrap_or(1),
        steps: a.steps.unwrap_or(STEPS),
        seed: a.seed,
        width: a.width.unwrap_or(64),
        height: a.height.unwrap_or(64),
        fps: a.fps,
        motion_bucket_id: a.motion_bucket,
        noise_aug_strength: a.noise_aug,
        min_guidance: a.min_guidance,
        max_guidance: a.max_guidance.unwrap_or(MAX_GUIDANCE),
        decode_chunk: a.decode_chunk,
        ..Default::default()
    };
    probe.validate()?;
    trajattn::limits::check_range("--nvs-lr", a.nvs_lr, 0.0, 10.0, "default 0.02")?;
    output::check_dir(&a.out)?;
    let earlier = output::earlier_results(&a.out, &OUT_FILES, &["frames"], is_frame_png);
    if let Some(img) = image {
        let mut outs: Vec<PathBuf> = OUT_FILES.iter().map(|n| a.out.join(n)).collect();
        outs.extend(earlier);
        // Inputs must survive the run: the image, and trajectory files an earlier run may have written here.
        let traj_inputs: Vec<PathBuf> = a
            .trajectories
            .iter()
            .flat_map(|d| ["trans_coordinates.npy", "trans_valid.npy", "drag.json"].map(|n| d.join(n)))
            .collect();
        let mut inputs = vec![img];
        inputs.extend(traj_inputs.iter().map(PathBuf::as_path));
        for o in &outs {
            output::not_an_input(o, &inputs)?;
        }
        if let Some(l) = &a.save_latents {
            output::not_an_input(l, &[img])?;
        }
    }
    if let Some(l) = &a.save_latents {
        output::check_file(l)?;
    }
    Ok(())
}

struct Bars {
    bar: Option<ProgressBar>,
}

impl Progress for Bars {
    fn stage(&mut self, name: &str, total: usize) {
        if let Some(b) = self.bar.take() {
            b.finish();
        }
        let b = ProgressBar::new(total as u64);
        b.set_style(
            ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        b.set_message(name.to_string());
        self.bar = Some(b);
    }
    fn advance(&mut self, done: usize) {
        if let Some(b) = &self.bar {
            b.set_position(done as u64);
        }
    }
}

/// Loads an image as RGB bytes, applying its EXIF orientation (within the decoder limits of
/// [`trajattn::image_input`]).
pub fn load_rgb(path: &Path) -> Result<(Vec<u8>, usize, usize)> {
    Ok(trajattn::image_input::load_rgb(path)?)
}

/// Runs a generation.
pub fn run(gpu: &Gpu, a: &GenerateArgs) -> Result<()> {
    let demo = a.model.is_none();
    let model = a.model.clone().unwrap_or_else(trajattn::demo::model);
    let image_path = a.image.clone().unwrap_or_else(trajattn::demo::image);
    check_early(a, Some(&image_path))?;
    let steps = a.steps.unwrap_or(if demo { trajattn::demo::STEPS } else { STEPS });
    let max_guidance = a.max_guidance.unwrap_or(if demo { 1.0 } else { MAX_GUIDANCE });
    // The demo's drag, unless trajectories were given or refused.
    let demo_drag = if demo && a.trajectories.is_none() && !a.no_drag {
        Some(trajattn::demo::drag_spec().map_err(anyhow::Error::msg)?)
    } else {
        None
    };
    if demo {
        eprintln!(
            "NOTE: no --model given: running the bundled DEMO MODEL ({}), a tiny SVD trained on synthetic videos of \
             coloured shapes; {}.\n      For real video pass --model with a diffusers SVD folder (weights/README.md).",
            model.display(),
            if demo_drag.is_some() { "the bundled drag pulls the red disc along a curve and holds the blue square" } else { "no drag" }
        );
        if !model.exists() {
            bail!(
                "the demo model is missing at {} (run from a source checkout, or pass --model)",
                model.display()
            );
        }
    }
    let dtype = match a.dtype.as_deref() {
        Some("f16") => DType::F16,
        Some(_) => DType::F32,
        None if gpu.caps.shader_f16 => DType::F16,
        None => DType::F32,
    };
    let wants_traj = a.trajectories.is_some() || demo_drag.is_some();
    let traj_weights = a.trajectory_weights.clone().or_else(|| {
        let p = model.join("trajattn_temp.pth");
        (wants_traj && p.exists()).then_some(p)
    });
    if wants_traj && traj_weights.is_none() {
        bail!("--trajectories needs the trajectory weights: pass --trajectory-weights trajattn_temp.pth");
    }
    let t0 = std::time::Instant::now();
    let svd = Svd::load(gpu, &model, traj_weights.as_deref(), dtype)
        .with_context(|| format!("loading the model from {}", model.display()))?;
    eprintln!("loaded {} in {:.1} s ({dtype})", model.display(), t0.elapsed().as_secs_f64());
    let (dw, dh) = match &demo_drag {
        Some((spec, _)) => (spec.width, spec.height),
        None if demo => (64, 64),
        None => (1024, 576),
    };
    let (width, height) = (a.width.unwrap_or(dw), a.height.unwrap_or(dh));
    let unit = svd.size_unit();
    if width == 0 || height == 0 || width % unit != 0 || height % unit != 0 {
        bail!("--width and --height must be positive multiples of {unit} pixels for this model (got {width}×{height})");
    }
    let frames = match (&demo_drag, a.frames) {
        (Some((spec, _)), Some(f)) if f != spec.frames => {
            bail!(
                "the demo's drag is for {} frames (got --frames {f}); pass --no-drag to change it",
                spec.frames
            )
        }
        (Some((spec, _)), _) => spec.frames,
        (None, f) => f.unwrap_or(svd.unet.cfg.num_frames),
    };
    if let Some((spec, _)) = &demo_drag {
        if (width, height) != (spec.width, spec.height) {
            bail!(
                "the demo's drag is for {}×{} (got {width}×{height}); pass --no-drag to change the size",
                spec.width,
                spec.height
            );
        }
    }
    let (rgb, iw, ih) = load_rgb(&image_path)?;
    let image = if (iw, ih) == (width, height) {
        rgb
    } else {
        resize::pillow_bicubic_u8(&rgb, iw, ih, 3, width, height)
    };
    // The tracks, and the drag they were built from when there is one (to measure the result against it).
    let (tracks, drag_spec) = match (&a.trajectories, &demo_drag) {
        (Some(dir), _) => {
            let t = trajattn::trajectory::folder::read(dir, frames)
                .with_context(|| format!("reading trajectories from {}", dir.display()))?;
            check_resolution(dir, &t, width, height)?;
            let spec = match std::fs::read_to_string(dir.join("drag.json")) {
                Ok(text) => trajattn::trajectory::build::DragSpec::from_json("drag.json", &text)
                    .ok()
                    .filter(|s| (s.width, s.height, s.frames) == (width, height, frames)),
                Err(_) => None,
            };
            (Some(t), spec)
        }
        (None, Some((spec, _))) => (Some(trajattn::trajectory::build::drags(spec)?), Some(spec.clone())),
        (None, None) => (None, None),
    };
    let trajectories = tracks.as_ref().map(|t| Trajectories {
        coords: t.coords.clone(),
        visible: t.valid.clone(),
        n: t.n,
        origin_w: width,
        origin_h: height,
        grouping: if a.grouping == "pairs" { Grouping::Pairs } else { Grouping::PerTrajectory },
    });
    let nvs = match &a.nvs {
        None => None,
        Some(dir) => {
            let params = NvsParams { lr: a.nvs_lr, ..Default::default() };
            let f8 = svd.vae_encoder.scale_factor();
            Some(
                NvsConditioning::load_dir(dir, frames, width, height, f8, params)
                    .with_context(|| format!("reading the NVS-solver conditioning from {}", dir.display()))?,
            )
        }
    };
    let o = GenerateOptions {
        frames,
        steps,
        seed: a.seed,
        width,
        height,
        fps: a.fps,
        motion_bucket_id: a.motion_bucket,
        noise_aug_strength: a.noise_aug,
        min_guidance: a.min_guidance,
        max_guidance,
        decode_chunk: a.decode_chunk,
        dtype,
        noise_dtype: dtype_arg(&a.noise_dtype),
        time_context: if a.per_batch_time_context { TimeContext::PerBatch } else { TimeContext::Faithful },
        cpu_reference_stream: false,
        nvs,
        trace: false,
        gpu_memory: a.gpu_memory,
    };
    let mut bars = Bars { bar: None };
    let t1 = std::time::Instant::now();
    let g = generate(gpu, &svd, &image, trajectories, &o, &mut bars)?;
    if let Some(b) = bars.bar.take() {
        b.finish();
    }
    let secs = t1.elapsed().as_secs_f64();
    let cs = gpu.pipelines().compile_stats();
    eprintln!(
        "pipelines: {} created in {:.1} s of that (pipeline cache {})",
        cs.pipelines,
        cs.seconds,
        gpu.pipeline_cache_status()
    );
    // Everything is written into a staging folder first and moved into place once complete.
    let staging = output::Staging::new(&a.out)?;
    let imgs = trajattn::video::frames_from_rgb(&g.frames_u8, g.frames, g.width, g.height);
    let pngs = trajattn::video::write_pngs(&imgs, &staging.path("frames"))?;
    trajattn::video::write_gif(&imgs, &staging.path("video.gif"), 100)?;
    // The demo's drag beside the video (as `trajattn drag` writes it), and for any drag: how well it was followed.
    if let (Some((spec, text)), Some(t)) = (&demo_drag, &tracks) {
        let dir = staging.path("trajectories");
        trajattn::trajectory::folder::write_tracks(&dir, t)?;
        std::fs::write(dir.join("drag.json"), text).context("writing trajectories/drag.json")?;
        let first = image::RgbImage::from_raw(width as u32, height as u32, image.clone())
            .context("the resized first frame")?;
        trajattn::trajectory::preview::write_previews(
            &first,
            t,
            4 * spec.grid_step,
            &dir.join("preview.png"),
            &dir.join("preview.gif"),
        )
        .context("writing the trajectory previews")?;
    }
    let drag_report = match &drag_spec {
        Some(spec) => {
            let regions = trajattn::eval::drag::regions_from_spec(spec)?;
            let report = trajattn::eval::drag::evaluate(&imgs, &regions)?;
            trajattn::eval::drag::write_preview(&imgs, &report, 4, &staging.path("preview.gif"))?;
            Some(report)
        }
        None => None,
    };
    let wrote_mp4 = trajattn::video::write_mp4_if_ffmpeg(
        &staging.path("frames"),
        a.fps as u32,
        &staging.path("video.mp4"),
    )
    .unwrap_or(false);
    if let Some(p) = &a.save_latents {
        let lc = svd.vae_encoder.cfg.latent_channels;
        let f8 = svd.vae_encoder.scale_factor();
        let shape = vec![g.frames, lc, g.height / f8, g.width / f8];
        let bytes: Vec<u8> = g.latents.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, &bytes)?;
        output::write_atomic(p, |tmp| {
            safetensors::serialize_to_file([("latents", view)], None, tmp)
                .with_context(|| format!("writing {}", p.display()))
        })?;
    }
    let earlier = output::earlier_results(&a.out, &OUT_FILES, &["frames"], is_frame_png);
    if !earlier.is_empty() {
        eprintln!("replacing an earlier run's results in {} ({} files)", a.out.display(), earlier.len());
    }
    output::clear_earlier(&a.out, &earlier, true)?;
    staging.commit()?;
    if let Some(r) = &drag_report {
        println!(
            "drag adherence (requested path yellow, tracked green: {}):",
            a.out.join("preview.gif").display()
        );
        print!("{}", trajattn::eval::drag::summary(r));
    }
    let gif = a.out.join("video.gif");
    let mp4 = a.out.join("video.mp4");
    println!(
        "{}{} frames {}×{} in {secs:.1} s ({:.2} s per step incl. encode/decode): {} ({} PNGs{})",
        if demo { "[demo model] " } else { "" },
        g.frames,
        g.width,
        g.height,
        secs / steps as f64,
        gif.display(),
        pngs.len(),
        if wrote_mp4 { format!(", {}", mp4.display()) } else { String::new() }
    );
    Ok(())
}

/// Options to go on from prepared trajectories to a video (`camera … --model`, `edit … --model`).
#[derive(Args, Debug, Clone)]
pub struct ChainArgs {
    /// A diffusers-format SVD folder: generate the video from the written trajectories (into OUT/video/).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Trajectory weights (default: trajattn_temp.pth in the model folder).
    #[arg(long)]
    pub trajectory_weights: Option<PathBuf>,
    /// Denoising steps of the generation.
    #[arg(long, default_value_t = 25)]
    pub steps: usize,
    /// Seed of the generation.
    #[arg(long, default_value_t = 12345)]
    pub seed: u64,
    /// Device precision of the generation (default: f16 when supported).
    #[arg(long, value_parser = ["f32", "f16"])]
    pub dtype: Option<String>,
    /// Attention grouping of the trajectory branch: `pairs` (the released code) or `per-trajectory` (the paper;
    /// works for any number of tracks).
    #[arg(long, default_value = "pairs", value_parser = ["pairs", "per-trajectory"])]
    pub grouping: String,
    /// NVS-solver guidance from the warped frames and hole masks that --warp writes (the official video
    /// workflow's "w. NVS_Solver" setting; about 2× the time per step).
    #[arg(long, requires = "model")]
    pub nvs: bool,
}

/// Generates from `image` with the trajectory folder `traj_dir` (in pixels of the image, `frames` frames);
/// `warps`: the folder of warped frames and masks, if they were written (for `--nvs`).
pub fn chain(
    gpu: impl Fn() -> Result<Gpu>,
    c: &ChainArgs,
    image: &Path,
    traj_dir: &Path,
    frames: usize,
    out: &Path,
    warps: Option<&Path>,
) -> Result<()> {
    let Some(model) = &c.model else { return Ok(()) };
    let nvs = match (c.nvs, warps) {
        (false, _) => None,
        (true, Some(d)) => Some(d.to_path_buf()),
        (true, None) => bail!("--nvs needs the warped frames: add --warp (first-frame editing has none)"),
    };
    let (_, w, h) = load_rgb(image)?;
    let a = GenerateArgs {
        model: Some(model.clone()),
        image: Some(image.to_path_buf()),
        trajectories: Some(traj_dir.to_path_buf()),
        no_drag: false,
        trajectory_weights: c.trajectory_weights.clone(),
        frames: Some(frames),
        steps: Some(c.steps),
        seed: c.seed,
        width: Some(w),
        height: Some(h),
        fps: 7,
        motion_bucket: 127,
        noise_aug: 0.02,
        min_guidance: 1.0,
        max_guidance: Some(MAX_GUIDANCE),
        decode_chunk: 8,
        gpu_memory: None,
        dtype: c.dtype.clone(),
        grouping: c.grouping.clone(),
        per_batch_time_context: false,
        nvs,
        nvs_lr: trajattn::pipeline::nvs_guidance::LR,
        save_latents: None,
        noise_dtype: "f16".into(),
        out: out.join("video"),
    };
    // The GPU is opened only here, so preparing trajectories needs none.
    run(&gpu()?, &a)
}

/// Trajectories are in pixels of the frame they were made for, which must be the output size: a grid file says
/// its size; for tracks, most first-frame points must lie inside the frame.
fn check_resolution(
    dir: &Path,
    t: &trajattn::trajectory::folder::Trajectories,
    w: usize,
    h: usize,
) -> Result<()> {
    let coords = trajattn::trajectory::npy::read(&dir.join("trans_coordinates.npy"))?;
    let s = &coords.shape;
    if s.len() == 4 && s[0] != 1 && (s[1], s[2]) != (h, w) {
        bail!(
            "{}: the trajectories form a {}×{} grid but the video is {w}×{h}; make them for the output size \
             (e.g. `trajattn camera` on the image at that size) or pass --width {} --height {}",
            dir.display(),
            s[2],
            s[1],
            s[2],
            s[1]
        );
    }
    let inside = (0..t.n)
        .filter(|&i| {
            let (x, y) = (t.coords[2 * i], t.coords[2 * i + 1]);
            (0.0..w as f64).contains(&x) && (0.0..h as f64).contains(&y)
        })
        .count();
    if t.n > 0 && inside * 2 < t.n {
        bail!(
            "{}: only {inside} of {} trajectories start inside the {w}×{h} frame; they were made for another size",
            dir.display(),
            t.n
        );
    }
    Ok(())
}
