//! Memory planning by tensor lifetime.
//!
//! The executor records a graph once per shape; every intermediate tensor has a first dispatch (where it is
//! written) and a last one (its last reader). Tensors whose lifetimes do not overlap can share bytes. The graph's
//! intermediates are *planned* tensors (`trajattn_kernels::tensor::Tensor::planned`): when a recording is
//! finished, each is placed at an offset inside one of a few arenas, greedy by size over the lifetimes its
//! dispatches show (`trajattn_kernels::arena`). Offsets are aligned to the adapter's storage-offset alignment,
//! and tensors bound by one dispatch go to different arenas: wgpu tracks usage per buffer and per dispatch, so a
//! read-only and a read-write window of one buffer cannot meet in a dispatch (`kernels/tests/aliasing.rs`).
//! [`crate::graph::unet_plan`] replays the UNet's allocation order without a device and places it the same way.

pub use trajattn_kernels::arena::{peak_live_bytes, place, Lifetime, Placement, TooLarge};
