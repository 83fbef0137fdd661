//! Float64 references: a literal port of the released processor and the efficient formulation (dense
//! projections, gathered rows, head outputs averaged onto the grid before the output projection).

use super::{check, Call, Weights};
use crate::error::Result;

/// `y[r, :] = x[r, :] · Wᵀ` for rows of width `c`.
fn project(x: &[f64], wt: &[f64], c: usize) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    for (yr, xr) in y.chunks_mut(c).zip(x.chunks(c)) {
        for (o, yv) in yr.iter_mut().enumerate() {
            *yv = (0..c).map(|i| xr[i] * wt[o * c + i]).sum();
        }
    }
    y
}

/// Attention within consecutive sequences of `l` tokens (rows of width `c`, `heads` heads, scale 1/√d).
fn attend(q: &[f64], k: &[f64], v: &[f64], l: usize, c: usize, heads: usize) -> Vec<f64> {
    let d = c / heads;
    let scale = 1.0 / (d as f64).sqrt();
    let mut out = vec![0.0; q.len()];
    for s0 in (0..q.len() / c).step_by(l) {
        for hd in 0..heads {
            for i in 0..l {
                let qi = &q[(s0 + i) * c + hd * d..(s0 + i) * c + hd * d + d];
                let logits: Vec<f64> = (0..l)
                    .map(|j| {
                        qi.iter().zip(&k[(s0 + j) * c + hd * d..]).map(|(a, b)| a * b).sum::<f64>() * scale
                    })
                    .collect();
                let mx = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = logits.iter().map(|x| (x - mx).exp()).collect();
                let sum: f64 = e.iter().sum();
                for (j, ej) in e.iter().enumerate() {
                    for t in 0..d {
                        out[(s0 + i) * c + hd * d + t] += ej / sum * v[(s0 + j) * c + hd * d + t];
                    }
                }
            }
        }
    }
    out
}

/// Clamped integer cells `(F, M)` of the sampled trajectories at this level, and their visibility.
pub fn cells(call: &Call) -> (Vec<(usize, usize)>, Vec<bool>) {
    let (f, n, m) = (call.f, call.n, call.idx.len());
    let (sx, sy) = (call.w as f64 / call.origin_w as f64, call.h as f64 / call.origin_h as f64);
    let mut cell = Vec::with_capacity(f * m);
    let mut valid = Vec::with_capacity(f * m);
    for fr in 0..f {
        for &i in call.idx {
            let (x, y) = (call.traj[2 * (fr * n + i)] * sx, call.traj[2 * (fr * n + i) + 1] * sy);
            let xi = (x.trunc() as i64).clamp(0, call.w as i64 - 1) as usize;
            let yi = (y.trunc() as i64).clamp(0, call.h as i64 - 1) as usize;
            cell.push((yi, xi));
            valid.push(call.mask[fr * n + i]);
        }
    }
    (cell, valid)
}

