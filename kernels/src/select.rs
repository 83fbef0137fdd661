//! Kernel selection: which variant of each kernel family an adapter gets, decided from what the adapter
//! reports (features, limits, subgroup sizes) and never from its name, and without opening a device, so
//! `trajattn shaders --dump` can list the pipelines of adapters that cannot be opened.
//!
//! Tiers (see ARCHITECTURE.md, "Kernel selection"):
//! - [`Tier::Gpu`]: the default for every real GPU (16/32/64-lane subgroups, or none): workgroup-memory tiles,
//!   register tiles, no dynamically indexed private arrays.
//! - [`Tier::Sg8`]: adapters whose subgroups are exactly 8 lanes (lavapipe on AVX2): shares loads with
//!   `subgroupBroadcast`, because llvmpipe turns non-uniform storage loads into per-lane loops.
//!
//! `TRAJATTN_KERNELS=gpu|sg8|auto` (or [`crate::GpuOptions::kernels`]) forces a tier, so the GPU tier is
//! tested on lavapipe too; a tier the adapter cannot run is refused, never selected.

use crate::error::{KernelError, Result};
use serde::Serialize;

/// Which kernel tier the user asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum KernelSet {
    /// The best tier the adapter can run.
    #[default]
    Auto,
    /// The GPU tier, whatever the adapter.
    Gpu,
    /// The 8-lane subgroup tier (only on adapters with exactly 8-lane subgroups).
    Sg8,
}

impl KernelSet {
    /// Parses `auto|gpu|sg8`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Some(Self::Auto),
            "gpu" => Some(Self::Gpu),
            "sg8" => Some(Self::Sg8),
            _ => None,
        }
    }
}

impl std::str::FromStr for KernelSet {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::parse(s).ok_or_else(|| format!("unknown kernel set '{s}' (expected auto, gpu or sg8)"))
    }
}

/// The tier an adapter runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Tier {
    /// Workgroup-memory tiled kernels for real GPUs.
    Gpu,
    /// Kernels written for exactly 8-lane subgroups.
    Sg8,
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tier::Gpu => "gpu",
            Tier::Sg8 => "sg8",
        })
    }
}

/// Everything kernel selection may look at, as the adapter reports it (with the user's `--disable` and
/// `--max-binding` applied). Obtainable from an adapter without creating a device.
#[derive(Clone, Debug, Serialize)]
pub struct AdapterFacts {
    /// Adapter name (for messages only: never used to select).
    pub name: String,
    /// f16 storage and arithmetic in shaders will be enabled.
    pub shader_f16: bool,
    /// Subgroup operations will be enabled.
    pub subgroup: bool,
    /// Smallest subgroup size the adapter reports.
    pub subgroup_min_size: u32,
    /// Largest subgroup size the adapter reports.
    pub subgroup_max_size: u32,
    /// Timestamp queries will be enabled.
    pub timestamp: bool,
    /// Workgroup memory per workgroup, bytes.
    pub max_workgroup_storage: u32,
    /// Invocations per workgroup.
    pub max_invocations: u32,
    /// Largest storage binding, bytes.
    pub max_binding: u64,
}

impl AdapterFacts {
    /// Facts of `adapter` under the optional-feature switches `disable` (`f16`, `subgroup`, `timestamp`) and an
    /// optional lowered binding limit.
    pub fn of(adapter: &wgpu::Adapter, disable: &[String], max_binding: Option<u64>) -> Self {
        let info = adapter.get_info();
        Self::from_parts(&info, adapter.features(), &adapter.limits(), disable, max_binding)
    }

    /// Facts from an adapter's info, features and limits.
    pub fn from_parts(
        info: &wgpu::AdapterInfo,
        features: wgpu::Features,
        limits: &wgpu::Limits,
        disable: &[String],
        max_binding: Option<u64>,
    ) -> Self {
        let off = |n: &str| disable.iter().any(|d| d == n);
        let binding = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        AdapterFacts {
            name: info.name.clone(),
            shader_f16: features.contains(wgpu::Features::SHADER_F16) && !off("f16"),
            subgroup: features.contains(wgpu::Features::SUBGROUP) && !off("subgroup"),
            subgroup_min_size: info.subgroup_min_size,
            subgroup_max_size: info.subgroup_max_size,
            timestamp: features.contains(wgpu::Features::TIMESTAMP_QUERY) && !off("timestamp"),
            max_workgroup_storage: limits.max_compute_workgroup_storage_size,
            max_invocations: limits.max_compute_invocations_per_workgroup,
            max_binding: max_binding.map(|m| (m / 256 * 256).min(binding)).unwrap_or(binding),
        }
    }

    /// Whether subgroups of exactly 8 lanes are available (what the `_sg8` kernels assume).
    pub fn subgroup8(&self) -> bool {
        self.subgroup && self.subgroup_min_size == 8 && self.subgroup_max_size == 8
    }

    /// The tier this adapter runs under `want`; `Err` when the forced tier cannot run here.
    pub fn tier(&self, want: KernelSet) -> Result<Tier> {
        match want {
            KernelSet::Auto => Ok(if self.subgroup8() { Tier::Sg8 } else { Tier::Gpu }),
            KernelSet::Gpu => Ok(Tier::Gpu),
            KernelSet::Sg8 if self.subgroup8() => Ok(Tier::Sg8),
            KernelSet::Sg8 => Err(KernelError::Device(format!(
                "kernel set sg8 needs subgroups of exactly 8 lanes; {} has {} ({}..{} lanes)",
                self.name,
                if self.subgroup { "subgroups" } else { "no subgroups enabled" },
                self.subgroup_min_size,
                self.subgroup_max_size
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(subgroup: bool, lo: u32, hi: u32) -> AdapterFacts {
        AdapterFacts {
            name: "test".into(),
            shader_f16: true,
            subgroup,
            subgroup_min_size: lo,
            subgroup_max_size: hi,
            timestamp: false,
            max_workgroup_storage: 32768,
            max_invocations: 256,
            max_binding: 1 << 27,
        }
    }

    #[test]
    fn tiers_follow_subgroup_sizes() {
        assert_eq!(facts(true, 8, 8).tier(KernelSet::Auto).unwrap(), Tier::Sg8);
        for (sg, lo, hi) in [(true, 32, 64), (true, 16, 16), (true, 64, 64), (false, 8, 8), (true, 8, 16)] {
            let f = facts(sg, lo, hi);
            assert_eq!(f.tier(KernelSet::Auto).unwrap(), Tier::Gpu, "{lo}..{hi} subgroup={sg}");
            assert!(f.tier(KernelSet::Sg8).is_err(), "sg8 forced on {lo}..{hi} must be refused");
        }
        assert_eq!(facts(true, 8, 8).tier(KernelSet::Gpu).unwrap(), Tier::Gpu);
    }

    #[test]
    fn kernel_set_parses() {
        assert_eq!(KernelSet::parse("GPU"), Some(KernelSet::Gpu));
        assert_eq!(KernelSet::parse("auto"), Some(KernelSet::Auto));
        assert_eq!(KernelSet::parse("sg8"), Some(KernelSet::Sg8));
        assert_eq!(KernelSet::parse("fast"), None);
    }
}
