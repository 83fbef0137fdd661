// Workgroup-wide reductions for the GPU-tier norm and softmax kernels: every invocation contributes one value
// (or one (count, mean, M2) triple), a tree over workgroup memory combines them in log2(WG) steps, and every
// invocation gets the result. The including file declares `override WG: u32` (a power of two, chosen by the
// launcher) and calls these from uniform control flow (they contain barriers).
// Mean/variance triples are combined with Chan et al.'s pairwise update, so no long serial f32 sum is formed.

var<workgroup> wg_a: array<f32, WG>;
var<workgroup> wg_b: array<f32, WG>;
var<workgroup> wg_c: array<f32, WG>;

fn wg_sum(lid: u32, v: f32) -> f32 {
    wg_a[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) { wg_a[lid] += wg_a[lid + s]; }
        workgroupBarrier();
    }
    let r = wg_a[0];
    workgroupBarrier();
    return r;
}

fn wg_max(lid: u32, v: f32) -> f32 {
    wg_a[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) { wg_a[lid] = max(wg_a[lid], wg_a[lid + s]); }
        workgroupBarrier();
    }
    let r = wg_a[0];
    workgroupBarrier();
    return r;
}

// (count, mean, M2) of the union of two disjoint sets (Chan, Golub, LeVeque); an empty side returns the other.
fn chan_merge(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
    let n = a.x + b.x;
    if (n == 0.0) { return a; }
    let d = b.y - a.y;
    let f = b.x / n;
    return vec3<f32>(n, a.y + d * f, a.z + b.z + d * d * a.x * f);
}

fn wg_chan(lid: u32, v: vec3<f32>) -> vec3<f32> {
    wg_a[lid] = v.x;
    wg_b[lid] = v.y;
    wg_c[lid] = v.z;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            let m = chan_merge(vec3<f32>(wg_a[lid], wg_b[lid], wg_c[lid]),
                               vec3<f32>(wg_a[lid + s], wg_b[lid + s], wg_c[lid + s]));
            wg_a[lid] = m.x;
            wg_b[lid] = m.y;
            wg_c[lid] = m.z;
        }
        workgroupBarrier();
    }
    let r = vec3<f32>(wg_a[0], wg_b[0], wg_c[0]);
    workgroupBarrier();
    return r;
}
