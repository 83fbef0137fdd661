// Group normalisation in three steps, so tensors of any size work by windows (vec4 forms of the first and
// last in group_norm_vec4.wgsl; every tier runs these: on lavapipe they beat the former one-workgroup-per-segment
// kernels by 1.2-1.8x, BENCHMARKS.md):
//   gn_stats_wg:    one workgroup per chunk of `chunk` elements of a (row, group) segment (many workgroups per
//                   segment, so a few huge groups still fill the GPU): (count, x₀, mean of x − x₀, M2), two
//                   passes over the chunk (it stays in cache: no E[x²]−E[x]² cancellation), x₀ = the chunk's
//                   first element (shifted sums keep the digits of data with a large mean and a small spread);
//   gn_finalize_wg: one workgroup per (sample, group): every invocation merges its share of the chunks of the
//                   sample's `frames` segments (1 for per-frame statistics, F for SVD's temporal res-blocks)
//                   with Chan's update, means taken relative to the first chunk's x₀, then a workgroup tree
//                   merge → (x₀, mean of x − x₀, 1/sqrt(var + eps));
//   gn_apply_wg:    y = ((x − x₀) − mean)·rstd·γ[c] + β[c], optionally followed by SiLU.
alias T = f32;

#include "group_norm_params"

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>;   // [chunks, 4]: count, x₀, mean(x − x₀), M2
@group(0) @binding(3) var<storage, read_write> stats: array<f32>;  // [samples·G, 4]: x₀, mean(x − x₀), rstd, count
@group(0) @binding(4) var<storage, read> stats_in: array<f32>;
@group(0) @binding(5) var<storage, read> gamma: array<T>;
@group(0) @binding(6) var<storage, read> beta: array<T>;
@group(0) @binding(7) var<storage, read_write> y: array<T>;

#include "norms"

@compute @workgroup_size(WG)
fn gn_stats_wg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let j = wid.x + wid.y * nwg.x;       // chunk of this dispatch, uniform per workgroup
    if (j >= p.n) { return; }
    let k = j % p.splits;
    let start = p.base_x + (j / p.splits) * p.seg_len + k * p.chunk;
    let len = min(p.chunk, p.seg_len - k * p.chunk);
    let x0 = f32(x[start]);
    var s = 0.0;
    for (var i = lid; i < len; i += WG) { s += f32(x[start + i]) - x0; }
    let mean = wg_sum(lid, s) / f32(len);
    var q = 0.0;
    for (var i = lid; i < len; i += WG) {
        let d = (f32(x[start + i]) - x0) - mean;
        q += d * d;
    }
    let m2 = wg_sum(lid, q);
    if (lid == 0u) {
        let o = (p.first + j) * 4u;
        part[o] = f32(len);
        part[o + 1u] = x0;
        part[o + 2u] = mean;
        part[o + 3u] = m2;
    }
}

@compute @workgroup_size(WG)
fn gn_finalize_wg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = wid.x + wid.y * nwg.x;       // (sample, group), uniform per workgroup
    if (i >= p.n) { return; }
    let sample = i / p.groups;
    let g = i % p.groups;
    let first_seg = sample * p.frames * p.groups + g;
    let x0 = part[first_seg * p.splits * 4u + 1u];
    var acc = vec3<f32>(0.0);
    let total = p.frames * p.splits;
    for (var t = lid; t < total; t += WG) {
        let seg = first_seg + (t / p.splits) * p.groups;
        let o = (seg * p.splits + t % p.splits) * 4u;
        acc = chan_merge(acc, vec3<f32>(part[o], (part[o + 1u] - x0) + part[o + 2u], part[o + 3u]));
    }
    let r = wg_chan(lid, acc);
    if (lid == 0u) {
        stats[i * 4u] = x0;
        stats[i * 4u + 1u] = r.y;
        stats[i * 4u + 2u] = inverseSqrt(r.z / r.x + p.eps);
        stats[i * 4u + 3u] = r.x;
    }
}

@compute @workgroup_size(WG)
fn gn_apply_wg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= p.n) { return; }
    let per_row = p.channels * p.hw;
    let gi = p.first + i;
    let row = gi / per_row;
    let c = (gi % per_row) / p.hw;
    let g = c / (p.channels / p.groups);
    let si = ((row / p.frames) * p.groups + g) * 4u;
    var v = ((f32(x[p.base_x + i]) - stats_in[si]) - stats_in[si + 1u]) * stats_in[si + 2u];
    v = v * f32(gamma[c]) + f32(beta[c]);
    if (p.silu != 0u) { v = v / (1.0 + exp(-v)); }
    y[p.base_y + i] = T(v);
}
