//! WGSL sources (one file per op family in `shaders/`) and their expansion per dtype.
//!
//! Every shader is written for f32 with the line `alias T = f32;` (storage type) near the top; the f16
//! variant replaces it with `alias T = f16;` and prepends `enable f16;`. Arithmetic is written in f32
//! (`f32(x[i])` on load, `T(v)` on store), so the f16 variant stores f16 and accumulates in f32.

use crate::dtype::DType;

/// One WGSL file.
#[derive(Clone, Copy, Debug)]
pub struct Shader {
    /// File stem, e.g. `elementwise`.
    pub name: &'static str,
    /// The f32 source as written.
    pub src: &'static str,
}

const ALIAS_F32: &str = "alias T = f32;";

impl Shader {
    /// The source expanded for `dtype`.
    pub fn source(&self, dtype: DType) -> String {
        match dtype {
            DType::F32 => self.src.to_string(),
            DType::F16 => format!("enable f16;\n{}", self.src.replacen(ALIAS_F32, "alias T = f16;", 1)),
        }
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
            Shader { name: $name, src: include_str!(concat!("../../shaders/", $name, ".wgsl")) };
    };
}

shader!(ELEMENTWISE, "elementwise");
shader!(ELEMENTWISE_VEC4, "elementwise_vec4");
shader!(MATMUL, "matmul");
shader!(MATMUL_VEC4, "matmul_vec4");
shader!(MATMUL_SG8, "matmul_sg8");
shader!(CONV_COLS, "conv_cols");
shader!(GROUP_NORM, "group_norm");
shader!(LAYER_NORM, "layer_norm");
shader!(SOFTMAX, "softmax");
shader!(LAYOUT, "layout");
shader!(TRAJECTORY_ATTENTION, "trajectory_attention");
shader!(TRAJECTORY_ATTENTION_SG8, "trajectory_attention_sg8");
shader!(FLASH_ATTENTION, "flash_attention");
shader!(FLASH_ATTENTION_SG8, "flash_attention_sg8");
shader!(TEMPORAL_ATTENTION, "temporal_attention");

/// Every shader, for validation.
pub const ALL: &[Shader] = &[
    ELEMENTWISE,
    ELEMENTWISE_VEC4,
    MATMUL,
    MATMUL_VEC4,
    MATMUL_SG8,
    CONV_COLS,
    GROUP_NORM,
    LAYER_NORM,
    SOFTMAX,
    LAYOUT,
    TRAJECTORY_ATTENTION,
    TRAJECTORY_ATTENTION_SG8,
    FLASH_ATTENTION,
    FLASH_ATTENTION_SG8,
    TEMPORAL_ATTENTION,
];
