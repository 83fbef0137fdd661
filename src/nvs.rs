//! NVS-solver guidance schedule: the λ table of the official `search_hypers`
//! (docs/reference/nvs-guidance.md §5), reproduced by running the same search over the same grid.

/// Frames of the official schedule (SVD-xt).
pub const FRAMES: usize = 25;

/// The search's result: the chosen (v1, v2, v3) and the table `λ/(1+λ)` of shape (steps, frames).
#[derive(Clone, Debug, PartialEq)]
pub struct LambdaTable {
    /// Chosen hyper-parameters.
    pub params: (f64, f64, f64),
    /// `table[step][τ]`.
    pub table: Vec<Vec<f64>>,
}

/// One root of the official (not self-consistent) quadratic; `None` if its discriminant is negative.
fn root(v: f64, q: f64, plus: bool) -> Option<f64> {
    let (k, b) = (0.8f64, -0.2f64);
    let disc = (2.0 * k * v + k * q).powi(2) - 4.0 * k * v * (k * v + q * b);
    if disc < 0.0 || disc.is_nan() {
        return None;
    }
    let s = disc.sqrt();
    let num = if plus { -(2.0 * v + k * q) + s } else { -(2.0 * v + k * q) - s };
    Some(num / (2.0 * k * v))
}

fn entry(v1: f64, q: f64) -> Option<f64> {
    let big = |r: Option<f64>| r.filter(|&x| x > 1.0);
    let small = |r: Option<f64>| r.filter(|&x| x > 0.0 && x <= 1.0);
    let lam = big(root(v1, q, true))
        .or_else(|| big(root(v1, q, false)))
        .or_else(|| small(root(-v1, q, true)))
        .or_else(|| small(root(-v1, q, false)))?;
    Some(lam / (1.0 + lam))
}

fn candidate(sigma_n: &[f64], v1: f64, v2: f64, v3: f64, frames: usize) -> Option<Vec<Vec<f64>>> {
    sigma_n
        .iter()
        .map(|&s| {
            (0..frames)
                .map(|tau| {
                    if tau == 0 {
                        Some(1.0)
                    } else {
                        entry(v1, v3 * (tau as f64 / (frames - 1) as f64) - v2 * s)
                    }
                })
                .collect()
        })
        .collect()
}

/// Runs the official search for the sigmas of a schedule (without the final 0) and `frames` frames.
/// Returns `None` if no candidate of the grid is admissible (never for SVD's schedules).
pub fn search(sigmas: &[f64], frames: usize) -> Option<LambdaTable> {
    if sigmas.is_empty() || frames < 2 {
        return None;
    }
    let max = sigmas.iter().cloned().fold(f64::MIN, f64::max);
    let sigma_n: Vec<f64> = sigmas.iter().map(|s| s / max).collect();
    // np.linspace(0.001, 0.009, 9): start + i·step.
    let step = (0.009 - 0.001) / 8.0;
    let mut best: Option<(usize, LambdaTable)> = None;
    for i in 0..9 {
        let v1 = 0.001 + i as f64 * step;
        for v2 in (1..=20).map(|j| 50.0 * j as f64) {
            for v3 in (1..=10).map(|j| 10.0 * j as f64) {
                if let Some(t) = candidate(&sigma_n, v1, v2, v3, frames) {
                    let score = t.iter().flatten().filter(|&&x| x > 0.5).count();
                    if best.as_ref().is_none_or(|(b, _)| score > *b) {
                        best = Some((score, LambdaTable { params: (v1, v2, v3), table: t }));
                    }
                }
            }
        }
    }
    best.map(|(_, t)| t)
}
