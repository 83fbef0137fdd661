// Parameters of trajectory attention (trajectory_attention.wgsl, trajectory_attention_sg8.wgsl); Rust: ops::trajectory_attention::Params.
struct Params {
    seq_len: u32,     // L
    tokens: u32,      // M·F tokens per batch element
    rows_per_b: u32,  // S·F grid rows per batch element
    d: u32,           // head dim
    ld: u32,          // row stride of the Q/K/V (or gather source) bindings
    c_att: u32,       // row stride of the attention rows (att, att_in)
    width: u32,       // channels per row handled by mean / bias / gather
    ld_out: u32,      // row stride of the mean / bias output rows
    col_out: u32,     // first output column of the mean
    frames: u32,
    cells: u32,       // S
    n_rows: u32,      // sequences (attend) or rows (mean, bias, gather) in this dispatch
    row0: u32,        // global index of the dispatch's first sequence (attend) or row (mean, bias, gather)
    b0: u32,          // batch element at the start of the gathered-from bindings (Q/K/V, att_in)
    rows_bound: u32,  // rows those bindings hold from b0 on
    scale: f32,
    base_q: u32,      // element bases inside the bindings
    base_k: u32,
    base_v: u32,
    base_in: u32,
    base_out: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}
