//! Adapter choice and device creation with the adapter's real limits and optional features.

use crate::error::{KernelError, Result};
use crate::pipelines::PipelineCache;
use crate::pool::BufferPool;
use crate::select::{AdapterFacts, KernelSet, Tier};
use serde::Serialize;
use std::sync::{Arc, Mutex};

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
    fn backends(self) -> wgpu::Backends {
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
    /// wgpu's validation, on any machine. [`Gpu::max_binding`] reports it. Ignored when above the adapter's limit.
    pub max_binding: Option<u64>,
    /// Force a kernel tier (`TRAJATTN_KERNELS=auto|gpu|sg8`); see [`crate::select`].
    pub kernels: Option<KernelSet>,
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

/// What the kernels may use on this device.
#[derive(Clone, Debug, Serialize)]
pub struct Caps {
    /// f16 storage and arithmetic in shaders.
    pub shader_f16: bool,
    /// Subgroup operations in compute shaders.
    pub subgroup: bool,
    /// Timestamp queries.
    pub timestamp: bool,
    /// Smallest and largest subgroup size the adapter reports.
    pub subgroup_min_size: u32,
    /// Largest subgroup size.
    pub subgroup_max_size: u32,
}

/// One adapter, as `trajattn info` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct AdapterReport {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub vendor: u32,
    pub device: u32,
    pub features: Vec<String>,
    pub shader_f16: bool,
    pub subgroup: bool,
    pub timestamp_query: bool,
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_size: [u32; 3],
    pub max_compute_workgroups_per_dimension: u32,
    pub max_storage_buffers_per_shader_stage: u32,
    pub min_storage_buffer_offset_alignment: u32,
    pub min_uniform_buffer_offset_alignment: u32,
}

impl AdapterReport {
    fn new(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let f = adapter.features();
        let l = adapter.limits();
        let mut features: Vec<String> = f.iter_names().map(|(n, _)| n.to_string()).collect();
        features.sort();
        AdapterReport {
            name: info.name,
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver,
            driver_info: info.driver_info,
            vendor: info.vendor,
            device: info.device,
            features,
            shader_f16: f.contains(wgpu::Features::SHADER_F16),
            subgroup: f.contains(wgpu::Features::SUBGROUP),
            timestamp_query: f.contains(wgpu::Features::TIMESTAMP_QUERY),
            subgroup_min_size: info.subgroup_min_size,
            subgroup_max_size: info.subgroup_max_size,
            max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
            max_buffer_size: l.max_buffer_size,
            max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
            max_compute_workgroup_size: [
                l.max_compute_workgroup_size_x,
                l.max_compute_workgroup_size_y,
                l.max_compute_workgroup_size_z,
            ],
            max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
            max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
            min_storage_buffer_offset_alignment: l.min_storage_buffer_offset_alignment,
            min_uniform_buffer_offset_alignment: l.min_uniform_buffer_offset_alignment,
        }
    }
}

const NO_DRIVER_HELP: &str = "no GPU adapter found: install a Vulkan driver (Debian/Ubuntu: \
`apt-get install mesa-vulkan-drivers` gives lavapipe, a CPU Vulkan driver; on a GPU install the vendor's driver), \
or run on macOS (Metal) or Windows (DX12)";

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

fn backends_of(opts: &GpuOptions) -> wgpu::Backends {
    opts.backend.map(|b| b.backends()).unwrap_or(wgpu::Backends::all())
}

/// Lists every adapter of the allowed backends.
pub fn list_adapters(opts: &GpuOptions) -> Vec<AdapterReport> {
    let backends = backends_of(opts);
    let inst = instance(backends);
    pollster::block_on(inst.enumerate_adapters(backends)).iter().map(AdapterReport::new).collect()
}

fn rank(adapter: &wgpu::Adapter) -> u32 {
    let info = adapter.get_info();
    let ty = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    let be = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    be * 10 + ty
}

/// Errors that wgpu reported outside of an error scope since the last check.
type ErrorSink = Arc<Mutex<Vec<String>>>;

