//! The colour-mapped depth preview of the official `run.py` (`--pred-only`): the map is min–max normalised in
//! float32 to `[0, 255]`, truncated to an 8-bit index, and the index looked up in matplotlib's `Spectral_r`
//! colormap (256 entries), each channel `(value · 255)` truncated to 8 bits. Near (large disparity) is violet-blue,
//! far is dark red.
//!
//! Where the table comes from: `Spectral` is Cynthia Brewer's 11-class diverging ColorBrewer scheme; matplotlib
//! defines its `Spectral` as the linear segmented colormap through those 11 colours (each 8-bit value / 255) at
//! evenly spaced positions `k/10`, sampled at 256 points, and `Spectral_r` as its reverse (position `1 − x`). The
//! table here is computed from that definition; `tests/depth_fixtures.rs` checks it against a table sampled from
//! matplotlib 3.8.2 by `tests/reference/depth_fixtures.py`.
//!
//! Unlike the official code, a constant map does not divide by zero (every pixel takes index 0) and non-finite
//! values neither poison the range nor the output (they take index 0).

use std::path::Path;

use image::{Rgb, RgbImage};

use super::DepthError;
use crate::limits::{self, IMAGE_PIXELS, IMAGE_SIDE};

/// ColorBrewer `Spectral`, 11 classes, from dark red to violet (sRGB, 8 bits per channel).
pub const SPECTRAL_11: [[u8; 3]; 11] = [
    [0x9e, 0x01, 0x42],
    [0xd5, 0x3e, 0x4f],
    [0xf4, 0x6d, 0x43],
    [0xfd, 0xae, 0x61],
    [0xfe, 0xe0, 0x8b],
    [0xff, 0xff, 0xbf],
    [0xe6, 0xf5, 0x98],
    [0xab, 0xdd, 0xa4],
    [0x66, 0xc2, 0xa5],
    [0x32, 0x88, 0xbd],
    [0x5e, 0x4f, 0xa2],
];

/// Entries of the lookup table (matplotlib's default `N`).
pub const LUT_SIZE: usize = 256;

/// The 256-entry `Spectral_r` table as 8-bit RGB: linear interpolation between the reversed control points,
/// evaluated as matplotlib's `_create_lookup_table` does (float64: positions scaled by `N − 1`, `distance ·
/// (y[k] − y[k−1]) + y[k−1]`), then `(v · 255)` truncated.
pub fn spectral_r_lut() -> [[u8; 3]; LUT_SIZE] {
    let n = SPECTRAL_11.len();
    let step = 1.0 / (n - 1) as f64;
    // numpy.linspace(0, 1, 11): k · step, the last one exactly 1.
    let lin: Vec<f64> = (0..n).map(|k| if k == n - 1 { 1.0 } else { k as f64 * step }).collect();
    // Reversed: position 1 − x, colours in reverse order.
    let xs: Vec<f64> = (0..n).map(|k| (1.0 - lin[n - 1 - k]) * (LUT_SIZE - 1) as f64).collect();
    let mut lut = [[0u8; 3]; LUT_SIZE];
    let last = LUT_SIZE - 1;
    let istep = 1.0 / last as f64;
    for ch in 0..3 {
        let ys: Vec<f64> = (0..n).map(|k| f64::from(SPECTRAL_11[n - 1 - k][ch]) / 255.0).collect();
        for (i, entry) in lut.iter_mut().enumerate() {
            let v = if i == 0 {
                ys[0]
            } else if i == last {
                ys[n - 1]
            } else {
                let xi = last as f64 * (i as f64 * istep);
                // searchsorted (left): the first control point at or after xi.
                let k = xs.iter().position(|&x| x >= xi).unwrap_or(n - 1).max(1);
                let distance = (xi - xs[k - 1]) / (xs[k] - xs[k - 1]);
                distance * (ys[k] - ys[k - 1]) + ys[k - 1]
            };
            entry[ch] = (v.clamp(0.0, 1.0) * 255.0) as u8;
        }
    }
    lut
}

