//! Model descriptions: configurations and expected parameter lists.

pub mod config;
pub mod unet_keys;
