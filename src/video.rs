//! Frames out: PNG sequences, animated GIFs (as the official `export_to_gif`: 100 ms per frame, looping),
//! and MP4 through `ffmpeg` when it is on PATH.

use std::path::{Path, PathBuf};

use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, Frame, RgbImage};

/// Frames as images from RGB bytes `[F, H, W, 3]`.
pub fn frames_from_rgb(data: &[u8], frames: usize, w: usize, h: usize) -> Vec<RgbImage> {
    (0..frames)
        .filter_map(|f| {
            RgbImage::from_raw(w as u32, h as u32, data[f * w * h * 3..(f + 1) * w * h * 3].to_vec())
        })
        .collect()
}

/// Writes an animated GIF that loops forever, `delay_ms` per frame.
pub fn write_gif<'a>(
    frames: impl IntoIterator<Item = &'a RgbImage>,
    path: &Path,
    delay_ms: u32,
) -> Result<(), image::ImageError> {
    let file = std::fs::File::create(path).map_err(image::ImageError::IoError)?;
    let mut enc = GifEncoder::new_with_speed(std::io::BufWriter::new(file), 10);
    enc.set_repeat(Repeat::Infinite)?;
    for img in frames {
        let rgba = image::DynamicImage::ImageRgb8(img.clone()).to_rgba8();
        enc.encode_frame(Frame::from_parts(rgba, 0, 0, Delay::from_numer_denom_ms(delay_ms, 1)))?;
    }
    Ok(())
}

/// Writes `dir/frame_000.png`, … and returns the paths.
pub fn write_pngs(frames: &[RgbImage], dir: &Path) -> Result<Vec<PathBuf>, image::ImageError> {
    std::fs::create_dir_all(dir).map_err(image::ImageError::IoError)?;
    frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let p = dir.join(format!("frame_{i:03}.png"));
            f.save(&p).map(|_| p)
        })
        .collect()
}

/// Encodes the PNG sequence of [`write_pngs`] to H.264 MP4 with `ffmpeg` if it is installed; `Ok(false)` when
/// it is not (nothing written).
pub fn write_mp4_if_ffmpeg(png_dir: &Path, fps: u32, out: &Path) -> std::io::Result<bool> {
    let probe = std::process::Command::new("ffmpeg").arg("-version").output();
    if probe.is_err() {
        log::info!("ffmpeg not found on PATH: no MP4 written");
        return Ok(false);
    }
    let status = std::process::Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error", "-framerate", &fps.to_string(), "-i"])
        .arg(png_dir.join("frame_%03d.png"))
        .args(["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-pix_fmt", "yuv420p", "-c:v", "libx264"])
        .arg(out)
        .status()?;
    Ok(status.success())
}
