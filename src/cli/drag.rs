//! `trajattn drag`: trajectories from a JSON file of drag paths.

use anyhow::{bail, Context, Result};
use clap::Args;

#[derive(Args, Debug)]
pub struct DragArgs {
    /// The drag file.
    #[arg(long)]
    pub spec: std::path::PathBuf,
    /// Output folder.
    #[arg(long)]
    pub out: std::path::PathBuf,
    /// An image to draw previews on (its size must match the file's width and height).
    #[arg(long)]
    pub image: Option<std::path::PathBuf>,
}

pub fn run(a: &DragArgs) -> Result<()> {
    let (spec, out, image) = (a.spec.as_path(), a.out.as_path(), a.image.as_deref());
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
    // The drag file beside its tracks: `trajattn eval drag` takes the regions (still ones included) from it.
    std::fs::write(dir.join("drag.json"), &text)
        .with_context(|| format!("writing {}", dir.join("drag.json").display()))?;
    preview::write_previews(&base, &t, 4 * s.grid_step, &dir.join("preview.png"), &dir.join("preview.gif"))
        .context("writing previews")?;
    stage.commit()?;
    println!("{} trajectories × {} frames ({} drags) → {}", t.n, t.frames, s.drags.len(), out.display());
    Ok(())
}
