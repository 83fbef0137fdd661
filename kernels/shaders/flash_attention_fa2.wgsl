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
//   2. Online softmax, f32, on the score registers: the tile's row maxima are reduced over the TC invocations of
//      a row group through workgroup memory; every invocation keeps the running max of its 4 rows and its own
//      part of their running sums (reduced once at the end), and writes P = exp(S - m) for step 3.
//   3. O += P V: the output block BQ × D lives in registers, invocation (tr, tc) holding rows 4·tr.. × the
//      vec4 column groups tc + TC·u (u < NU); V is staged BKV keys × TC vec4 columns at a time.
// So no invocation holds a full head row: the 512-wide VAE head is split over TC = 32 invocations (NU = 4).
// Workgroup memory holds f32 (staged Q/K/V and P), so f16 storage only rounds the inputs and the output.
// Register tiles are fixed-size arrays indexed only in loops whose trip counts are override constants (fully
// unrolled once the constants are known). Keys past seq_kv score NEG (P = 0) and read a clamped, finite V row;
// columns past D read as 0; query rows past seq_q compute on a clamped row and write nothing.
alias T = f32;

#include "flash_params"

override D: u32 = 64u;      // head dim (any; vec4 groups past D read as zeros)
override TR: u32 = 16u;     // row groups of 4 queries
override TC: u32 = 16u;     // column / key groups
override NT: u32 = 256u;    // invocations = TR · TC
override BQ: u32 = 64u;     // queries per workgroup = 4 · TR
override RK: u32 = 2u;      // keys per invocation in the score tile (≤ MAXRK)
override DCK4: u32 = 8u;    // vec4 columns of Q/K staged per score chunk
override BKV: u32 = 32u;    // keys per staged V block (divides TC · RK)
override UJ: u32 = 16u;     // keys per unrolled step of the P V loop (divides BKV, ≤ 20)
override NU: u32 = 1u;      // output column groups per invocation = ceil(ceil(D/4) / TC) (≤ MAXNU)
override QS_N: u32 = 576u;  // BQ · (DCK4 + 1)
override KV_N: u32 = 512u;  // max(TC·RK · (DCK4 + 1), BKV · TC, NT)
override PS_N: u32 = 512u;  // TC·RK · TR
const MAXRK: u32 = 4u;
const MAXNU: u32 = 4u;
const NEG: f32 = -3.0e38;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<T>;
@group(0) @binding(2) var<storage, read> k: array<T>;
@group(0) @binding(3) var<storage, read> v: array<T>;
@group(0) @binding(4) var<storage, read_write> o: array<T>;

var<workgroup> qs: array<vec4<f32>, QS_N>;  // Q chunk, row r at r·(DCK4+1)
// K chunk (row j at j·(DCK4+1)), then the row-max partials (tr·TC + tc), then V blocks (key j at j·TC).
var<workgroup> kv: array<vec4<f32>, KV_N>;
var<workgroup> ps: array<vec4<f32>, PS_N>;  // S then P of the tile: key j, rows 4·tr.. at j·TR + tr

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
    let qh = p.q_base + b * p.seq_q * p.q_stride + h * D;
    let kh = p.k_base + b * p.seq_kv * p.k_stride + h * D;
    let vh = p.v_base + b * p.seq_kv * p.v_stride + h * D;
    let lastq = p.seq_q - 1u;
    let lastk = p.seq_kv - 1u;

    var m = vec4<f32>(NEG);    // running max of rows 4·tr.. (the same in every invocation of the row group)
    var lp = vec4<f32>(0.0);   // this invocation's part of their running sums (its keys only)
    var acc: array<vec4<f32>, 16>;  // 4 · MAXNU: row i of column group u at 4·u + i
    for (var i = 0u; i < 4u * MAXNU; i++) {
        acc[i] = vec4<f32>(0.0);
    }

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
        // max of the TC partials of its row group (kv is free: the last score chunk ended with a barrier).
        var pm = vec4<f32>(NEG);
        for (var kk = 0u; kk < RK; kk++) {
            s[kk] = select(vec4<f32>(NEG), s[kk], j0 + tc + TC * kk < p.seq_kv);
            pm = max(pm, s[kk]);
        }
        kv[tr * TC + tc] = pm;
        workgroupBarrier();
        var mn = m;
        for (var t = 0u; t < TC; t++) {
            mn = max(mn, kv[tr * TC + t]);
        }
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
        for (var u = 0u; u < NU; u++) {
            acc[4u * u] *= corr.x;
            acc[4u * u + 1u] *= corr.y;
            acc[4u * u + 2u] *= corr.z;
            acc[4u * u + 3u] *= corr.w;
        }
        for (var kb = 0u; kb < bk; kb += BKV) {
            for (var u = 0u; u < NU; u++) {
                for (var e = lid; e < BKV * TC; e += NT) {
                    let r = e / TC;
                    let c = e % TC;
                    kv[e] = ld4v(vh + min(j0 + kb + r, lastk) * p.v_stride, 4u * (u * TC + c));
                }
                workgroupBarrier();
                // UJ keys per step in a constant-trip inner loop (fully unrolled: ACO leaves a 32-trip loop of
                // this body rolled), accumulating in named registers.
                var a0 = acc[4u * u];
                var a1 = acc[4u * u + 1u];
                var a2 = acc[4u * u + 2u];
                var a3 = acc[4u * u + 3u];
                for (var j = 0u; j < BKV; j += UJ) {
                    for (var jj = 0u; jj < UJ; jj++) {
                        let pj = ps[(kb + j + jj) * TR + tr];
                        let vj = kv[(j + jj) * TC + tc];
                        a0 = fma(vec4<f32>(pj.x), vj, a0);
                        a1 = fma(vec4<f32>(pj.y), vj, a1);
                        a2 = fma(vec4<f32>(pj.z), vj, a2);
                        a3 = fma(vec4<f32>(pj.w), vj, a3);
                    }
                }
                acc[4u * u] = a0;
                acc[4u * u + 1u] = a1;
                acc[4u * u + 2u] = a2;
                acc[4u * u + 3u] = a3;
                workgroupBarrier();
            }
        }
    }

    // Row sums: the TC parts of each row group (kv is free after the last barrier of step 3).
    kv[tr * TC + tc] = lp;
    workgroupBarrier();
    var l = vec4<f32>(0.0);
    for (var t = 0u; t < TC; t++) {
        l += kv[tr * TC + t];
    }
    let linv = 1.0 / l;
    for (var i = 0u; i < 4u; i++) {
        let sq = q0 + 4u * tr + i;
        if (sq < p.seq_q) {
            let inv = linv[i];
            let orow = p.o_base + (b * p.seq_q + sq) * p.o_stride + h * D;
            for (var u = 0u; u < NU; u++) {
                let col = 4u * (u * TC + tc);
                let x = acc[4u * u + i] * inv;
                if (col < D) { o[orow + col] = T(x.x); }
                if (col + 1u < D) { o[orow + col + 1u] = T(x.y); }
                if (col + 2u < D) { o[orow + col + 2u] = T(x.z); }
                if (col + 3u < D) { o[orow + col + 3u] = T(x.w); }
            }
        }
    }
}
