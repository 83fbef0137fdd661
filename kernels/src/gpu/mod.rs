//! Adapter choice and device creation with the adapter's real limits and optional features.

use crate::disk_cache::{self, CacheStatus};
use crate::error::{KernelError, Result};
use crate::pipelines::PipelineCache;
use crate::pool::BufferPool;
use crate::select::{AdapterFacts, Tier};
use serde::Serialize;
use std::sync::{Arc, Mutex};

mod adapter;
mod options;

use adapter::{backends_of, instance, rank, NO_DRIVER_HELP};
pub use adapter::{list_adapters, AdapterReport};
pub use options::{parse_bytes, BackendChoice, GpuOptions, DISABLE_NAMES, MIN_MAX_BINDING};

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
    /// The persistent pipeline cache: file, key and what happened when it was opened.
    disk: DiskCache,
    /// Set by [`Gpu::emulating`]: selection follows another adapter; nothing is compiled or run.
    emulated_on: Option<wgpu::AdapterInfo>,
}

struct DiskCache {
    status: CacheStatus,
    /// The file and the key it must carry.
    file: Option<(std::path::PathBuf, String)>,
    /// Pipelines compiled when the file was last written.
    saved_at: Mutex<usize>,
    /// Checksum of the payload last read or written (an unchanged cache is not rewritten).
    payload_sum: Mutex<Option<u64>>,
}

/// The persistent cache as found when the device opens.
struct OpenedCache {
    status: CacheStatus,
    file: Option<(std::path::PathBuf, String)>,
    loaded: Option<Vec<u8>>,
}

impl OpenedCache {
    fn off(why: &str) -> Self {
        OpenedCache { status: CacheStatus::Disabled(why.into()), file: None, loaded: None }
    }

    fn open(dir: &std::path::Path, info: &wgpu::AdapterInfo) -> Self {
        let key = disk_cache::adapter_key(info);
        let path = disk_cache::file_in(dir, &key);
        let (status, loaded) = match disk_cache::read(&path, &key) {
            Ok(Some(data)) => (CacheStatus::Loaded(data.len()), Some(data)),
            Ok(None) => (CacheStatus::Fresh, None),
            Err(why) => {
                log::warn!("pipeline cache {}: ignored ({why}); starting an empty one", path.display());
                (CacheStatus::Ignored(why), None)
            }
        };
        OpenedCache { status, file: Some((path, key)), loaded }
    }
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gpu({} on {:?})", self.info.name, self.info.backend)
    }
}

