//! WGSL sources (one file per op family in `shaders/`) and their expansion per dtype.
//!
//! Every shader is written for f32 with the line `alias T = f32;` (storage type) near the top; the f16
//! variant replaces it with `alias T = f16;` and prepends `enable f16;`. Arithmetic is written in f32
//! (`f32(x[i])` on load, `T(v)` on store), so the f16 variant stores f16 and accumulates in f32.
//!
//! Shared WGSL has one source: a line `#include "NAME"` is replaced by `shaders/include/NAME.wgsl` (each
//! include at most once per expanded file, includes may include others). The expanded file is what naga
//! validates (`kernels/tests/shaders.rs`) and what the device compiles; an unknown include is an error.

use crate::dtype::DType;
use crate::error::{KernelError, Result};

/// One WGSL file.
#[derive(Clone, Copy, Debug)]
pub struct Shader {
    /// File stem, e.g. `elementwise`.
    pub name: &'static str,
    /// The f32 source as written.
    pub src: &'static str,
}

const ALIAS_F32: &str = "alias T = f32;";

/// One shared WGSL fragment of `shaders/include/`.
#[derive(Clone, Copy, Debug)]
pub struct Include {
    /// Name used in `#include "NAME"`.
    pub name: &'static str,
    /// Its source.
    pub src: &'static str,
}

/// Every shared fragment.
pub const INCLUDES: &[Include] = &[
    Include { name: "activation", src: include_str!("../shaders/include/activation.wgsl") },
    Include { name: "gemm", src: include_str!("../shaders/include/gemm.wgsl") },
    Include { name: "elementwise_params", src: include_str!("../shaders/include/elementwise_params.wgsl") },
    Include { name: "norms", src: include_str!("../shaders/include/norms.wgsl") },
    Include { name: "rows_params", src: include_str!("../shaders/include/rows_params.wgsl") },
    Include { name: "group_norm_params", src: include_str!("../shaders/include/group_norm_params.wgsl") },
    Include { name: "matmul_params", src: include_str!("../shaders/include/matmul_params.wgsl") },
    Include { name: "matmul_store", src: include_str!("../shaders/include/matmul_store.wgsl") },
    Include { name: "flash_params", src: include_str!("../shaders/include/flash_params.wgsl") },
    Include { name: "flash_loads", src: include_str!("../shaders/include/flash_loads.wgsl") },
    Include { name: "traj_params", src: include_str!("../shaders/include/traj_params.wgsl") },
    Include { name: "traj_src_row", src: include_str!("../shaders/include/traj_src_row.wgsl") },
    Include { name: "temporal_params", src: include_str!("../shaders/include/temporal_params.wgsl") },
    Include { name: "short_attention", src: include_str!("../shaders/include/short_attention.wgsl") },
];

/// Deepest include nesting accepted (a cycle fails here instead of recursing without end).
const MAX_INCLUDE_DEPTH: usize = 8;

fn include_name(line: &str) -> Option<&str> {
    let rest = line.trim().strip_prefix("#include")?;
    let rest = rest.trim();
    rest.strip_prefix('"')?.strip_suffix('"')
}

