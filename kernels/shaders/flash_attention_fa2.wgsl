// Flash attention in the FlashAttention-2 form for the GPU tier: o = softmax(scale · q kᵀ) v per (batch, head).
// Any head dim. Q/K/V are read from strided row layouts: element (b, s, h, j) of X sits at
//   x_base + (b * seq_x + s) * x_stride + h * D + j
// where x_base already includes the binding window's base and the column offset (a fused QKV projection output
// [b, seq, 3·heads·D] is read in place). The output is dense (b, seq_q, heads·D).
//
// A workgroup owns BQ = 4·TR queries of one (batch, head) and walks the keys in tiles of BK = TC·RK. Its
// NT = TR·TC invocations form a TR × TC grid; invocation (tr, tc) owns query rows 4·tr .. 4·tr+3 throughout.
//   1. Scores S = (scale·Q) Kᵀ of the tile: Q and K are staged in workgroup memory DCK4 vec4 columns at a time
//      (rows padded by one vec4 against bank conflicts); invocation (tr, tc) accumulates a 4 × RK register tile
//      (keys tc + TC·kk), so each vec4 read from workgroup memory feeds 4 or RK dot products. When the whole
//      head fits one chunk, Q is staged once for all tiles.
//   2. Online softmax, f32, on the score registers. The tile's row maxima are reduced over the TC invocations
//      of a row group through workgroup memory in two levels (RG partials, then TC/RG), which reads about
//      2·√TC values instead of TC. Every invocation keeps the running max of its 4 rows and its own part of
//      their running sums (reduced the same way once at the end), and writes P = exp(S - m) for step 3.
//   3. O += P V: the output block BQ × D lives in registers, invocation (tr, tc) holding rows 4·tr.. × the
//      vec4 column groups tc + TC·u (u < NU), in 16 named vec4 accumulators; V is staged BKV keys × all
//      TC·NU column groups at a time, so each P value read feeds 4·NU vec4 FMAs.
// So no invocation holds a full head row: the 512-wide VAE head is split over TC = 32 invocations (NU = 4).
// Workgroup memory holds f32 (staged Q/K/V and P), so f16 storage only rounds the inputs and the output.
// Register tiles are named vectors or fixed-size arrays indexed only in loops whose trip counts are override
// constants (fully unrolled once the constants are known). Keys past seq_kv score NEG (P = 0) and read a
// clamped, finite V row; columns past D read as 0; query rows past seq_q compute on a clamped row and write
// nothing.
alias T = f32;

#include "flash_params"

override D: u32 = 64u;      // head dim (any; vec4 groups past D read as zeros)
override TR: u32 = 16u;     // row groups of 4 queries
override TC: u32 = 8u;      // column / key groups
override NT: u32 = 128u;    // invocations = TR · TC
override BQ: u32 = 64u;     // queries per workgroup = 4 · TR
override RK: u32 = 8u;      // keys per invocation in the score tile (≤ MAXRK)
override DCK4: u32 = 4u;    // vec4 columns of Q/K staged per score chunk
override BKV: u32 = 16u;    // keys per staged V block (divides TC · RK)
override UJ: u32 = 16u;     // keys per unrolled step of the P V loop (divides BKV)
override NU: u32 = 2u;      // output column groups per invocation = ceil(ceil(D/4) / TC) (≤ MAXNU)
override RG: u32 = 4u;      // partials per first-level reduction group (divides TC; 1 = one level)
override QS_N: u32 = 320u;  // BQ · (DCK4 + 1)
override KV_N: u32 = 320u;  // max(TC·RK · (DCK4 + 1), BKV · TC · NU, NT + NT / RG)
override PS_N: u32 = 1024u; // TC·RK · TR
const MAXRK: u32 = 8u;
const MAXNU: u32 = 4u;
const NEG: f32 = -3.0e38;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<T>;
@group(0) @binding(2) var<storage, read> k: array<T>;
@group(0) @binding(3) var<storage, read> v: array<T>;
@group(0) @binding(4) var<storage, read_write> o: array<T>;

var<workgroup> qs: array<vec4<f32>, QS_N>;  // Q chunk, row r at r·(DCK4+1)
// K chunk (row j at j·(DCK4+1)); or the row-group partials (tr·TC + tc) and the first-level results
// (NT + tr·(TC/RG) + g); or a V block (key j, column group c at j·TC·NU + c).
var<workgroup> kv: array<vec4<f32>, KV_N>;
var<workgroup> ps: array<vec4<f32>, PS_N>;  // P of the tile: key j, rows 4·tr.. at j·TR + tr

