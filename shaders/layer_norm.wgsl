// Layer normalisation over the last dimension: y = (x − mean)/sqrt(var + eps)·γ + β, biased variance,
// two passes for the statistics. One invocation per row (rows are many and short in SVD: tokens × C ≤ 5120).
alias T = f32;

struct Params {
    rows: u32,
    c: u32,
    base_x: u32,
    base_y: u32,
    eps: f32,
    affine: u32,
    _pad0: u32,
    _pad1: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> gamma: array<T>;
@group(0) @binding(3) var<storage, read> beta: array<T>;
@group(0) @binding(4) var<storage, read_write> y: array<T>;

@compute @workgroup_size(WG)
fn layer_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let r = (wid.x + wid.y * nwg.x) * WG + lid;
    if (r >= p.rows) { return; }
    let xo = p.base_x + r * p.c;
    let yo = p.base_y + r * p.c;
    var s = 0.0;
    for (var i = 0u; i < p.c; i++) { s += f32(x[xo + i]); }
    let mean = s / f32(p.c);
    var q = 0.0;
    for (var i = 0u; i < p.c; i++) {
        let d = f32(x[xo + i]) - mean;
        q += d * d;
    }
    let rstd = inverseSqrt(q / f32(p.c) + p.eps);
    for (var i = 0u; i < p.c; i++) {
        var v = (f32(x[xo + i]) - mean) * rstd;
        if (p.affine != 0u) { v = v * f32(gamma[i]) + f32(beta[i]); }
        y[yo + i] = T(v);
    }
}
