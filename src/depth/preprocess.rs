//! Depth-Anything-V2 preprocessing (depth-anything-v2.md §3) and the final resize back to the image size (§6).
//!
//! Interface agreed with the preprocessing work (branch `depthref`, which replaces this file at merge with its
//! bit-exact, fixture-tested version): [`target_size`], [`prepare`] / [`Prepared`], [`upsample_to`].
//! This minimal version follows the same rules (cv2 INTER_CUBIC on f64 with f32 coefficients, ImageNet
//! normalisation in f64, one rounding to f32; bilinear align_corners=True in f32).

use crate::depth::DepthError;

/// The network input: `1×3×height×width` NCHW, normalised, f32.
pub struct Prepared {
    pub data: Vec<f32>,
    pub height: usize,
    pub width: usize,
}

const MULT: usize = 14;

/// The network input size `(H', W')` of an `h × w` image at `input_size` (official `lower_bound` rule:
/// the larger scale, both sides ≥ `input_size`, multiples of 14, round half to even then up if below).
pub fn target_size(h: usize, w: usize, input_size: usize) -> Result<(usize, usize), DepthError> {
    if input_size == 0 || !input_size.is_multiple_of(MULT) {
        return Err(DepthError::InputSize(input_size));
    }
    if h == 0 || w == 0 {
        return Err(DepthError::Empty { what: "the image".into(), height: h, width: w });
    }
    let s_in = input_size as f64;
    let (sh, sw) = (s_in / h as f64, s_in / w as f64);
    let s = if sw > sh { sw } else { sh };
    let c = |v: f64| -> usize {
        let m = MULT as f64;
        let mut y = ((v / m).round_ties_even() * m) as usize;
        if y < input_size {
            y = ((v / m).ceil() * m) as usize;
        }
        y
    };
    Ok((c(s * h as f64), c(s * w as f64)))
}

fn cv_coeffs(t: f32) -> [f32; 4] {
    let a = -0.75f32;
    let t1 = t + 1.0;
    let w0 = ((a * t1 - 5.0 * a) * t1 + 8.0 * a) * t1 - 4.0 * a;
    let w1 = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0;
    let u = 1.0 - t;
    let w2 = ((a + 2.0) * u - (a + 3.0)) * u * u + 1.0;
    let w3 = 1.0 - w0 - w1 - w2;
    [w0, w1, w2, w3]
}

fn cv_axis(n: usize, m: usize) -> Vec<([usize; 4], [f64; 4])> {
    let scale = 1.0 / (m as f64 / n as f64);
    (0..m)
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let i = f.floor();
            let w = cv_coeffs(f - i);
            let i = i as i64;
            let idx = [0, 1, 2, 3].map(|k| (i - 1 + k).clamp(0, n as i64 - 1) as usize);
            (idx, w.map(f64::from))
        })
        .collect()
}

/// Resizes, normalises and lays out `img` for the network.
pub fn prepare(img: &image::RgbImage, input_size: usize) -> Result<Prepared, DepthError> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (oh, ow) = target_size(h, w, input_size)?;
    crate::limits::product("the depth network input", &[3, oh, ow])?;
    let raw = img.as_raw();
    let src: Vec<f64> = raw.iter().map(|&v| v as f64 / 255.0).collect();
    let resized: Vec<f64> = if (oh, ow) == (h, w) {
        src
    } else {
        let (xa, ya) = (cv_axis(w, ow), cv_axis(h, oh));
        // Horizontal pass over every source row, then vertical.
        let mut hp = vec![0f64; h * ow * 3];
        for y in 0..h {
            for (x, (ix, wx)) in xa.iter().enumerate() {
                for c in 0..3 {
                    let s = |k: usize| src[(y * w + ix[k]) * 3 + c];
                    hp[(y * ow + x) * 3 + c] = ((s(0) * wx[0] + s(1) * wx[1]) + s(2) * wx[2]) + s(3) * wx[3];
                }
            }
        }
        let mut out = vec![0f64; oh * ow * 3];
        for (y, (iy, wy)) in ya.iter().enumerate() {
            for x in 0..ow {
                for c in 0..3 {
                    let s = |k: usize| hp[(iy[k] * ow + x) * 3 + c];
                    out[(y * ow + x) * 3 + c] = ((s(0) * wy[0] + s(1) * wy[1]) + s(2) * wy[2]) + s(3) * wy[3];
                }
            }
        }
        out
    };
    const MEAN: [f64; 3] = [0.485, 0.456, 0.406];
    const STD: [f64; 3] = [0.229, 0.224, 0.225];
    let mut data = vec![0f32; 3 * oh * ow];
    for p in 0..oh * ow {
        for c in 0..3 {
            data[c * oh * ow + p] = ((resized[p * 3 + c] - MEAN[c]) / STD[c]) as f32;
        }
    }
    Ok(Prepared { data, height: oh, width: ow })
}

/// Bilinear resize with `align_corners=True` of an `h × w` map to `out_h × out_w` (PyTorch's f32 rule).
pub fn upsample_to(depth: &[f32], h: usize, w: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    let axis = |n: usize, m: usize| -> Vec<(usize, usize, f32)> {
        let r = if m > 1 { (n as f32 - 1.0) / (m as f32 - 1.0) } else { 0.0 };
        (0..m)
            .map(|o| {
                let s = r * o as f32;
                let i0 = (s.floor() as usize).min(n - 1);
                let l = (s - i0 as f32).clamp(0.0, 1.0);
                (i0, if i0 < n - 1 { i0 + 1 } else { i0 }, l)
            })
            .collect()
    };
    if h == 0 || w == 0 || depth.len() != h * w {
        return vec![0.0; out_h * out_w];
    }
    let (ay, ax) = (axis(h, out_h), axis(w, out_w));
    let mut out = Vec::with_capacity(out_h * out_w);
    for &(y0, y1, ly) in &ay {
        for &(x0, x1, lx) in &ax {
            let top = (1.0 - lx) * depth[y0 * w + x0] + lx * depth[y0 * w + x1];
            let bot = (1.0 - lx) * depth[y1 * w + x0] + lx * depth[y1 * w + x1];
            out.push((1.0 - ly) * top + ly * bot);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_sizes_of_the_spec() {
        for ((h, w, s), want) in [
            ((576, 1024, 518), (518, 924)),
            ((1024, 576, 518), (924, 518)),
            ((480, 640, 518), (518, 686)),
            ((720, 1280, 518), (518, 924)),
            ((1080, 1920, 518), (518, 924)),
            ((512, 512, 518), (518, 518)),
            ((2000, 3000, 518), (518, 784)),
            ((100, 1000, 518), (518, 5180)),
            ((70, 98, 140), (140, 196)),
        ] {
            assert_eq!(target_size(h, w, s).unwrap(), want, "{h}x{w}@{s}");
        }
        assert!(target_size(70, 98, 500).is_err());
        assert!(target_size(70, 98, 0).is_err());
    }
}
