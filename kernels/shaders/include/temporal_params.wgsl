// Parameters of temporal attention (temporal_attention.wgsl, temporal_attention_gpu.wgsl); Rust:
// ops::temporal_attention::Params. `groups`/`sblocks` count the lavapipe tier's sequence blocks (SPW sequences
// a workgroup); the GPU tier runs one workgroup per (sequence, head) and ignores `sblocks`.
struct Params {
    seq: u32,        // L
    nseq: u32,       // sequences in this dispatch
    heads: u32,
    groups: u32,     // workgroups: ceil(nseq / SPW) · heads
    q_base: u32,
    k_base: u32,
    v_base: u32,
    o_base: u32,
    q_stride: u32,
    k_stride: u32,
    v_stride: u32,
    o_stride: u32,
    sblocks: u32,    // ceil(nseq / SPW)
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}