/// The device, its queue and everything shared by kernels: caps, limits, buffer pool, pipeline cache.
pub struct Gpu {
    /// The wgpu device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// The adapter's description.
    pub info: wgpu::AdapterInfo,
    /// Limits the device was created with (the adapter's own, with a lowered
    /// `max_storage_buffer_binding_size` if [`GpuOptions::max_binding`] asked for one).
    pub limits: wgpu::Limits,
    /// What the kernels may use.
    pub caps: Caps,
    /// What kernel selection looks at (the adapter's report with the user's switches applied).
    pub facts: AdapterFacts,
    /// The kernel tier every op selects its variants for.
    pub tier: Tier,
    pool: BufferPool,
    pipelines: PipelineCache,
    errors: ErrorSink,
    // wgpu-core 30.0.1 can trip an assertion in `Device::poll` when a submit and a poll race on two
    // threads (gfx-rs/wgpu#9958); every submit and poll of ours goes through this lock.
    submit_lock: Mutex<()>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gpu({} on {:?})", self.info.name, self.info.backend)
    }
}

impl Gpu {
    /// Picks an adapter per `opts` (and the environment) and creates the device with its real limits.
    pub fn new(opts: &GpuOptions) -> Result<Gpu> {
        let opts = opts.clone().with_env()?;
        let backends = backends_of(&opts);
        let inst = instance(backends);
        let mut adapters = pollster::block_on(inst.enumerate_adapters(backends));
        if adapters.is_empty() {
            return Err(KernelError::NoAdapter(match opts.backend {
                Some(b) => format!("no adapter for backend {b:?}; {NO_DRIVER_HELP}"),
                None => NO_DRIVER_HELP.to_string(),
            }));
        }
        if let Some(sub) = &opts.adapter {
            let s = sub.to_ascii_lowercase();
            let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
            adapters.retain(|a| a.get_info().name.to_ascii_lowercase().contains(&s));
            if adapters.is_empty() {
                return Err(KernelError::NoAdapter(format!(
                    "no adapter name contains '{sub}'; available: {}",
                    names.join(", ")
                )));
            }
        }
        adapters.sort_by_key(rank);
        let adapter = adapters.remove(0);
        Self::from_adapter(adapter, &opts)
    }

