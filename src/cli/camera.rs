//! `trajattn camera`: camera-path trajectories for one image from its depth map (the official `cameractrl`),
//! optionally the warps for NVS-solver guidance, then optionally generation.

use anyhow::{bail, Context, Result};
use clap::Args;

use super::gpu_args::GpuArgs;

#[derive(Args, Debug)]
pub struct CameraArgs {
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
    depth_args: super::depth::ModelArgs,
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
    chain: super::generate::ChainArgs,
}

/// A relative-inverse-depth map from a float `.npy` `(H, W)` or a 16-bit greyscale image: (values, width, height).
pub fn load_depth(path: &std::path::Path) -> Result<(Vec<f32>, usize, usize)> {
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

pub fn run(g_args: &GpuArgs, a: &CameraArgs) -> Result<()> {
    use trajattn::trajectory::camera::{CameraPath, Intrinsics};
    use trajattn::trajectory::{folder, preview};
    trajattn::output::check_dir(&a.out)?;
    let img = trajattn::image_input::open_rgb(&a.image)?;
    let (depth, w, h, depth_name) = match (&a.depth, &a.depth_model) {
        (_, Some(m)) => {
            let gpu = g_args.open()?;
            let model = super::depth::load_model(&gpu, m, &a.depth_args)?;
            let d = super::depth::depth_of(&gpu, &model, &img, a.depth_args.input_size)
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
    super::generate::chain(open, &a.chain, &a.image, &a.out, frames, &a.out, warps)
}
