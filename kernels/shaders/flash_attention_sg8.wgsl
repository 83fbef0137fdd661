// Flash attention for adapters whose subgroups have exactly 8 lanes (lavapipe on AVX2, some Intel/ARM GPUs).
// Same contract and Params as `attn_fa2` in flash_attention_fa2.wgsl. One invocation per query row, q and the
// output accumulator in registers, online softmax over blocks of KB keys; a K or V row is read from memory once per
// subgroup instead of once per lane: lane l loads columns [l·D/8, (l+1)·D/8) and the others receive them with
// subgroupBroadcast (llvmpipe turns per-lane storage loads into loops). Needs D % 32 == 0, D <= 128 and the
// SUBGROUP feature; every lane of a subgroup runs the same loops (lanes past the last query compute on a clamped
// row and write nothing).
alias T = f32;

#include "flash_params"

override D: u32 = 64u;   // head dim
override QB: u32 = 64u;  // queries (invocations) per workgroup
const KB: u32 = 16u;     // keys per online-softmax block
const MAXD4: u32 = 32u;  // head dim up to 128
const MAXC: u32 = 4u;    // vec4s of a K/V row per lane (D / 32)
const NEG: f32 = -3.0e38;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<T>;
@group(0) @binding(2) var<storage, read> k: array<T>;
@group(0) @binding(3) var<storage, read> v: array<T>;
@group(0) @binding(4) var<storage, read_write> o: array<T>;

#include "flash_loads"

@compute @workgroup_size(QB)
fn attn_sg8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sl: u32) {
    let g = wid.x + wid.y * nwg.x;
    if (g >= p.groups) { return; }
    let qb = g % p.qblocks;
    let bh = g / p.qblocks;
    let h = bh % p.heads;
    let b = bh / p.heads;
    let s = qb * QB + lid;
    let sq = min(s, p.seq_q - 1u);
    let d4 = D / 4u;
    let c = D / 32u;

    var qv: array<vec4<f32>, MAXD4>;
    var acc: array<vec4<f32>, MAXD4>;
    let qrow = p.q_base + (b * p.seq_q + sq) * p.q_stride + h * D;
    for (var i = 0u; i < d4; i++) {
        qv[i] = ld4q(qrow + 4u * i) * p.scale;
        acc[i] = vec4<f32>(0.0);
    }
    var m = NEG;
    var l = 0.0;
    // This lane's part of every K/V row.
    let kb0 = p.k_base + b * p.seq_kv * p.k_stride + h * D + sl * 4u * c;
    let vb0 = p.v_base + b * p.seq_kv * p.v_stride + h * D + sl * 4u * c;
    let last = p.seq_kv - 1u;
    for (var j0 = 0u; j0 < p.seq_kv; j0 += KB) {
        var sc: array<f32, KB>;
        var bm = NEG;
        for (var j = 0u; j < KB; j++) {
            let kr = kb0 + min(j0 + j, last) * p.k_stride;
            var kl: array<vec4<f32>, MAXC>;
            for (var ci = 0u; ci < c; ci++) {
                kl[ci] = ld4k(kr + 4u * ci);
            }
            var dot = vec4<f32>(0.0);
            for (var ci = 0u; ci < c; ci++) {
                dot += qv[0u * c + ci] * subgroupBroadcast(kl[ci], 0u);
                dot += qv[1u * c + ci] * subgroupBroadcast(kl[ci], 1u);
                dot += qv[2u * c + ci] * subgroupBroadcast(kl[ci], 2u);
                dot += qv[3u * c + ci] * subgroupBroadcast(kl[ci], 3u);
                dot += qv[4u * c + ci] * subgroupBroadcast(kl[ci], 4u);
                dot += qv[5u * c + ci] * subgroupBroadcast(kl[ci], 5u);
                dot += qv[6u * c + ci] * subgroupBroadcast(kl[ci], 6u);
                dot += qv[7u * c + ci] * subgroupBroadcast(kl[ci], 7u);
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
            var vl: array<vec4<f32>, MAXC>;
            for (var ci = 0u; ci < c; ci++) {
                vl[ci] = ld4v(vr + 4u * ci);
            }
            for (var ci = 0u; ci < c; ci++) {
                acc[0u * c + ci] += pj * subgroupBroadcast(vl[ci], 0u);
                acc[1u * c + ci] += pj * subgroupBroadcast(vl[ci], 1u);
                acc[2u * c + ci] += pj * subgroupBroadcast(vl[ci], 2u);
                acc[3u * c + ci] += pj * subgroupBroadcast(vl[ci], 3u);
                acc[4u * c + ci] += pj * subgroupBroadcast(vl[ci], 4u);
                acc[5u * c + ci] += pj * subgroupBroadcast(vl[ci], 5u);
                acc[6u * c + ci] += pj * subgroupBroadcast(vl[ci], 6u);
                acc[7u * c + ci] += pj * subgroupBroadcast(vl[ci], 7u);
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
