// Softmax over the last dimension, with the row maximum subtracted before exp. One invocation per row.
alias T = f32;

struct Params {
    rows: u32,
    c: u32,
    base_x: u32,
    base_y: u32,
    scale: f32,      // logits are multiplied by this first
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;

@compute @workgroup_size(WG)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let r = (wid.x + wid.y * nwg.x) * WG + lid;
    if (r >= p.rows) { return; }
    let xo = p.base_x + r * p.c;
    let yo = p.base_y + r * p.c;
    var m = -3.4028234e38;
    for (var i = 0u; i < p.c; i++) { m = max(m, f32(x[xo + i]) * p.scale); }
    var s = 0.0;
    for (var i = 0u; i < p.c; i++) { s += exp(f32(x[xo + i]) * p.scale - m); }
    let inv = 1.0 / s;
    for (var i = 0u; i < p.c; i++) { y[yo + i] = T(exp(f32(x[xo + i]) * p.scale - m) * inv); }
}
