//! Previews: trajectories drawn over the first frame (PNG) and animated over the frames (GIF).

use super::folder::Trajectories;
use image::{Rgb, RgbImage};
use std::path::Path;

/// Which trajectories to draw: those starting on a `step`-pixel grid (all of them when there are few).
pub fn pick(t: &Trajectories, step: usize) -> Vec<usize> {
    if t.n <= 600 || t.frames == 0 {
        return (0..t.n).collect();
    }
    let step = step.max(1) as f64;
    (0..t.n)
        .filter(|&i| {
            let (x, y) = (t.coords[2 * i], t.coords[2 * i + 1]);
            x.rem_euclid(step) < 0.5 && y.rem_euclid(step) < 0.5
        })
        .collect()
}

fn hue(i: f64) -> Rgb<u8> {
    // A bright colour wheel: position in [0, 1) → RGB.
    let h = i.rem_euclid(1.0) * 6.0;
    let x = 1.0 - (h % 2.0 - 1.0).abs();
    let (r, g, b) = match h as u32 {
        0 => (1.0, x, 0.0),
        1 => (x, 1.0, 0.0),
        2 => (0.0, 1.0, x),
        3 => (0.0, x, 1.0),
        4 => (x, 0.0, 1.0),
        _ => (1.0, 0.0, x),
    };
    Rgb([(r * 255.0) as u8, (g * 255.0) as u8, (b * 255.0) as u8])
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

pub(crate) fn line(img: &mut RgbImage, a: [f64; 2], b: [f64; 2], c: Rgb<u8>) {
    let lim = 4.0 * (img.width() + img.height()) as f64;
    if a.iter().chain(&b).any(|v| !v.is_finite() || v.abs() > lim) {
        return;
    }
    let n = ((b[0] - a[0]).abs().max((b[1] - a[1]).abs()).ceil() as usize).max(1);
    for s in 0..=n {
        let t = s as f64 / n as f64;
        put(img, (a[0] + t * (b[0] - a[0])).round() as i64, (a[1] + t * (b[1] - a[1])).round() as i64, c);
    }
}

pub(crate) fn dot(img: &mut RgbImage, p: [f64; 2], c: Rgb<u8>) {
    if !p[0].is_finite() || !p[1].is_finite() {
        return;
    }
    let (x, y) = (p[0].round() as i64, p[1].round() as i64);
    for dy in -1..=1 {
        for dx in -1..=1 {
            put(img, x + dx, y + dy, c);
        }
    }
}

fn dimmed(base: &RgbImage) -> RgbImage {
    let mut img = base.clone();
    for p in img.pixels_mut() {
        for v in p.0.iter_mut() {
            *v /= 2;
        }
    }
    img
}

fn pos(t: &Trajectories, f: usize, i: usize) -> [f64; 2] {
    let o = 2 * (f * t.n + i);
    [t.coords[o], t.coords[o + 1]]
}

/// Draws every picked trajectory as a polyline over the dimmed image (visible segments only), end point dotted.
pub fn overlay(base: &RgbImage, t: &Trajectories, picked: &[usize]) -> RgbImage {
    let mut img = dimmed(base);
    let w = base.width().max(1) as f64;
    for &i in picked {
        let c = hue(pos(t, 0, i)[0] / w);
        let mut last = None;
        for f in 0..t.frames {
            if !t.valid[f * t.n + i] {
                last = None;
                continue;
            }
            let p = pos(t, f, i);
            if let Some(q) = last {
                line(&mut img, q, p, c);
            }
            last = Some(p);
        }
        if let Some(p) = last {
            dot(&mut img, p, c);
        }
    }
    img
}

/// Writes the overlay PNG and an animated GIF (one frame per video frame, points with short trails).
pub fn write_previews(
    base: &RgbImage,
    t: &Trajectories,
    step: usize,
    png: &Path,
    gif: &Path,
) -> Result<(), image::ImageError> {
    let picked = pick(t, step);
    overlay(base, t, &picked).save(png)?;
    let w = base.width().max(1) as f64;
    let mut frames = Vec::with_capacity(t.frames);
    for f in 0..t.frames {
        let mut img = dimmed(base);
        for &i in &picked {
            if !t.valid[f * t.n + i] {
                continue;
            }
            let c = hue(pos(t, 0, i)[0] / w);
            for g in f.saturating_sub(3)..f {
                if t.valid[g * t.n + i] && t.valid[(g + 1) * t.n + i] {
                    line(&mut img, pos(t, g, i), pos(t, g + 1, i), c);
                }
            }
            dot(&mut img, pos(t, f, i), c);
        }
        frames.push(img);
    }
    crate::video::write_gif(&frames, gif, 100)
}
