// Matmul fast path for K % 4 == 0 with both operands K-contiguous (X [M, K], W [N, K] per batch):
// Y[b, m, n] = act( sum_k X[b, m, k] * W[b, n, k] + bias[n] ).
// Each invocation computes a 4 x 4 block with vec4 loads along K (16 dot products per 4-wide K step).
// Same Params layout as matmul.wgsl (bases and strides in elements; the launcher guarantees multiples of 4).
alias T = f32;

#include "matmul_params"

override WG_X: u32 = 8u;
override WG_Y: u32 = 8u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<T>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<T>>;
@group(0) @binding(3) var<storage, read> bias: array<T>;
@group(0) @binding(4) var<storage, read_write> y: array<T>;

#include "activation"

#include "matmul_store"

fn store_row(m: u32, n0: u32, bi: u32, v: vec4<f32>) {
    store(m, n0, bi, v.x);
    store(m, n0 + 1u, bi, v.y);
    store(m, n0 + 2u, bi, v.z);
    store(m, n0 + 3u, bi, v.w);
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn matmul_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let n0 = (wid.x * WG_X + lid.x) * 4u;
    let m0 = (wid.y * WG_Y + lid.y) * 4u;
    let bi = wid.z;
    if (m0 >= p.m || n0 >= p.n) { return; }
    let kq = p.k / 4u;
    let lm = p.m - 1u;
    let ln = p.n - 1u;
    // vec4 indices of row starts; edge rows/columns are clamped (their results are not stored).
    let xb = (p.base_x + bi * p.x_sb) / 4u;
    let wb = (p.base_w + bi * p.w_sb) / 4u;
    let x0 = xb + min(m0, lm) * (p.ldx / 4u);
    let x1 = xb + min(m0 + 1u, lm) * (p.ldx / 4u);
    let x2 = xb + min(m0 + 2u, lm) * (p.ldx / 4u);
    let x3 = xb + min(m0 + 3u, lm) * (p.ldx / 4u);
    let w0 = wb + min(n0, ln) * (p.w_sn / 4u);
    let w1 = wb + min(n0 + 1u, ln) * (p.w_sn / 4u);
    let w2 = wb + min(n0 + 2u, ln) * (p.w_sn / 4u);
    let w3 = wb + min(n0 + 3u, ln) * (p.w_sn / 4u);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var kk = 0u; kk < kq; kk++) {
        let xv0 = vec4<f32>(x[x0 + kk]);
        let xv1 = vec4<f32>(x[x1 + kk]);
        let xv2 = vec4<f32>(x[x2 + kk]);
        let xv3 = vec4<f32>(x[x3 + kk]);
        let wv0 = vec4<f32>(w[w0 + kk]);
        let wv1 = vec4<f32>(w[w1 + kk]);
        let wv2 = vec4<f32>(w[w2 + kk]);
        let wv3 = vec4<f32>(w[w3 + kk]);
        a0 += vec4<f32>(dot(xv0, wv0), dot(xv0, wv1), dot(xv0, wv2), dot(xv0, wv3));
        a1 += vec4<f32>(dot(xv1, wv0), dot(xv1, wv1), dot(xv1, wv2), dot(xv1, wv3));
        a2 += vec4<f32>(dot(xv2, wv0), dot(xv2, wv1), dot(xv2, wv2), dot(xv2, wv3));
        a3 += vec4<f32>(dot(xv3, wv0), dot(xv3, wv1), dot(xv3, wv2), dot(xv3, wv3));
    }
    store_row(m0, n0, bi, a0);
    store_row(m0 + 1u, n0, bi, a1);
    store_row(m0 + 2u, n0, bi, a2);
    store_row(m0 + 3u, n0, bi, a3);
}
