// Softmax over the last dimension of scale·x, with the row maximum subtracted before exp.
// `softmax` (sg8 tier): one invocation per row.
// `softmax_wg` (gpu tier): one workgroup per row; each invocation keeps a running (max, sum) over its strided
// elements, the workgroup combines them (max, then the rescaled sums), and a second pass writes.
alias T = f32;

#include "rows_params"

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;

#include "norms"

const NEG_MAX: f32 = -3.4028234e38;

@compute @workgroup_size(WG)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let r = (wid.x + wid.y * nwg.x) * WG + lid;
    if (r >= p.rows) { return; }
    let xo = p.base_x + r * p.c;
    let yo = p.base_y + r * p.c;
    var m = NEG_MAX;
    for (var i = 0u; i < p.c; i++) { m = max(m, f32(x[xo + i]) * p.f); }
    var s = 0.0;
    for (var i = 0u; i < p.c; i++) { s += exp(f32(x[xo + i]) * p.f - m); }
    let inv = 1.0 / s;
    for (var i = 0u; i < p.c; i++) { y[yo + i] = T(exp(f32(x[xo + i]) * p.f - m) * inv); }
}

@compute @workgroup_size(WG)
fn softmax_wg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let r = wid.x + wid.y * nwg.x;   // uniform per workgroup
    if (r >= p.rows) { return; }
    let xo = p.base_x + r * p.c;
    let yo = p.base_y + r * p.c;
    var m = NEG_MAX;
    var s = 0.0;
    for (var i = lid; i < p.c; i += WG) {
        let v = f32(x[xo + i]) * p.f;
        if (v > m) {
            s = s * exp(m - v) + 1.0;
            m = v;
        } else {
            s += exp(v - m);
        }
    }
    let mx = wg_max(lid, m);
    let inv = 1.0 / wg_sum(lid, s * exp(m - mx));
    for (var i = lid; i < p.c; i += WG) { y[yo + i] = T(exp(f32(x[xo + i]) * p.f - mx) * inv); }
}