// Four consecutive elements from column `col` of a head row starting at `row`; columns past D are 0.
fn ld4q(row: u32, col: u32) -> vec4<f32> {
    let l = D - 1u;
    return select(vec4<f32>(0.0), vec4<f32>(f32(q[row + min(col, l)]), f32(q[row + min(col + 1u, l)]),
        f32(q[row + min(col + 2u, l)]), f32(q[row + min(col + 3u, l)])), vec4<u32>(col) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(D));
}
fn ld4k(row: u32, col: u32) -> vec4<f32> {
    let l = D - 1u;
    return select(vec4<f32>(0.0), vec4<f32>(f32(k[row + min(col, l)]), f32(k[row + min(col + 1u, l)]),
        f32(k[row + min(col + 2u, l)]), f32(k[row + min(col + 3u, l)])), vec4<u32>(col) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(D));
}
fn ld4v(row: u32, col: u32) -> vec4<f32> {
    let l = D - 1u;
    return select(vec4<f32>(0.0), vec4<f32>(f32(v[row + min(col, l)]), f32(v[row + min(col + 1u, l)]),
        f32(v[row + min(col + 2u, l)]), f32(v[row + min(col + 3u, l)])), vec4<u32>(col) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(D));
}

// Row-group reduction (max, or sum when `sum`) over the TC invocations of row group tr (all invocations call
// it; kv must be free). Two levels when RG > 1: invocation g < TC/RG of each row group combines RG partials,
// then everyone combines the TC/RG results.
fn combine(a: vec4<f32>, b: vec4<f32>, sum: bool) -> vec4<f32> {
    return select(max(a, b), a + b, sum);
}
fn row_reduce(tr: u32, tc: u32, x: vec4<f32>, sum: bool) -> vec4<f32> {
    let ng = TC / RG;
    kv[tr * TC + tc] = x;
    workgroupBarrier();
    var r: vec4<f32>;
    if (RG > 1u) {
        if (tc < ng) {
            var y = kv[tr * TC + tc * RG];
            for (var i = 1u; i < RG; i++) {
                y = combine(y, kv[tr * TC + tc * RG + i], sum);
            }
            kv[NT + tr * ng + tc] = y;
        }
        workgroupBarrier();
        r = kv[NT + tr * ng];
        for (var g = 1u; g < ng; g++) {
            r = combine(r, kv[NT + tr * ng + g], sum);
        }
    } else {
        r = kv[tr * TC];
        for (var t = 1u; t < TC; t++) {
            r = combine(r, kv[tr * TC + t], sum);
        }
    }
    return r;
}

// Row `at` of the output, the four columns from `col` (those past D are skipped).
fn store4(at: u32, col: u32, x: vec4<f32>) {
    let full = select(col + 3u < D, col < D, D % 4u == 0u);
    if (full) {
        o[at] = T(x.x);
        o[at + 1u] = T(x.y);
        o[at + 2u] = T(x.z);
        o[at + 3u] = T(x.w);
    } else if (D % 4u != 0u) {
        if (col < D) { o[at] = T(x.x); }
        if (col + 1u < D) { o[at + 1u] = T(x.y); }
        if (col + 2u < D) { o[at + 2u] = T(x.z); }
    }
}

// One output row at `at` (column `c0` of the head): the NU column groups x0..x3, `cu` columns apart, scaled by
// `inv` (1 / the row sum).
fn store_row(at: u32, c0: u32, cu: u32, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>, inv: f32) {
    store4(at, c0, x0 * inv);
    if (NU > 1u) { store4(at + cu, c0 + cu, x1 * inv); }
    if (NU > 2u) { store4(at + 2u * cu, c0 + 2u * cu, x2 * inv); }
    if (NU > 3u) { store4(at + 3u * cu, c0 + 3u * cu, x3 * inv); }
}

