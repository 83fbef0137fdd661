// Parameters of group norm (group_norm.wgsl, group_norm_vec4.wgsl); Rust: ops::group_norm::Params.
struct Params {
    n: u32,          // stats: chunks in this dispatch; finalize: samples·G; apply: elements
    seg_len: u32,    // elements per (row, group) segment
    groups: u32,
    channels: u32,
    hw: u32,
    frames: u32,     // rows combined per sample
    base_x: u32,
    base_y: u32,
    first: u32,      // stats: first chunk of this dispatch; apply: first element
    silu: u32,
    eps: f32,
    splits: u32,     // chunks per segment
    chunk: u32,      // elements per chunk (a multiple of 4)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}
