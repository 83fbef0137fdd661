// GPU-tier layer norm and softmax with vec4 loads and stores: `layer_norm.wgsl`'s `layer_norm_wg` and
// `softmax.wgsl`'s `softmax_wg` for rows whose length and window bases are multiples of 4 (the launcher checks).
// One workgroup per row; same Params, same arithmetic (shifted two-pass statistics; running max and sum).
alias T = f32;

#include "rows_params"

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<T>>;
@group(0) @binding(2) var<storage, read> gamma: array<vec4<T>>;
@group(0) @binding(3) var<storage, read> beta: array<vec4<T>>;
@group(0) @binding(4) var<storage, read_write> y: array<vec4<T>>;

#include "norms"

const NEG_MAX: f32 = -3.4028234e38;

@compute @workgroup_size(WG)
fn layer_norm_wg4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let r = wid.x + wid.y * nwg.x;   // uniform per workgroup
    if (r >= p.rows) { return; }
    let c4 = p.c / 4u;
    let xo = (p.base_x + r * p.c) / 4u;
    let yo = (p.base_y + r * p.c) / 4u;
    let x0 = vec4<f32>(f32(x[xo].x));
    var s = vec4<f32>(0.0);
    for (var i = lid; i < c4; i += WG) { s += vec4<f32>(x[xo + i]) - x0; }
    let mean = vec4<f32>(wg_sum(lid, s.x + s.y + s.z + s.w) / f32(p.c));   // of x − x₀
    var q = vec4<f32>(0.0);
    for (var i = lid; i < c4; i += WG) {
        let d = (vec4<f32>(x[xo + i]) - x0) - mean;
        q += d * d;
    }
    let rstd = inverseSqrt(wg_sum(lid, q.x + q.y + q.z + q.w) / f32(p.c) + p.f);
    for (var i = lid; i < c4; i += WG) {
        var v = ((vec4<f32>(x[xo + i]) - x0) - mean) * rstd;
        if (p.affine != 0u) { v = v * vec4<f32>(gamma[i]) + vec4<f32>(beta[i]); }
        y[yo + i] = vec4<T>(v);
    }
}

@compute @workgroup_size(WG)
fn softmax_wg4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let r = wid.x + wid.y * nwg.x;   // uniform per workgroup
    if (r >= p.rows) { return; }
    let c4 = p.c / 4u;
    let xo = (p.base_x + r * p.c) / 4u;
    let yo = (p.base_y + r * p.c) / 4u;
    var m = NEG_MAX;
    var s = 0.0;
    for (var i = lid; i < c4; i += WG) {
        let v = vec4<f32>(x[xo + i]) * p.f;
        let mv = max(max(v.x, v.y), max(v.z, v.w));
        if (mv > m) {
            s *= exp(m - mv);
            m = mv;
        }
        let e = exp(v - m);
        s += e.x + e.y + e.z + e.w;
    }
    let mx = wg_max(lid, m);
    let inv = 1.0 / wg_sum(lid, s * exp(m - mx));
    for (var i = lid; i < c4; i += WG) { y[yo + i] = vec4<T>(exp(vec4<f32>(x[xo + i]) * p.f - mx) * inv); }
}
