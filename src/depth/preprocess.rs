//! The official Depth-Anything-V2 preprocessing and post-processing, bit for bit
//! (`docs/reference/depth-anything-v2.md` §2, §3, §6):
//!
//! * [`target_size`]: `Resize(keep_aspect_ratio, ensure_multiple_of=14, resize_method='lower_bound')`: the larger
//!   of the two scales, each side rounded half-to-even to a multiple of 14 and rounded up when that falls below
//!   `input_size` (576×1024 at 518 → 518×924).
//! * [`resize_cubic`]: OpenCV 4.5.5 `resize(INTER_CUBIC)` on float64 HWC: float32 source coordinates and float32
//!   coefficients (A = −0.75), replicated border, horizontal pass then vertical pass, each summed left to right in
//!   float64. No antialiasing when shrinking, no clamping of the result.
//! * [`prepare`]: `rgb / 255.0` (float64) → resize → `(x − mean) / std` (float64) → one rounding to float32, NCHW.
//! * [`upsample_to`]: the post-processing `F.interpolate(bilinear, align_corners=True)` back to the image size, in
//!   torch's float32 CPU arithmetic (weights `1 − λ`, `λ`; interpolate along x in two source rows, then along y).
//!
//! Everything runs on the CPU: WGSL has no float64, and these steps are a small part of the model's time.

use image::RgbImage;

use super::DepthError;
use crate::limits::{self, LimitError, DEPTH_INPUT_PIXELS, IMAGE_PIXELS, IMAGE_SIDE};

/// The model's patch size: network input sides are multiples of it.
pub const PATCH: usize = 14;

/// ImageNet mean of the official `NormalizeImage` (R, G, B).
pub const MEAN: [f64; 3] = [0.485, 0.456, 0.406];
/// ImageNet standard deviation of the official `NormalizeImage` (R, G, B).
pub const STD: [f64; 3] = [0.229, 0.224, 0.225];

/// The network input for one image.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    /// 1×3×`height`×`width` (NCHW, R, G, B), normalised as the official code does.
    pub data: Vec<f32>,
    /// Network input height H' (a multiple of 14).
    pub height: usize,
    /// Network input width W' (a multiple of 14).
    pub width: usize,
}

/// The network input size `(H', W')` for an `h`×`w` image at `input_size` (the official `Resize.get_size` with
/// the arguments of `image2tensor`). Both sides end up ≥ `input_size` and multiples of 14.
///
/// Errors: `input_size` zero or not a multiple of 14; an empty image; a result above
/// [`DEPTH_INPUT_PIXELS`](crate::limits::DEPTH_INPUT_PIXELS) (an extreme aspect ratio).
pub fn target_size(h: usize, w: usize, input_size: usize) -> Result<(usize, usize), DepthError> {
    if input_size == 0 || !input_size.is_multiple_of(PATCH) {
        return Err(DepthError::InputSize(input_size));
    }
    if h == 0 || w == 0 {
        return Err(DepthError::Empty { what: "the image".into(), height: h, width: w });
    }
    // input_size² is a lower bound of the result: refuse an absurd input_size before any float arithmetic.
    DEPTH_INPUT_PIXELS.check(limits::product("--input-size squared", &[input_size, input_size])? as u64)?;
    let s_target = input_size as f64;
    let scale_h = s_target / h as f64;
    let scale_w = s_target / w as f64;
    let s = if scale_w > scale_h { scale_w } else { scale_h };
    let constrain = |v: f64| -> f64 {
        let m = PATCH as f64;
        let y = (v / m).round_ties_even() * m;
        if y < s_target {
            (v / m).ceil() * m
        } else {
            y
        }
    };
    let (th, tw) = (constrain(s * h as f64), constrain(s * w as f64));
    // Each side is at least input_size ≥ 14, so each is at most the pixel limit / 14; check before converting.
    let lim = DEPTH_INPUT_PIXELS.value() as f64;
    let too_large = || LimitError::TooLarge {
        what: DEPTH_INPUT_PIXELS.what.to_string(),
        value: format!("{th}×{tw} for a {h}×{w} image at --input-size {input_size}"),
        limit: DEPTH_INPUT_PIXELS.value().to_string(),
        hint: format!(" (set {}=N to allow more, or crop the image)", DEPTH_INPUT_PIXELS.env),
    };
    if !(th.is_finite() && tw.is_finite()) || th > lim || tw > lim || th * tw > lim {
        return Err(too_large().into());
    }
    Ok((th as usize, tw as usize))
}

