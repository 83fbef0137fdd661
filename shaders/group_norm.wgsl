// Group normalisation in three steps, so tensors of any size work by windows.
// sg8 tier (`gn_stats`, `gn_finalize`, `gn_apply`):
//   gn_stats:    one workgroup per (row, group) segment of C/G·HW contiguous elements: count, mean and M2
//                (sum of squared deviations, two passes over the segment: no E[x²]−E[x]² cancellation);
//   gn_finalize: per (sample, group), Chan's combination of the `frames` segments of that sample (1 for
//                per-frame statistics, F for SVD's temporal res-blocks) → mean and 1/sqrt(var + eps);
//   gn_apply:    y = (x − mean)·rstd·γ[c] + β[c], optionally followed by SiLU.
// gpu tier (`gn_stats_wg`, `gn_finalize_wg`, `gn_apply_wg`; vec4 forms in group_norm_vec4.wgsl):
//   gn_stats_wg:    one workgroup per chunk of `chunk` elements of a segment (many workgroups per segment, so a
//                   few huge groups still fill the GPU): (count, x₀, mean of x − x₀, M2), two passes over the
//                   chunk (it stays in cache), x₀ = the chunk's first element (shifted sums keep the digits of
//                   data with a large mean and a small spread);
//   gn_finalize_wg: one workgroup per (sample, group): every invocation merges its share of the chunks with
//                   Chan's update (means relative to the first chunk's x₀), then a workgroup tree merge →
//                   (x₀, mean of x − x₀, rstd);
//   gn_apply_wg:    y = ((x − x₀) − mean)·rstd·γ[c] + β[c], optionally SiLU.
alias T = f32;

#include "group_norm_params"

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>;   // sg8: [segments, 2] mean, M2; gpu: [chunks, 4] count, x₀, mean(x − x₀), M2
@group(0) @binding(3) var<storage, read_write> stats: array<f32>;  // sg8: [samples·G, 2] mean, rstd; gpu: [samples·G, 4] x₀, mean(x − x₀), rstd, count
@group(0) @binding(4) var<storage, read> stats_in: array<f32>;
@group(0) @binding(5) var<storage, read> gamma: array<T>;
@group(0) @binding(6) var<storage, read> beta: array<T>;
@group(0) @binding(7) var<storage, read_write> y: array<T>;

var<workgroup> red: array<f32, WG>;

#include "norms"

fn reduce(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    var s = WG / 2u;
    while (s > 0u) {
        if (lid < s) { red[lid] += red[lid + s]; }
        workgroupBarrier();
        s = s / 2u;
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(WG)
fn gn_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let seg = wid.x + wid.y * nwg.x;     // uniform per workgroup
    if (seg >= p.n) { return; }
    let start = p.base_x + seg * p.seg_len;
    var s = 0.0;
    for (var i = lid; i < p.seg_len; i += WG) { s += f32(x[start + i]); }
    let mean = reduce(lid, s) / f32(p.seg_len);
    var q = 0.0;
    for (var i = lid; i < p.seg_len; i += WG) {
        let d = f32(x[start + i]) - mean;
        q += d * d;
    }
    let m2 = reduce(lid, q);
    if (lid == 0u) {
        let o = (p.first + seg) * 2u;
        part[o] = mean;
        part[o + 1u] = m2;
    }
}

@compute @workgroup_size(WG)
fn gn_finalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;   // (sample, group)
    if (i >= p.n) { return; }
    let sample = i / p.groups;
    let g = i % p.groups;
    var cnt = 0.0;
    var mean = 0.0;
    var m2 = 0.0;
    let nb = f32(p.seg_len);
    for (var f = 0u; f < p.frames; f++) {
        let o = ((sample * p.frames + f) * p.groups + g) * 2u;
        let mb = part[o];
        let tot = cnt + nb;
        let d = mb - mean;
        mean += d * nb / tot;
        m2 += part[o + 1u] + d * d * cnt * nb / tot;
        cnt = tot;
    }
    stats[i * 2u] = mean;
    stats[i * 2u + 1u] = inverseSqrt(m2 / cnt + p.eps);
}

@compute @workgroup_size(WG)
fn gn_apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= p.n) { return; }
    let per_row = p.channels * p.hw;
    let gi = p.first + i;
    let row = gi / per_row;
    let c = (gi % per_row) / p.hw;
    let g = c / (p.channels / p.groups);
    let si = ((row / p.frames) * p.groups + g) * 2u;
    var v = (f32(x[p.base_x + i]) - stats_in[si]) * stats_in[si + 1u] * f32(gamma[c]) + f32(beta[c]);
    if (p.silu != 0u) { v = v / (1.0 + exp(-v)); }
    y[p.base_y + i] = T(v);
}

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
