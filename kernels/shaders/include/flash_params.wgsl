// Parameters of flash attention (flash_attention_fa2.wgsl, flash_attention_sg8.wgsl); Rust: ops::flash_attention::Params.
struct Params {
    seq_q: u32,
    seq_kv: u32,
    heads: u32,
    groups: u32,     // workgroups in this dispatch (batches · heads · query blocks)
    q_base: u32,
    k_base: u32,
    v_base: u32,
    o_base: u32,
    q_stride: u32,
    k_stride: u32,
    v_stride: u32,
    o_stride: u32,
    qblocks: u32,    // ceil(seq_q / queries per workgroup)
    scale: f32,
    d: u32,          // head dim (the kernels use their override D)
    chunks: u32,     // 1 (unused)
}
