// Parameters of the elementwise ops (elementwise.wgsl, elementwise_vec4.wgsl); Rust: ops::elementwise::Params.
struct Params {
    n: u32,        // elements in this dispatch
    base_a: u32,
    base_b: u32,
    base_y: u32,
    alpha: f32,
    beta: f32,
    div: u32,      // broadcast: b index = ((first + i) / div) % modn
    modn: u32,
    first: u32,    // global index of this dispatch's first element
    inner: u32,    // GEGLU: output width; timestep embedding: half of D
    _pad0: u32,
    _pad1: u32,
}
