// Trajectory attention, efficient formulation (docs/reference/trajectory-attention.md §8), one head (or all
// heads, z) per dispatch, every operand bound through a window (offset binding + element base) so large calls
// split into dispatches that each fit the adapter's binding limit:
//   traj_attend: per (sequence, head), each invocation one query token; Q/K/V rows are gathered from the dense
//                projections (three bindings, row stride ld) through a token table (0xFFFFFFFF = invisible → zero
//                token, still in the softmax); online softmax over the L tokens of the sequence.
//   traj_mean:   per grid row (b, cell, frame) and channel, the mean of the attention outputs of the samples that
//                land there, through a CSR list (deterministic order), zero where none lands; written into
//                `width` columns from `col_out` of rows of stride `ld_out` (one head's columns of the mean).
//   traj_bias:   adds the output-projection bias to reached rows only (unreached rows stay 0, as the reference).
//   traj_gather: the literal formulation's gather (docs/reference/trajectory-attention.md §5.4): rows of the
//                grid by token table into (B·M·F, C), zero rows for invisible tokens.
// Every gathered index is checked against the rows the dispatch bound (rows_bound, from b0): a row outside them
// reads as an invisible token (attend, gather) or is skipped (mean), never out of the binding.
alias T = f32;

#include "traj_params"

override WG: u32 = 64u;
const MAX_D: u32 = 128u;
const NONE: u32 = 0xFFFFFFFFu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qs: array<T>;           // Q rows (or the gather source)
@group(0) @binding(2) var<storage, read> table: array<u32>;      // token → grid row within its batch element
@group(0) @binding(3) var<storage, read_write> att: array<T>;    // attention outputs (or gathered rows)
@group(0) @binding(4) var<storage, read> att_in: array<T>;
@group(0) @binding(5) var<storage, read> offsets: array<u32>;    // CSR over (f, cell): F·S + 1
@group(0) @binding(6) var<storage, read> hits: array<u32>;       // sample m of each hit
@group(0) @binding(7) var<storage, read_write> out: array<T>;    // grid rows (b·S + cell)·F + f
@group(0) @binding(8) var<storage, read> bias: array<T>;
@group(0) @binding(9) var<storage, read> ks: array<T>;           // K rows
@group(0) @binding(10) var<storage, read> vs: array<T>;          // V rows

#include "traj_src_row"

@compute @workgroup_size(WG)
fn traj_attend(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let local_seq = wid.x + wid.y * 65535u;
    let hd = wid.z;
    if (local_seq >= p.n_rows) { return; }   // n_rows = number of sequences in this dispatch
    let seq = p.row0 + local_seq;
    for (var i = lid; i < p.seq_len; i += WG) {
    let g = seq * p.seq_len + i;
    let qr = src_row(g);
    var q: array<f32, MAX_D>;
    var acc: array<f32, MAX_D>;
    for (var t = 0u; t < p.d; t++) {
        acc[t] = 0.0;
        q[t] = 0.0;
        if (qr != NONE) { q[t] = f32(qs[p.base_q + qr * p.ld + hd * p.d + t]); }
    }
    var mx = -3.4028234e38;
    var sum = 0.0;
    for (var j = 0u; j < p.seq_len; j++) {
        let kr = src_row(seq * p.seq_len + j);
        var s = 0.0;
        if (kr != NONE) {
            let kb = p.base_k + kr * p.ld + hd * p.d;
            for (var t = 0u; t < p.d; t++) { s += q[t] * f32(ks[kb + t]); }
        }
        s *= p.scale;
        let nm = max(mx, s);
        let corr = exp(mx - nm);
        let e = exp(s - nm);
        sum = sum * corr + e;
        if (kr != NONE) {
            let vb = p.base_v + kr * p.ld + hd * p.d;
            for (var t = 0u; t < p.d; t++) { acc[t] = acc[t] * corr + e * f32(vs[vb + t]); }
        } else {
            for (var t = 0u; t < p.d; t++) { acc[t] = acc[t] * corr; }
        }
        mx = nm;
    }
    let inv = 1.0 / sum;
    let ob = p.base_out + (local_seq * p.seq_len + i) * p.c_att + hd * p.d;
    for (var t = 0u; t < p.d; t++) { att[ob + t] = T(acc[t] * inv); }
    }
}

@compute @workgroup_size(WG)
fn traj_mean(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let e = (wid.x + wid.y * nwg.x) * WG + lid;
    if (e >= p.n_rows * p.width) { return; }
    let lrow = e / p.width;
    let ch = e % p.width;
    let row = p.row0 + lrow;    // global grid row (b·S + cell)·F + f
    let b = row / p.rows_per_b;
    let within = row % p.rows_per_b;
    let cell = within / p.frames;
    let f = within % p.frames;
    let k = f * p.cells + cell;
    let lo = offsets[k];
    let hi = offsets[k + 1u];
    let samples = p.tokens / p.frames;
    var s = 0.0;
    for (var h = lo; h < hi; h++) {
        let m = hits[h];
        if (m < samples && b >= p.b0) {
            let tok = (b - p.b0) * p.tokens + m * p.frames + f;
            if (tok < p.rows_bound) { s += f32(att_in[p.base_in + tok * p.c_att + ch]); }
        }
    }
    var v = 0.0;
    if (hi > lo) { v = s / f32(hi - lo); }
    out[p.base_out + lrow * p.ld_out + p.col_out + ch] = T(v);
}

@compute @workgroup_size(WG)
fn traj_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let e = (wid.x + wid.y * nwg.x) * WG + lid;
    if (e >= p.n_rows * p.width) { return; }
    let lrow = e / p.width;
    let ch = e % p.width;
    let within = (p.row0 + lrow) % p.rows_per_b;
    let k = (within % p.frames) * p.cells + within / p.frames;
    if (offsets[k + 1u] > offsets[k]) {
        let o = p.base_out + lrow * p.ld_out + ch;
        out[o] = T(f32(out[o]) + f32(bias[ch]));
    }
}

// Literal formulation: gathered token row of (B·M·F, width) is grid row src_row(token) of the hidden states bound
// at binding 1 (row stride ld), or zeros when invisible.
@compute @workgroup_size(WG)
fn traj_gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let e = (wid.x + wid.y * nwg.x) * WG + lid;
    if (e >= p.n_rows * p.width) { return; }
    let src = src_row(p.row0 + e / p.width);
    var v = 0.0;
    if (src != NONE) { v = f32(qs[p.base_q + src * p.ld + e % p.width]); }
    att[p.base_out + e] = T(v);
}
