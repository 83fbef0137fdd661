// Stores one output element of the matmul family (matmul_vec4.wgsl, matmul_sg8.wgsl): bounds check, bias per
// column or row, accumulation into y, activation.
// Needs `p: Params` (matmul_params), the `bias` and `y` bindings and `activate` (activation).
fn store(m: u32, n: u32, bi: u32, v: f32) {
    if (m < p.m && n < p.n) {
        var r = v;
        let yi = p.base_y + bi * p.y_sb + m * p.ldy + n;
        if ((p.flags & 1u) != 0u) { r += f32(bias[p.base_b + n]); }
        if ((p.flags & 2u) != 0u) { r += f32(bias[p.base_b + m]); }
        if ((p.flags & 4u) != 0u) { r += f32(y[yi]); }
        y[yi] = T(activate(r, p.act));
    }
}
