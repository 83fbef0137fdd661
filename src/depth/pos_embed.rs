//! DINOv2's position-embedding resize (docs/reference/depth-anything-v2.md §4.2): PyTorch's bicubic `F.interpolate` with a
//! scale factor `(g + 0.1)/37` per axis (`align_corners=False`, no antialias), replicated in f32 on the host at
//! the operation order of PyTorch's CPU kernel. Small (37×37×D in, gh×gw×D out), so it never needs the GPU.

const A: f32 = -0.75;

fn cubic1(x: f32) -> f32 {
    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
}

fn cubic2(x: f32) -> f32 {
    ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
}

/// Source taps and weights of output `o` on an axis of `n` inputs, coordinate step `r` (f32 `1/scale`).
fn taps(o: usize, n: usize, r: f32) -> ([usize; 4], [f32; 4]) {
    let src = r * (o as f32 + 0.5) - 0.5;
    let i0 = src.floor();
    let t = src - i0;
    let x2 = 1.0 - t;
    let w = [cubic2(t + 1.0), cubic1(t), cubic1(x2), cubic2(x2 + 1.0)];
    let i0 = i0 as i64;
    let idx = [0, 1, 2, 3].map(|k| (i0 - 1 + k).clamp(0, n as i64 - 1) as usize);
    (idx, w)
}

/// `pos'` for a `gh × gw` patch grid: `pos` is the `(1 + g·g) × d` table (row 0 = cls), the result
/// `(1 + gh·gw) × d`. The table is used unchanged only when the grid is exactly `g × g` (§4.2); otherwise the
/// grid part is resized with the +0.1 offset. `None` when the scale factor does not give the grid back (a
/// grid of 0 or an impossible size).
pub fn interpolate(pos: &[f32], g: usize, d: usize, gh: usize, gw: usize) -> Option<Vec<f32>> {
    if pos.len() != (1 + g * g) * d || gh == 0 || gw == 0 {
        return None;
    }
    if gh == g && gw == g {
        return Some(pos.to_vec());
    }
    let sy = (gh as f64 + 0.1) / g as f64;
    let sx = (gw as f64 + 0.1) / g as f64;
    if (g as f64 * sy).floor() as usize != gh || (g as f64 * sx).floor() as usize != gw {
        return None;
    }
    let (ry, rx) = ((1.0 / sy) as f32, (1.0 / sx) as f32);
    let grid = &pos[d..];
    let mut out = Vec::with_capacity((1 + gh * gw) * d);
    out.extend_from_slice(&pos[..d]);
    let xt: Vec<_> = (0..gw).map(|x| taps(x, g, rx)).collect();
    let mut rows = [0f32; 4];
    for y in 0..gh {
        let (iy, wy) = taps(y, g, ry);
        for (ix, wx) in &xt {
            for c in 0..d {
                for a in 0..4 {
                    let row = &grid[iy[a] * g * d..];
                    rows[a] = row[ix[0] * d + c] * wx[0]
                        + row[ix[1] * d + c] * wx[1]
                        + row[ix[2] * d + c] * wx[2]
                        + row[ix[3] * d + c] * wx[3];
                }
                out.push(rows[0] * wy[0] + rows[1] * wy[1] + rows[2] * wy[2] + rows[3] * wy[3]);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_grid_is_copied_and_taps_match_the_spec() {
        let g = 37;
        let pos: Vec<f32> = (0..(1 + g * g) * 2).map(|i| (i as f32 * 0.37).sin()).collect();
        assert_eq!(interpolate(&pos, g, 2, g, g).unwrap(), pos);
        // TA case: columns r = 0.55975795 (src 0 → −0.220121), rows r = 0.99730456.
        let rx = (1.0 / ((66.0 + 0.1) / 37.0)) as f32;
        assert!((rx - 0.559_757_95).abs() < 1e-7);
        let src0 = rx * 0.5 - 0.5;
        assert!((src0 + 0.220_121).abs() < 1e-6);
        // A constant grid stays constant (weights sum to 1).
        let c = vec![0.25f32; (1 + g * g) * 3];
        let out = interpolate(&c, g, 3, 10, 14).unwrap();
        assert_eq!(out.len(), (1 + 140) * 3);
        assert!(out.iter().all(|v| (v - 0.25).abs() < 1e-6));
        assert!(interpolate(&c, g, 3, 0, 14).is_none());
    }
}
