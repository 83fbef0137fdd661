//! `trajattn depth`: Depth-Anything-V2 on one image or a folder of frames, writing what the official `run.py`
//! saves (raw float32 disparity at the image's size, `.npy` v1.0 `<f4`), optionally with a preview PNG. Also the
//! on-the-fly depth of `camera --depth-model` / `video-camera --depth-model`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use trajattn::depth::{DepthAnything, Encoder};
use trajattn_kernels::{DType, Gpu};

/// Which weights, at which input size (shared by `depth`, `camera` and `video-camera`).
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Encoder size: vits, vitb or vitl (default: inferred from the weights; given, it must match them).
    #[arg(long)]
    pub encoder: Option<String>,
    /// Network input size (the shorter side after resizing; a multiple of 14).
    #[arg(long, default_value_t = 518)]
    pub input_size: usize,
    /// Device precision of the depth network (f32 matches the official float32 run).
    #[arg(long = "depth-dtype", default_value = "f32", value_parser = ["f32", "f16"])]
    pub depth_dtype: String,
}

/// Arguments of `trajattn depth`.
#[derive(Args, Debug)]
pub struct DepthArgs {
    /// One image (PNG, JPEG, GIF; EXIF orientation applied, alpha dropped, grey expanded).
    #[arg(long, conflicts_with = "images", required_unless_present = "images")]
    pub image: Option<PathBuf>,
    /// A folder of images (e.g. video frames): each `NAME.ext` gives `OUT/NAME.npy` (and `NAME.png` with
    /// --preview).
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Weights: the official `depth_anything_v2_{vits,vitb,vitl}.pth`, a safetensors file with its key names,
    /// or a transformers `Depth-Anything-V2-*-hf` folder (see weights/README.md).
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub m: ModelArgs,
    /// Output `.npy` (with --image) or folder (with --images).
    #[arg(long)]
    pub out: PathBuf,
    /// With --image: also write a preview PNG of the depth here.
    #[arg(long, conflicts_with = "images")]
    pub preview: Option<PathBuf>,
    /// With --images: also write `OUT/NAME.png` previews beside the `.npy` files.
    #[arg(long, requires = "images")]
    pub previews: bool,
}

/// Loads the model named by `model` and `m` onto `gpu`.
pub fn load_model(gpu: &Gpu, model: &Path, m: &ModelArgs) -> Result<DepthAnything> {
    let enc = match m.encoder.as_deref() {
        None => None,
        Some(s) => match Encoder::parse(s) {
            Some(Encoder::Vitg) | None => bail!("--encoder {s}: expected vits, vitb or vitl"),
            e => e,
        },
    };
    let dtype = if m.depth_dtype == "f16" { DType::F16 } else { DType::F32 };
    if dtype == DType::F16 && !gpu.caps.shader_f16 {
        bail!("--depth-dtype f16 needs an adapter with shader-f16; use f32");
    }
    trajattn::depth::preprocess::target_size(518, 518, m.input_size)?;
    Ok(DepthAnything::load(gpu, model, enc, dtype)?)
}

/// Depth of one image at its own size (row-major H×W).
pub fn depth_of(
    gpu: &Gpu,
    model: &DepthAnything,
    img: &image::RgbImage,
    input_size: usize,
) -> Result<Vec<f32>> {
    Ok(model.infer_image(gpu, img, input_size)?)
}

fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the image folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| ["png", "jpg", "jpeg", "gif"].contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    v.sort();
    if v.is_empty() {
        bail!("{}: no PNG, JPEG or GIF images in this folder", dir.display());
    }
    Ok(v)
}

/// Runs `trajattn depth`.
pub fn run(gpu: &Gpu, a: &DepthArgs) -> Result<()> {
    use trajattn::trajectory::npy;
    trajattn::depth::preprocess::target_size(518, 518, a.m.input_size)?;
    if let Some(img_path) = &a.image {
        trajattn::output::check_file(&a.out)?;
        trajattn::output::not_an_input(&a.out, &[img_path, &a.model])?;
        if let Some(p) = &a.preview {
            trajattn::output::check_file(p)?;
        }
        let img = trajattn::image_input::open_rgb(img_path)?;
        let model = load_model(gpu, &a.model, &a.m)?;
        let (w, h) = (img.width() as usize, img.height() as usize);
        let d = depth_of(gpu, &model, &img, a.m.input_size)
            .with_context(|| format!("depth of {}", img_path.display()))?;
        npy::write_f32(&a.out, &[h, w], &d)?;
        if let Some(p) = &a.preview {
            trajattn::depth::preview::write_png(p, &d, h, w)?;
        }
        println!("{} ({w}×{h}, {}) → {}", img_path.display(), model.cfg.describe(), a.out.display());
        return Ok(());
    }
    let Some(dir) = &a.images else { bail!("give --image IMG or --images DIR") };
    let files = image_files(dir)?;
    trajattn::output::check_dir(&a.out)?;
    trajattn::output::not_an_input(&a.out, &[dir, &a.model])?;
    let model = load_model(gpu, &a.model, &a.m)?;
    let stage = trajattn::output::Staging::new(&a.out)?;
    for f in &files {
        let img = trajattn::image_input::open_rgb(f)?;
        let (w, h) = (img.width() as usize, img.height() as usize);
        let d = depth_of(gpu, &model, &img, a.m.input_size)
            .with_context(|| format!("depth of {}", f.display()))?;
        let stem = f.file_stem().and_then(|s| s.to_str()).unwrap_or("frame");
        npy::write_f32(&stage.path(&format!("{stem}.npy")), &[h, w], &d)?;
        if a.previews {
            trajattn::depth::preview::write_png(&stage.path(&format!("{stem}.png")), &d, h, w)?;
        }
    }
    stage.commit()?;
    println!("{} images ({}) → {}", files.len(), model.cfg.describe(), a.out.display());
    Ok(())
}

