//! One module per op family: the launcher(s), the float64 CPU reference, and the benchmark case.

pub mod conv;
pub mod dpt;
pub mod elementwise;
pub mod flash_attention;
pub mod group_norm;
pub mod layout;
pub mod matmul;
pub mod rows;
pub mod sampler;
pub mod temporal_attention;
pub mod trajectory_attention;
