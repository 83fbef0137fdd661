//! Image resampling exactly as the reference does it: Pillow's `Image.resize(BICUBIC)` for the input image
//! (8-bit fixed-point separable convolution, horizontal pass first) and diffusers' `_resize_with_antialiasing`
//! for the CLIP input (Gaussian blur with reflect padding, then PyTorch's align-corners bicubic, A = −0.75).

/// Pillow's bicubic filter (a = −0.5), support 2.
fn pillow_bicubic(x: f64) -> f64 {
    let a = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * a
    } else {
        0.0
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Fixed-point coefficients of one axis: `(first input index, coefficients)` per output index.
fn coefficients(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64).max(xmin as i64) as usize;
            let w: Vec<f64> = (xmin..xmax).map(|x| pillow_bicubic((x as f64 - center + 0.5) * ss)).collect();
            let sum: f64 = w.iter().sum();
            let k = w
                .iter()
                .map(|&v| {
                    let v = if sum != 0.0 { v / sum } else { v };
                    let f = v * (1u32 << PRECISION_BITS) as f64;
                    if v < 0.0 {
                        (f - 0.5) as i32
                    } else {
                        (f + 0.5) as i32
                    }
                })
                .collect();
            (xmin, k)
        })
        .collect()
}

fn clip8(v: i64) -> u8 {
    if v >= (1i64 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Pillow's `resize((out_w, out_h), Image.BICUBIC)` of an 8-bit image with `ch` interleaved channels.
pub fn pillow_bicubic_u8(src: &[u8], w: usize, h: usize, ch: usize, out_w: usize, out_h: usize) -> Vec<u8> {
    let horizontal = |img: &[u8], iw: usize, ih: usize| -> Vec<u8> {
        if iw == out_w {
            return img.to_vec();
        }
        let k = coefficients(iw, out_w);
        let mut out = vec![0u8; out_w * ih * ch];
        for y in 0..ih {
            for (xx, (xmin, kk)) in k.iter().enumerate() {
                for c in 0..ch {
                    let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                    for (i, &kv) in kk.iter().enumerate() {
                        ss += img[(y * iw + xmin + i) * ch + c] as i64 * kv as i64;
                    }
                    out[(y * out_w + xx) * ch + c] = clip8(ss);
                }
            }
        }
        out
    };
    let tmp = horizontal(src, w, h);
    if h == out_h {
        return tmp;
    }
    let k = coefficients(h, out_h);
    let mut out = vec![0u8; out_w * out_h * ch];
    for (yy, (ymin, kk)) in k.iter().enumerate() {
        for x in 0..out_w {
            for c in 0..ch {
                let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                for (i, &kv) in kk.iter().enumerate() {
                    ss += tmp[((ymin + i) * out_w + x) * ch + c] as i64 * kv as i64;
                }
                out[(yy * out_w + x) * ch + c] = clip8(ss);
            }
        }
    }
    out
}

/// The 1-D Gaussian of `_gaussian`: taps at `i − k/2`, float32, normalised by the left-to-right float32 sum.
pub fn gaussian_kernel(k: usize, sigma: f32) -> Vec<f32> {
    let two_s2 = 2.0 * sigma * sigma;
    let half = (k / 2) as f32;
    let g: Vec<f32> = (0..k)
        .map(|i| {
            let mut x = i as f32 - half;
            if k.is_multiple_of(2) {
                x += 0.5;
            }
            (-(x * x) / two_s2).exp()
        })
        .collect();
    let sum = g.iter().fold(0f32, |a, &v| a + v);
    g.iter().map(|&v| v / sum).collect()
}

fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    if n == 1 {
        return 0;
    }
    let mut i = i;
    while i < 0 || i >= n {
        i = if i < 0 { -i } else { 2 * (n - 1) - i };
    }
    i as usize
}

fn cubic1(x: f32, a: f32) -> f32 {
    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
}

fn cubic2(x: f32, a: f32) -> f32 {
    ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
}

/// Source index and 4 weights of PyTorch's align-corners bicubic for one output index.
fn bicubic_taps(o: usize, in_size: usize, out_size: usize) -> (isize, [f32; 4]) {
    let scale = if out_size > 1 { (in_size as f32 - 1.0) / (out_size as f32 - 1.0) } else { 0.0 };
    let real = scale * o as f32;
    let i0 = real.floor();
    let t = (real - i0).clamp(0.0, 1.0);
    let a = -0.75;
    (i0 as isize, [cubic2(t + 1.0, a), cubic1(t, a), cubic1(1.0 - t, a), cubic2(2.0 - t, a)])
}

/// `_resize_with_antialiasing(x, (out_h, out_w))` of diffusers' SVD pipeline on planar `[C, H, W]` float32.
pub fn antialias_resize(x: &[f32], c: usize, h: usize, w: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    let fy = h as f32 / out_h as f32;
    let fx = w as f32 / out_w as f32;
    let sy = ((fy - 1.0) / 2.0).max(0.001);
    let sx = ((fx - 1.0) / 2.0).max(0.001);
    let mut ky = (2.0 * 2.0 * sy).max(3.0) as usize;
    let mut kx = (2.0 * 2.0 * sx).max(3.0) as usize;
    if ky.is_multiple_of(2) {
        ky += 1;
    }
    if kx.is_multiple_of(2) {
        kx += 1;
    }
    let (gx, gy) = (gaussian_kernel(kx, sx), gaussian_kernel(ky, sy));
    let mut bx = vec![0f32; c * h * w];
    for ch in 0..c {
        for y in 0..h {
            for xx in 0..w {
                let mut s = 0f32;
                for (t, &g) in gx.iter().enumerate() {
                    let xi = reflect(xx as isize + t as isize - (kx / 2) as isize, w);
                    s += g * x[(ch * h + y) * w + xi];
                }
                bx[(ch * h + y) * w + xx] = s;
            }
        }
    }
    let mut b = vec![0f32; c * h * w];
    for ch in 0..c {
        for y in 0..h {
            for xx in 0..w {
                let mut s = 0f32;
                for (t, &g) in gy.iter().enumerate() {
                    let yi = reflect(y as isize + t as isize - (ky / 2) as isize, h);
                    s += g * bx[(ch * h + yi) * w + xx];
                }
                b[(ch * h + y) * w + xx] = s;
            }
        }
    }
    let tx: Vec<(isize, [f32; 4])> = (0..out_w).map(|o| bicubic_taps(o, w, out_w)).collect();
    let ty: Vec<(isize, [f32; 4])> = (0..out_h).map(|o| bicubic_taps(o, h, out_h)).collect();
    let clampi = |i: isize, n: usize| i.clamp(0, n as isize - 1) as usize;
    let mut out = vec![0f32; c * out_h * out_w];
    for ch in 0..c {
        for (oy, (y0, wy)) in ty.iter().enumerate() {
            for (ox, (x0, wx)) in tx.iter().enumerate() {
                let mut acc = 0f32;
                for (j, &wyj) in wy.iter().enumerate() {
                    let yi = clampi(y0 - 1 + j as isize, h);
                    let row = &b[(ch * h + yi) * w..(ch * h + yi + 1) * w];
                    let mut r = 0f32;
                    for (i, &wxi) in wx.iter().enumerate() {
                        r += wxi * row[clampi(x0 - 1 + i as isize, w)];
                    }
                    acc += wyj * r;
                }
                out[(ch * out_h + oy) * out_w + ox] = acc;
            }
        }
    }
    out
}
