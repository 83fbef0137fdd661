// The denoising step on the GPU (docs: the EDM Euler sampler of SVD, v-prediction): the scaled model input, the
// per-frame classifier-free guidance and the Euler update, so the latents stay on the device between steps.
// Latents are f32 storage holding values of the model dtype T; every operation the reference rounds to T is
// rounded here by `rt` (the identity in the f32 expansion).
alias T = f32;

struct Params {
    n: u32,          // latent values: frames × plane
    plane: u32,      // values of one frame's latents (C·h·w)
    frames: u32,
    cfg: u32,        // 1: v holds [uncond; cond], combine with per-frame guidance
    stride: u32,     // values between consecutive (batch, frame) blocks of the UNet input (in_channels·h·w)
    batch: u32,      // UNet batch (2 with CFG)
    div: f32,        // sqrt(σ² + 1): model input scaling
    c_out: f32,      // −σ / sqrt(σ² + 1)
    q: f32,          // σ² + 1
    sigma: f32,
    dt: f32,         // σ_next − σ
    fr0: u32,        // first frame of this dispatch (frame chunks keep every binding within the adapter's limit)
    b_stride: u32,   // values between the batch entries of the UNet input binding
    base_lat: u32,   // element bases inside the bindings (their first frame's values)
    base_s: u32,
    base_u: u32,     // v rows of the unconditional half (or the only half without CFG)
    base_c: u32,     // v rows of the conditional half (binding vc)
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> lat: array<f32>;
@group(0) @binding(2) var<storage, read_write> sample: array<T>;
@group(0) @binding(3) var<storage, read> v: array<T>;
@group(0) @binding(4) var<storage, read> scales: array<f32>;
@group(0) @binding(5) var<storage, read_write> flag: array<atomic<u32>>;
@group(0) @binding(6) var<storage, read> vc: array<T>;

fn rt(x: f32) -> f32 {
    return f32(T(x));
}

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

// sample[b, fr, 0..plane] = T(lat[fr] / sqrt(σ² + 1)) for every batch entry (the image-latent channels that
// follow are written once by the host and left alone). Indices are relative to the dispatch's first frame.
@compute @workgroup_size(WG)
fn scale_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    let fr = i / p.plane;
    let k = i - fr * p.plane;
    let x = T(lat[p.base_lat + i] / p.div);
    for (var b = 0u; b < p.batch; b++) {
        sample[p.base_s + b * p.b_stride + fr * p.stride + k] = x;
    }
}

// Guidance then the Euler step, in the reference's order and roundings:
// g = u + s_f·(c − u); x̂0 = rt(g·c_out) + x/q; x ← rt(x + (x − x̂0)/σ · dt). Sets flag[0] on NaN or infinity.
@compute @workgroup_size(WG)
fn cfg_euler(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    var g: f32;
    if (p.cfg == 1u) {
        let u = f32(v[p.base_u + i]);
        let c = f32(vc[p.base_c + i]);
        let s = scales[p.fr0 + i / p.plane];
        g = rt(u + rt(s * rt(c - u)));
    } else {
        g = f32(v[p.base_u + i]);
    }
    let x = lat[p.base_lat + i];
    let x0 = rt(g * p.c_out) + x / p.q;
    let d = (x - x0) / p.sigma;
    let y = rt(x + d * p.dt);
    lat[p.base_lat + i] = y;
    // Exponent all ones: NaN or infinity (a bit test, which fast-math cannot fold away).
    if ((bitcast<u32>(y) & 0x7f800000u) == 0x7f800000u) {
        atomicOr(&flag[0], 1u);
    }
}
