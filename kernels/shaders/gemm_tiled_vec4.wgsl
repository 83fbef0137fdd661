// GPU-tier GEMM with vec4 loads from global memory: the twin of `gemm_tiled.wgsl` for K-contiguous operands
// (X [M, K] rows, NK weight W [N, K] rows) whose K, row strides, batch strides and binding bases are multiples
// of 4 (the launcher checks). Each staging load is one vec4 of 4 consecutive K; BK must be a multiple of 4.
alias T = f32;

@group(0) @binding(1) var<storage, read> x: array<vec4<T>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<T>>;

#include "gemm"

@compute @workgroup_size(WG_X, WG_Y, 1)
fn gemm_tiled_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let bi = wid.z;
    let bm = wid.y * BM;
    let bn = wid.x * BN;
    let li = lid.y * WG_X + lid.x;
    let nt = WG_X * WG_Y;
    let bk4 = BK / 4u;
    let xb = (p.base_x + bi * p.x_sb) / 4u;
    let wb = (p.base_w + bi * p.w_sb) / 4u;
    let ldx4 = p.ldx / 4u;
    let ldw4 = p.w_sn / 4u;
    clear_tiles();
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        for (var i = li; i < BM * bk4; i += nt) {
            let mm = i / bk4;
            let kk = (i % bk4) * 4u;
            let gm = bm + mm;
            let gk = k0 + kk;
            var v = vec4<f32>(0.0);
            if (gm < p.m && gk < p.k) { v = vec4<f32>(x[xb + gm * ldx4 + gk / 4u]); }
            put_a(mm, kk, v.x);
            put_a(mm, kk + 1u, v.y);
            put_a(mm, kk + 2u, v.z);
            put_a(mm, kk + 3u, v.w);
        }
        for (var i = li; i < BN * bk4; i += nt) {
            let nn = i / bk4;
            let kk = (i % bk4) * 4u;
            let gn = bn + nn;
            let gk = k0 + kk;
            var v = vec4<f32>(0.0);
            if (gn < p.n && gk < p.k) { v = vec4<f32>(w[wb + src_col(gn) * ldw4 + gk / 4u]); }
            put_b(nn, kk, v.x);
            put_b(nn, kk + 1u, v.y);
            put_b(nn, kk + 2u, v.z);
            put_b(nn, kk + 3u, v.w);
        }
        workgroupBarrier();
        mac_tile(lid.x, lid.y);
        workgroupBarrier();
    }
    store_tile(bi, bm, bn, lid.x, lid.y);
}
