// Parameters of the row-wise ops (layer_norm.wgsl, softmax.wgsl, rows_vec4.wgsl); Rust: ops::rows::Params.
struct Params {
    rows: u32,       // rows in this dispatch
    c: u32,          // row length
    base_x: u32,     // element bases inside the bindings
    base_y: u32,
    f: f32,          // layer norm: eps; softmax: logit scale
    affine: u32,     // layer norm: apply gamma, beta
    _pad0: u32,
    _pad1: u32,
}
