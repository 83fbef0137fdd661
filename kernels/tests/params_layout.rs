//! Every shader's uniform `Params` struct (naga's reflection of the expanded WGSL) has the layout of the Rust
//! `#[repr(C)]` struct its launcher uploads: the same named members at the same byte offsets, and the same size.
//! Padding members (names starting with `_`) are only counted through the size: Rust may pad with an array.

use trajattn_kernels::ops;
use trajattn_kernels::params::ParamsLayout;
use trajattn_kernels::shaders::ALL;
use trajattn_kernels::DType;

/// The Rust layout each shader file's `Params` must match.
fn rust_layout(shader: &str) -> Option<ParamsLayout> {
    Some(match shader {
        "elementwise" | "elementwise_vec4" => ops::elementwise::PARAMS_LAYOUT,
        "matmul" | "matmul_vec4" | "matmul_sg8" | "gemm_tiled" | "gemm_tiled_vec4" => {
            ops::matmul::PARAMS_LAYOUT
        }
        "sampler" => ops::sampler::PARAMS_LAYOUT,
        "conv_cols" => ops::conv::PARAMS_LAYOUT,
        "group_norm" | "group_norm_vec4" => ops::group_norm::PARAMS_LAYOUT,
        "layer_norm" | "softmax" | "rows_vec4" => ops::rows::PARAMS_LAYOUT,
        "layout" => ops::layout::PARAMS_LAYOUT,
        "dpt" => ops::dpt::PARAMS_LAYOUT,
        "flash_attention_fa2" | "flash_attention_sg8" => ops::flash_attention::PARAMS_LAYOUT,
        "trajectory_attention" | "trajectory_attention_sg8" | "trajectory_attention_gpu" => {
            ops::trajectory_attention::PARAMS_LAYOUT
        }
        "temporal_attention" | "temporal_attention_gpu" => ops::temporal_attention::PARAMS_LAYOUT,
        _ => return None,
    })
}

/// Named (non-padding) members with their offsets, and the struct's size, of the uniform bound at binding 0.
fn wgsl_layout(name: &str, src: &str) -> Option<(Vec<(String, usize)>, usize)> {
    let module =
        naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    let (_, var) = module.global_variables.iter().find(|(_, v)| v.space == naga::AddressSpace::Uniform)?;
    match &module.types[var.ty].inner {
        naga::TypeInner::Struct { members, span } => {
            let named = members
                .iter()
                .map(|m| (m.name.clone().unwrap_or_default(), m.offset as usize))
                .filter(|(n, _)| !n.starts_with('_'))
                .collect();
            Some((named, *span as usize))
        }
        other => panic!("{name}: the uniform is not a struct but {other:?}"),
    }
}

#[test]
fn every_uniform_params_struct_matches_its_rust_struct() {
    let mut checked = 0;
    for sh in ALL {
        let src = sh.source(DType::F32).unwrap();
        let Some((wgsl, span)) = wgsl_layout(sh.name, &src) else { continue };
        let rust = rust_layout(sh.name).unwrap_or_else(|| {
            panic!("shaders/{}.wgsl has a uniform Params but no Rust layout in this test's table", sh.name)
        });
        let named: Vec<(String, usize)> = rust
            .fields
            .iter()
            .filter(|(n, _)| !n.starts_with('_'))
            .map(|&(n, o)| (n.to_string(), o))
            .collect();
        assert_eq!(wgsl, named, "shaders/{}.wgsl Params members (name, offset) vs Rust", sh.name);
        assert_eq!(span, rust.size, "shaders/{}.wgsl Params size vs Rust", sh.name);
        checked += 1;
    }
    assert!(checked >= 17, "only {checked} shaders have a uniform Params (all 17 of December 2026 do)");
}

#[test]
fn a_layout_mismatch_is_caught() {
    // The comparison itself: a WGSL struct with two members swapped against the rows layout.
    let src = "struct Params { c: u32, rows: u32, base_x: u32, base_y: u32, f: f32, affine: u32, _a: u32, _b: u32 }\n\
               @group(0) @binding(0) var<uniform> p: Params;\n@compute @workgroup_size(1) fn main() { _ = p.c; }\n";
    let (wgsl, span) = wgsl_layout("swapped", src).unwrap();
    let rust = ops::rows::PARAMS_LAYOUT;
    let named: Vec<(String, usize)> =
        rust.fields.iter().filter(|(n, _)| !n.starts_with('_')).map(|&(n, o)| (n.to_string(), o)).collect();
    assert_eq!(span, rust.size);
    assert_ne!(wgsl, named);
}
