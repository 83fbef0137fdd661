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
//      4-query × 4-vec4-column tile over four keys per step: 4 + 16 loads, 256 FMAs, one key at a time so the
//      V values of only one key are live (navi21: 112 VGPRs, 4 waves/SIMD; FMA per memory op ≥ 4 in radvstats).
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
override VT: u32 = (2u * DC4 + 3u) / 4u;   // output tiles (4 vec4 columns) per query quad and V chunk
const NONE: u32 = 0xFFFFFFFFu;

var<workgroup> sa_rows: array<u32, RB_LEN>;         // Q, K, V, output element bases of token t at t, LM+t, ..
var<workgroup> sa_qk: array<vec4<f32>, QK_LEN>;     // Q chunk (LM × DC4) then K chunk; later a V chunk
var<workgroup> sa_s: array<vec4<f32>, S_LEN>;       // scores / probabilities, key-major, query quads
var<workgroup> sa_inv: array<vec4<f32>, LQ>;        // 1 / softmax sum per query quad

// Q (which 0) or K (which 1) elements i .. i + 3: two load paths, not three (the static load count matters).
fn sa_ld4_qk(which: u32, i: u32) -> vec4<f32> {
    if (which == 0u) { return vec4<f32>(f32(qs[i]), f32(qs[i + 1u]), f32(qs[i + 2u]), f32(qs[i + 3u])); }
    return vec4<f32>(f32(ks[i]), f32(ks[i + 1u]), f32(ks[i + 2u]), f32(ks[i + 3u]));
}

fn sa_ld4_v(i: u32) -> vec4<f32> {
    return vec4<f32>(f32(vs[i]), f32(vs[i + 1u]), f32(vs[i + 2u]), f32(vs[i + 3u]));
}

// Output element base of token t, or NONE (no output row, or a padding token).
fn sa_out_base(t: u32, L: u32) -> u32 {
    if (t < L) { return sa_rows[3u * LM + t]; }
    return NONE;
}

