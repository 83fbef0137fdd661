// Four consecutive Q/K/V elements as f32 (flash_attention_sg8.wgsl).
// Needs the `q`, `k`, `v` bindings of the including file.
fn ld4q(i: u32) -> vec4<f32> {
    return vec4<f32>(f32(q[i]), f32(q[i + 1u]), f32(q[i + 2u]), f32(q[i + 3u]));
}
fn ld4k(i: u32) -> vec4<f32> {
    return vec4<f32>(f32(k[i]), f32(k[i + 1u]), f32(k[i + 2u]), f32(k[i + 3u]));
}
fn ld4v(i: u32) -> vec4<f32> {
    return vec4<f32>(f32(v[i]), f32(v[i + 1u]), f32(v[i + 2u]), f32(v[i + 3u]));
}