/// `trajattn bench depth`: the whole network (random weights of the real size) on a `width`×`height` image
/// (resized as the official code does; 1024×576 → 924×518), `runs` timed forwards after one warm-up, and the
/// device memory it needed (buffer-pool peak: weights, activations, scratch).
pub fn bench(gpu: &Gpu, encoder: &str, dtype: DType, runs: usize, json: bool) -> Result<()> {
    let enc = match Encoder::parse(encoder) {
        Some(e @ (Encoder::Vits | Encoder::Vitb | Encoder::Vitl)) => e,
        _ => bail!("bench depth: --encoder must be vits, vitb or vitl, got '{encoder}'"),
    };
    if dtype == DType::F16 && !gpu.caps.shader_f16 {
        bail!("--dtype f16 needs SHADER_F16, which {} does not offer", gpu.describe());
    }
    let cfg = trajattn::depth::DepthConfig::preset(enc);
    let (h, w) = trajattn::depth::preprocess::target_size(576, 1024, 518)?;
    gpu.pool().reset_peaks();
    let model = DepthAnything::random(gpu, &cfg, dtype, 1)?;
    let weights = model.weight_bytes();
    let input = trajattn_kernels::bench::random_data(7, 3 * h * w);
    let t0 = std::time::Instant::now();
    model.forward(gpu, &input, h, w)?;
    let first = t0.elapsed().as_secs_f64();
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = std::time::Instant::now();
        model.forward(gpu, &input, h, w)?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let median = times.get(times.len() / 2).copied();
    let peak = gpu.pool().stats().peak_in_use;
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    if json {
        println!(
            "{}",
            serde_json::json!({"kernel": "depth", "encoder": enc.name(), "input": [h, w], "dtype": dtype.to_string(),
                "first_s": first, "median_s": median, "runs": runs, "weights_bytes": weights, "peak_bytes": peak,
                "adapter": gpu.describe()})
        );
    } else {
        let med =
            median.map(|m| format!("{m:.3} s median of {runs}")).unwrap_or_else(|| "no timed runs".into());
        println!(
            "depth {enc} {w}x{h} {dtype}: first run {first:.3} s, {med}; weights {:.3} GiB, device peak {:.3} GiB ({})",
            gib(weights),
            gib(peak),
            gpu.describe()
        );
    }
    Ok(())
}

/// Device memory of one forward of `encoder` at `height`×`width` (network input, multiples of 14) on a dry
/// device: nothing runs, every buffer is allocated as a run would. Returns (weights, peak) bytes.
pub fn plan(
    opts: &trajattn_kernels::GpuOptions,
    encoder: Encoder,
    dtype: DType,
    h: usize,
    w: usize,
) -> Result<(u64, u64)> {
    let gpu = Gpu::emulating(opts)?;
    let cfg = trajattn::depth::DepthConfig::preset(encoder);
    gpu.pool().reset_peaks();
    let model = DepthAnything::random(&gpu, &cfg, dtype, 1)?;
    let input = vec![0f32; 3 * h * w];
    model.forward(&gpu, &input, h, w)?;
    Ok((model.weight_bytes(), gpu.pool().stats().peak_in_use))
}

/// `trajattn bench depth --runs 0`: the memory plan of the official 1024×576 case (input 924×518).
pub fn print_plan(opts: &trajattn_kernels::GpuOptions, encoder: &str, dtype: DType) -> Result<()> {
    let Some(enc @ (Encoder::Vits | Encoder::Vitb | Encoder::Vitl)) = Encoder::parse(encoder) else {
        bail!("bench depth: --encoder must be vits, vitb or vitl, got '{encoder}'");
    };
    let (h, w) = trajattn::depth::preprocess::target_size(576, 1024, 518)?;
    let (weights, peak) = plan(opts, enc, dtype, h, w)?;
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    println!(
        "depth {enc} {w}x{h} {dtype} memory plan (dry device, nothing run): weights {:.3} GiB, device peak {:.3} GiB",
        gib(weights),
        gib(peak)
    );
    Ok(())
}
