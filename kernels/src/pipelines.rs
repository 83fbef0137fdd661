//! Shader-module and compute-pipeline cache, keyed by shader, entry point, dtype and override constants.

use crate::dtype::DType;
use crate::error::{KernelError, Result};
use crate::shaders::Shader;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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

/// Caches shader modules per (shader, dtype) and pipelines per [`PipelineKey`].
#[derive(Default)]
pub struct PipelineCache {
    modules: Mutex<HashMap<(&'static str, DType), wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<Pipeline>>>,
}

impl PipelineCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
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
            cache: None,
        });
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(KernelError::Wgpu(format!(
                "pipeline {}::{entry} ({dtype}, {constants:?}): {err}",
                shader.name
            )));
        }
        let layout = pipeline.get_bind_group_layout(0);
        let p = Arc::new(Pipeline { pipeline, layout, key: key.clone() });
        self.pipelines.lock().map_err(poisoned)?.insert(key, p.clone());
        Ok(p)
    }

    /// Keys of every pipeline compiled so far, sorted (tests use it to assert which variant ran).
    pub fn keys(&self) -> Vec<PipelineKey> {
        let mut k: Vec<PipelineKey> =
            self.pipelines.lock().map(|p| p.keys().cloned().collect()).unwrap_or_default();
        k.sort_by(|a, b| (a.shader, a.entry, a.dtype as u8).cmp(&(b.shader, b.entry, b.dtype as u8)));
        k
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
