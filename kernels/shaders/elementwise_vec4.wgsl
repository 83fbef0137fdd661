// Vectorised elementwise ops: each invocation handles 4 consecutive elements with vec4 loads and stores
// (used when the element count and every window base are multiples of 4). On lavapipe a lane-divergent
// load is a loop over lanes, so one vec4 load per lane costs about what one scalar load does.
// Params as elementwise.wgsl (include "elementwise_params"); n and bases are in elements (multiples of 4).
alias T = f32;

#include "elementwise_params"

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<T>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<T>>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<T>>;

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn add4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= p.n / 4u) { return; }
    y[p.base_y / 4u + i] = vec4<T>(vec4<f32>(a[p.base_a / 4u + i]) + vec4<f32>(b[p.base_b / 4u + i]));
}
