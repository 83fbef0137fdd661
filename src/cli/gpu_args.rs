//! The global GPU options every command shares (`--backend`, `--adapter`, `--max-binding`, `--kernels`, …).

use anyhow::{Context, Result};
use clap::Args;
use trajattn_kernels::gpu::{BackendChoice, Gpu, GpuOptions};

#[derive(Args, Debug, Clone)]
pub struct GpuArgs {
    /// Graphics API: vulkan, metal, dx12 or gl (default: the best available).
    #[arg(long, global = true, env = "TRAJATTN_BACKEND")]
    pub backend: Option<BackendChoice>,
    /// Use the adapter whose name contains this text (case-insensitive), e.g. "llvmpipe" or "nvidia".
    #[arg(long, global = true, env = "TRAJATTN_ADAPTER")]
    pub adapter: Option<String>,
    /// Optional features not to use even if present (comma separated: f16, subgroup, timestamp).
    #[arg(long, global = true, value_delimiter = ',', env = "TRAJATTN_DISABLE")]
    pub disable: Vec<String>,
    /// Lower the device's storage-binding limit to this many bytes (e.g. 64M), to exercise the kernels' binding
    /// splits; also `TRAJATTN_MAX_BINDING`.
    #[arg(long, global = true, value_parser = parse_byte_size)]
    pub max_binding: Option<u64>,
    /// Kernel tier: auto (the best the adapter runs), gpu (workgroup-tiled kernels for real GPUs) or sg8
    /// (kernels for exactly 8-lane subgroups, e.g. lavapipe); also `TRAJATTN_KERNELS`.
    #[arg(long, global = true, env = "TRAJATTN_KERNELS")]
    pub kernels: Option<trajattn_kernels::select::KernelSet>,
    /// Neither read nor write the persistent pipeline cache (kept in TRAJATTN_CACHE_DIR, else the user's cache
    /// directory, e.g. ~/.cache/trajattn); also `TRAJATTN_NO_PIPELINE_CACHE=1`.
    #[arg(long, global = true)]
    pub no_pipeline_cache: bool,
}

fn parse_byte_size(s: &str) -> std::result::Result<u64, String> {
    trajattn_kernels::gpu::parse_bytes(s)
        .ok_or_else(|| format!("'{s}' is not a byte size (e.g. 1048576, 64K, 16MiB)"))
}

impl GpuArgs {
    pub fn options(&self) -> GpuOptions {
        GpuOptions {
            backend: self.backend,
            adapter: self.adapter.clone(),
            disable: self
                .disable
                .iter()
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect(),
            max_binding: self.max_binding,
            kernels: self.kernels,
            no_pipeline_cache: self.no_pipeline_cache,
            cache_dir: None,
        }
    }
    pub fn open(&self) -> Result<Gpu> {
        Gpu::new(&self.options()).context("opening the GPU")
    }
}