// Output vec4 column c (if below D / 4) of the row at element base ob (if not NONE).
fn sa_put(ob: u32, c: u32, r: vec4<f32>) {
    if (ob != NONE && c < D / 4u) {
        let i = ob + 4u * c;
        att[i] = T(r.x);
        att[i + 1u] = T(r.y);
        att[i + 2u] = T(r.z);
        att[i + 3u] = T(r.w);
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
                if (b != NONE) { x = sa_ld4_qk(which, b + 4u * c); }
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
                if (b != NONE) { x = sa_ld4_v(b + 4u * c); }
            }
            sa_qk[e] = x;
        }
        workgroupBarrier();
        // Tile: query quad qi, vec4 columns 4·cp .. 4·cp + 3 of the chunk (those past the chunk are read from the
        // next row or clamped, and never stored): per four keys 4 + 16 loads, 256 FMAs.
        for (var tile = lid; tile < LQ * VT; tile += WG) {
            let qi = tile % LQ;
            let cp = tile / LQ;
            let c = c0 + 4u * cp;
            if (c < d4) {
                var a0 = vec4<f32>(0.0);
                var a1 = vec4<f32>(0.0);
                var a2 = vec4<f32>(0.0);
                var a3 = vec4<f32>(0.0);
                var b0 = vec4<f32>(0.0);
                var b1 = vec4<f32>(0.0);
                var b2 = vec4<f32>(0.0);
                var b3 = vec4<f32>(0.0);
                var f0 = vec4<f32>(0.0);
                var f1 = vec4<f32>(0.0);
                var f2 = vec4<f32>(0.0);
                var f3 = vec4<f32>(0.0);
                var e0 = vec4<f32>(0.0);
                var e1 = vec4<f32>(0.0);
                var e2 = vec4<f32>(0.0);
                var e3 = vec4<f32>(0.0);
                for (var j = 0u; j < LM; j += 4u) {
                    let p0 = sa_s[(j + 0u) * LQ + qi];
                    let p1 = sa_s[(j + 1u) * LQ + qi];
                    let p2 = sa_s[(j + 2u) * LQ + qi];
                    let p3 = sa_s[(j + 3u) * LQ + qi];
                    let vb = j * vc4 + 4u * cp;
                    // One key at a time (its four V columns, then 16 FMAs): fewer live registers.
                    let va0 = sa_qk[vb + 0u];
                    let vb0 = sa_qk[vb + 1u];
                    let vf0 = sa_qk[vb + 2u];
                    let ve0 = sa_qk[vb + 3u];
                    a0 += p0.x * va0;
                    a1 += p0.y * va0;
                    a2 += p0.z * va0;
                    a3 += p0.w * va0;
                    b0 += p0.x * vb0;
                    b1 += p0.y * vb0;
                    b2 += p0.z * vb0;
                    b3 += p0.w * vb0;
                    f0 += p0.x * vf0;
                    f1 += p0.y * vf0;
                    f2 += p0.z * vf0;
                    f3 += p0.w * vf0;
                    e0 += p0.x * ve0;
                    e1 += p0.y * ve0;
                    e2 += p0.z * ve0;
                    e3 += p0.w * ve0;
                    let va1 = sa_qk[vb + 1u * vc4 + 0u];
                    let vb1 = sa_qk[vb + 1u * vc4 + 1u];
                    let vf1 = sa_qk[vb + 1u * vc4 + 2u];
                    let ve1 = sa_qk[vb + 1u * vc4 + 3u];
                    a0 += p1.x * va1;
                    a1 += p1.y * va1;
                    a2 += p1.z * va1;
                    a3 += p1.w * va1;
                    b0 += p1.x * vb1;
                    b1 += p1.y * vb1;
                    b2 += p1.z * vb1;
                    b3 += p1.w * vb1;
                    f0 += p1.x * vf1;
                    f1 += p1.y * vf1;
                    f2 += p1.z * vf1;
                    f3 += p1.w * vf1;
                    e0 += p1.x * ve1;
                    e1 += p1.y * ve1;
                    e2 += p1.z * ve1;
                    e3 += p1.w * ve1;
                    let va2 = sa_qk[vb + 2u * vc4 + 0u];
                    let vb2 = sa_qk[vb + 2u * vc4 + 1u];
                    let vf2 = sa_qk[vb + 2u * vc4 + 2u];
                    let ve2 = sa_qk[vb + 2u * vc4 + 3u];
                    a0 += p2.x * va2;
                    a1 += p2.y * va2;
                    a2 += p2.z * va2;
                    a3 += p2.w * va2;
                    b0 += p2.x * vb2;
                    b1 += p2.y * vb2;
                    b2 += p2.z * vb2;
                    b3 += p2.w * vb2;
                    f0 += p2.x * vf2;
                    f1 += p2.y * vf2;
                    f2 += p2.z * vf2;
                    f3 += p2.w * vf2;
                    e0 += p2.x * ve2;
                    e1 += p2.y * ve2;
                    e2 += p2.z * ve2;
                    e3 += p2.w * ve2;
                    let va3 = sa_qk[vb + 3u * vc4 + 0u];
                    let vb3 = sa_qk[vb + 3u * vc4 + 1u];
                    let vf3 = sa_qk[vb + 3u * vc4 + 2u];
                    let ve3 = sa_qk[vb + 3u * vc4 + 3u];
                    a0 += p3.x * va3;
                    a1 += p3.y * va3;
                    a2 += p3.z * va3;
                    a3 += p3.w * va3;
                    b0 += p3.x * vb3;
                    b1 += p3.y * vb3;
                    b2 += p3.z * vb3;
                    b3 += p3.w * vb3;
                    f0 += p3.x * vf3;
                    f1 += p3.y * vf3;
                    f2 += p3.z * vf3;
                    f3 += p3.w * vf3;
                    e0 += p3.x * ve3;
                    e1 += p3.y * ve3;
                    e2 += p3.z * ve3;
                    e3 += p3.w * ve3;
                }
                let inv = sa_inv[qi];
                let cl = 4u * cp;
                let o0 = sa_out_base(4u * qi + 0u, L);
                let o1 = sa_out_base(4u * qi + 1u, L);
                let o2 = sa_out_base(4u * qi + 2u, L);
                let o3 = sa_out_base(4u * qi + 3u, L);
                sa_put(o0, c + 0u, a0 * inv.x);
                sa_put(o1, c + 0u, a1 * inv.y);
                sa_put(o2, c + 0u, a2 * inv.z);
                sa_put(o3, c + 0u, a3 * inv.w);
                if (cl + 1u < vc4) {
                    sa_put(o0, c + 1u, b0 * inv.x);
                    sa_put(o1, c + 1u, b1 * inv.y);
                    sa_put(o2, c + 1u, b2 * inv.z);
                    sa_put(o3, c + 1u, b3 * inv.w);
                }
                if (cl + 2u < vc4) {
                    sa_put(o0, c + 2u, f0 * inv.x);
                    sa_put(o1, c + 2u, f1 * inv.y);
                    sa_put(o2, c + 2u, f2 * inv.z);
                    sa_put(o3, c + 2u, f3 * inv.w);
                }
                if (cl + 3u < vc4) {
                    sa_put(o0, c + 3u, e0 * inv.x);
                    sa_put(o1, c + 3u, e1 * inv.y);
                    sa_put(o2, c + 3u, e2 * inv.z);
                    sa_put(o3, c + 3u, e3 * inv.w);
                }
            }
        }
        workgroupBarrier();
    }
}