fn expand_into(
    out: &mut String,
    src: &str,
    file: &str,
    seen: &mut Vec<&'static str>,
    depth: usize,
) -> Result<()> {
    if depth > MAX_INCLUDE_DEPTH {
        return Err(KernelError::Invalid {
            op: "shader loader",
            msg: format!("{file}: includes nested deeper than {MAX_INCLUDE_DEPTH} (a cycle?)"),
        });
    }
    for line in src.lines() {
        if line.trim_start().starts_with("#include") {
            let name = include_name(line).ok_or_else(|| KernelError::Invalid {
                op: "shader loader",
                msg: format!("{file}: malformed include line '{}' (expected #include \"NAME\")", line.trim()),
            })?;
            let inc = INCLUDES.iter().find(|i| i.name == name).ok_or_else(|| KernelError::Invalid {
                op: "shader loader",
                msg: format!(
                    "{file}: unknown include \"{name}\" (known: {})",
                    INCLUDES.iter().map(|i| i.name).collect::<Vec<_>>().join(", ")
                ),
            })?;
            if !seen.contains(&inc.name) {
                seen.push(inc.name);
                expand_into(out, inc.src, inc.name, seen, depth + 1)?;
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(())
}

/// `src` with every `#include` line expanded.
pub fn expand_includes(name: &str, src: &str) -> Result<String> {
    let mut out = String::with_capacity(src.len() + 4096);
    expand_into(&mut out, src, name, &mut Vec::new(), 0)?;
    Ok(out)
}

impl Shader {
    /// The source expanded for `dtype`, includes resolved: exactly what the device compiles.
    pub fn source(&self, dtype: DType) -> Result<String> {
        let src = expand_includes(self.name, self.src)?;
        Ok(match dtype {
            DType::F32 => src,
            DType::F16 => format!("enable f16;\n{}", src.replacen(ALIAS_F32, "alias T = f16;", 1)),
        })
    }
    /// Whether the file has a dtype alias (so an f16 variant exists).
    pub fn has_dtype_alias(&self) -> bool {
        self.src.contains(ALIAS_F32)
    }
}

macro_rules! shader {
    ($id:ident, $name:literal) => {
        #[doc = concat!("`shaders/", $name, ".wgsl`")]
        pub const $id: Shader =
            Shader { name: $name, src: include_str!(concat!("../shaders/", $name, ".wgsl")) };
    };
}

shader!(ELEMENTWISE, "elementwise");
shader!(ELEMENTWISE_VEC4, "elementwise_vec4");
shader!(MATMUL, "matmul");
shader!(MATMUL_VEC4, "matmul_vec4");
shader!(MATMUL_SG8, "matmul_sg8");
shader!(GEMM_TILED, "gemm_tiled");
shader!(GEMM_TILED_VEC4, "gemm_tiled_vec4");
shader!(CONV_COLS, "conv_cols");
shader!(GROUP_NORM, "group_norm");
shader!(GROUP_NORM_VEC4, "group_norm_vec4");
shader!(LAYER_NORM, "layer_norm");
shader!(SOFTMAX, "softmax");
shader!(ROWS_VEC4, "rows_vec4");
shader!(LAYOUT, "layout");
shader!(TRAJECTORY_ATTENTION, "trajectory_attention");
shader!(TRAJECTORY_ATTENTION_SG8, "trajectory_attention_sg8");
shader!(TRAJECTORY_ATTENTION_GPU, "trajectory_attention_gpu");
shader!(FLASH_ATTENTION_SG8, "flash_attention_sg8");
shader!(FLASH_ATTENTION_FA2, "flash_attention_fa2");
shader!(TEMPORAL_ATTENTION, "temporal_attention");
shader!(SAMPLER, "sampler");
shader!(TEMPORAL_ATTENTION_GPU, "temporal_attention_gpu");
shader!(DPT, "dpt");

/// Every shader, for validation.
pub const ALL: &[Shader] = &[
    ELEMENTWISE,
    ELEMENTWISE_VEC4,
    MATMUL,
    MATMUL_VEC4,
    MATMUL_SG8,
    GEMM_TILED,
    GEMM_TILED_VEC4,
    CONV_COLS,
    GROUP_NORM,
    GROUP_NORM_VEC4,
    LAYER_NORM,
    SOFTMAX,
    ROWS_VEC4,
    LAYOUT,
    TRAJECTORY_ATTENTION,
    TRAJECTORY_ATTENTION_SG8,
    TRAJECTORY_ATTENTION_GPU,
    FLASH_ATTENTION_SG8,
    FLASH_ATTENTION_FA2,
    TEMPORAL_ATTENTION,
    SAMPLER,
    TEMPORAL_ATTENTION_GPU,
    DPT,
];
