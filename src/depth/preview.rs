//! Preview of a depth map as an image. Placeholder with the interface of the preprocessing work (branch
//! `depthref`, whose Spectral_r colour map replaces this file at merge): here a min-max normalised grey PNG,
//! nearer = brighter.

use std::path::Path;

use crate::depth::DepthError;

/// Writes the preview of an `h`×`w` map (row-major) as a PNG file.
pub fn write_png(path: &Path, depth: &[f32], h: usize, w: usize) -> Result<(), DepthError> {
    if h == 0 || w == 0 {
        return Err(DepthError::Empty { what: "the depth map".into(), height: h, width: w });
    }
    if depth.len() != h * w {
        return Err(DepthError::Shape {
            what: "the depth map".into(),
            expected: format!("{h}×{w}"),
            got: depth.len().to_string(),
        });
    }
    let fin = depth.iter().copied().filter(|d| d.is_finite());
    let (mn, mx) = fin.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), d| (a.min(d), b.max(d)));
    let range = if mx > mn { mx - mn } else { 1.0 };
    let px: Vec<u8> = depth
        .iter()
        .map(|&d| if d.is_finite() { ((d - mn) / range * 255.0).clamp(0.0, 255.0) as u8 } else { 0 })
        .collect();
    let img = image::GrayImage::from_raw(w as u32, h as u32, px).ok_or_else(|| DepthError::Shape {
        what: "the depth map".into(),
        expected: format!("{h}×{w}"),
        got: depth.len().to_string(),
    })?;
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|source| DepthError::Write { path: path.display().to_string(), source })
}
