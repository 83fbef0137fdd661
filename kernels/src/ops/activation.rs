//! Float64 activations shared by the op references (the CPU side of `shaders/include/activation.wgsl`): a leaf
//! module, so that ops whose references use the same activation need not import each other.

/// x·sigmoid(x).
pub fn silu(v: f64) -> f64 {
    v / (1.0 + (-v).exp())
}

/// Exact GELU, 0.5·x·(1 + erf(x/√2)).
pub fn gelu(v: f64) -> f64 {
    0.5 * v * (1.0 + erf(v / std::f64::consts::SQRT_2))
}

/// GELU with the tanh approximation.
pub fn gelu_tanh(v: f64) -> f64 {
    let u = (2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v);
    0.5 * v * (1.0 + u.tanh())
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
