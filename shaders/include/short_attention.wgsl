// Attention within one short sequence (L ≤ LM ≤ 64 tokens, one head) by one workgroup, everything staged in
// workgroup memory (GPU tier of temporal_attention_gpu.wgsl and trajectory_attention_gpu.wgsl):
//   1. scores: Q and K are staged DC4 vec4 columns (4·DC4 dims) at a time, transposed (dim-major: one vec4 = four
//      tokens at one dim); invocation `lid` owns the 4×4 score tile (queries 4·(lid % LQ).., keys 4·(lid / LQ)..)
//      in four vec4 registers across all chunks (the launcher makes WG ≥ LQ², so every tile has an owner and none
//      has two): per dim one vec4 of queries, one of keys, 16 FMAs;
//   2. softmax: the tiles land key-major in sa_s (row j = key, LQ vec4 = query quads), one invocation per query
//      quad takes max, exp and sum over the L keys (vec4 lanes = four queries), 1/sum kept in sa_inv; the rows of
//      the padding keys L..LM are set to 0 so the output loop runs over whole quads of keys;
//   3. output: V is staged 2·DC4 vec4 columns at a time in the Q/K area (token-major); an invocation accumulates a
//      4-query × 2-vec4-column tile over four keys per step: 4 + 8 loads, 128 FMAs.
// No private arrays: registers are named vec4s, every loop bound is uniform (override constants, L or LM).
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
        // Element e = (which, token t, vec4 column c): its four dims go to rows 4·(c - c0) + k of the dim-major
        // chunk, lane t % 4 of vec4 t / 4.
        for (var e = lid; e < QK_LEN; e += WG) {
            let which = e / half;
            let r = e % half;
            let t = r / DC4;
            let cl = r % DC4;
            let c = c0 + cl;
            var x = vec4<f32>(0.0);
            if (t < L && c < d4) {
                let b = sa_rows[which * LM + t];
                if (b != NONE) { x = sa_ld4(which, b + 4u * c); }
            }
            let o = which * half + 4u * cl * LQ + t / 4u;
            let lane = t % 4u;
            sa_qk[o][lane] = x.x;
            sa_qk[o + LQ][lane] = x.y;
            sa_qk[o + 2u * LQ][lane] = x.z;
            sa_qk[o + 3u * LQ][lane] = x.w;
        }
        workgroupBarrier();
        if (own) {
            // Per-chunk partial sums: shorter sequential sums (the large-logit test is at f32's limit otherwise).
            var u0 = vec4<f32>(0.0);
            var u1 = vec4<f32>(0.0);
            var u2 = vec4<f32>(0.0);
            var u3 = vec4<f32>(0.0);
            for (var i = 0u; i < 4u * DC4; i++) {
                let q = sa_qk[i * LQ + ti];
                let k = sa_qk[half + i * LQ + tj];
                u0 += q * k.x;
                u1 += q * k.y;
                u2 += q * k.z;
                u3 += q * k.w;
            }
            s0 += u0;
            s1 += u1;
            s2 += u2;
            s3 += u3;
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
        for (var j = L; j < LM; j++) { sa_s[j * LQ + lid] = vec4<f32>(0.0); }
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
        // Tile: query quad qi, vec4 columns 2·cp and 2·cp + 1 of the chunk.
        for (var tile = lid; tile < LQ * DC4; tile += WG) {
            let qi = tile % LQ;
            let cp = tile / LQ;
            let c = c0 + 2u * cp;
            if (c < d4) {
                var a0 = vec4<f32>(0.0);
                var a1 = vec4<f32>(0.0);
                var a2 = vec4<f32>(0.0);
                var a3 = vec4<f32>(0.0);
                var b0 = vec4<f32>(0.0);
                var b1 = vec4<f32>(0.0);
                var b2 = vec4<f32>(0.0);
                var b3 = vec4<f32>(0.0);
                for (var j = 0u; j < LM; j += 4u) {
                    let p0 = sa_s[j * LQ + qi];
                    let p1 = sa_s[(j + 1u) * LQ + qi];
                    let p2 = sa_s[(j + 2u) * LQ + qi];
                    let p3 = sa_s[(j + 3u) * LQ + qi];
                    let vb = j * vc4 + 2u * cp;
                    let v0 = sa_qk[vb];
                    let w0 = sa_qk[vb + 1u];
                    let v1 = sa_qk[vb + vc4];
                    let w1 = sa_qk[vb + vc4 + 1u];
                    let v2 = sa_qk[vb + 2u * vc4];
                    let w2 = sa_qk[vb + 2u * vc4 + 1u];
                    let v3 = sa_qk[vb + 3u * vc4];
                    let w3 = sa_qk[vb + 3u * vc4 + 1u];
                    a0 += p0.x * v0 + p1.x * v1 + p2.x * v2 + p3.x * v3;
                    a1 += p0.y * v0 + p1.y * v1 + p2.y * v2 + p3.y * v3;
                    a2 += p0.z * v0 + p1.z * v1 + p2.z * v2 + p3.z * v3;
                    a3 += p0.w * v0 + p1.w * v1 + p2.w * v2 + p3.w * v3;
                    b0 += p0.x * w0 + p1.x * w1 + p2.x * w2 + p3.x * w3;
                    b1 += p0.y * w0 + p1.y * w1 + p2.y * w2 + p3.y * w3;
                    b2 += p0.z * w0 + p1.z * w1 + p2.z * w2 + p3.z * w3;
                    b3 += p0.w * w0 + p1.w * w1 + p2.w * w2 + p3.w * w3;
                }
                let inv = sa_inv[qi];
                sa_put(4u * qi, L, c, a0 * inv.x);
                sa_put(4u * qi + 1u, L, c, a1 * inv.y);
                sa_put(4u * qi + 2u, L, c, a2 * inv.z);
                sa_put(4u * qi + 3u, L, c, a3 * inv.w);
                if (c + 1u < d4) {
                    sa_put(4u * qi, L, c + 1u, b0 * inv.x);
                    sa_put(4u * qi + 1u, L, c + 1u, b1 * inv.y);
                    sa_put(4u * qi + 2u, L, c + 1u, b2 * inv.z);
                    sa_put(4u * qi + 3u, L, c + 1u, b3 * inv.w);
                }
            }
        }
        workgroupBarrier();
    }
}
