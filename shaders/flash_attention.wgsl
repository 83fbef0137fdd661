// Flash-style scaled-dot-product attention: o = softmax(scale · q kᵀ) v per (batch, head), with an online
// softmax (running max and sum, rescaled per key block); the score matrix is never stored.
//
// Q/K/V are read from strided row layouts: element (b, s, h, j) of X sits at
//   x_base + (b * seq_x + s) * x_stride + h * D + j
// where x_base already includes the binding window's base and the column offset (a fused QKV projection
// output [b, seq, 3·heads·D] is read in place). The output is dense (b, seq_q, heads·D).
//
// `attn_reg`: one invocation per query row, its scaled q vector and output accumulator in registers; every
// invocation of a workgroup walks the same keys, so K/V addresses are uniform across the workgroup (a broadcast
// load on SIMD CPUs, one cache line shared by a warp on GPUs). No workgroup memory, no barriers.
// Needs D % 4 == 0 and D <= 4 * MAXD4.
//
// `attn_wide`: any head dim (e.g. the VAE's single 512-wide head): an invocation owns one query row and a chunk
// of DC output columns; it computes the full dot products itself (redundantly per chunk).
alias T = f32;

#include "flash_params"

override D: u32 = 64u;   // attn_reg head dim
override QB: u32 = 64u;  // queries (invocations) per workgroup
const KB: u32 = 16u;     // keys per online-softmax block
const MAXD4: u32 = 32u;  // attn_reg: head dim up to 128
const DC: u32 = 64u;     // attn_wide: output columns per invocation
const NEG: f32 = -3.0e38;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<T>;
@group(0) @binding(2) var<storage, read> k: array<T>;
@group(0) @binding(3) var<storage, read> v: array<T>;
@group(0) @binding(4) var<storage, read_write> o: array<T>;

#include "flash_loads"

@compute @workgroup_size(QB)
fn attn_reg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let g = wid.x + wid.y * nwg.x;
    if (g >= p.groups) { return; }
    let qb = g % p.qblocks;
    let bh = g / p.qblocks;
    let h = bh % p.heads;
    let b = bh / p.heads;
    let s = qb * QB + lid;
    // Lanes past the end compute on a clamped row (keeps control flow uniform) and write nothing.
    let sq = min(s, p.seq_q - 1u);
    let d4 = D / 4u;

    var qv: array<vec4<f32>, MAXD4>;
    var acc: array<vec4<f32>, MAXD4>;
    let qrow = p.q_base + (b * p.seq_q + sq) * p.q_stride + h * D;
    for (var i = 0u; i < d4; i++) {
        qv[i] = ld4q(qrow + 4u * i) * p.scale;
        acc[i] = vec4<f32>(0.0);
    }
    var m = NEG;
    var l = 0.0;
    let kb0 = p.k_base + b * p.seq_kv * p.k_stride + h * D;
    let vb0 = p.v_base + b * p.seq_kv * p.v_stride + h * D;
    let last = p.seq_kv - 1u;
    for (var j0 = 0u; j0 < p.seq_kv; j0 += KB) {
        var sc: array<f32, KB>;
        var bm = NEG;
        for (var j = 0u; j < KB; j++) {
            let kr = kb0 + min(j0 + j, last) * p.k_stride;
            var dot = vec4<f32>(0.0);
            for (var i = 0u; i < d4; i++) {
                dot += qv[i] * ld4k(kr + 4u * i);
            }
            let sv = select(dot.x + dot.y + dot.z + dot.w, NEG, j0 + j > last);
            sc[j] = sv;
            bm = max(bm, sv);
        }
        let mn = max(m, bm);
        let corr = exp(m - mn);
        l *= corr;
        for (var i = 0u; i < d4; i++) {
            acc[i] *= corr;
        }
        for (var j = 0u; j < KB; j++) {
            let pj = exp(sc[j] - mn);
            l += pj;
            let vr = vb0 + min(j0 + j, last) * p.v_stride;
            for (var i = 0u; i < d4; i++) {
                acc[i] += pj * ld4v(vr + 4u * i);
            }
        }
        m = mn;
    }
    if (s < p.seq_q) {
        let inv = 1.0 / l;
        let orow = p.o_base + (b * p.seq_q + s) * p.o_stride + h * D;
        for (var i = 0u; i < d4; i++) {
            let r = acc[i] * inv;
            o[orow + 4u * i] = T(r.x);
            o[orow + 4u * i + 1u] = T(r.y);
            o[orow + 4u * i + 2u] = T(r.z);
            o[orow + 4u * i + 3u] = T(r.w);
        }
    }
}

@compute @workgroup_size(QB)
fn attn_wide(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let g = wid.x + wid.y * nwg.x;
    if (g >= p.groups) { return; }
    let c = g % p.chunks;
    let r0 = g / p.chunks;
    let qb = r0 % p.qblocks;
    let bh = r0 / p.qblocks;
    let h = bh % p.heads;
    let b = bh / p.heads;
    let s = qb * QB + lid;
    let sq = min(s, p.seq_q - 1u);
    let d = p.d;
    let c0 = c * DC;
    let lastc = d - 1u;

    var acc: array<f32, DC>;
    for (var i = 0u; i < DC; i++) {
        acc[i] = 0.0;
    }
    var m = NEG;
    var l = 0.0;
    let qrow = p.q_base + (b * p.seq_q + sq) * p.q_stride + h * d;
    let kb0 = p.k_base + b * p.seq_kv * p.k_stride + h * d;
    let vb0 = p.v_base + b * p.seq_kv * p.v_stride + h * d;
    let last = p.seq_kv - 1u;
    for (var j0 = 0u; j0 < p.seq_kv; j0 += KB) {
        var sc: array<f32, KB>;
        var bm = NEG;
        for (var j = 0u; j < KB; j++) {
            let kr = kb0 + min(j0 + j, last) * p.k_stride;
            var dot = 0.0;
            for (var i = 0u; i < d; i++) {
                dot += f32(q[qrow + i]) * f32(k[kr + i]);
            }
            let sv = select(dot * p.scale, NEG, j0 + j > last);
            sc[j] = sv;
            bm = max(bm, sv);
        }
        let mn = max(m, bm);
        let corr = exp(m - mn);
        l *= corr;
        for (var i = 0u; i < DC; i++) {
            acc[i] *= corr;
        }
        for (var j = 0u; j < KB; j++) {
            let pj = exp(sc[j] - mn);
            l += pj;
            let vr = vb0 + min(j0 + j, last) * p.v_stride;
            for (var i = 0u; i < DC; i++) {
                acc[i] += pj * f32(v[vr + min(c0 + i, lastc)]);
            }
        }
        m = mn;
    }
    if (s < p.seq_q) {
        let inv = 1.0 / l;
        let orow = p.o_base + (b * p.seq_q + s) * p.o_stride + h * d;
        for (var i = 0u; i < DC; i++) {
            if (c0 + i < d) {
                o[orow + c0 + i] = T(acc[i] * inv);
            }
        }
    }
}
