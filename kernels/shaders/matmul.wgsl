// Batched matmul / linear: Y[b, m, n] = act( sum_k X[b, m, k] * W[b, n, k] + bias[n] ).
// W is addressed with strides (w_sn, w_sk), so PyTorch's [out, in] weight (w_sn = K, w_sk = 1) and a
// [K, N] matrix (w_sn = 1, w_sk = N) both work; batch strides may be 0 (weight shared across the batch).
// Each invocation computes a TM x TN register block; the workgroup is WG_X x WG_Y invocations.
// Storage type T (f32 or f16); accumulation in f32.
alias T = f32;

#include "matmul_params"

override TM: u32 = 4u;
override TN: u32 = 4u;
override WG_X: u32 = 8u;
override WG_Y: u32 = 8u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> w: array<T>;
@group(0) @binding(3) var<storage, read> bias: array<T>;
@group(0) @binding(4) var<storage, read_write> y: array<T>;

#include "activation"

const MAX_TM: u32 = 8u;
const MAX_TN: u32 = 8u;

@compute @workgroup_size(WG_X, WG_Y, 1)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let n0 = (wid.x * WG_X + lid.x) * TN;
    let m0 = (wid.y * WG_Y + lid.y) * TM;
    let bi = wid.z;
    if (m0 >= p.m || n0 >= p.n) { return; }
    var acc: array<array<f32, MAX_TN>, MAX_TM>;
    for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) { acc[i][j] = 0.0; }
    }
    // Clamp row/column indices so edge blocks read valid memory; their results are not stored.
    var xrow: array<u32, MAX_TM>;
    var wcol: array<u32, MAX_TN>;
    for (var i = 0u; i < TM; i++) {
        xrow[i] = p.base_x + bi * p.x_sb + min(m0 + i, p.m - 1u) * p.ldx;
    }
    for (var j = 0u; j < TN; j++) {
        wcol[j] = p.base_w + bi * p.w_sb + min(n0 + j, p.n - 1u) * p.w_sn;
    }
    for (var kk = 0u; kk < p.k; kk++) {
        var xv: array<f32, MAX_TM>;
        for (var i = 0u; i < TM; i++) { xv[i] = f32(x[xrow[i] + kk]); }
        for (var j = 0u; j < TN; j++) {
            let wv = f32(w[wcol[j] + kk * p.w_sk]);
            for (var i = 0u; i < TM; i++) { acc[i][j] = fma(xv[i], wv, acc[i][j]); }
        }
    }
    for (var i = 0u; i < TM; i++) {
        let m = m0 + i;
        if (m >= p.m) { break; }
        for (var j = 0u; j < TN; j++) {
            let n = n0 + j;
            if (n >= p.n) { break; }
            var v = acc[i][j];
            let yi = p.base_y + bi * p.y_sb + m * p.ldy + n;
            if ((p.flags & 1u) != 0u) { v += f32(bias[p.base_b + n]); }
            if ((p.flags & 2u) != 0u) { v += f32(bias[p.base_b + m]); }
            if ((p.flags & 4u) != 0u) { v += f32(y[yi]); }
            y[yi] = T(activate(v, p.act));
        }
    }
}
