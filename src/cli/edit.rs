//! `trajattn edit`: first-frame-guided video editing (the edited first frame with the source video's tracks).

use anyhow::{bail, Context, Result};
use clap::Args;

use super::gpu_args::GpuArgs;

#[derive(Args, Debug)]
pub struct EditArgs {
    /// The user's edited version of the source video's first frame.
    #[arg(long)]
    pub edited_frame: std::path::PathBuf,
    /// Tracks of the source video (official tracks folder).
    #[arg(long)]
    pub tracks: std::path::PathBuf,
    /// Frames of the tracks.
    #[arg(long, default_value_t = 25)]
    pub frames: usize,
    /// Output folder.
    #[arg(long)]
    pub out: std::path::PathBuf,
    #[command(flatten)]
    pub chain: super::generate::ChainArgs,
}

pub fn run(g_args: &GpuArgs, a: &EditArgs) -> Result<()> {
    let (edited, tracks, frames, out, chain) =
        (a.edited_frame.as_path(), a.tracks.as_path(), a.frames, a.out.as_path(), &a.chain);
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
    super::generate::chain(open, chain, edited, out, frames, out, None)
}
