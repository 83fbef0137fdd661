//! Warped frames and hole masks of the camera path (docs/reference/trajectory-sources.md §4.7), the
//! NVS-solver inputs: forward bilinear splatting of the first frame along the camera motion, depth-weighted,
//! then the holes dilated by a 5×5 box.

use super::camera::{depth_from_inverse, project_frame, Intrinsics, Mat4, BEHIND};
use image::{Rgb, RgbImage};

/// One warped frame.
pub struct Warped {
    /// The splatted image with dilated holes blacked out (`NNNN.png`).
    pub image: RgbImage,
    /// Dilated hole mask, 255 = hole, three equal channels (`NNNN_mask.png`).
    pub mask: RgbImage,
    /// `(H, W, 2)` displacement (`NNNN_flow.npy`); 100000 for points behind the camera.
    pub flow: Vec<f64>,
}

/// Splats `img` (the first frame) along `pos` with depths `zt` (docs/reference/trajectory-sources.md §4.7).
pub fn forward_warp(img: &RgbImage, pos: &[[f64; 2]], zt: &[f64]) -> Warped {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (pw, ph) = (w + 2, h + 2);
    let mut acc = vec![[0.0f64; 3]; pw * ph];
    let mut wsum = vec![0.0f64; pw * ph];
    let mut flow = vec![0.0f64; w * h * 2];
    // Depth weights: dw = exp(ln(1 + clip(Z, 0, 5000)) / max · 50).
    let logs: Vec<f64> = zt.iter().map(|&z| (1.0 + z.clamp(0.0, 5000.0)).ln()).collect();
    let lmax = logs.iter().cloned().fold(0.0f64, f64::max);
    let dw: Vec<f64> = logs.iter().map(|&l| if lmax > 0.0 { (l / lmax * 50.0).exp() } else { 1.0 }).collect();
    let mut o = vec![[0.0f64; 2]; w * h];
    let mut f = vec![[0.0f64; 2]; w * h];
    let mut c = vec![[0.0f64; 2]; w * h];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let fl = if pos[i][0] == BEHIND && pos[i][1] == BEHIND {
                [BEHIND, BEHIND]
            } else {
                [pos[i][0] - x as f64, pos[i][1] - y as f64]
            };
            flow[2 * i] = fl[0];
            flow[2 * i + 1] = fl[1];
            let oo = [fl[0] + x as f64 + 1.0, fl[1] + y as f64 + 1.0];
            let lim = [(pw - 1) as f64, (ph - 1) as f64];
            for d in 0..2 {
                f[i][d] = oo[d].floor().clamp(0.0, lim[d]);
                c[i][d] = oo[d].ceil().clamp(0.0, lim[d]);
                o[i][d] = oo[d].clamp(0.0, lim[d]);
            }
        }
    }
    // Four passes in the reference's order: nw, sw, ne, se.
    for corner in 0..4 {
        for i in 0..w * h {
            let (oy, ox) = (o[i][1], o[i][0]);
            let (fy, fx, cy, cx) = (f[i][1], f[i][0], c[i][1], c[i][0]);
            let (wt, ty, tx) = match corner {
                0 => ((1.0 - (oy - fy)) * (1.0 - (ox - fx)), fy, fx),
                1 => ((1.0 - (cy - oy)) * (1.0 - (ox - fx)), cy, fx),
                2 => ((1.0 - (oy - fy)) * (1.0 - (cx - ox)), fy, cx),
                _ => ((1.0 - (cy - oy)) * (1.0 - (cx - ox)), cy, cx),
            };
            let wt = wt / dw[i];
            let j = ty as usize * pw + tx as usize;
            let px = img.get_pixel((i % w) as u32, (i / w) as u32).0;
            for (a, &v) in acc[j].iter_mut().zip(&px) {
                *a += v as f64 * wt;
            }
            wsum[j] += wt;
        }
    }
    let mut warped = RgbImage::new(w as u32, h as u32);
    let mut hole = vec![false; w * h];
    for y in 0..h {
        for x in 0..w {
            let j = (y + 1) * pw + x + 1;
            let covered = wsum[j] > 0.0 && wsum[j] <= 0.6;
            hole[y * w + x] = !covered;
            if covered {
                let v = acc[j].map(|a| (a / wsum[j]).clamp(0.0, 255.0).round_ties_even() as u8);
                warped.put_pixel(x as u32, y as u32, Rgb(v));
            }
        }
    }
    let dilated = dilate5(&hole, w, h);
    let mut mask = RgbImage::new(w as u32, h as u32);
    for (i, &d) in dilated.iter().enumerate() {
        let (x, y) = ((i % w) as u32, (i / w) as u32);
        if d {
            mask.put_pixel(x, y, Rgb([255; 3]));
            warped.put_pixel(x, y, Rgb([0; 3]));
        }
    }
    Warped { image: warped, mask, flow }
}

/// 5×5 box dilation (OpenCV `dilate`, one iteration; outside the image counts as not set).
pub fn dilate5(m: &[bool], w: usize, h: usize) -> Vec<bool> {
    let mut out = vec![false; w * h];
    for y in 0..h {
        for x in 0..w {
            out[y * w + x] = (y.saturating_sub(2)..(y + 3).min(h))
                .any(|yy| (x.saturating_sub(2)..(x + 3).min(w)).any(|xx| m[yy * w + xx]));
        }
    }
    out
}

/// Warped frames for frames 1.. of the camera path (`ts[0]` is the first camera), in image mode.
pub fn warp_frames(img: &RgbImage, inv_depth: &[f32], ts: &[Mat4], k: &Intrinsics) -> Vec<Warped> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let z = depth_from_inverse(inv_depth);
    let mut pos = vec![[0.0f64; 2]; w * h];
    let mut depth = vec![0.0f64; w * h];
    ts.iter()
        .skip(1)
        .map(|t| {
            project_frame(&z, w, h, t, k, &mut pos, &mut depth);
            forward_warp(img, &pos, &depth)
        })
        .collect()
}

/// Writes an animated GIF of the first frame followed by the warped frames (holes black), 100 ms per frame.
pub fn write_warp_gif(
    first: &RgbImage,
    warped: &[&RgbImage],
    path: &std::path::Path,
) -> Result<(), image::ImageError> {
    crate::video::write_gif(std::iter::once(first).chain(warped.iter().copied()), path, 100)
}
