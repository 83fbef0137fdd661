// Elementwise and broadcast ops. Storage type T (f32 or f16); arithmetic in f32.
// Every binding carries a base element offset (the launcher binds aligned windows of large tensors).
alias T = f32;

#include "elementwise_params"

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<T>;
@group(0) @binding(2) var<storage, read> b: array<T>;
@group(0) @binding(3) var<storage, read_write> y: array<T>;
@group(0) @binding(4) var<storage, read> c: array<T>;

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
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

#include "activation"

// y = gelu_erf(a), exact (erf) form
@compute @workgroup_size(WG)
fn gelu_op(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    y[p.base_y + i] = T(gelu_erf(f32(a[p.base_a + i])));
}

// y += a (residual accumulate; y and a are different buffers)
@compute @workgroup_size(WG)
fn add_inplace(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    y[p.base_y + i] = T(f32(y[p.base_y + i]) + f32(a[p.base_a + i]));
}

// y = a + b[((first + i) / div) % modn · inner + (first + i) % inner]: per-channel, per-(sample, channel),
// per-sample and row-vector adds (inner = 1), and tables of channel-last rows (inner = C)
@compute @workgroup_size(WG)
fn broadcast_add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    let g = p.first + i;
    let j = (g / p.div) % p.modn * p.inner + g % max(p.inner, 1u);
    y[p.base_y + i] = T(f32(a[p.base_a + i]) + f32(b[p.base_b + j]));
}

// y += b[...] in place (same indexing as broadcast_add; y bound once, read-write)
@compute @workgroup_size(WG)
fn broadcast_add_inplace(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    let g = p.first + i;
    let j = (g / p.div) % p.modn * p.inner + g % max(p.inner, 1u);
    y[p.base_y + i] = T(f32(y[p.base_y + i]) + f32(b[p.base_b + j]));
}

// y = alpha·a + (1 − alpha)·b, alpha a scalar
@compute @workgroup_size(WG)
fn blend(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    y[p.base_y + i] = T(p.alpha * f32(a[p.base_a + i]) + (1.0 - p.alpha) * f32(b[p.base_b + i]));
}

// y = alpha[s]·a + (1 − alpha[s])·b with s = ((first + i) / div) % modn (alpha per sample, binding 4)
@compute @workgroup_size(WG)
fn blend_per_sample(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    let al = f32(c[((p.first + i) / p.div) % p.modn]);
    y[p.base_y + i] = T(al * f32(a[p.base_a + i]) + (1.0 - al) * f32(b[p.base_b + i]));
}

// GEGLU: a [rows, 2·inner] → y [rows, inner] = first half · gelu_erf(second half)
@compute @workgroup_size(WG)
fn geglu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    let r = i / p.inner;
    let j = i % p.inner;
    let src = p.base_a + r * 2u * p.inner + j;
    y[p.base_y + i] = T(f32(a[src]) * gelu_erf(f32(a[src + p.inner])));
}