/// The 8-bit index of every pixel: `(d − min) / (max − min) · 255` in float32, truncated (the official order of
/// operations). Min and max are over the finite values; a constant map, an all-non-finite map and every
/// non-finite pixel give 0.
pub fn normalise_u8(depth: &[f32]) -> Vec<u8> {
    let (mut mn, mut mx) = (f32::INFINITY, f32::NEG_INFINITY);
    for &d in depth.iter().filter(|d| d.is_finite()) {
        mn = mn.min(d);
        mx = mx.max(d);
    }
    let range = mx - mn;
    if !(range.is_finite() && range > 0.0) {
        return vec![0; depth.len()];
    }
    depth
        .iter()
        .map(|&d| if d.is_finite() { ((d - mn) / range * 255.0).clamp(0.0, 255.0) as u8 } else { 0 })
        .collect()
}

/// The colour preview of an `h`×`w` map (row-major), as an RGB image.
pub fn colorize(depth: &[f32], h: usize, w: usize) -> Result<RgbImage, DepthError> {
    if h == 0 || w == 0 {
        return Err(DepthError::Empty { what: "the depth map".into(), height: h, width: w });
    }
    IMAGE_SIDE.check(h.max(w) as u64)?;
    let n = limits::product("depth map pixels", &[h, w])?;
    IMAGE_PIXELS.check(n as u64)?;
    if depth.len() != n {
        return Err(DepthError::Shape {
            what: "the depth map".into(),
            expected: format!("{h}×{w} = {n}"),
            got: depth.len().to_string(),
        });
    }
    let lut = spectral_r_lut();
    let idx = normalise_u8(depth);
    let mut img = RgbImage::new(w as u32, h as u32);
    for (px, &i) in img.pixels_mut().zip(&idx) {
        *px = Rgb(lut[i as usize]);
    }
    Ok(img)
}

/// Writes the colour preview of an `h`×`w` map as a PNG file.
pub fn write_png(path: &Path, depth: &[f32], h: usize, w: usize) -> Result<(), DepthError> {
    let img = colorize(depth, h, w)?;
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|source| DepthError::Write { path: path.display().to_string(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_of_the_table_are_the_end_colours() {
        let lut = spectral_r_lut();
        // Index 0 is the last ColorBrewer colour (violet), index 255 the first (dark red); v/255·255 may land a
        // hair under v and truncate to v − 1.
        for (got, want) in [(lut[0], SPECTRAL_11[10]), (lut[255], SPECTRAL_11[0])] {
            for ch in 0..3 {
                assert!(want[ch] - got[ch] <= 1, "{got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn png_round_trips_and_bad_paths_are_errors() {
        let dir = std::env::temp_dir().join(format!("trajattn-depth-preview-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let map: Vec<f32> = (0..35).map(|v| (v as f32 * 0.7).sin()).collect();
        let path = dir.join("d.png");
        write_png(&path, &map, 5, 7).unwrap();
        let back = crate::image_input::open_rgb(&path).unwrap();
        assert_eq!(back, colorize(&map, 5, 7).unwrap());
        let missing = dir.join("no/such/folder/d.png");
        let e = write_png(&missing, &map, 5, 7).unwrap_err().to_string();
        assert!(e.contains("no/such/folder"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn constant_and_non_finite_maps_are_safe() {
        assert_eq!(normalise_u8(&[3.0; 6]), vec![0; 6]);
        assert_eq!(normalise_u8(&[f32::NAN, 1.0, f32::INFINITY, 3.0]), vec![0, 0, 0, 255]);
        assert_eq!(normalise_u8(&[f32::NAN; 3]), vec![0; 3]);
        assert_eq!(normalise_u8(&[f32::MIN, f32::MAX]), vec![0; 2], "range overflows to inf");
        assert!(colorize(&[1.0; 5], 2, 3).is_err());
        assert!(colorize(&[], 0, 3).is_err());
        assert!(colorize(&[1.0; 6], 2, 3).is_ok());
    }
}