    fn from_adapter(adapter: wgpu::Adapter, opts: &GpuOptions) -> Result<Gpu> {
        let info = adapter.get_info();
        let af = adapter.features();
        let off = |n: &str| opts.disable.iter().any(|d| d == n);
        let mut want = wgpu::Features::empty();
        let shader_f16 = af.contains(wgpu::Features::SHADER_F16) && !off("f16");
        let subgroup = af.contains(wgpu::Features::SUBGROUP) && !off("subgroup");
        let timestamp = af.contains(wgpu::Features::TIMESTAMP_QUERY) && !off("timestamp");
        if shader_f16 {
            want |= wgpu::Features::SHADER_F16;
        }
        if subgroup {
            want |= wgpu::Features::SUBGROUP;
        }
        if timestamp {
            want |= wgpu::Features::TIMESTAMP_QUERY;
        }
        let mut limits = adapter.limits();
        if let Some(want) = opts.max_binding {
            if want < MIN_MAX_BINDING {
                return Err(KernelError::Device(format!(
                    "requested binding limit {want} B is below the minimum {MIN_MAX_BINDING} B"
                )));
            }
            let want = want / 256 * 256;
            if want < limits.max_storage_buffer_binding_size {
                limits.max_storage_buffer_binding_size = want;
            }
        }
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("trajattn"),
            required_features: want,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| KernelError::Device(format!("{} ({:?}): {e}", info.name, info.backend)))?;
        let errors: ErrorSink = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            log::error!("wgpu: {e}");
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        let facts = AdapterFacts::of(&adapter, &opts.disable, opts.max_binding);
        let tier = facts.tier(opts.kernels.unwrap_or_default())?;
        let caps = Caps {
            shader_f16,
            subgroup,
            timestamp,
            subgroup_min_size: info.subgroup_min_size,
            subgroup_max_size: info.subgroup_max_size,
        };
        log::info!(
            "adapter {} ({:?}, {:?}), kernels {}, f16={} subgroup={} ({}..{}), max binding {} B",
            info.name,
            info.backend,
            info.device_type,
            tier,
            caps.shader_f16,
            caps.subgroup,
            caps.subgroup_min_size,
            caps.subgroup_max_size,
            limits.max_storage_buffer_binding_size
        );
        Ok(Gpu {
            pool: BufferPool::new(),
            pipelines: PipelineCache::new(),
            device,
            queue,
            info,
            limits,
            caps,
            facts,
            tier,
            errors,
            submit_lock: Mutex::new(()),
        })
    }

    /// The process-wide default device, created on first use from the environment (tests, benches).
    pub fn shared() -> Result<Arc<Gpu>> {
        static SHARED: Mutex<Option<Arc<Gpu>>> = Mutex::new(None);
        let mut g = SHARED.lock().map_err(|_| KernelError::Device("shared device lock poisoned".into()))?;
        if let Some(gpu) = g.as_ref() {
            return Ok(gpu.clone());
        }
        let gpu = Arc::new(Gpu::new(&GpuOptions::default())?);
        *g = Some(gpu.clone());
        Ok(gpu)
    }

    /// Short description: adapter name and backend.
    pub fn describe(&self) -> String {
        format!("{} ({:?}, {:?})", self.info.name, self.info.backend, self.info.device_type)
    }

    /// The buffer pool.
    pub fn pool(&self) -> &BufferPool {
        &self.pool
    }

    /// The pipeline cache.
    pub fn pipelines(&self) -> &PipelineCache {
        &self.pipelines
    }

    /// Whether the kernels written for exactly 8-lane subgroups (`*_sg8` shaders: lavapipe on AVX2, some
    /// Intel/ARM GPUs) are the selected tier (see [`crate::select`]; `TRAJATTN_KERNELS=gpu` turns them off).
    pub fn subgroup8(&self) -> bool {
        self.tier == Tier::Sg8
    }

    /// Largest byte size one storage binding may have.
    pub fn max_binding(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size)
    }

    /// Alignment of storage-binding offsets.
    pub fn storage_align(&self) -> u64 {
        self.limits.min_storage_buffer_offset_alignment as u64
    }

    /// Fails with [`KernelError::MissingFeature`] unless f16 shaders are available.
    pub fn require_f16(&self, op: &'static str) -> Result<()> {
        if self.caps.shader_f16 {
            Ok(())
        } else {
            Err(KernelError::MissingFeature { op, feature: "SHADER_F16", adapter: self.info.name.clone() })
        }
    }

    /// Submits command buffers and, if `wait`, blocks until the GPU is done.
    pub fn submit(&self, cmds: Vec<wgpu::CommandBuffer>, wait: bool) -> Result<()> {
        let _g = self.submit_lock.lock().map_err(|_| KernelError::Device("submit lock poisoned".into()))?;
        let idx = self.queue.submit(cmds);
        if wait {
            self.device
                .poll(wgpu::PollType::Wait { submission_index: Some(idx), timeout: None })
                .map_err(|e| KernelError::Wgpu(format!("poll: {e}")))?;
        }
        drop(_g);
        self.check_errors()
    }

    /// Blocks until all submitted work is done.
    pub fn wait_idle(&self) -> Result<()> {
        let _g = self.submit_lock.lock().map_err(|_| KernelError::Device("submit lock poisoned".into()))?;
        self.device
            .poll(wgpu::PollType::Wait { submission_index: None, timeout: None })
            .map_err(|e| KernelError::Wgpu(format!("poll: {e}")))?;
        drop(_g);
        self.check_errors()
    }

    /// Returns (and clears) errors wgpu reported asynchronously.
    pub fn check_errors(&self) -> Result<()> {
        let mut v = self.errors.lock().map_err(|_| KernelError::Device("error sink poisoned".into()))?;
        if v.is_empty() {
            Ok(())
        } else {
            let msg = v.join("; ");
            v.clear();
            Err(KernelError::Wgpu(msg))
        }
    }
}
