// Attention within one short sequence (L ≤ LM ≤ 64 tokens, one head) by one workgroup, everything staged in
// workgroup memory (GPU tier of temporal_attention_gpu.wgsl and trajectory_attention_gpu.wgsl):
//   1. scores: Q and K are staged DC4 vec4 columns at a time; invocation `lid` owns the 4×4 score tile
//      (queries 4·(lid % LQ).., keys 4·(lid / LQ)..) in four vec4 registers across all chunks (the launcher makes
//      WG ≥ LQ², so every tile has an owner and none has two);
//   2. softmax: the tiles land key-major in sa_s (row j = key, LQ vec4 = query quads), one invocation per query
//      quad takes max, exp and sum over the L keys (vec4 lanes = four queries), 1/sum kept in sa_inv;
//   3. output: V is staged 2·DC4 vec4 columns at a time in the Q/K area; an invocation accumulates a 4-query ×
//      vec4-column tile: one vec4 of probabilities and one vec4 of V per key, 16 FMAs.
// No private arrays: registers are named vec4s, every loop bound is uniform (override constants or L).
//
// The including shader declares `alias T`, the storage bindings `qs`, `ks`, `vs` (read) and `att` (read_write),
// fills sa_rows with each token's element base (head offset included) of its Q, K, V and output row — NONE for a
// token without one (zero Q/K/V row, still in the softmax; no output written) — then a workgroupBarrier, then calls
// short_attention(lid, L, scale) from uniform control flow.

override D: u32 = 64u;       // head dim, multiple of 4
override LM: u32 = 28u;      // L rounded up to 4, ≤ 64
override DC4: u32 = 4u;      // vec4 columns of Q and K per chunk (V chunks are 2·DC4 wide)
override WG: u32 = 64u;      // invocations, ≥ LQ² (multiple of 64)
override LQ: u32 = LM / 4u;
override RB_LEN: u32 = 4u * LM;
override QK_LEN: u32 = 2u * LM * DC4;
override S_LEN: u32 = LM * LQ;
const NONE: u32 = 0xFFFFFFFFu;

var<workgroup> sa_rows: array<u32, RB_LEN>;         // Q, K, V, output element bases of token t at t, LM+t, ..
var<workgroup> sa_qk: array<vec4<f32>, QK_LEN>;     // Q chunk (LM × DC4) then K chunk; later a V chunk
var<workgroup> sa_s: array<vec4<f32>, S_LEN>;       // scores / probabilities, key-major, query quads
var<workgroup> sa_inv: array<vec4<f32>, LQ>;        // 1 / softmax sum per query quad

fn sa_ld4(which: u32, i: u32) -> vec4<f32> {
    if (which == 0u) { return vec4<f32>(f32(qs[i]), f32(qs[i + 1u]), f32(qs[i + 2u]), f32(qs[i + 3u])); }
    if (which == 1u) { return vec4<f32>(f32(ks[i]), f32(ks[i + 1u]), f32(ks[i + 2u]), f32(ks[i + 3u])); }
    return vec4<f32>(f32(vs[i]), f32(vs[i + 1u]), f32(vs[i + 2u]), f32(vs[i + 3u]));
}

// Output row of token t (if it has one), vec4 column c.
fn sa_put(t: u32, L: u32, c: u32, r: vec4<f32>) {
    if (t < L) {
        let ob = sa_rows[3u * LM + t];
        if (ob != NONE) {
            let i = ob + 4u * c;
            att[i] = T(r.x);
            att[i + 1u] = T(r.y);
            att[i + 2u] = T(r.z);
            att[i + 3u] = T(r.w);
        }
    }
}

