// Data movement: axis swaps (the transposes between (b·f, c, h·w), (b·f, h·w, c) and (b·h·w, f, c)),
// nearest 2× upsampling, and strided 2-D copies (channel concatenation). Indices are relative to the bound
// windows; `base_*` are the windows' element offsets.
alias T = f32;

struct Params {
    n: u32,       // elements in this dispatch
    d0: u32,      // swap: B, C, D of the full tensor; upsample: H, W; copy: cols
    d1: u32,
    d2: u32,
    nb: u32,      // swap: tile extents along B and C
    nc: u32,
    base_x: u32,
    base_y: u32,
    ldx: u32,     // copy: row strides
    ldy: u32,
    _pad0: u32,
    _pad1: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

// x [A, B, C, D] → y [A, C, B, D] over a tile (a < na, b < nb, c < nc) of the full B = d0, C = d1, D = d2.
@compute @workgroup_size(WG)
fn swap12(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    let bd = p.d0;
    let cd = p.d1;
    let dd = p.d2;
    let d = i % dd;
    let t = i / dd;
    let b = t % p.nb;
    let t2 = t / p.nb;
    let c = t2 % p.nc;
    let a = t2 / p.nc;
    y[p.base_y + ((a * cd + c) * bd + b) * dd + d] = x[p.base_x + ((a * bd + b) * cd + c) * dd + d];
}

// (planes, H, W) → (planes, 2H, 2W), nearest neighbour; H = d0, W = d1.
@compute @workgroup_size(WG)
fn upsample2x(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    let h = p.d0;
    let w = p.d1;
    let plane = i / (4u * h * w);
    let r = i % (4u * h * w);
    let oy = r / (2u * w);
    let ox = r % (2u * w);
    y[p.base_y + i] = x[p.base_x + plane * h * w + (oy / 2u) * w + ox / 2u];
}

// y[r·ldy + j] = x[r·ldx + j] for j < cols (= d0).
@compute @workgroup_size(WG)
fn copy2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    let r = i / p.d0;
    let j = i % p.d0;
    y[p.base_y + r * p.ldy + j] = x[p.base_x + r * p.ldx + j];
}
