// Shared core of the GPU-tier tiled GEMM (`gemm_tiled*.wgsl`): parameters, tile geometry, workgroup tiles,
// the register tile and its epilogue. The including file declares `alias T`, the bindings `x` and `w` (scalar
// or vec4 views) and the entry point, which stages tiles with its own loads and calls `mac_tile` / `store_tile`.
//
// Geometry: a workgroup of WG_X x WG_Y invocations computes a BM x BN block of Y (BM = 8 WG_Y, BN = 8 WG_X);
// each invocation owns an 8 x 8 register tile made of four 4 x 4 sub-tiles, at rows 4 ly and BM/2 + 4 ly and
// columns 4 lx and BN/2 + 4 lx of the block (so neighbouring invocations read neighbouring vec4s of the staged
// blocks). K advances in steps of BK: the X block (BM x BK) and the W block (BN x BK) are staged in workgroup
// memory, k-major, as vec4s of four consecutive rows (ta) or columns (tb); one k step of the register tile is
// four vec4 loads from workgroup memory and 64 FMAs. Accumulation is f32 whatever the storage type.

#include "matmul_params"

// Invocations along N and along M; K step of one staged tile. Chosen by the launcher per adapter
// (WG_X * WG_Y <= max invocations, 32 BK (WG_X + WG_Y) bytes <= workgroup memory).
override WG_X: u32 = 16u;
override WG_Y: u32 = 16u;
override BK: u32 = 8u;

override BM: u32 = 8u * WG_Y;
override BN: u32 = 8u * WG_X;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> bias: array<T>;
@group(0) @binding(4) var<storage, read_write> y: array<T>;

#include "activation"

// ta[kk * BM/4 + r] = X rows 4r..4r+3 of the block at k = kk; tb likewise for W columns.
var<workgroup> ta: array<vec4<f32>, BK * 2u * WG_Y>;
var<workgroup> tb: array<vec4<f32>, BK * 2u * WG_X>;

// A 4 x 4 sub-tile: row i is r_i (its 4 columns).
struct Tile {
    r0: vec4<f32>,
    r1: vec4<f32>,
    r2: vec4<f32>,
    r3: vec4<f32>,
}

// The register tile: sub-tile (i, j) covers rows i BM/2 + 4 ly.., columns j BN/2 + 4 lx...
var<private> t00: Tile;
var<private> t01: Tile;
var<private> t10: Tile;
var<private> t11: Tile;

