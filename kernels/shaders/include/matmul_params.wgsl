// Parameters of the matmul family (matmul.wgsl, matmul_vec4.wgsl, matmul_sg8.wgsl, gemm_tiled*.wgsl); Rust: ops::matmul::Params.
struct Params {
    m: u32,
    n: u32,
    k: u32,
    act: u32,        // 0 none, 1 SiLU, 2 GELU (erf), 3 GELU (tanh), 4 GEGLU pairs (gemm_tiled only)
    base_x: u32,
    base_w: u32,
    base_b: u32,
    base_y: u32,
    x_sb: u32,       // batch strides (elements)
    w_sb: u32,
    y_sb: u32,
    flags: u32,      // 1: bias per column, 2: bias per row, 4: accumulate into y
    w_sn: u32,
    w_sk: u32,
    ldx: u32,        // row stride of X
    ldy: u32,        // row stride of Y
}