/// One output position of a cubic resize along one axis: four clamped source indices and float32 weights.
#[derive(Clone, Copy, Debug)]
struct CubicTap {
    idx: [usize; 4],
    w: [f64; 4],
}

/// OpenCV's cubic coefficients (`interpolateCubic`, A = −0.75) in float32, in its order of operations.
fn cubic_coeffs(t: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let t1 = t + 1.0;
    let w0 = ((A * t1 - 5.0 * A) * t1 + 8.0 * A) * t1 - 4.0 * A;
    let w1 = ((A + 2.0) * t - (A + 3.0)) * t * t + 1.0;
    let u = 1.0 - t;
    let w2 = ((A + 2.0) * u - (A + 3.0)) * u * u + 1.0;
    let w3 = 1.0 - w0 - w1 - w2;
    [w0, w1, w2, w3]
}

/// The taps of one axis, `n_in` → `n_out` (both ≥ 1).
fn cubic_axis(n_in: usize, n_out: usize) -> Vec<CubicTap> {
    let inv = n_out as f64 / n_in as f64;
    let scale = 1.0 / inv;
    let last = n_in as i64 - 1;
    (0..n_out)
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let fl = f.floor();
            let t = f - fl;
            let i = fl as i64;
            let c = cubic_coeffs(t);
            CubicTap {
                idx: std::array::from_fn(|k| (i - 1 + k as i64).clamp(0, last) as usize),
                w: std::array::from_fn(|k| f64::from(c[k])),
            }
        })
        .collect()
}

/// OpenCV `resize(src, (out_w, out_h), interpolation=INTER_CUBIC)` on a float64 `h`×`w`×`c` (HWC, row-major)
/// image, bit-exact (docs/reference/depth-anything-v2.md §3.3). Same size in both axes → a copy.
///
/// Returns an empty vector when a size is zero or `src.len() != h·w·c` (callers such as [`prepare`] check sizes
/// first; sizes are not limited here).
pub fn resize_cubic(src: &[f64], h: usize, w: usize, c: usize, out_h: usize, out_w: usize) -> Vec<f64> {
    let sizes_ok = [h, w, c, out_h, out_w].iter().all(|&v| v > 0);
    let n_in = h.checked_mul(w).and_then(|v| v.checked_mul(c));
    let n_out = out_h.checked_mul(out_w).and_then(|v| v.checked_mul(c));
    let (Some(n_in), Some(n_out)) = (n_in, n_out) else { return Vec::new() };
    if !sizes_ok || src.len() != n_in {
        return Vec::new();
    }
    if out_h == h && out_w == w {
        return src.to_vec();
    }
    let tx = cubic_axis(w, out_w);
    let ty = cubic_axis(h, out_h);
    let row_len = out_w * c;
    // Horizontal pass of one source row into `dst` (out_w × c).
    let hpass = |y: usize, dst: &mut [f64]| {
        let s = &src[y * w * c..(y + 1) * w * c];
        for (x, tap) in tx.iter().enumerate() {
            let [i0, i1, i2, i3] = tap.idx.map(|i| i * c);
            let [w0, w1, w2, w3] = tap.w;
            for ch in 0..c {
                dst[x * c + ch] = ((s[i0 + ch] * w0 + s[i1 + ch] * w1) + s[i2 + ch] * w2) + s[i3 + ch] * w3;
            }
        }
    };
    // Four horizontally resized source rows are live at a time; the taps move monotonically down the image.
    let mut slots: [(Option<usize>, Vec<f64>); 4] = std::array::from_fn(|_| (None, vec![0.0; row_len]));
    let mut out = vec![0.0f64; n_out];
    for (oy, tap) in ty.iter().enumerate() {
        let mut which = [0usize; 4];
        for (slot_of, &row) in which.iter_mut().zip(&tap.idx) {
            *slot_of = match slots.iter().position(|(r, _)| *r == Some(row)) {
                Some(p) => p,
                None => {
                    // A slot not holding any of this output row's taps (at most 4 distinct rows).
                    let p = (0..4).find(|&p| slots[p].0.is_none_or(|r| !tap.idx.contains(&r))).unwrap_or(0);
                    hpass(row, &mut slots[p].1);
                    slots[p].0 = Some(row);
                    p
                }
            };
        }
        let [v0, v1, v2, v3] = tap.w;
        let (r0, r1, r2, r3) =
            (&slots[which[0]].1, &slots[which[1]].1, &slots[which[2]].1, &slots[which[3]].1);
        let o = &mut out[oy * row_len..(oy + 1) * row_len];
        for i in 0..row_len {
            o[i] = ((r0[i] * v0 + r1[i] * v1) + r2[i] * v2) + r3[i] * v3;
        }
    }
    out
}

