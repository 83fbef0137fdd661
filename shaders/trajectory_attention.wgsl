// Trajectory attention, efficient formulation (spec trajectory-attention.md §8):
//   traj_attend: per (sequence, head), each invocation one query token; Q/K/V rows are gathered from the dense
//                projections through a token table (0xFFFFFFFF = invisible → zero token, still in the softmax);
//                online softmax over the L tokens of the sequence.
//   traj_mean:   per grid row (b, cell, frame) and channel, the mean of the attention outputs of the samples that
//                land there, through a CSR list (deterministic order), zero where none lands.
//   traj_bias:   adds the output-projection bias to reached rows only (unreached rows stay 0, as the reference).
//   traj_gather: the literal formulation's gather (spec §5.4): rows of the grid by token table into (B·M·F, C),
//                zero rows for invisible tokens.
alias T = f32;

struct Params {
    seq_len: u32,     // L
    tokens: u32,      // M·F tokens per batch element
    rows_per_b: u32,  // S·F grid rows per batch element
    heads: u32,
    d: u32,           // head dim
    ld: u32,          // row stride of the QKV tensor
    q_off: u32,       // column offsets of Q, K, V inside a row
    k_off: u32,
    v_off: u32,
    c: u32,           // channels of the output rows
    frames: u32,
    cells: u32,       // S
    n_rows: u32,      // rows in this dispatch (mean, bias)
    scale: f32,
    base_qkv: u32,
    base_out: u32,
}

override WG: u32 = 64u;
const MAX_D: u32 = 128u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<T>;
@group(0) @binding(2) var<storage, read> table: array<u32>;      // token → grid row within its batch element
@group(0) @binding(3) var<storage, read_write> att: array<T>;    // (B·M·F, C) attention outputs
@group(0) @binding(4) var<storage, read> att_in: array<T>;
@group(0) @binding(5) var<storage, read> offsets: array<u32>;    // CSR over (f, cell): F·S + 1
@group(0) @binding(6) var<storage, read> hits: array<u32>;       // sample m of each hit
@group(0) @binding(7) var<storage, read_write> out: array<T>;    // (B·S·F, C) rows (b·S + cell)·F + f
@group(0) @binding(8) var<storage, read> bias: array<T>;

fn qkv_row(token: u32) -> u32 {
    // Global token g = b·(M·F) + t; the table maps t to a grid row of batch element b.
    let b = token / p.tokens;
    let r = table[token % p.tokens];
    if (r == 0xFFFFFFFFu) { return 0xFFFFFFFFu; }
    return b * p.rows_per_b + r;
}

@compute @workgroup_size(WG)
fn traj_attend(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let seq = wid.x + wid.y * 65535u;
    let hd = wid.z;
    if (seq >= p.n_rows) { return; }   // n_rows = number of sequences here
    for (var i = lid; i < p.seq_len; i += WG) {
    let g = seq * p.seq_len + i;
    let qr = qkv_row(g);
    var q: array<f32, MAX_D>;
    var acc: array<f32, MAX_D>;
    for (var t = 0u; t < p.d; t++) {
        acc[t] = 0.0;
        q[t] = 0.0;
        if (qr != 0xFFFFFFFFu) { q[t] = f32(qkv[p.base_qkv + qr * p.ld + p.q_off + hd * p.d + t]); }
    }
    var mx = -3.4028234e38;
    var sum = 0.0;
    for (var j = 0u; j < p.seq_len; j++) {
        let kr = qkv_row(seq * p.seq_len + j);
        var s = 0.0;
        if (kr != 0xFFFFFFFFu) {
            let kb = p.base_qkv + kr * p.ld + p.k_off + hd * p.d;
            for (var t = 0u; t < p.d; t++) { s += q[t] * f32(qkv[kb + t]); }
        }
        s *= p.scale;
        let nm = max(mx, s);
        let corr = exp(mx - nm);
        let e = exp(s - nm);
        sum = sum * corr + e;
        if (kr != 0xFFFFFFFFu) {
            let vb = p.base_qkv + kr * p.ld + p.v_off + hd * p.d;
            for (var t = 0u; t < p.d; t++) { acc[t] = acc[t] * corr + e * f32(qkv[vb + t]); }
        } else {
            for (var t = 0u; t < p.d; t++) { acc[t] = acc[t] * corr; }
        }
        mx = nm;
    }
    let inv = 1.0 / sum;
    for (var t = 0u; t < p.d; t++) { att[g * p.c + hd * p.d + t] = T(acc[t] * inv); }
    }
}

@compute @workgroup_size(WG)
fn traj_mean(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let e = (wid.x + wid.y * nwg.x) * WG + lid;
    if (e >= p.n_rows * p.c) { return; }
    let row = e / p.c;          // global grid row (b·S + cell)·F + f
    let ch = e % p.c;
    let b = row / p.rows_per_b;
    let within = row % p.rows_per_b;
    let cell = within / p.frames;
    let f = within % p.frames;
    let k = f * p.cells + cell;
    let lo = offsets[k];
    let hi = offsets[k + 1u];
    var s = 0.0;
    for (var h = lo; h < hi; h++) {
        let m = hits[h];
        s += f32(att_in[(b * p.tokens + m * p.frames + f) * p.c + ch]);
    }
    var v = 0.0;
    if (hi > lo) { v = s / f32(hi - lo); }
    out[p.base_out + e] = T(v);
}

@compute @workgroup_size(WG)
fn traj_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let e = (wid.x + wid.y * nwg.x) * WG + lid;
    if (e >= p.n_rows * p.c) { return; }
    let row = e / p.c;
    let within = row % p.rows_per_b;
    let k = (within % p.frames) * p.cells + within / p.frames;
    if (offsets[k + 1u] > offsets[k]) {
        out[p.base_out + e] = T(f32(out[p.base_out + e]) + f32(bias[e % p.c]));
    }
}

// Literal formulation: gathered token row e / C of (B·M·F, C) is grid row qkv_row(row) of the hidden states bound
// at binding 1 (ld = C), or zeros when invisible.
@compute @workgroup_size(WG)
fn traj_gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let e = (wid.x + wid.y * nwg.x) * WG + lid;
    if (e >= p.n_rows * p.c) { return; }
    let src = qkv_row(e / p.c);
    var v = 0.0;
    if (src != 0xFFFFFFFFu) { v = f32(qkv[p.base_qkv + src * p.ld + e % p.c]); }
    att[e] = T(v);
}
