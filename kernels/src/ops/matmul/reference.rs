//! Float64 reference.

use super::{Epilogue, WLayout};
use crate::ops::activation::{gelu, gelu_tanh, silu};

/// Exact GELU / SiLU / tanh-GELU in f64.
pub fn activate(v: f64, act: Epilogue) -> f64 {
    match act {
        Epilogue::None => v,
        Epilogue::Silu => silu(v),
        Epilogue::GeluErf => gelu(v),
        // GEGLU pairs columns: applied by `matmul` after the sums.
        Epilogue::Geglu => v,
        Epilogue::GeluTanh => gelu_tanh(v),
    }
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
