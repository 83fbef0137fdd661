//! `trajattn eval`: measure what a generated video did with the motion it was asked for.

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use std::path::{Path, PathBuf};
use trajattn::eval::drag;

#[derive(Subcommand, Debug)]
pub enum EvalCmd {
    /// Drag adherence: tracks each dragged region through the video and reports its distance to the requested
    /// path (mean, max, last frame, in pixels), and the drift of the regions held still.
    Drag(DragEvalArgs),
}

#[derive(clap::Args, Debug)]
pub struct DragEvalArgs {
    /// The video: a `generate` output folder (frames/frame_NNN.png), a folder of PNG frames, or a GIF.
    #[arg(long)]
    pub video: PathBuf,
    /// The trajectory folder the video was generated with. When it holds the drag file it was built from
    /// (`drag.json`, written by `trajattn drag`), its drags are the regions, still ones included; otherwise the
    /// regions are the groups of tracks that move together.
    #[arg(long, required_unless_present = "drag")]
    pub trajectories: Option<PathBuf>,
    /// A drag file to take the regions from (instead of a trajectory folder).
    #[arg(long, conflicts_with = "trajectories")]
    pub drag: Option<PathBuf>,
    /// Also write a side-by-side preview GIF: the frames, and the frames with the requested paths (yellow) and the
    /// tracked positions (green).
    #[arg(long)]
    pub preview: Option<PathBuf>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The regions of a drag file or a trajectory folder, for a video of `frames` frames.
pub fn regions(
    trajectories: Option<&Path>,
    drag_file: Option<&Path>,
    frames: usize,
) -> Result<Vec<drag::Region>> {
    let spec_path = match (drag_file, trajectories) {
        (Some(p), _) => Some(p.to_path_buf()),
        (None, Some(d)) if d.join("drag.json").is_file() => Some(d.join("drag.json")),
        _ => None,
    };
    if let Some(p) = spec_path {
        let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        let spec = trajattn::trajectory::build::DragSpec::from_json(&p.display().to_string(), &text)?;
        if spec.frames != frames {
            bail!("{} is for {} frames, the video has {frames}", p.display(), spec.frames);
        }
        return Ok(drag::regions_from_spec(&spec)?);
    }
    let Some(dir) = trajectories else { bail!("give --trajectories or --drag") };
    let t = trajattn::trajectory::folder::read(dir, frames)
        .with_context(|| format!("reading trajectories from {} for {frames} frames", dir.display()))?;
    let r = drag::regions_from_tracks(&t);
    if r.is_empty() {
        bail!("no group of at least 3 tracks moves together in {}: nothing to evaluate", dir.display());
    }
    Ok(r)
}

pub fn run(cmd: &EvalCmd) -> Result<()> {
    let EvalCmd::Drag(a) = cmd;
    let frames = drag::read_frames(&a.video).map_err(anyhow::Error::msg)?;
    if frames.len() < 2 {
        bail!("{}: a video needs at least 2 frames (found {})", a.video.display(), frames.len());
    }
    let regions = regions(a.trajectories.as_deref(), a.drag.as_deref(), frames.len())?;
    let report = drag::evaluate(&frames, &regions)?;
    if let Some(p) = &a.preview {
        drag::write_preview(&frames, &report, 4, p)?;
    }
    if a.json {
        let per: Vec<serde_json::Value> = report
            .regions
            .iter()
            .map(|r| {
                serde_json::json!({
                    "still": r.region.still, "radius": r.region.radius, "mean_px": r.mean, "max_px": r.max,
                    "end_px": r.end, "requested": r.region.requested, "tracked": r.tracked,
                })
            })
            .collect();
        let v = serde_json::json!({
            "frames": frames.len(), "path_mean_px": report.path_mean(), "path_max_px": report.path_max(),
            "path_end_px": report.path_end(), "still_mean_px": report.still_mean(),
            "still_max_px": report.still_max(), "regions": per,
        });
        println!("{v}");
    } else {
        println!("drag adherence of {} ({} frames):", a.video.display(), frames.len());
        print!("{}", drag::summary(&report));
    }
    Ok(())
}
