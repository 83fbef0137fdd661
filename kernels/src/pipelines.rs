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
            modules
                .entry((shader.name, dtype))
                .or_insert_with(|| {
                    let src = shader.source(dtype);
                    device.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(shader.name),
                        source: wgpu::ShaderSource::Wgsl(src.into()),
                    })
                })
                .clone()
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