@compute @workgroup_size(NT)
fn attn_fa2(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let g = wid.x + wid.y * nwg.x;
    if (g >= p.groups) { return; }  // uniform over the workgroup
    let qblk = g % p.qblocks;
    let bh = g / p.qblocks;
    let h = bh % p.heads;
    let b = bh / p.heads;
    let q0 = qblk * BQ;
    let tr = lid / TC;
    let tc = lid % TC;
    let d4 = (D + 3u) / 4u;
    let nck = (d4 + DCK4 - 1u) / DCK4;
    let bk = TC * RK;
    let kp = DCK4 + 1u;
    let tcn = TC * NU;
    let qh = p.q_base + b * p.seq_q * p.q_stride + h * D;
    let kh = p.k_base + b * p.seq_kv * p.k_stride + h * D;
    let vh = p.v_base + b * p.seq_kv * p.v_stride + h * D;
    let lastq = p.seq_q - 1u;
    let lastk = p.seq_kv - 1u;

    var m = vec4<f32>(NEG);    // running max of rows 4·tr.. (the same in every invocation of the row group)
    var lp = vec4<f32>(0.0);   // this invocation's part of their running sums (its keys only)
    // Output accumulators: column group tc + TC·u, row 4·tr + i in a<u><i>.
    var a00 = vec4<f32>(0.0); var a01 = vec4<f32>(0.0); var a02 = vec4<f32>(0.0); var a03 = vec4<f32>(0.0);
    var a10 = vec4<f32>(0.0); var a11 = vec4<f32>(0.0); var a12 = vec4<f32>(0.0); var a13 = vec4<f32>(0.0);
    var a20 = vec4<f32>(0.0); var a21 = vec4<f32>(0.0); var a22 = vec4<f32>(0.0); var a23 = vec4<f32>(0.0);
    var a30 = vec4<f32>(0.0); var a31 = vec4<f32>(0.0); var a32 = vec4<f32>(0.0); var a33 = vec4<f32>(0.0);

    for (var j0 = 0u; j0 < p.seq_kv; j0 += bk) {
        // 1. Scores of this key tile.
        var s: array<vec4<f32>, MAXRK>;  // key tc + TC·kk, rows 4·tr..4·tr+3
        for (var kk = 0u; kk < MAXRK; kk++) {
            s[kk] = vec4<f32>(0.0);
        }
        for (var ck = 0u; ck < nck; ck++) {
            let c0 = ck * DCK4;
            if (nck > 1u || j0 == 0u) {
                for (var e = lid; e < BQ * DCK4; e += NT) {
                    let r = e / DCK4;
                    let c = e % DCK4;
                    qs[r * kp + c] = ld4q(qh + min(q0 + r, lastq) * p.q_stride, 4u * (c0 + c)) * p.scale;
                }
            }
            for (var e = lid; e < bk * DCK4; e += NT) {
                let r = e / DCK4;
                let c = e % DCK4;
                kv[r * kp + c] = ld4k(kh + min(j0 + r, lastk) * p.k_stride, 4u * (c0 + c));
            }
            workgroupBarrier();
            let qr = 4u * tr * kp;
            for (var c = 0u; c < DCK4; c++) {
                let qa = qs[qr + c];
                let qb = qs[qr + kp + c];
                let qc = qs[qr + 2u * kp + c];
                let qd = qs[qr + 3u * kp + c];
                // Rows as vec4 lanes: 16 FMAs per key (a dot product would add a multiply and an add).
                let q_x = vec4<f32>(qa.x, qb.x, qc.x, qd.x);
                let q_y = vec4<f32>(qa.y, qb.y, qc.y, qd.y);
                let q_z = vec4<f32>(qa.z, qb.z, qc.z, qd.z);
                let q_w = vec4<f32>(qa.w, qb.w, qc.w, qd.w);
                for (var kk = 0u; kk < RK; kk++) {
                    let kx = kv[(tc + TC * kk) * kp + c];
                    s[kk] = fma(q_w, vec4<f32>(kx.w), fma(q_z, vec4<f32>(kx.z),
                        fma(q_y, vec4<f32>(kx.y), fma(q_x, vec4<f32>(kx.x), s[kk]))));
                }
            }
            workgroupBarrier();
        }
        // 2. Online softmax in f32. The tile's row max: this invocation's partial over its RK keys, then the
        // row group's (kv is free: the last score chunk ended with a barrier).
        var pm = vec4<f32>(NEG);
        for (var kk = 0u; kk < RK; kk++) {
            s[kk] = select(vec4<f32>(NEG), s[kk], j0 + tc + TC * kk < p.seq_kv);
            pm = max(pm, s[kk]);
        }
        let mn = max(m, row_reduce(tr, tc, pm, false));
        let corr = exp(m - mn);
        m = mn;
        // P = exp(S - m) to workgroup memory; this invocation's part of the row sums stays in registers.
        var ps4 = vec4<f32>(0.0);
        for (var kk = 0u; kk < RK; kk++) {
            let e = exp(s[kk] - mn);
            ps[(tc + TC * kk) * TR + tr] = e;
            ps4 += e;
        }
        lp = lp * corr + ps4;
        workgroupBarrier();

        // 3. O = O · corr + P V.
        a00 *= corr.x; a01 *= corr.y; a02 *= corr.z; a03 *= corr.w;
        if (NU > 1u) { a10 *= corr.x; a11 *= corr.y; a12 *= corr.z; a13 *= corr.w; }
        if (NU > 2u) { a20 *= corr.x; a21 *= corr.y; a22 *= corr.z; a23 *= corr.w; }
        if (NU > 3u) { a30 *= corr.x; a31 *= corr.y; a32 *= corr.z; a33 *= corr.w; }
        for (var kb = 0u; kb < bk; kb += BKV) {
            for (var e = lid; e < BKV * tcn; e += NT) {
                let r = e / tcn;
                let c = e % tcn;
                kv[e] = ld4v(vh + min(j0 + kb + r, lastk) * p.v_stride, 4u * c);
            }
            workgroupBarrier();
            // UJ keys per step in a constant-trip inner loop (fully unrolled), accumulating in named registers.
            for (var j = 0u; j < BKV; j += UJ) {
                for (var jj = 0u; jj < UJ; jj++) {
                    let pj = ps[(kb + j + jj) * TR + tr];
                    let vr = (j + jj) * tcn + tc;
                    let v0 = kv[vr];
                    a00 = fma(vec4<f32>(pj.x), v0, a00);
                    a01 = fma(vec4<f32>(pj.y), v0, a01);
                    a02 = fma(vec4<f32>(pj.z), v0, a02);
                    a03 = fma(vec4<f32>(pj.w), v0, a03);
                    if (NU > 1u) {
                        let v1 = kv[vr + TC];
                        a10 = fma(vec4<f32>(pj.x), v1, a10);
                        a11 = fma(vec4<f32>(pj.y), v1, a11);
                        a12 = fma(vec4<f32>(pj.z), v1, a12);
                        a13 = fma(vec4<f32>(pj.w), v1, a13);
                    }
                    if (NU > 2u) {
                        let v2 = kv[vr + 2u * TC];
                        a20 = fma(vec4<f32>(pj.x), v2, a20);
                        a21 = fma(vec4<f32>(pj.y), v2, a21);
                        a22 = fma(vec4<f32>(pj.z), v2, a22);
                        a23 = fma(vec4<f32>(pj.w), v2, a23);
                    }
                    if (NU > 3u) {
                        let v3 = kv[vr + 3u * TC];
                        a30 = fma(vec4<f32>(pj.x), v3, a30);
                        a31 = fma(vec4<f32>(pj.y), v3, a31);
                        a32 = fma(vec4<f32>(pj.z), v3, a32);
                        a33 = fma(vec4<f32>(pj.w), v3, a33);
                    }
                }
            }
            workgroupBarrier();
        }
    }

    // Row sums: the TC parts of each row group (kv is free after the last barrier of step 3).
    let linv = 1.0 / row_reduce(tr, tc, lp, true);
    let r0 = q0 + 4u * tr;
    let rows = min(p.seq_q - min(r0, p.seq_q), 4u);
    let ost = p.o_stride;
    let ob = p.o_base + (b * p.seq_q + r0) * ost + h * D + 4u * tc;
    let cu = 4u * TC;
    let c0 = 4u * tc;
    if (rows > 0u) { store_row(ob, c0, cu, a00, a10, a20, a30, linv.x); }
    if (rows > 1u) { store_row(ob + ost, c0, cu, a01, a11, a21, a31, linv.y); }
    if (rows > 2u) { store_row(ob + 2u * ost, c0, cu, a02, a12, a22, a32, linv.z); }
    if (rows > 3u) { store_row(ob + 3u * ost, c0, cu, a03, a13, a23, a33, linv.w); }
}
