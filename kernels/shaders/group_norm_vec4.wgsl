// Group norm with vec4 loads and stores: the chunk statistics and the apply pass of group_norm.wgsl
// (`gn_stats_wg`, `gn_apply_wg`) for tensors whose segment length, chunk, spatial size H·W and window bases are
// multiples of 4 (the launcher checks), so the 4 elements of a vec4 share a segment and a channel. Same Params,
// same part/stats layouts; `gn_finalize_wg` of group_norm.wgsl combines the chunks.
alias T = f32;

#include "group_norm_params"

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<T>>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>;   // [chunks, 4]: count, x₀, mean(x − x₀), M2
@group(0) @binding(4) var<storage, read> stats_in: array<f32>;    // [samples·G, 4]: x₀, mean(x − x₀), rstd, count
@group(0) @binding(5) var<storage, read> gamma: array<T>;
@group(0) @binding(6) var<storage, read> beta: array<T>;
@group(0) @binding(7) var<storage, read_write> y: array<vec4<T>>;

#include "norms"

@compute @workgroup_size(WG)
fn gn_stats_wg4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let j = wid.x + wid.y * nwg.x;       // chunk of this dispatch, uniform per workgroup
    if (j >= p.n) { return; }
    let k = j % p.splits;
    let start = (p.base_x + (j / p.splits) * p.seg_len + k * p.chunk) / 4u;
    let len = min(p.chunk, p.seg_len - k * p.chunk);
    let len4 = len / 4u;
    let x0 = f32(x[start].x);
    var s = vec4<f32>(0.0);
    for (var i = lid; i < len4; i += WG) { s += vec4<f32>(x[start + i]) - x0; }
    let mean = wg_sum(lid, s.x + s.y + s.z + s.w) / f32(len);
    var q = vec4<f32>(0.0);
    for (var i = lid; i < len4; i += WG) {
        let d = (vec4<f32>(x[start + i]) - x0) - mean;
        q += d * d;
    }
    let m2 = wg_sum(lid, q.x + q.y + q.z + q.w);
    if (lid == 0u) {
        let o = (p.first + j) * 4u;
        part[o] = f32(len);
        part[o + 1u] = x0;
        part[o + 2u] = mean;
        part[o + 3u] = m2;
    }
}

@compute @workgroup_size(WG)
fn gn_apply_wg4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;   // vec4 index in this dispatch
    if (i >= p.n / 4u) { return; }
    let per_row = p.channels * p.hw;
    let gi = p.first + i * 4u;
    let row = gi / per_row;
    let c = (gi % per_row) / p.hw;
    let g = c / (p.channels / p.groups);
    let si = ((row / p.frames) * p.groups + g) * 4u;
    let a = stats_in[si + 2u] * f32(gamma[c]);
    var v = ((vec4<f32>(x[p.base_x / 4u + i]) - stats_in[si]) - stats_in[si + 1u]) * a + f32(beta[c]);
    if (p.silu != 0u) { v = v / (1.0 + exp(-v)); }
    y[p.base_y / 4u + i] = vec4<T>(v);
}