/// A decoded image as the 8-bit RGB that `cv2.imread(path)` (IMREAD_COLOR) gives the official code: grey expanded
/// to three equal channels, alpha dropped (not composited), and 16-bit samples reduced to their **high byte**
/// (`v >> 8`, as OpenCV's PNG reader does; `DynamicImage::to_rgb8` rounds `v / 257` instead, one level off for
/// some values). Float images are converted by the image crate (OpenCV does not read them).
pub fn to_rgb8_like_opencv(img: &image::DynamicImage) -> RgbImage {
    use image::DynamicImage as D;
    let (w, h) = (img.width(), img.height());
    let hi = |v: u16| (v >> 8) as u8;
    match img {
        D::ImageLuma16(b) => RgbImage::from_fn(w, h, |x, y| image::Rgb([hi(b.get_pixel(x, y).0[0]); 3])),
        D::ImageLumaA16(b) => RgbImage::from_fn(w, h, |x, y| image::Rgb([hi(b.get_pixel(x, y).0[0]); 3])),
        D::ImageRgb16(b) => RgbImage::from_fn(w, h, |x, y| {
            let p = b.get_pixel(x, y).0;
            image::Rgb([hi(p[0]), hi(p[1]), hi(p[2])])
        }),
        D::ImageRgba16(b) => RgbImage::from_fn(w, h, |x, y| {
            let p = b.get_pixel(x, y).0;
            image::Rgb([hi(p[0]), hi(p[1]), hi(p[2])])
        }),
        other => other.to_rgb8(),
    }
}

/// The official `image2tensor` for an RGB image (EXIF orientation already applied, e.g. by
/// [`crate::image_input::open_oriented`] then [`to_rgb8_like_opencv`]): `rgb / 255.0` in float64, [`resize_cubic`] to [`target_size`], `(x − mean) /
/// std` in float64, transposed to NCHW and rounded once to float32.
pub fn prepare(img: &RgbImage, input_size: usize) -> Result<Prepared, DepthError> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if h == 0 || w == 0 {
        return Err(DepthError::Empty { what: "the image".into(), height: h, width: w });
    }
    IMAGE_SIDE.check(h.max(w) as u64)?;
    IMAGE_PIXELS.check(limits::product("image pixels", &[h, w])? as u64)?;
    let (oh, ow) = target_size(h, w, input_size)?;
    let src: Vec<f64> = img.as_raw().iter().map(|&v| f64::from(v) / 255.0).collect();
    if src.len() != h * w * 3 {
        return Err(DepthError::Shape {
            what: "the RGB image buffer".into(),
            expected: format!("{h}×{w}×3 = {}", h * w * 3),
            got: src.len().to_string(),
        });
    }
    let resized = resize_cubic(&src, h, w, 3, oh, ow);
    let plane = oh * ow;
    let mut data = vec![0.0f32; 3 * plane];
    for (p, px) in resized.chunks_exact(3).enumerate() {
        for ch in 0..3 {
            data[ch * plane + p] = ((px[ch] - MEAN[ch]) / STD[ch]) as f32;
        }
    }
    Ok(Prepared { data, height: oh, width: ow })
}

/// One output position of a linear resize along one axis (torch's `compute_source_index_and_lambda`).
#[derive(Clone, Copy, Debug)]
struct LinearTap {
    i0: usize,
    i1: usize,
    l0: f32,
    l1: f32,
}

fn linear_axis_align_corners(n_in: usize, n_out: usize) -> Vec<LinearTap> {
    if n_in == n_out {
        return (0..n_out).map(|o| LinearTap { i0: o, i1: o, l0: 1.0, l1: 0.0 }).collect();
    }
    let ratio = if n_out > 1 { (n_in - 1) as f32 / (n_out - 1) as f32 } else { 0.0 };
    (0..n_out)
        .map(|o| {
            let real = ratio * o as f32;
            let i0 = (real.floor() as usize).min(n_in - 1);
            let l1 = (real - i0 as f32).clamp(0.0, 1.0);
            let i1 = if i0 < n_in - 1 { i0 + 1 } else { i0 };
            LinearTap { i0, i1, l0: 1.0 - l1, l1 }
        })
        .collect()
}

