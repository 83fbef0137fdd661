// Column gathering for convolutions computed as GEMMs (`y[co, p] = Σ_k W[co, k] · cols[p, k]`):
//   im2col: cols[p, k] of a 2-D convolution, k = ci·KH·KW + ky·KW + kx, zero outside the image (padding);
//   temporal_cols: cols[p, ci·3 + t] = x[frame f + t − 1][ci][p] for the 3-tap temporal conv, zero outside the clip.
// One invocation per output element; `base_*` are the element offsets of the bound windows.
alias T = f32;

struct Params {
    n_pix: u32,    // pixels in this chunk
    p0: u32,       // first output pixel of the chunk
    k: u32,        // columns per pixel in this chunk
    h: u32,        // input height (temporal: unused)
    w: u32,        // input width (temporal: pixels per frame)
    wo: u32,       // output width
    kh: u32,
    kw: u32,
    stride: u32,
    pad_t: u32,
    pad_l: u32,
    base_x: u32,
    base_y: u32,
    base_prev: u32,  // temporal: windows of the previous and next frame, flags say whether they exist
    base_next: u32,
    flags: u32,      // temporal: 1 = previous frame exists, 2 = next frame exists
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> cols: array<T>;
@group(0) @binding(3) var<storage, read> x_prev: array<T>;
@group(0) @binding(4) var<storage, read> x_next: array<T>;

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn im2col(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= p.n_pix * p.k) { return; }
    let pix = i / p.k;
    let kk = i % p.k;
    let taps = p.kh * p.kw;
    let ci = kk / taps;
    let r = kk % taps;
    let ky = r / p.kw;
    let kx = r % p.kw;
    let op = p.p0 + pix;
    let oy = op / p.wo;
    let ox = op % p.wo;
    // Signed arithmetic for the padded border.
    let iy = i32(oy * p.stride + ky) - i32(p.pad_t);
    let ix = i32(ox * p.stride + kx) - i32(p.pad_l);
    var v = 0.0;
    if (iy >= 0 && ix >= 0 && iy < i32(p.h) && ix < i32(p.w)) {
        v = f32(x[p.base_x + ci * p.h * p.w + u32(iy) * p.w + u32(ix)]);
    }
    cols[p.base_y + pix * p.k + kk] = T(v);
}

@compute @workgroup_size(WG)
fn temporal_cols(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= p.n_pix * p.k) { return; }
    let pix = i / p.k;
    let kk = i % p.k;
    let ci = kk / 3u;
    let t = kk % 3u;
    let src = ci * p.w + p.p0 + pix;
    var v = 0.0;
    if (t == 1u) {
        v = f32(x[p.base_x + src]);
    } else if (t == 0u) {
        if ((p.flags & 1u) != 0u) { v = f32(x_prev[p.base_prev + src]); }
    } else {
        if ((p.flags & 2u) != 0u) { v = f32(x_next[p.base_next + src]); }
    }
    cols[p.base_y + pix * p.k + kk] = T(v);
}
