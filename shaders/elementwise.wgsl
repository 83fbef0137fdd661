// Elementwise and broadcast ops. Storage type T (f32 or f16); arithmetic in f32.
// Every binding carries a base element offset (the launcher binds aligned windows of large tensors).
alias T = f32;

struct Params {
    n: u32,        // elements in this dispatch
    base_a: u32,
    base_b: u32,
    base_y: u32,
    alpha: f32,
    beta: f32,
    _pad0: u32,
    _pad1: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<T>;
@group(0) @binding(2) var<storage, read> b: array<T>;
@group(0) @binding(3) var<storage, read_write> y: array<T>;

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

fn silu(x: f32) -> f32 {
    return x / (1.0 + exp(-x));
}

// y = a + b
@compute @workgroup_size(WG)
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    y[p.base_y + i] = T(f32(a[p.base_a + i]) + f32(b[p.base_b + i]));
}

// y = a * b
@compute @workgroup_size(WG)
fn mul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    y[p.base_y + i] = T(f32(a[p.base_a + i]) * f32(b[p.base_b + i]));
}

// y = silu(a)
@compute @workgroup_size(WG)
fn silu_op(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    y[p.base_y + i] = T(silu(f32(a[p.base_a + i])));
}

// y = alpha * a + beta
@compute @workgroup_size(WG)
fn scale(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    y[p.base_y + i] = T(p.alpha * f32(a[p.base_a + i]) + p.beta);
}
