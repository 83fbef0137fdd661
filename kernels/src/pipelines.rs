//! Shader-module and compute-pipeline cache, keyed by shader, entry point, dtype and override constants.
//!
//! Two more jobs: pipelines are compiled through a driver-level [`wgpu::PipelineCache`] when the device has one
//! (persisted across runs by [`crate::disk_cache`]), and the time spent creating pipelines is accounted
//! ([`PipelineCache::compile_stats`]). On a *dry* device ([`crate::Gpu::emulating`]) nothing is compiled: the key
//! is recorded (what `trajattn shaders --dump` lists) and a placeholder pipeline is returned that is never run.

use crate::dtype::DType;
use crate::error::{KernelError, Result};
use crate::shaders::Shader;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What identifies one compiled pipeline.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    /// Shader family name (file stem in `shaders/`).
    pub shader: &'static str,
    /// Entry point.
    pub entry: &'static str,
    /// Storage dtype the source was expanded for.
    pub dtype: DType,
    /// Pipeline-overridable constants, as (name, value bits) sorted by name.
    pub constants: Vec<(&'static str, u64)>,
}

/// A compiled pipeline and its bind-group layout (group 0).
pub struct Pipeline {
    /// The compute pipeline.
    pub pipeline: wgpu::ComputePipeline,
    /// Layout of bind group 0, derived from the shader.
    pub layout: wgpu::BindGroupLayout,
    /// The key it was built for.
    pub key: PipelineKey,
}

impl PipelineKey {
    /// The override constants with their values, sorted by name.
    pub fn constant_values(&self) -> Vec<(&'static str, f64)> {
        self.constants.iter().map(|&(n, b)| (n, f64::from_bits(b))).collect()
    }

    /// `K=V,K=V` (empty without constants): the form radvstats manifests take.
    pub fn constants_string(&self) -> String {
        self.constant_values().iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(",")
    }
}

impl std::fmt::Display for PipelineKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}::{} {}", self.shader, self.entry, self.dtype)?;
        // Space-separated (no commas: radvstats writes labels into CSV unquoted).
        for (n, v) in self.constant_values() {
            write!(f, " {n}={v}")?;
        }
        Ok(())
    }
}

/// Time spent creating shader modules and compute pipelines on one device.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct CompileStats {
    /// Pipelines created (placeholders of a dry device excluded).
    pub pipelines: usize,
    /// Wall time spent in module and pipeline creation, seconds.
    pub seconds: f64,
}

/// Caches shader modules per (shader, dtype) and pipelines per [`PipelineKey`].
#[derive(Default)]
pub struct PipelineCache {
    modules: Mutex<HashMap<(&'static str, DType), wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<Pipeline>>>,
    /// Driver-level cache pipelines are compiled through (persisted by the device's owner).
    driver_cache: Option<wgpu::PipelineCache>,
    /// Record keys only, compile nothing (see [`crate::Gpu::emulating`]).
    dry: bool,
    placeholder: OnceLock<(wgpu::ComputePipeline, wgpu::BindGroupLayout)>,
    compile: Mutex<(usize, Duration)>,
    /// Keys a recorder dispatched (tracked on dry caches only).
    dispatched: Mutex<std::collections::HashSet<PipelineKey>>,
}

/// A compute shader with one binding at group 0, so its layout exists; a dry device's stand-in pipeline.
const PLACEHOLDER_WGSL: &str =
    "@group(0) @binding(0) var<storage, read_write> x: array<u32>;\n@compute @workgroup_size(1) fn main() { x[0] = 0u; }\n";

impl PipelineCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty cache that compiles through `driver_cache` (when given) or, if `dry`, compiles nothing.
    pub fn with(driver_cache: Option<wgpu::PipelineCache>, dry: bool) -> Self {
        PipelineCache { driver_cache, dry, ..Self::default() }
    }

    /// The driver-level pipeline cache, if the device has one.
    pub fn driver_cache(&self) -> Option<&wgpu::PipelineCache> {
        self.driver_cache.as_ref()
    }

    /// Whether this cache records keys without compiling.
    pub fn is_dry(&self) -> bool {
        self.dry
    }

    /// Pipelines created so far and the time spent creating them (modules included).
    pub fn compile_stats(&self) -> CompileStats {
        let (n, d) = self.compile.lock().map(|c| *c).unwrap_or_default();
        CompileStats { pipelines: n, seconds: d.as_secs_f64() }
    }

