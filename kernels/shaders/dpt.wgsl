// Ops of the DPT depth head (Depth-Anything-V2): bilinear resize with align_corners=True, the pixel
// rearrangement that finishes a stride = kernel ConvTranspose2d (GEMM output → NCHW, plus bias), and ReLU.
// Storage type T (f32 or f16); arithmetic in f32. Indices are relative to the bound windows; `base_*` are the
// windows' element offsets.
alias T = f32;

struct Params {
    n: u32,       // elements written by this dispatch
    h: u32,       // input plane height (resize) / token grid height (rearrange)
    w: u32,       // input plane width / token grid width
    ho: u32,      // output plane height
    wo: u32,      // output plane width
    k: u32,       // rearrange: kernel = stride
    nc: u32,      // rearrange: output channels in this dispatch (GEMM row length = nc·k·k)
    base_x: u32,
    base_y: u32,
    base_b: u32,
    rh: f32,      // resize: source step per output row, (h − 1)/(ho − 1) in f32 (0 when ho = 1)
    rw: f32,      // resize: source step per output column
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;
@group(0) @binding(3) var<storage, read> b: array<T>;

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

// Source taps of output index `o` on an axis of `n` inputs with step `r` (PyTorch's align_corners=True rule):
// i0 = min(floor(r·o), n − 1), λ = clamp(r·o − i0, 0, 1), i1 = i0 + (i0 < n − 1). Returns (i0, i1, λ).
fn taps(o: u32, n: u32, r: f32) -> vec3<f32> {
    let s = r * f32(o);
    let i0 = min(u32(floor(s)), n - 1u);
    let l = clamp(s - f32(i0), 0.0, 1.0);
    let i1 = i0 + select(0u, 1u, i0 < n - 1u);
    return vec3<f32>(f32(i0), f32(i1), l);
}

// (planes, h, w) → (planes, ho, wo): along x in the two source rows, then along y.
@compute @workgroup_size(WG)
fn bilinear_ac(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    let plane = i / (p.ho * p.wo);
    let r = i % (p.ho * p.wo);
    let ty = taps(r / p.wo, p.h, p.rh);
    let tx = taps(r % p.wo, p.w, p.rw);
    let x0 = u32(tx.x);
    let x1 = u32(tx.y);
    let row0 = p.base_x + plane * p.h * p.w + u32(ty.x) * p.w;
    let row1 = p.base_x + plane * p.h * p.w + u32(ty.y) * p.w;
    let lx = tx.z;
    let ly = ty.z;
    let top = (1.0 - lx) * f32(x[row0 + x0]) + lx * f32(x[row0 + x1]);
    let bot = (1.0 - lx) * f32(x[row1 + x0]) + lx * f32(x[row1 + x1]);
    y[p.base_y + i] = T((1.0 - ly) * top + ly * bot);
}

// GEMM output g [h·w tokens, nc·k·k] (token t = yy·w + xx, column (o·k + i)·k + j) → y [nc, k·h, k·w]:
// y[o, k·yy + i, k·xx + j] = g[t, (o·k + i)·k + j] + b[o].
@compute @workgroup_size(WG)
fn rearrange_ks(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    let plane = p.ho * p.wo;
    let o = i / plane;
    let r = i % plane;
    let oy = r / p.wo;
    let ox = r % p.wo;
    let yy = oy / p.k;
    let ki = oy % p.k;
    let xx = ox / p.k;
    let kj = ox % p.k;
    let src = (yy * p.w + xx) * (p.nc * p.k * p.k) + (o * p.k + ki) * p.k + kj;
    y[p.base_y + i] = T(f32(x[p.base_x + src]) + f32(b[p.base_b + o]));
}

// y = max(x, 0)
@compute @workgroup_size(WG)
fn relu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    y[p.base_y + i] = T(max(f32(x[p.base_x + i]), 0.0));
}

// y = max(y, 0) in place (binding 2 only).
@compute @workgroup_size(WG)
fn relu_inplace(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    y[p.base_y + i] = T(max(f32(y[p.base_y + i]), 0.0));
}
