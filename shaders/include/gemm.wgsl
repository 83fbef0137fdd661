// Shared core of the GPU-tier tiled GEMM (`gemm_tiled*.wgsl`): parameters, tile geometry, workgroup tiles,
// the register tile and its epilogue. The including file declares `alias T`, the bindings `x` and `w` (scalar
// or vec4 views) and the entry point, which stages tiles with its own loads and calls `mac_tile` / `store_tile`.
//
// Geometry: a workgroup of WG_X x WG_Y invocations computes a BM x BN block of Y (BM = 4 WG_Y, BN = 4 WG_X);
// invocation (lx, ly) owns the 4 x 4 register tile at rows 4 ly.., columns 4 lx... K advances in steps of BK:
// the X block (BM x BK) and the W block (BN x BK) are staged in workgroup memory, k-major, as vec4 of four
// consecutive rows (ta) or columns (tb), so one k step of a register tile is two vec4 loads from workgroup
// memory and 16 FMAs. Accumulation is f32 whatever the storage type.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    act: u32,        // 0 none, 1 SiLU, 2 GELU (erf), 3 GELU (tanh)
    base_x: u32,
    base_w: u32,
    base_b: u32,
    base_y: u32,
    x_sb: u32,       // batch strides (elements; 0 = shared by the batch)
    w_sb: u32,
    y_sb: u32,
    flags: u32,      // 1: bias per column, 2: bias per row, 4: accumulate into y
    w_sn: u32,       // W strides: NK (w_sn = ld, w_sk = 1) or KN (w_sn = 1, w_sk = ld)
    w_sk: u32,
    ldx: u32,        // row stride of X
    ldy: u32,        // row stride of Y
}

// Invocations along N and along M; K step of one staged tile. Chosen by the launcher per adapter
// (WG_X * WG_Y <= max invocations, 16 BK (WG_X + WG_Y) bytes <= workgroup memory).
override WG_X: u32 = 16u;
override WG_Y: u32 = 16u;
override BK: u32 = 16u;

override BM: u32 = 4u * WG_Y;
override BN: u32 = 4u * WG_X;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> bias: array<T>;
@group(0) @binding(4) var<storage, read_write> y: array<T>;

#include "activation"

// ta[kk * WG_Y + r] = X rows 4r..4r+3 of the block at k = kk; tb likewise for W columns.
var<workgroup> ta: array<vec4<f32>, BK * WG_Y>;
var<workgroup> tb: array<vec4<f32>, BK * WG_X>;

// The register tile: row i of the invocation's 4 x 4 block is acc_i (its 4 columns).
var<private> acc0: vec4<f32>;
var<private> acc1: vec4<f32>;
var<private> acc2: vec4<f32>;
var<private> acc3: vec4<f32>;

// Element (mm, kk) of the staged X block (mm < BM, kk < BK).
fn put_a(mm: u32, kk: u32, v: f32) {
    ta[kk * WG_Y + mm / 4u][mm % 4u] = v;
}

// Element (nn, kk) of the staged W block (nn < BN, kk < BK).
fn put_b(nn: u32, kk: u32, v: f32) {
    tb[kk * WG_X + nn / 4u][nn % 4u] = v;
}

// One staged K step of the register tile (BK is a pipeline constant: the loop unrolls).
fn mac_tile(lx: u32, ly: u32) {
    for (var kk = 0u; kk < BK; kk++) {
        let a = ta[kk * WG_Y + ly];
        let b = tb[kk * WG_X + lx];
        acc0 = fma(vec4<f32>(a.x), b, acc0);
        acc1 = fma(vec4<f32>(a.y), b, acc1);
        acc2 = fma(vec4<f32>(a.z), b, acc2);
        acc3 = fma(vec4<f32>(a.w), b, acc3);
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

// Bias, accumulate, activation and the bounds-checked store of the register tile at (m0, n0). The bias is
// read once per tile (four columns or four rows), the parameters once.
fn store_tile(bi: u32, m0: u32, n0: u32) {
    if (m0 >= p.m || n0 >= p.n) { return; }
    let flags = p.flags;
    let act = p.act;
    let ldy = p.ldy;
    var bc = vec4<f32>(0.0);
    var br = vec4<f32>(0.0);
    if ((flags & 1u) != 0u) { bc = bias4(n0, p.n); }
    if ((flags & 2u) != 0u) { br = bias4(m0, p.m); }
    let acc_in = (flags & 4u) != 0u;
    let y0 = p.base_y + bi * p.y_sb + m0 * ldy + n0;
    store_row(m0, n0, y0, acc0 + bc + br.x, acc_in, act);
    store_row(m0 + 1u, n0, y0 + ldy, acc1 + bc + br.y, acc_in, act);
    store_row(m0 + 2u, n0, y0 + 2u * ldy, acc2 + bc + br.z, acc_in, act);
    store_row(m0 + 3u, n0, y0 + 3u * ldy, acc3 + bc + br.w, acc_in, act);
}
