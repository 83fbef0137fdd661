//! What a caller asks of the device: backend, adapter, disabled features, a lowered binding limit, the kernel
//! tier, the pipeline cache; from arguments or `TRAJATTN_*` environment variables.

use crate::disk_cache;
use crate::error::{KernelError, Result};
use crate::select::KernelSet;

/// Which graphics API to run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    /// Vulkan (Linux, Windows, Android; lavapipe on CPU-only machines).
    Vulkan,
    /// Metal (macOS, iOS).
    Metal,
    /// Direct3D 12 (Windows).
    Dx12,
    /// OpenGL / GLES (last resort; no f16, no subgroups).
    Gl,
}

impl BackendChoice {
    /// Parses `vulkan|metal|dx12|gl`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "vulkan" | "vk" => Some(Self::Vulkan),
            "metal" | "mtl" => Some(Self::Metal),
            "dx12" | "d3d12" => Some(Self::Dx12),
            "gl" | "gles" | "opengl" => Some(Self::Gl),
            _ => None,
        }
    }
    pub(super) fn backends(self) -> wgpu::Backends {
        match self {
            Self::Vulkan => wgpu::Backends::VULKAN,
            Self::Metal => wgpu::Backends::METAL,
            Self::Dx12 => wgpu::Backends::DX12,
            Self::Gl => wgpu::Backends::GL,
        }
    }
}

impl std::str::FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::parse(s).ok_or_else(|| format!("unknown backend '{s}' (expected vulkan, metal, dx12 or gl)"))
    }
}

/// How to pick the adapter. Empty fields fall back to the environment
/// (`TRAJATTN_BACKEND`, `TRAJATTN_ADAPTER`, `TRAJATTN_DISABLE`, `TRAJATTN_MAX_BINDING`), then to the best adapter
/// found.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Restrict to one backend.
    pub backend: Option<BackendChoice>,
    /// Case-insensitive substring of the adapter name.
    pub adapter: Option<String>,
    /// Optional features not to use even when present (`f16`, `subgroup`, `timestamp`), to test fallbacks.
    pub disable: Vec<String>,
    /// Ask the device for a smaller `max_storage_buffer_binding_size` than the adapter's (bytes, rounded down to a
    /// multiple of 256, at least 4096), so the binding-splitting paths of large operands run, and are enforced by
    /// wgpu's validation, on any machine. [`super::Gpu::max_binding`] reports it. Ignored when above the adapter's limit.
    pub max_binding: Option<u64>,
    /// Force a kernel tier (`TRAJATTN_KERNELS=auto|gpu|sg8`); see [`crate::select`].
    pub kernels: Option<KernelSet>,
    /// Do not read or write the persistent pipeline cache (`TRAJATTN_NO_PIPELINE_CACHE=1`).
    pub no_pipeline_cache: bool,
    /// Folder of the persistent pipeline cache (default: [`disk_cache::default_dir`], which reads
    /// `TRAJATTN_CACHE_DIR`).
    pub cache_dir: Option<std::path::PathBuf>,
}

/// Optional features `--disable` can switch off.
pub const DISABLE_NAMES: &[&str] = &["f16", "subgroup", "timestamp"];

/// Smallest binding limit [`GpuOptions::max_binding`] accepts.
pub const MIN_MAX_BINDING: u64 = 4096;

/// Parses a byte size: a plain integer or one with a `K`/`KiB`, `M`/`MiB` or `G`/`GiB` suffix (powers of 1024).
pub fn parse_bytes(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

impl GpuOptions {
    /// Fills empty fields from `TRAJATTN_BACKEND`, `TRAJATTN_ADAPTER`, `TRAJATTN_DISABLE` (comma separated) and
    /// `TRAJATTN_MAX_BINDING` (a byte size, see [`parse_bytes`]).
    pub fn with_env(mut self) -> Result<Self> {
        if self.backend.is_none() {
            if let Ok(b) = std::env::var("TRAJATTN_BACKEND") {
                if !b.is_empty() {
                    self.backend = Some(BackendChoice::parse(&b).ok_or_else(|| {
                        KernelError::NoAdapter(format!(
                            "TRAJATTN_BACKEND='{b}' is not one of vulkan, metal, dx12, gl"
                        ))
                    })?);
                }
            }
        }
        if self.adapter.is_none() {
            if let Ok(a) = std::env::var("TRAJATTN_ADAPTER") {
                if !a.is_empty() {
                    self.adapter = Some(a);
                }
            }
        }
        if let Ok(d) = std::env::var("TRAJATTN_DISABLE") {
            self.disable
                .extend(d.split(',').map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()));
        }
        if self.max_binding.is_none() {
            if let Ok(v) = std::env::var("TRAJATTN_MAX_BINDING") {
                if !v.trim().is_empty() {
                    self.max_binding = Some(parse_bytes(&v).ok_or_else(|| {
                        KernelError::Device(format!(
                            "TRAJATTN_MAX_BINDING='{v}' is not a byte size (e.g. 1048576, 64K, 16MiB)"
                        ))
                    })?);
                }
            }
        }
        if let Some(bad) = self.disable.iter().find(|d| !DISABLE_NAMES.contains(&d.as_str())) {
            return Err(KernelError::Device(format!(
                "--disable / TRAJATTN_DISABLE: unknown feature '{bad}' (known: {})",
                DISABLE_NAMES.join(", ")
            )));
        }
        if let Ok(v) = std::env::var("TRAJATTN_NO_PIPELINE_CACHE") {
            if !matches!(v.trim(), "" | "0" | "false" | "no") {
                self.no_pipeline_cache = true;
            }
        }
        if self.cache_dir.is_none() {
            self.cache_dir = disk_cache::default_dir();
        }
        if self.kernels.is_none() {
            if let Ok(v) = std::env::var("TRAJATTN_KERNELS") {
                if !v.trim().is_empty() {
                    self.kernels = Some(KernelSet::parse(&v).ok_or_else(|| {
                        KernelError::Device(format!("TRAJATTN_KERNELS='{v}' is not one of auto, gpu, sg8"))
                    })?);
                }
            }
        }
        Ok(self)
    }
}
