//! `trajattn info`: every adapter with the features and limits that matter.

use anyhow::{bail, Result};
use clap::Args;
use trajattn_kernels::gpu::list_adapters;

use super::gpu_args::GpuArgs;

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Print JSON (an array of adapters) instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &GpuArgs, a: &InfoArgs) -> Result<()> {
    let adapters = list_adapters(&g.options());
    if a.json {
        println!("{}", serde_json::to_string_pretty(&adapters)?);
        return Ok(());
    }
    if adapters.is_empty() {
        bail!(
            "no GPU adapter found: install a Vulkan driver (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers` \
             for lavapipe, a CPU Vulkan driver), or run on macOS (Metal) / Windows (DX12)"
        );
    }
    for (i, a) in adapters.iter().enumerate() {
        println!("adapter {i}: {}", a.name);
        println!("  backend {}  type {}  driver {} {}", a.backend, a.device_type, a.driver, a.driver_info);
        println!(
            "  shader-f16 {}  subgroup {} (size {}..{})  timestamp-query {}",
            yes(a.shader_f16),
            yes(a.subgroup),
            a.subgroup_min_size,
            a.subgroup_max_size,
            yes(a.timestamp_query)
        );
        println!(
            "  max storage binding {}  max buffer {}  workgroup storage {}  invocations/workgroup {}",
            bytes(a.max_storage_buffer_binding_size),
            bytes(a.max_buffer_size),
            bytes(a.max_compute_workgroup_storage_size as u64),
            a.max_compute_invocations_per_workgroup
        );
        println!(
            "  workgroup size {:?}  workgroups/dim {}  storage buffers/stage {}  storage offset align {}",
            a.max_compute_workgroup_size,
            a.max_compute_workgroups_per_dimension,
            a.max_storage_buffers_per_shader_stage,
            a.min_storage_buffer_offset_alignment
        );
        println!("  features: {}", a.features.join(" "));
    }
    Ok(())
}

/// "yes" or "no".
pub fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// A byte count in B, KiB, MiB or GiB.
pub fn bytes(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
    } else if b >= 1 << 20 {
        format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64)
    } else if b >= 1 << 10 {
        format!("{:.0} KiB", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}
