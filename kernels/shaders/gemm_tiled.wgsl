// GPU-tier GEMM, any strides: Y[b, m, n] (+)= act( sum_k X[b, m, k] * W[b, n, k] + bias ).
// Block tiles of X and W staged in workgroup memory, an 8 x 8 f32 register tile per invocation (geometry in
// `include/gemm.wgsl`). Scalar loads, so any K, row stride, offset and both W layouts (NK: W[n, k] at
// n*w_sn + k, KN: W[k, n] at k*w_sk + n); `gemm_tiled_vec4.wgsl` is the vec4-load twin for aligned NK operands.
// Edge blocks stage zeros outside M, N, K and skip their stores. Storage type T, f32 accumulation.
alias T = f32;

@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> w: array<T>;

#include "gemm"

@compute @workgroup_size(WG_X, WG_Y, 1)
fn gemm_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let bi = wid.z;
    let bm = wid.y * BM;
    let bn = wid.x * BN;
    let li = lid.y * WG_X + lid.x;
    let nt = WG_X * WG_Y;
    let xb = p.base_x + bi * p.x_sb;
    let wb = p.base_w + bi * p.w_sb;
    // Consecutive invocations read consecutive K for X and for an NK weight, consecutive N for a KN weight.
    let w_kn = p.w_sk != 1u;
    clear_tiles();
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        for (var i = li; i < BM * BK; i += nt) {
            let mm = i / BK;
            let kk = i % BK;
            let gm = bm + mm;
            let gk = k0 + kk;
            var v = 0.0;
            if (gm < p.m && gk < p.k) { v = f32(x[xb + gm * p.ldx + gk]); }
            put_a(mm, kk, v);
        }
        for (var i = li; i < BN * BK; i += nt) {
            var nn = i / BK;
            var kk = i % BK;
            if (w_kn) {
                nn = i % BN;
                kk = i / BN;
            }
            let gn = bn + nn;
            let gk = k0 + kk;
            var v = 0.0;
            if (gn < p.n && gk < p.k) { v = f32(w[wb + src_col(gn) * p.w_sn + gk * p.w_sk]); }
            put_b(nn, kk, v);
        }
        workgroupBarrier();
        mac_tile(lid.x, lid.y);
        workgroupBarrier();
    }
    store_tile(bi, bm, bn, lid.x, lid.y);
}
