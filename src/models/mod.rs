//! Model descriptions: configurations and expected parameter lists.

pub mod clip;
pub mod config;
pub mod unet;
pub mod unet_io;
pub mod unet_keys;
pub mod vae;
