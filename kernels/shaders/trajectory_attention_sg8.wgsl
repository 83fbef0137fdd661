// traj_attend of trajectory_attention.wgsl (same Params and bindings, which it binds at the same slots) for
// adapters whose subgroups have exactly 8 lanes (lavapipe on AVX2, some Intel/ARM GPUs): a gathered K or V row is
// read once per subgroup instead of once per lane (lane l loads columns [l·D/8, (l+1)·D/8), subgroupBroadcast shares
// them), and q / the accumulator live in vec4 registers. Every lane runs every loop (lanes past the sequence work
// on a clamped query and write nothing), so the broadcasts always see all 8 lanes. Needs D % 32 == 0, D <= 128 and
// the SUBGROUP feature.
alias T = f32;

#include "traj_params"

override WG: u32 = 64u;
override D: u32 = 64u;
const MAXD4: u32 = 32u;
const MAXC: u32 = 4u;
const NONE: u32 = 0xFFFFFFFFu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qs: array<T>;           // Q rows
@group(0) @binding(2) var<storage, read> table: array<u32>;      // token → grid row within its batch element
@group(0) @binding(3) var<storage, read_write> att: array<T>;    // attention outputs
@group(0) @binding(9) var<storage, read> ks: array<T>;           // K rows
@group(0) @binding(10) var<storage, read> vs: array<T>;          // V rows

#include "traj_src_row"

fn ld4(which: u32, i: u32) -> vec4<f32> {
    if (which == 0u) { return vec4<f32>(f32(qs[i]), f32(qs[i + 1u]), f32(qs[i + 2u]), f32(qs[i + 3u])); }
    if (which == 1u) { return vec4<f32>(f32(ks[i]), f32(ks[i + 1u]), f32(ks[i + 2u]), f32(ks[i + 3u])); }
    return vec4<f32>(f32(vs[i]), f32(vs[i + 1u]), f32(vs[i + 2u]), f32(vs[i + 3u]));
}

@compute @workgroup_size(WG)
fn traj_attend_sg8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                   @builtin(subgroup_invocation_id) sl: u32) {
    let local_seq = wid.x + wid.y * 65535u;
    let hd = wid.z;
    if (local_seq >= p.n_rows) { return; }   // uniform per workgroup
    let seq = p.row0 + local_seq;
    let d4 = D / 4u;
    let c = D / 32u;
    for (var i0 = 0u; i0 < p.seq_len; i0 += WG) {
        let i = min(i0 + lid, p.seq_len - 1u);
        let qr = src_row(seq * p.seq_len + i);
        var qv: array<vec4<f32>, MAXD4>;
        var acc: array<vec4<f32>, MAXD4>;
        for (var t = 0u; t < d4; t++) {
            acc[t] = vec4<f32>(0.0);
            qv[t] = vec4<f32>(0.0);
            if (qr != NONE) { qv[t] = ld4(0u, p.base_q + qr * p.ld + hd * D + 4u * t); }
        }
        var mx = -3.4028234e38;
        var sum = 0.0;
        for (var j = 0u; j < p.seq_len; j++) {
            let kr = src_row(seq * p.seq_len + j);   // the same for every lane
            var s = 0.0;
            if (kr != NONE) {
                let kb = p.base_k + kr * p.ld + hd * D + sl * 4u * c;
                var kl: array<vec4<f32>, MAXC>;
                for (var ci = 0u; ci < c; ci++) { kl[ci] = ld4(1u, kb + 4u * ci); }
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
                s = dot.x + dot.y + dot.z + dot.w;
            }
            s *= p.scale;
            let nm = max(mx, s);
            let corr = exp(mx - nm);
            let e = exp(s - nm);
            sum = sum * corr + e;
            for (var t = 0u; t < d4; t++) { acc[t] *= corr; }
            if (kr != NONE) {
                let vb = p.base_v + kr * p.ld + hd * D + sl * 4u * c;
                var vl: array<vec4<f32>, MAXC>;
                for (var ci = 0u; ci < c; ci++) { vl[ci] = ld4(2u, vb + 4u * ci); }
                for (var ci = 0u; ci < c; ci++) {
                    acc[0u * c + ci] += e * subgroupBroadcast(vl[ci], 0u);
                    acc[1u * c + ci] += e * subgroupBroadcast(vl[ci], 1u);
                    acc[2u * c + ci] += e * subgroupBroadcast(vl[ci], 2u);
                    acc[3u * c + ci] += e * subgroupBroadcast(vl[ci], 3u);
                    acc[4u * c + ci] += e * subgroupBroadcast(vl[ci], 4u);
                    acc[5u * c + ci] += e * subgroupBroadcast(vl[ci], 5u);
                    acc[6u * c + ci] += e * subgroupBroadcast(vl[ci], 6u);
                    acc[7u * c + ci] += e * subgroupBroadcast(vl[ci], 7u);
                }
            }
            mx = nm;
        }
        if (i0 + lid < p.seq_len) {
            let inv = 1.0 / sum;
            let ob = p.base_out + (local_seq * p.seq_len + i) * p.c_att + hd * D;
            for (var t = 0u; t < d4; t++) {
                let r = acc[t] * inv;
                att[ob + 4u * t] = T(r.x);
                att[ob + 4u * t + 1u] = T(r.y);
                att[ob + 4u * t + 2u] = T(r.z);
                att[ob + 4u * t + 3u] = T(r.w);
            }
        }
    }
}