fn short_attention(lid: u32, L: u32, scale: f32) {
    let d4 = D / 4u;
    let half = LM * DC4;
    let ti = lid % LQ;
    let tj = lid / LQ;
    let own = tj < LQ;
    // s_b: key 4·tj + b against queries 4·ti .. 4·ti + 3 (lanes).
    var s0 = vec4<f32>(0.0);
    var s1 = vec4<f32>(0.0);
    var s2 = vec4<f32>(0.0);
    var s3 = vec4<f32>(0.0);
    for (var c0 = 0u; c0 < d4; c0 += DC4) {
        for (var e = lid; e < QK_LEN; e += WG) {
            let which = e / half;
            let r = e % half;
            let t = r / DC4;
            let c = c0 + r % DC4;
            var x = vec4<f32>(0.0);
            if (t < L && c < d4) {
                let b = sa_rows[which * LM + t];
                if (b != NONE) { x = sa_ld4(which, b + 4u * c); }
            }
            sa_qk[e] = x;
        }
        workgroupBarrier();
        if (own) {
            let qb = 4u * ti * DC4;
            let kb = half + 4u * tj * DC4;
            for (var c = 0u; c < DC4; c++) {
                let q0 = sa_qk[qb + c];
                let q1 = sa_qk[qb + DC4 + c];
                let q2 = sa_qk[qb + 2u * DC4 + c];
                let q3 = sa_qk[qb + 3u * DC4 + c];
                let k0 = sa_qk[kb + c];
                let k1 = sa_qk[kb + DC4 + c];
                let k2 = sa_qk[kb + 2u * DC4 + c];
                let k3 = sa_qk[kb + 3u * DC4 + c];
                s0 += vec4<f32>(dot(q0, k0), dot(q1, k0), dot(q2, k0), dot(q3, k0));
                s1 += vec4<f32>(dot(q0, k1), dot(q1, k1), dot(q2, k1), dot(q3, k1));
                s2 += vec4<f32>(dot(q0, k2), dot(q1, k2), dot(q2, k2), dot(q3, k2));
                s3 += vec4<f32>(dot(q0, k3), dot(q1, k3), dot(q2, k3), dot(q3, k3));
            }
        }
        workgroupBarrier();
    }
    if (own) {
        let sb = 4u * tj * LQ + ti;
        sa_s[sb] = s0 * scale;
        sa_s[sb + LQ] = s1 * scale;
        sa_s[sb + 2u * LQ] = s2 * scale;
        sa_s[sb + 3u * LQ] = s3 * scale;
    }
    workgroupBarrier();
    if (lid < LQ) {
        var m = vec4<f32>(-3.0e38);
        for (var j = 0u; j < L; j++) { m = max(m, sa_s[j * LQ + lid]); }
        var l = vec4<f32>(0.0);
        for (var j = 0u; j < L; j++) {
            let e = exp(sa_s[j * LQ + lid] - m);
            sa_s[j * LQ + lid] = e;
            l += e;
        }
        sa_inv[lid] = 1.0 / l;
    }
    workgroupBarrier();
    let vc4 = 2u * DC4;
    for (var c0 = 0u; c0 < d4; c0 += vc4) {
        for (var e = lid; e < QK_LEN; e += WG) {
            let t = e / vc4;
            let c = c0 + e % vc4;
            var x = vec4<f32>(0.0);
            if (t < L && c < d4) {
                let b = sa_rows[2u * LM + t];
                if (b != NONE) { x = sa_ld4(2u, b + 4u * c); }
            }
            sa_qk[e] = x;
        }
        workgroupBarrier();
        for (var tile = lid; tile < LQ * vc4; tile += WG) {
            let qi = tile % LQ;
            let cc = tile / LQ;
            let c = c0 + cc;
            if (c < d4) {
                var a0 = vec4<f32>(0.0);
                var a1 = vec4<f32>(0.0);
                var a2 = vec4<f32>(0.0);
                var a3 = vec4<f32>(0.0);
                for (var j = 0u; j < L; j++) {
                    let pv = sa_s[j * LQ + qi];
                    let vv = sa_qk[j * vc4 + cc];
                    a0 += pv.x * vv;
                    a1 += pv.y * vv;
                    a2 += pv.z * vv;
                    a3 += pv.w * vv;
                }
                let inv = sa_inv[qi];
                sa_put(4u * qi, L, c, a0 * inv.x);
                sa_put(4u * qi + 1u, L, c, a1 * inv.y);
                sa_put(4u * qi + 2u, L, c, a2 * inv.z);
                sa_put(4u * qi + 3u, L, c, a3 * inv.w);
            }
        }
        workgroupBarrier();
    }
}
