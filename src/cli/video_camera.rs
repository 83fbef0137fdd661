//! `trajattn video-camera`: camera motion on a video (per-frame-depth camera trajectories merged into the video's
//! point tracks), optionally the warps for NVS-solver guidance, then optionally generation.

use anyhow::{bail, Context, Result};
use clap::Args;

use super::camera::load_depth;
use super::gpu_args::GpuArgs;

#[derive(Args, Debug)]
pub struct VideoCameraArgs {
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
    depth_args: super::depth::ModelArgs,
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
    chain: super::generate::ChainArgs,
}

/// The files of `dir` with one of the extensions `exts` (lower case), sorted by name.
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

pub fn run(g_args: &GpuArgs, a: &VideoCameraArgs) -> Result<()> {
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
        let model = super::depth::load_model(&gpu, m, &a.depth_args)?;
        for (p, img) in frames.iter().zip(&imgs) {
            if (img.width() as usize, img.height() as usize) != (w, h) {
                bail!("{}: every frame must be {w}×{h} like the first frame", p.display());
            }
            let d = super::depth::depth_of(&gpu, &model, img, a.depth_args.input_size)
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
            trajattn::trajectory::npy::write_f32(&stage.path(&format!("depth/{i:04}.npy")), &[h, w], d)?;
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
    super::generate::chain(open, &a.chain, &frames[0], &merged_dir, f, &a.out, warps)
}
