// traj_attend of trajectory_attention.wgsl (same Params and bindings, at the same slots), GPU tier: one workgroup per
// (sequence, head), the sequence's gathered Q, K and V rows staged in workgroup memory and the L×L scores kept there
// (include short_attention) instead of q / accumulator arrays of D values per invocation (scratch memory on AMD).
// Invisible tokens (and rows outside the bound batch elements) are zero rows that stay in the softmax.
alias T = f32;

#include "traj_params"

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qs: array<T>;           // Q rows
@group(0) @binding(2) var<storage, read> table: array<u32>;      // token → grid row within its batch element
@group(0) @binding(3) var<storage, read_write> att: array<T>;    // attention outputs
@group(0) @binding(9) var<storage, read> ks: array<T>;           // K rows
@group(0) @binding(10) var<storage, read> vs: array<T>;          // V rows

#include "short_attention"

// Row of global token g = b·(M·F) + t inside the bound source rows, or NONE (invisible, or not bound here).
fn src_row(token: u32) -> u32 {
    let b = token / p.tokens;
    let r = table[token % p.tokens];
    if (r >= p.rows_per_b || b < p.b0) { return NONE; }
    let row = (b - p.b0) * p.rows_per_b + r;
    if (row >= p.rows_bound) { return NONE; }
    return row;
}

@compute @workgroup_size(WG)
fn traj_attend_gpu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let local_seq = wid.x + wid.y * 65535u;
    let hd = wid.z;
    if (local_seq >= p.n_rows) { return; }   // uniform per workgroup
    let seq = p.row0 + local_seq;
    let L = p.seq_len;
    for (var t = lid; t < LM; t += WG) {
        var rq = NONE;
        var rk = NONE;
        var rv = NONE;
        var ro = NONE;
        if (t < L) {
            let sr = src_row(seq * L + t);
            if (sr != NONE) {
                let off = sr * p.ld + hd * D;
                rq = p.base_q + off;
                rk = p.base_k + off;
                rv = p.base_v + off;
            }
            ro = p.base_out + (local_seq * L + t) * p.c_att + hd * D;
        }
        sa_rows[t] = rq;
        sa_rows[LM + t] = rk;
        sa_rows[2u * LM + t] = rv;
        sa_rows[3u * LM + t] = ro;
    }
    workgroupBarrier();
    short_attention(lid, L, p.scale);
}
