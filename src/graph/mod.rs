//! Graph building and execution support: memory planning by tensor lifetime.

pub mod generation_plan;
pub mod plan;
pub mod unet_plan;
