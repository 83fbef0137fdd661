// Layer normalisation over the last dimension: y = (x − mean)/sqrt(var + eps)·γ + β, biased variance,
// two passes for the statistics. Both variants shift the row by its first element before summing, so a large
// mean with a small spread keeps its digits (the sums are over x − x₀, exact near x₀, and the output is
// ((x − x₀) − mean(x − x₀))·rstd; unshifted, 1000 ± 0.05 in f32 lost up to 1.4e-2 of the output).
// `layer_norm` (sg8 tier): one invocation per row (rows are many and short in SVD: tokens × C ≤ 5120).
// `layer_norm_wg` (gpu tier): one workgroup per row, strided coalesced loads, workgroup-wide sums.
alias T = f32;

#include "rows_params"

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> gamma: array<T>;
@group(0) @binding(3) var<storage, read> beta: array<T>;
@group(0) @binding(4) var<storage, read_write> y: array<T>;

#include "norms"

@compute @workgroup_size(WG)
fn layer_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let r = (wid.x + wid.y * nwg.x) * WG + lid;
    if (r >= p.rows) { return; }
    let xo = p.base_x + r * p.c;
    let yo = p.base_y + r * p.c;
    let x0 = f32(x[xo]);
    var s = 0.0;
    for (var i = 0u; i < p.c; i++) { s += f32(x[xo + i]) - x0; }
    let mean = s / f32(p.c);   // of x − x₀
    var q = 0.0;
    for (var i = 0u; i < p.c; i++) {
        let d = (f32(x[xo + i]) - x0) - mean;
        q += d * d;
    }
    let rstd = inverseSqrt(q / f32(p.c) + p.f);
    for (var i = 0u; i < p.c; i++) {
        var v = ((f32(x[xo + i]) - x0) - mean) * rstd;
        if (p.affine != 0u) { v = v * f32(gamma[i]) + f32(beta[i]); }
        y[yo + i] = T(v);
    }
}

@compute @workgroup_size(WG)
fn layer_norm_wg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let r = wid.x + wid.y * nwg.x;   // uniform per workgroup
    if (r >= p.rows) { return; }
    let xo = p.base_x + r * p.c;
    let yo = p.base_y + r * p.c;
    let x0 = f32(x[xo]);
    var s = 0.0;
    for (var i = lid; i < p.c; i += WG) { s += f32(x[xo + i]) - x0; }
    let mean = wg_sum(lid, s) / f32(p.c);   // of x − x₀
    var q = 0.0;
    for (var i = lid; i < p.c; i += WG) {
        let d = (f32(x[xo + i]) - x0) - mean;
        q += d * d;
    }
    let rstd = inverseSqrt(wg_sum(lid, q) / f32(p.c) + p.f);
    for (var i = lid; i < p.c; i += WG) {
        var v = ((f32(x[xo + i]) - x0) - mean) * rstd;
        if (p.affine != 0u) { v = v * f32(gamma[i]) + f32(beta[i]); }
        y[yo + i] = T(v);
    }
}
