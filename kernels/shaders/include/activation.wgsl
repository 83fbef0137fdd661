// Shared activation helpers (one source; expanded by the loader wherever a shader writes
// `#include "activation"`).

// erfc(z) for z >= 0 with relative error < 1.2e-7 (Chebyshev-fitted exponent form). GELU uses erfc
// directly for negative inputs, so 1 + erf(x) never cancels (A&S 7.1.26 lost up to 5% relative there).
fn erfc_pos(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    return t * exp(-z * z + p);
}

// Exact GELU, 0.5·x·(1 + erf(x/√2)).
fn gelu_erf(v: f32) -> f32 {
    let e = erfc_pos(abs(v) * 0.70710678118654752);
    return 0.5 * v * select(2.0 - e, e, v < 0.0);
}

// Tanh-approximated GELU.
fn gelu_tanh(v: f32) -> f32 {
    let u = 0.7978845608028654 * (v + 0.044715 * v * v * v);
    return 0.5 * v * (1.0 + tanh(clamp(u, -15.0, 15.0)));
}

// SiLU, x·sigmoid(x).
fn silu(v: f32) -> f32 {
    return v / (1.0 + exp(-v));
}

// The GEMM epilogue activation by code: 0 none, 1 SiLU, 2 GELU (erf), 3 GELU (tanh).
fn activate(v: f32, act: u32) -> f32 {
    switch act {
        case 1u: { return silu(v); }
        case 2u: { return gelu_erf(v); }
        case 3u: { return gelu_tanh(v); }
        default: { return v; }
    }
}