impl Drop for Gpu {
    fn drop(&mut self) {
        self.save_pipeline_cache();
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
        let (device, queue, limits, caps) = Self::open(&adapter, opts, true)?;
        let info = adapter.get_info();
        let facts = AdapterFacts::of(&adapter, &opts.disable, opts.max_binding);
        let tier = facts.tier(opts.kernels.unwrap_or_default())?;
        let disk = if opts.no_pipeline_cache {
            OpenedCache::off("--no-pipeline-cache / TRAJATTN_NO_PIPELINE_CACHE")
        } else if !device.features().contains(wgpu::Features::PIPELINE_CACHE) {
            OpenedCache::off("the adapter has no PIPELINE_CACHE")
        } else if let Some(dir) = &opts.cache_dir {
            OpenedCache::open(dir, &info)
        } else {
            OpenedCache::off("no cache directory (set TRAJATTN_CACHE_DIR)")
        };
        let driver_cache = disk.file.as_ref().map(|_| {
            let data = match &disk.status {
                CacheStatus::Loaded(_) => disk.loaded.as_deref(),
                _ => None,
            };
            // SAFETY: `data` is only ever bytes `PipelineCache::get_data` returned on an adapter with the same
            // vendor, device, driver and wgpu version (the file's key and checksum were verified), and `fallback`
            // makes wgpu start an empty cache when the driver rejects them.
            unsafe {
                device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                    label: Some("trajattn"),
                    data,
                    fallback: true,
                })
            }
        });
        let sum = disk.loaded.as_deref().map(disk_cache::fnv64);
        let disk = DiskCache {
            status: disk.status,
            file: disk.file,
            saved_at: Mutex::new(0),
            payload_sum: Mutex::new(sum),
        };
        log::info!(
            "adapter {} ({:?}, {:?}), kernels {}, f16={} subgroup={} ({}..{}), max binding {} B, pipeline cache {}",
            info.name,
            info.backend,
            info.device_type,
            tier,
            caps.shader_f16,
            caps.subgroup,
            caps.subgroup_min_size,
            caps.subgroup_max_size,
            limits.max_storage_buffer_binding_size,
            disk.status
        );
        Ok(Self::assemble(device, queue, info, limits, caps, facts, tier, disk, driver_cache, None))
    }

    /// A dry device with this device's adapter facts, limits and kernel tier, sharing its wgpu device (it
    /// only creates placeholder pipelines and buffers of a few bytes there): memory plans that record exactly
    /// what a run on this device would allocate, without allocating it. Errors stay with this device.
    pub fn dry_twin(&self) -> Gpu {
        let disk = DiskCache {
            status: CacheStatus::Disabled("dry twin".into()),
            file: None,
            saved_at: Mutex::new(0),
            payload_sum: Mutex::new(None),
        };
        Gpu {
            pool: BufferPool::accounting_only(),
            pipelines: PipelineCache::with(None, true),
            device: self.device.clone(),
            queue: self.queue.clone(),
            info: self.info.clone(),
            limits: self.limits.clone(),
            caps: self.caps.clone(),
            facts: self.facts.clone(),
            tier: self.tier,
            errors: self.errors.clone(),
            submit_lock: Mutex::new(()),
            disk,
            emulated_on: Some(self.host_adapter().unwrap_or(&self.info).clone()),
        }
    }

    /// A device on which kernel selection follows the adapter `opts` names (its facts, limits and tier), even
    /// when that adapter cannot be opened (RADV's null device under `RADV_FORCE_FAMILY`): the device is opened on
    /// the target if it can be, else on another adapter (the host), and the result is *dry*: pipelines are
    /// recorded by key but never compiled, recordings never run, buffers are placeholders of a few bytes whose
    /// requested sizes the pool accounts ([`BufferPool::accounting_only`]). For
    /// `trajattn shaders --dump`: build the graphs on it, then read [`Gpu::pipelines`]' keys. Ops must record
    /// through [`crate::Recorder`] (which binds nothing on a dry device): a pass encoded by hand would bind a
    /// placeholder pipeline.
    pub fn emulating(opts: &GpuOptions) -> Result<Gpu> {
        let mut opts = opts.clone().with_env()?;
        opts.no_pipeline_cache = true;
        let backends = backends_of(&opts);
        let inst = instance(backends);
        let mut adapters = pollster::block_on(inst.enumerate_adapters(backends));
        if adapters.is_empty() {
            return Err(KernelError::NoAdapter(NO_DRIVER_HELP.to_string()));
        }
        adapters.sort_by_key(rank);
        let pos = match &opts.adapter {
            Some(sub) => {
                let s = sub.to_ascii_lowercase();
                adapters.iter().position(|a| a.get_info().name.to_ascii_lowercase().contains(&s)).ok_or_else(
                    || {
                        let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
                        KernelError::NoAdapter(format!(
                            "no adapter name contains '{sub}'; available: {}",
                            names.join(", ")
                        ))
                    },
                )?
            }
            None => 0,
        };
        let target = adapters.remove(pos);
        let tinfo = target.get_info();
        let facts = AdapterFacts::of(&target, &opts.disable, opts.max_binding);
        let tier = facts.tier(opts.kernels.unwrap_or_default())?;
        let mut limits = target.limits();
        if let Some(m) = opts.max_binding {
            limits.max_storage_buffer_binding_size = facts.max_binding.min(m / 256 * 256);
        }
        let caps = Caps {
            shader_f16: facts.shader_f16,
            subgroup: facts.subgroup,
            timestamp: facts.timestamp,
            subgroup_min_size: tinfo.subgroup_min_size,
            subgroup_max_size: tinfo.subgroup_max_size,
        };
        // The host only allocates buffers: open it with the fewest demands.
        let host_opts = GpuOptions { max_binding: None, ..opts.clone() };
        let mut errors = Vec::new();
        let mut opened = None;
        for a in std::iter::once(target).chain(adapters) {
            match Self::open(&a, &host_opts, false) {
                Ok((d, q, _, _)) => {
                    opened = Some((d, q, a.get_info()));
                    break;
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        let Some((device, queue, hinfo)) = opened else {
            return Err(KernelError::Device(format!(
                "no adapter could be opened to emulate {}: {}",
                tinfo.name,
                errors.join("; ")
            )));
        };
        log::info!(
            "emulating {} ({:?}), kernels {tier}, on {} (dry: nothing is compiled or run)",
            tinfo.name,
            tinfo.backend,
            hinfo.name
        );
        let disk = DiskCache {
            status: CacheStatus::Disabled("emulated device".into()),
            file: None,
            saved_at: Mutex::new(0),
            payload_sum: Mutex::new(None),
        };
        Ok(Self::assemble(device, queue, tinfo, limits, caps, facts, tier, disk, None, Some(hinfo)))
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        limits: wgpu::Limits,
        caps: Caps,
        facts: AdapterFacts,
        tier: Tier,
        disk: DiskCache,
        driver_cache: Option<wgpu::PipelineCache>,
        emulated_on: Option<wgpu::AdapterInfo>,
    ) -> Gpu {
        let errors: ErrorSink = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            log::error!("wgpu: {e}");
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        let dry = emulated_on.is_some();
        Gpu {
            pool: if dry { BufferPool::accounting_only() } else { BufferPool::new() },
            pipelines: PipelineCache::with(driver_cache, dry),
            device,
            queue,
            info,
            limits,
            caps,
            facts,
            tier,
            errors,
            submit_lock: Mutex::new(()),
            disk,
            emulated_on,
        }
    }

    /// Opens a device on `adapter` with the optional features `opts` allows (and `PIPELINE_CACHE` when
    /// `cache` and the adapter has it).
    fn open(
        adapter: &wgpu::Adapter,
        opts: &GpuOptions,
        cache: bool,
    ) -> Result<(wgpu::Device, wgpu::Queue, wgpu::Limits, Caps)> {
        let info = adapter.get_info();
        let af = adapter.features();
        let off = |n: &str| opts.disable.iter().any(|d| d == n);
        let mut want = wgpu::Features::empty();
        if cache && !opts.no_pipeline_cache && af.contains(wgpu::Features::PIPELINE_CACHE) {
            want |= wgpu::Features::PIPELINE_CACHE;
        }
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
        let caps = Caps {
            shader_f16,
            subgroup,
            timestamp,
            subgroup_min_size: info.subgroup_min_size,
            subgroup_max_size: info.subgroup_max_size,
        };
        Ok((device, queue, limits, caps))
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

    /// What happened to the persistent pipeline cache when this device opened.
    pub fn pipeline_cache_status(&self) -> &CacheStatus {
        &self.disk.status
    }

    /// The persistent pipeline-cache file of this device, if the cache is on.
    pub fn pipeline_cache_file(&self) -> Option<&std::path::Path> {
        self.disk.file.as_ref().map(|(p, _)| p.as_path())
    }

    /// Writes the driver's pipeline cache to disk (atomically) if pipelines were compiled since the last
    /// write; returns the file written. Failures are logged, never errors: the cache is an optimisation.
    /// Also runs when the device is dropped.
    pub fn save_pipeline_cache(&self) -> Option<std::path::PathBuf> {
        let (path, key) = self.disk.file.as_ref()?;
        let cache = self.pipelines.driver_cache()?;
        let compiled = self.pipelines.compile_stats().pipelines;
        let mut saved = self.disk.saved_at.lock().ok()?;
        if compiled == *saved {
            return None;
        }
        let data = cache.get_data()?;
        let sum = disk_cache::fnv64(&data);
        let mut last = self.disk.payload_sum.lock().ok()?;
        if *last == Some(sum) {
            // Every pipeline came from the cache (or the driver keeps nothing new): the file is current.
            *saved = compiled;
            return None;
        }
        match disk_cache::write(path, key, &data) {
            Ok(()) => {
                *saved = compiled;
                *last = Some(sum);
                log::info!("pipeline cache: wrote {} bytes to {}", data.len(), path.display());
                Some(path.clone())
            }
            Err(e) => {
                log::warn!("pipeline cache: cannot write {}: {e}", path.display());
                None
            }
        }
    }

    /// Whether this device is dry: selection follows an emulated adapter and nothing is compiled or run
    /// ([`Gpu::emulating`]).
    pub fn is_dry(&self) -> bool {
        self.emulated_on.is_some()
    }

    /// The adapter a dry device really allocates on ([`Gpu::emulating`]).
    pub fn host_adapter(&self) -> Option<&wgpu::AdapterInfo> {
        self.emulated_on.as_ref()
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
