//! `trajattn trajectories`: inspect, build (from flow, mask, sparser grid) or preview a trajectory folder.

use anyhow::{bail, Context, Result};
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum TrajCmd {
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

pub fn run(c: TrajCmd) -> Result<()> {
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