/// The released processor, step by step (docs/reference/trajectory-attention.md §5): gather, project, attend, out-project, scatter-mean.
/// Returns `(B·S, F, C)`.
pub fn literal(call: &Call, wts: &Weights) -> Result<Vec<f64>> {
    let l = check(call)?;
    let Call { b, h, w, f, c, .. } = *call;
    let (s, m) = (h * w, call.idx.len());
    let (cell, valid) = cells(call);
    // G (B, M, F, C), invalid tokens zero.
    let mut g = vec![0.0; b * m * f * c];
    for bi in 0..b {
        for mi in 0..m {
            for fr in 0..f {
                if !valid[fr * m + mi] {
                    continue;
                }
                let (yi, xi) = cell[fr * m + mi];
                let src = ((bi * s + yi * w + xi) * f + fr) * c;
                let dst = ((bi * m + mi) * f + fr) * c;
                g[dst..dst + c].copy_from_slice(&call.hidden[src..src + c]);
            }
        }
    }
    let (q, k, v) = (project(&g, wts.wq, c), project(&g, wts.wk, c), project(&g, wts.wv, c));
    let a = attend(&q, &k, &v, l, c, call.heads);
    let mut o = project(&a, wts.wo, c);
    for row in o.chunks_mut(c) {
        for (x, bias) in row.iter_mut().zip(wts.bo) {
            *x += bias;
        }
    }
    let mut acc = vec![0.0; b * f * s * c];
    let mut cnt = vec![0.0; b * f * s];
    for bi in 0..b {
        for fr in 0..f {
            for mi in 0..m {
                if !valid[fr * m + mi] {
                    continue;
                }
                let (yi, xi) = cell[fr * m + mi];
                let cidx = (bi * f + fr) * s + yi * w + xi;
                cnt[cidx] += 1.0;
                let src = ((bi * m + mi) * f + fr) * c;
                for t in 0..c {
                    acc[cidx * c + t] += o[src + t];
                }
            }
        }
    }
    let mut out = vec![0.0; b * s * f * c];
    for bi in 0..b {
        for fr in 0..f {
            for p in 0..s {
                let cidx = (bi * f + fr) * s + p;
                if cnt[cidx] > 0.0 {
                    for t in 0..c {
                        out[((bi * s + p) * f + fr) * c + t] = acc[cidx * c + t] / cnt[cidx];
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The efficient formulation (docs/reference/trajectory-attention.md §8): dense Q/K/V of every grid token, rows gathered per sample (zero if
/// invisible), head outputs averaged onto the grid through a per-cell list of hits in increasing sample order,
/// then one output projection per reached cell. Equal to [`literal`] in exact arithmetic.
pub fn efficient(call: &Call, wts: &Weights) -> Result<Vec<f64>> {
    let l = check(call)?;
    let Call { b, h, w, f, c, .. } = *call;
    let (s, m) = (h * w, call.idx.len());
    let (cell, valid) = cells(call);
    let (qd, kd, vd) =
        (project(call.hidden, wts.wq, c), project(call.hidden, wts.wk, c), project(call.hidden, wts.wv, c));
    let gather = |dense: &[f64]| {
        let mut g = vec![0.0; b * m * f * c];
        for bi in 0..b {
            for mi in 0..m {
                for fr in 0..f {
                    if valid[fr * m + mi] {
                        let (yi, xi) = cell[fr * m + mi];
                        let src = ((bi * s + yi * w + xi) * f + fr) * c;
                        let dst = ((bi * m + mi) * f + fr) * c;
                        g[dst..dst + c].copy_from_slice(&dense[src..src + c]);
                    }
                }
            }
        }
        g
    };
    let a = attend(&gather(&qd), &gather(&kd), &gather(&vd), l, c, call.heads);
    // Inverse map: for each (f, cell), the samples that land there, in increasing m.
    let mut hits: Vec<Vec<usize>> = vec![Vec::new(); f * s];
    for fr in 0..f {
        for mi in 0..m {
            if valid[fr * m + mi] {
                let (yi, xi) = cell[fr * m + mi];
                hits[fr * s + yi * w + xi].push(mi);
            }
        }
    }
    let mut out = vec![0.0; b * s * f * c];
    let mut mean = vec![0.0; c];
    for bi in 0..b {
        for fr in 0..f {
            for p in 0..s {
                let list = &hits[fr * s + p];
                if list.is_empty() {
                    continue;
                }
                mean.iter_mut().for_each(|x| *x = 0.0);
                for &mi in list {
                    let src = ((bi * m + mi) * f + fr) * c;
                    for t in 0..c {
                        mean[t] += a[src + t];
                    }
                }
                let dst = ((bi * s + p) * f + fr) * c;
                for o in 0..c {
                    let dotv: f64 = (0..c).map(|i| mean[i] / list.len() as f64 * wts.wo[o * c + i]).sum();
                    out[dst + o] = dotv + wts.bo[o];
                }
            }
        }
    }
    Ok(out)
}
