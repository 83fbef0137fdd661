// Temporal attention: many short sequences (F = 14 / 25 frames, 2F = 50 in the trajectory grouping), each
// attending within itself: o = softmax(scale · q kᵀ) v per (sequence, head). Sequence length L ≤ MAXL; all L
// scores of a query stay in registers (plain two-pass softmax, no rescaling needed).
//
// Strided Q/K/V rows as in flash_attention_fa2.wgsl: element (n, t, h, j) of X sits at
//   x_base + (n * L + t) * x_stride + h * D + j;  output dense (n, L, heads·D).
//
// A workgroup holds SPW sequences × LR lanes (LR = L rounded up to 8), lane = (sequence, query frame), so a
// subgroup of 8 lanes shares one sequence and K/V reads are uniform across it (broadcast loads on SIMD CPUs).
alias T = f32;

#include "temporal_params"

override D: u32 = 64u;   // head dim, multiple of 4, ≤ 4·MAXD4
override LR: u32 = 32u;  // lanes per sequence (L rounded up to 8)
override SPW: u32 = 2u;  // sequences per workgroup
const MAXD4: u32 = 32u;
const MAXL: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<T>;
@group(0) @binding(2) var<storage, read> k: array<T>;
@group(0) @binding(3) var<storage, read> v: array<T>;
@group(0) @binding(4) var<storage, read_write> o: array<T>;

fn ld4q(i: u32) -> vec4<f32> {
    return vec4<f32>(f32(q[i]), f32(q[i + 1u]), f32(q[i + 2u]), f32(q[i + 3u]));
}
fn ld4k(i: u32) -> vec4<f32> {
    return vec4<f32>(f32(k[i]), f32(k[i + 1u]), f32(k[i + 2u]), f32(k[i + 3u]));
}
fn ld4v(i: u32) -> vec4<f32> {
    return vec4<f32>(f32(v[i]), f32(v[i + 1u]), f32(v[i + 2u]), f32(v[i + 3u]));
}

@compute @workgroup_size(LR * SPW)
fn temporal(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let g = wid.x + wid.y * nwg.x;
    if (g >= p.groups) { return; }
    let sb = g % p.sblocks;
    let h = g / p.sblocks;
    let n = sb * SPW + lid / LR;
    let t = lid % LR;
    let L = p.seq;
    // Lanes past the last frame / sequence compute on clamped rows and write nothing.
    let nc = min(n, p.nseq - 1u);
    let tc = min(t, L - 1u);
    let d4 = D / 4u;

    var qv: array<vec4<f32>, MAXD4>;
    let qrow = p.q_base + (nc * L + tc) * p.q_stride + h * D;
    for (var i = 0u; i < d4; i++) {
        qv[i] = ld4q(qrow + 4u * i) * p.scale;
    }
    let kb0 = p.k_base + nc * L * p.k_stride + h * D;
    let vb0 = p.v_base + nc * L * p.v_stride + h * D;
    var sc: array<f32, MAXL>;
    var m = -3.0e38;
    for (var j = 0u; j < L; j++) {
        let kr = kb0 + j * p.k_stride;
        var dot = vec4<f32>(0.0);
        for (var i = 0u; i < d4; i++) {
            dot += qv[i] * ld4k(kr + 4u * i);
        }
        let sv = dot.x + dot.y + dot.z + dot.w;
        sc[j] = sv;
        m = max(m, sv);
    }
    var acc: array<vec4<f32>, MAXD4>;
    for (var i = 0u; i < d4; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    var l = 0.0;
    for (var j = 0u; j < L; j++) {
        let pj = exp(sc[j] - m);
        l += pj;
        let vr = vb0 + j * p.v_stride;
        for (var i = 0u; i < d4; i++) {
            acc[i] += pj * ld4v(vr + 4u * i);
        }
    }
    if (n < p.nseq && t < L) {
        let inv = 1.0 / l;
        let orow = p.o_base + (n * L + t) * p.o_stride + h * D;
        for (var i = 0u; i < d4; i++) {
            let r = acc[i] * inv;
            o[orow + 4u * i] = T(r.x);
            o[orow + 4u * i + 1u] = T(r.y);
            o[orow + 4u * i + 2u] = T(r.z);
            o[orow + 4u * i + 3u] = T(r.w);
        }
    }
}