/// The official post-processing: `F.interpolate(depth[None, None], (out_h, out_w), mode='bilinear',
/// align_corners=True)` of an `h`×`w` float32 map, in torch 2.1.0's CPU float32 order (the generic
/// channels-first kernel): `t_r = in[r, x0]·wx0 + in[r, x1]·wx1` for the two source rows, then `out = t_0·wy0 +
/// t_1·wy1`, each `a·w0 + b·w1` evaluated as `fma(a, w0, b·w1)` as torch's AVX2/AVX512 builds contract it
/// (bit-exact against the reference made with them; a build without FMA may differ by an ulp). Torch takes
/// another (channels-last) kernel when `out_h + out_w ≤ 128` (tiny images only): there this is within 2 ulp.
///
/// Returns an empty vector when a size is zero or `depth.len() != h·w`.
pub fn upsample_to(depth: &[f32], h: usize, w: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    let Some(n_out) = out_h.checked_mul(out_w) else { return Vec::new() };
    if [h, w, out_h, out_w].contains(&0) || h.checked_mul(w) != Some(depth.len()) {
        return Vec::new();
    }
    let tx = linear_axis_align_corners(w, out_w);
    let ty = linear_axis_align_corners(h, out_h);
    let mut out = Vec::with_capacity(n_out);
    for y in &ty {
        let (ra, rb) = (&depth[y.i0 * w..(y.i0 + 1) * w], &depth[y.i1 * w..(y.i1 + 1) * w]);
        for x in &tx {
            // torch's `t0 * w0 + t1 * w1`, as its AVX2/AVX512 CPU builds compile it: fma(t0, w0, t1 * w1).
            let ta = ra[x.i0].mul_add(x.l0, ra[x.i1] * x.l1);
            let tb = rb[x.i0].mul_add(x.l0, rb[x.i1] * x.l1);
            out.push(ta.mul_add(y.l0, tb * y.l1));
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
            assert_eq!(target_size(h, w, s).unwrap(), want, "{h}×{w} at {s}");
        }
    }

    #[test]
    fn bad_sizes_are_errors() {
        for s in [0, 1, 13, 15, 517, 519] {
            let e = target_size(576, 1024, s).unwrap_err().to_string();
            assert!(e.contains(&s.to_string()) && e.contains("14"), "{e}");
        }
        assert!(target_size(0, 10, 518).is_err());
        assert!(target_size(10, 0, 518).is_err());
        // 1×16384 at 518 would need 518×8486912 pixels.
        let e = target_size(1, 16384, 518).unwrap_err().to_string();
        assert!(e.contains("TRAJATTN_MAX_DEPTH_PIXELS"), "{e}");
        assert!(target_size(1, 1, usize::MAX / 14 * 14).is_err());
        assert!(target_size(usize::MAX, 1, 518).is_err());
        assert!(target_size(1, 1, 518).unwrap() == (518, 518));
    }

    #[test]
    fn wrong_lengths_give_empty_results() {
        assert!(resize_cubic(&[0.0; 5], 2, 2, 1, 3, 3).is_empty());
        assert!(resize_cubic(&[], 0, 2, 1, 3, 3).is_empty());
        assert!(resize_cubic(&[0.0; 4], 2, 2, 1, 0, 3).is_empty());
        assert!(upsample_to(&[0.0; 5], 2, 2, 3, 3).is_empty());
        assert!(upsample_to(&[0.0; 4], 2, 2, usize::MAX, 3).is_empty());
    }

    #[test]
    fn one_pixel_and_constant_images_stay_constant() {
        let one = resize_cubic(&[0.25, 0.5, 0.75], 1, 1, 3, 3, 5);
        assert_eq!(one.len(), 45);
        for px in one.chunks(3) {
            assert_eq!(px, [0.25, 0.5, 0.75]);
        }
        let up = upsample_to(&[2.5], 1, 1, 4, 3);
        assert_eq!(up, vec![2.5; 12]);
        let down = upsample_to(&[1.0, 2.0, 3.0, 4.0], 2, 2, 1, 1);
        assert_eq!(down, vec![1.0]);
    }

    #[test]
    fn align_corners_keeps_the_corners() {
        let src: Vec<f32> = (0..35).map(|v| v as f32 * 0.37 - 3.0).collect();
        let out = upsample_to(&src, 5, 7, 11, 13);
        assert_eq!(out[0], src[0]);
        assert_eq!(out[12], src[6]);
        assert_eq!(out[10 * 13], src[28]);
        assert_eq!(out[11 * 13 - 1], src[34]);
    }
}
