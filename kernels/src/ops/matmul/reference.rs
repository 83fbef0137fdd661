//! Float64 reference.

use super::{Epilogue, WLayout};

/// Exact GELU / SiLU / tanh-GELU in f64.
pub fn activate(v: f64, act: Epilogue) -> f64 {
    match act {
        Epilogue::None => v,
        Epilogue::Silu => v / (1.0 + (-v).exp()),
        Epilogue::GeluErf => 0.5 * v * (1.0 + erf(v / std::f64::consts::SQRT_2)),
        // GEGLU pairs columns: applied by `matmul` after the sums.
        Epilogue::Geglu => v,
        Epilogue::GeluTanh => {
            let u = (2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v);
            0.5 * v * (1.0 + u.tanh())
        }
    }
}

/// erf to ~1e-15 (series below 3, continued fraction of erfc above).
pub fn erf(x: f64) -> f64 {
    let a = x.abs();
    let r = if a < 3.0 {
        // Maclaurin series: erf(x) = 2/√π Σ (-1)^n x^(2n+1) / (n! (2n+1)).
        let mut term = a;
        let mut sum = a;
        let x2 = a * a;
        let mut n = 0.0;
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -x2 / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc(x) = exp(-x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...)))).
        let mut f = a;
        for i in (1..60).rev() {
            f = a + (i as f64 / 2.0) / f;
        }
        1.0 - (-a * a).exp() / (std::f64::consts::PI.sqrt() * f)
    };
    r.copysign(x)
}

/// `y[b, m, n] = act(Σ_k x[b, m, k] w[b, n, k] + bias[n])`, `wb` = 1 for a shared weight. With
/// [`Epilogue::Geglu`] the result is `[batch, m, n/2]`: `y[.., j] = s[.., j] · GELU(s[.., n/2 + j])`.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    x: &[f64],
    w: &[f64],
    layout: WLayout,
    bias: Option<&[f64]>,
    act: Epilogue,
    batch: usize,
    wb: usize,
    m: usize,
    n: usize,
    k: usize,
) -> Vec<f64> {
    let mut y = vec![0.0; batch * m * n];
    for b in 0..batch {
        let wo = if wb > 1 { b * n * k } else { 0 };
        for i in 0..m {
            let xr = &x[(b * m + i) * k..(b * m + i + 1) * k];
            for j in 0..n {
                let mut s = 0.0;
                for (kk, xv) in xr.iter().enumerate() {
                    let wv = match layout {
                        WLayout::NK => w[wo + j * k + kk],
                        WLayout::KN => w[wo + kk * n + j],
                    };
                    s += xv * wv;
                }
                if let Some(bv) = bias {
                    s += bv[j];
                }
                y[(b * m + i) * n + j] = activate(s, act);
            }
        }
    }
    if act == Epilogue::Geglu {
        let h = n / 2;
        return (0..batch * m)
            .flat_map(|r| {
                let row = &y[r * n..(r + 1) * n];
                (0..h).map(move |j| row[j] * activate(row[h + j], Epilogue::GeluErf))
            })
            .collect();
    }
    y
}
