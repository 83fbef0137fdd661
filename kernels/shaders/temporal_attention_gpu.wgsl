// Temporal attention, GPU tier (temporal_attention.wgsl is the lavapipe tier): one workgroup per (sequence, head),
// the sequence's Q, K and V staged in workgroup memory and the L×L scores kept there (include short_attention),
// so no invocation holds a row of D values in registers. Same Params and strided Q/K/V convention: element
// (n, t, h, j) of X sits at x_base + (n * L + t) * x_stride + h * D + j; output dense (n, L, heads·D).
alias T = f32;

#include "temporal_params"

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qs: array<T>;
@group(0) @binding(2) var<storage, read> ks: array<T>;
@group(0) @binding(3) var<storage, read> vs: array<T>;
@group(0) @binding(4) var<storage, read_write> att: array<T>;

#include "short_attention"

@compute @workgroup_size(WG)
fn temporal_gpu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let g = wid.x + wid.y * nwg.x;
    if (g >= p.groups) { return; }
    // Heads of one sequence in consecutive workgroups: they read neighbouring columns of the same rows.
    let n = g / p.heads;
    let h = g % p.heads;
    let L = p.seq;
    for (var t = lid; t < LM; t += WG) {
        var rq = NONE;
        var rk = NONE;
        var rv = NONE;
        var ro = NONE;
        if (t < L) {
            let row = n * L + t;
            rq = p.q_base + row * p.q_stride + h * D;
            rk = p.k_base + row * p.k_stride + h * D;
            rv = p.v_base + row * p.v_stride + h * D;
            ro = p.o_base + row * p.o_stride + h * D;
        }
        sa_rows[t] = rq;
        sa_rows[LM + t] = rk;
        sa_rows[2u * LM + t] = rv;
        sa_rows[3u * LM + t] = ro;
    }
    workgroupBarrier();
    short_attention(lid, L, p.scale);
}