    fn placeholder(&self, device: &wgpu::Device) -> (wgpu::ComputePipeline, wgpu::BindGroupLayout) {
        self.placeholder
            .get_or_init(|| {
                let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some("dry placeholder"),
                    source: wgpu::ShaderSource::Wgsl(PLACEHOLDER_WGSL.into()),
                });
                let p = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some("dry placeholder"),
                    layout: None,
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: Default::default(),
                    cache: None,
                });
                let l = p.get_bind_group_layout(0);
                (p, l)
            })
            .clone()
    }

    /// The pipeline for `shader.entry` in `dtype` with override `constants`, compiled on first use.
    pub fn get(
        &self,
        device: &wgpu::Device,
        shader: &Shader,
        entry: &'static str,
        dtype: DType,
        constants: &[(&'static str, f64)],
    ) -> Result<Arc<Pipeline>> {
        let mut consts: Vec<(&'static str, u64)> = constants.iter().map(|&(n, v)| (n, v.to_bits())).collect();
        consts.sort();
        let key = PipelineKey { shader: shader.name, entry, dtype, constants: consts };
        if let Some(p) = self.pipelines.lock().map_err(poisoned)?.get(&key) {
            return Ok(p.clone());
        }
        if self.dry {
            // Expand the source anyway: a missing include or alias must fail here as it would on a device.
            shader.source(dtype)?;
            let (pipeline, layout) = self.placeholder(device);
            let p = Arc::new(Pipeline { pipeline, layout, key: key.clone() });
            self.pipelines.lock().map_err(poisoned)?.insert(key, p.clone());
            return Ok(p);
        }
        let t0 = Instant::now();
        let module = {
            let mut modules = self.modules.lock().map_err(poisoned)?;
            match modules.get(&(shader.name, dtype)) {
                Some(m) => m.clone(),
                None => {
                    let src = shader.source(dtype)?;
                    let m = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(shader.name),
                        source: wgpu::ShaderSource::Wgsl(src.into()),
                    });
                    modules.insert((shader.name, dtype), m.clone());
                    m
                }
            }
        };
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: self.driver_cache.as_ref(),
        });
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(KernelError::Wgpu(format!(
                "pipeline {}::{entry} ({dtype}, {constants:?}): {err}",
                shader.name
            )));
        }
        let layout = pipeline.get_bind_group_layout(0);
        if let Ok(mut c) = self.compile.lock() {
            c.0 += 1;
            c.1 += t0.elapsed();
        }
        log::debug!("compiled {key} in {:.1} ms", t0.elapsed().as_secs_f64() * 1e3);
        let p = Arc::new(Pipeline { pipeline, layout, key: key.clone() });
        self.pipelines.lock().map_err(poisoned)?.insert(key, p.clone());
        Ok(p)
    }

    /// Keys of every pipeline compiled so far, sorted (tests use it to assert which variant ran).
    pub fn keys(&self) -> Vec<PipelineKey> {
        let mut k: Vec<PipelineKey> =
            self.pipelines.lock().map(|p| p.keys().cloned().collect()).unwrap_or_default();
        k.sort_by(|a, b| {
            (a.shader, a.entry, a.dtype as u8, &a.constants).cmp(&(
                b.shader,
                b.entry,
                b.dtype as u8,
                &b.constants,
            ))
        });
        k
    }

    /// Notes that `key` was dispatched (dry caches only: what `shaders --dump` reports as created but unused).
    pub fn mark_dispatched(&self, key: &PipelineKey) {
        if self.dry {
            if let Ok(mut d) = self.dispatched.lock() {
                d.insert(key.clone());
            }
        }
    }

    /// Whether `key` was dispatched by a recorder (always false on a cache that is not dry).
    pub fn was_dispatched(&self, key: &PipelineKey) -> bool {
        self.dispatched.lock().map(|d| d.contains(key)).unwrap_or(false)
    }

    /// Whether a pipeline of `shader.entry` was compiled (any dtype or constants).
    pub fn used(&self, shader: &str, entry: &str) -> bool {
        self.keys().iter().any(|k| k.shader == shader && k.entry == entry)
    }

    /// Number of compiled pipelines.
    pub fn len(&self) -> usize {
        self.pipelines.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// Whether nothing is compiled yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn poisoned<T>(_: T) -> KernelError {
    KernelError::Device("pipeline cache lock poisoned".into())
}