fn clear_tiles() {
    let z = Tile(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    t00 = z;
    t01 = z;
    t10 = z;
    t11 = z;
}

// Element (mm, kk) of the staged X block (mm < BM, kk < BK).
fn put_a(mm: u32, kk: u32, v: f32) {
    ta[kk * (BM / 4u) + mm / 4u][mm % 4u] = v;
}

// Element (nn, kk) of the staged W block (nn < BN, kk < BK).
fn put_b(nn: u32, kk: u32, v: f32) {
    tb[kk * (BN / 4u) + nn / 4u][nn % 4u] = v;
}

// t + outer(a, b).
fn mac(t: Tile, a: vec4<f32>, b: vec4<f32>) -> Tile {
    return Tile(fma(vec4<f32>(a.x), b, t.r0), fma(vec4<f32>(a.y), b, t.r1), fma(vec4<f32>(a.z), b, t.r2),
        fma(vec4<f32>(a.w), b, t.r3));
}

// One staged K step of the register tile (BK is a pipeline constant: the loop unrolls).
fn mac_tile(lx: u32, ly: u32) {
    for (var kk = 0u; kk < BK; kk++) {
        let ra = kk * (BM / 4u) + ly;
        let rb = kk * (BN / 4u) + lx;
        let a0 = ta[ra];
        let a1 = ta[ra + WG_Y];
        let b0 = tb[rb];
        let b1 = tb[rb + WG_X];
        t00 = mac(t00, a0, b0);
        t01 = mac(t01, a0, b1);
        t10 = mac(t10, a1, b0);
        t11 = mac(t11, a1, b1);
    }
}

// Four consecutive values of the bias at `i0` (clamped to `len` entries; only in-range ones are stored).
fn bias4(i0: u32, len: u32) -> vec4<f32> {
    let l = len - 1u;
    return vec4<f32>(f32(bias[p.base_b + min(i0, l)]), f32(bias[p.base_b + min(i0 + 1u, l)]),
        f32(bias[p.base_b + min(i0 + 2u, l)]), f32(bias[p.base_b + min(i0 + 3u, l)]));
}

fn act4(v: vec4<f32>, act: u32) -> vec4<f32> {
    return vec4<f32>(activate(v.x, act), activate(v.y, act), activate(v.z, act), activate(v.w, act));
}

// Row m of the register tile: accumulate-into-y, activation, bounds-checked stores. `yi` indexes (m, n0).
fn store_row(m: u32, n0: u32, yi: u32, v: vec4<f32>, accumulate: bool, act: u32) {
    if (m >= p.m) { return; }
    let nn = p.n;
    var r = v;
    if (accumulate) {
        let l = nn - 1u - n0;
        r += vec4<f32>(f32(y[yi]), f32(y[yi + min(1u, l)]), f32(y[yi + min(2u, l)]), f32(y[yi + min(3u, l)]));
    }
    r = act4(r, act);
    y[yi] = T(r.x);
    if (n0 + 1u < nn) { y[yi + 1u] = T(r.y); }
    if (n0 + 2u < nn) { y[yi + 2u] = T(r.z); }
    if (n0 + 3u < nn) { y[yi + 3u] = T(r.w); }
}

// GEGLU pairs (act 4): GEMM column n reads weight row (and bias entry) n/2 + (n%2)·N/2, so the columns of a
// vec4 hold (value, gate, value, gate) of two output columns, and the store writes value · GELU(gate) at output
// column n/2 (diffusers' GEGLU: the projection's first half times GELU of its second half).
fn src_col(n: u32) -> u32 {
    if (p.act == 4u) { return n / 2u + (n % 2u) * (p.n / 2u); }
    return n;
}

// Row m of a GEGLU sub-tile: `v` = (value, gate, value, gate) of output columns n0/2 and n0/2 + 1 (N is even).
fn store_row_geglu(m: u32, n0: u32, yi: u32, v: vec4<f32>) {
    if (m >= p.m) { return; }
    y[yi] = T(v.x * gelu_erf(v.y));
    if (n0 + 2u < p.n) { y[yi + 1u] = T(v.z * gelu_erf(v.w)); }
}

// Bias, accumulate, activation and the bounds-checked store of sub-tile `t` at (m0, n0). The bias is read
// once per sub-tile (four columns or four rows), the parameters once.
fn store_sub(bi: u32, m0: u32, n0: u32, t: Tile) {
    if (m0 >= p.m || n0 >= p.n) { return; }
    let flags = p.flags;
    let act = p.act;
    let ldy = p.ldy;
    var bc = vec4<f32>(0.0);
    var br = vec4<f32>(0.0);
    if (act == 4u) {
        if ((flags & 1u) != 0u) {
            let l = p.n - 1u;
            bc = vec4<f32>(f32(bias[p.base_b + src_col(n0)]), f32(bias[p.base_b + src_col(min(n0 + 1u, l))]),
                f32(bias[p.base_b + src_col(min(n0 + 2u, l))]), f32(bias[p.base_b + src_col(min(n0 + 3u, l))]));
        }
        let y0 = p.base_y + bi * p.y_sb + m0 * ldy + n0 / 2u;
        store_row_geglu(m0, n0, y0, t.r0 + bc);
        store_row_geglu(m0 + 1u, n0, y0 + ldy, t.r1 + bc);
        store_row_geglu(m0 + 2u, n0, y0 + 2u * ldy, t.r2 + bc);
        store_row_geglu(m0 + 3u, n0, y0 + 3u * ldy, t.r3 + bc);
        return;
    }
    if ((flags & 1u) != 0u) { bc = bias4(n0, p.n); }
    if ((flags & 2u) != 0u) { br = bias4(m0, p.m); }
    let acc_in = (flags & 4u) != 0u;
    let y0 = p.base_y + bi * p.y_sb + m0 * ldy + n0;
    store_row(m0, n0, y0, t.r0 + bc + br.x, acc_in, act);
    store_row(m0 + 1u, n0, y0 + ldy, t.r1 + bc + br.y, acc_in, act);
    store_row(m0 + 2u, n0, y0 + 2u * ldy, t.r2 + bc + br.z, acc_in, act);
    store_row(m0 + 3u, n0, y0 + 3u * ldy, t.r3 + bc + br.w, acc_in, act);
}

// The whole register tile of invocation (lx, ly) of the block at (bm, bn).
fn store_tile(bi: u32, bm: u32, bn: u32, lx: u32, ly: u32) {
    let m0 = bm + 4u * ly;
    let n0 = bn + 4u * lx;
    store_sub(bi, m0, n0, t00);
    store_sub(bi, m0, n0 + BN / 2u, t01);
    store_sub(bi, m0 + BM / 2u, n0, t10);
    store_sub(bi, m0 + BM / 2u, n0 + BN / 2u, t11);
}
