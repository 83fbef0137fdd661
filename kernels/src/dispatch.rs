//! Recording kernel dispatches: bindings, per-dispatch parameters and workgroup counts, encoded into one
//! compute pass and submitted together. A finished [`Recording`] can be replayed.

use crate::dtype::DType;
use crate::error::{invalid, Result};
use crate::gpu::Gpu;
use crate::lender::{Lender, Loan};
use crate::pipelines::{Pipeline, PipelineKey};
use crate::tensor::Window;
use crate::timing::GpuTimer;
use std::sync::Arc;

/// One dispatch: pipeline, uniform parameters (binding 0), storage windows (bindings 1..), workgroups.
pub struct Dispatch {
    pipeline: Arc<Pipeline>,
    params: Vec<u8>,
    windows: Vec<(u32, Window)>,
    groups: [u32; 3],
}

/// Collects dispatches; [`Recorder::finish`] builds bind groups and one parameter buffer for all of them.
pub struct Recorder<'g> {
    gpu: &'g Gpu,
    dispatches: Vec<Dispatch>,
    scratch: Lender,
}

/// One recorded dispatch, ready to encode. A dry device ([`Gpu::emulating`]) has no bind groups.
struct Step {
    pipeline: Arc<Pipeline>,
    bind_group: Option<wgpu::BindGroup>,
    groups: [u32; 3],
}

impl Step {
    fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        if let Some(bg) = &self.bind_group {
            pass.set_pipeline(&self.pipeline.pipeline);
            pass.set_bind_group(0, bg, &[]);
            pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]);
        }
    }
}

/// Dispatches ready to encode (and re-encode) without new allocations.
pub struct Recording {
    steps: Vec<Step>,
    /// Scratch buffers the dispatches use (held so no one else receives them between replays).
    _scratch: Lender,
    /// The buffer holding every dispatch's parameters, one aligned slot each.
    pub params: Option<wgpu::Buffer>,
    /// Byte offset of each dispatch's parameter slot in `params`.
    pub param_offsets: Vec<u64>,
}

impl<'g> Recorder<'g> {
    /// An empty recorder on `gpu`.
    pub fn new(gpu: &'g Gpu) -> Self {
        Recorder { gpu, dispatches: Vec::new(), scratch: Lender::new() }
    }

    /// A scratch tensor for the op being recorded (e.g. a column buffer). Ops must not keep it past their
    /// own dispatches: after the guard drops, a later op may receive the same buffer. Never hand scratch
    /// from the global pool to a recording: a replay would write into whoever holds it by then.
    pub fn scratch(&self, shape: &[usize], dtype: DType) -> Result<Loan> {
        self.scratch.lend(self.gpu, shape, dtype)
    }

    /// The device.
    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// Adds a dispatch. `params` is the uniform struct at binding 0 (may be empty if the shader has none);
    /// `windows` are bound at 1, 2, … in order.
    pub fn dispatch(
        &mut self,
        pipeline: &Arc<Pipeline>,
        params: &[u8],
        windows: Vec<Window>,
        groups: [u32; 3],
    ) -> Result<()> {
        let bound = windows.into_iter().enumerate().map(|(i, w)| (i as u32 + 1, w)).collect();
        self.dispatch_bound(pipeline, params, bound, groups)
    }

    /// Like [`Recorder::dispatch`] with explicit binding numbers, for entry points that leave some unused.
    /// Never bind one buffer both read-only and read-write in one dispatch (wgpu tracks usage per buffer).
    pub fn dispatch_bound(
        &mut self,
        pipeline: &Arc<Pipeline>,
        params: &[u8],
        windows: Vec<(u32, Window)>,
        groups: [u32; 3],
    ) -> Result<()> {
        let max = self.gpu.limits.max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > max) {
            return Err(invalid(
                pipeline.key.entry,
                format!("workgroup grid {groups:?} exceeds the adapter's {max} per dimension"),
            ));
        }
        if groups.contains(&0) {
            return Ok(());
        }
        self.gpu.pipelines().mark_dispatched(&pipeline.key);
        self.dispatches.push(Dispatch {
            pipeline: pipeline.clone(),
            params: params.to_vec(),
            windows,
            groups,
        });
        Ok(())
    }

    /// Number of recorded dispatches.
    pub fn len(&self) -> usize {
        self.dispatches.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.dispatches.is_empty()
    }

    /// Builds the parameter buffer and bind groups.
    pub fn finish(self) -> Recording {
        let gpu = self.gpu;
        let align = (gpu.limits.min_uniform_buffer_offset_alignment as u64).max(16);
        let mut offsets = Vec::with_capacity(self.dispatches.len());
        let mut total = 0u64;
        for d in &self.dispatches {
            offsets.push(total);
            total += (d.params.len() as u64).max(16).div_ceil(align) * align;
        }
        let params = (total > 0).then(|| {
            let mut bytes = vec![0u8; total as usize];
            for (d, &o) in self.dispatches.iter().zip(&offsets) {
                bytes[o as usize..o as usize + d.params.len()].copy_from_slice(&d.params);
            }
            let buf = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("dispatch params"),
                size: total,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            gpu.queue.write_buffer(&buf, 0, &bytes);
            buf
        });
        let mut steps = Vec::with_capacity(self.dispatches.len());
        for (d, &o) in self.dispatches.iter().zip(&offsets) {
            if gpu.is_dry() {
                // The pipeline is a placeholder whose layout matches nothing: keep the dispatch, bind nothing.
                steps.push(Step { pipeline: d.pipeline.clone(), bind_group: None, groups: d.groups });
                continue;
            }
            let mut entries = Vec::with_capacity(d.windows.len() + 1);
            if !d.params.is_empty() {
                entries.push(wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: params.as_ref().expect("params buffer exists when any dispatch has params"),
                        offset: o,
                        size: wgpu::BufferSize::new((d.params.len() as u64).div_ceil(16) * 16),
                    }),
                });
            }
            for (b, w) in &d.windows {
                entries.push(wgpu::BindGroupEntry {
                    binding: *b,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &w.buffer,
                        offset: w.offset,
                        size: wgpu::BufferSize::new(w.size),
                    }),
                });
            }
            let bg = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(d.pipeline.key.entry),
                layout: &d.pipeline.layout,
                entries: &entries,
            });
            steps.push(Step { pipeline: d.pipeline.clone(), bind_group: Some(bg), groups: d.groups });
        }
        Recording { steps, params, param_offsets: offsets, _scratch: self.scratch }
    }

    /// Finishes, submits and waits for completion.
    pub fn run(self) -> Result<()> {
        let gpu = self.gpu;
        let rec = self.finish();
        rec.submit(gpu, true)
    }
}

impl Recording {
    /// Encodes all dispatches into one compute pass (nothing on a dry device).
    pub fn encode(&self, enc: &mut wgpu::CommandEncoder) {
        self.encode_with(enc, None);
    }

    /// Encodes all dispatches into one compute pass whose start and end write `timestamps`.
    pub fn encode_with(
        &self,
        enc: &mut wgpu::CommandEncoder,
        timestamps: Option<wgpu::ComputePassTimestampWrites<'_>>,
    ) {
        if self.steps.iter().all(|s| s.bind_group.is_none()) {
            return;
        }
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("trajattn"),
            timestamp_writes: timestamps,
        });
        for s in &self.steps {
            s.encode(&mut pass);
        }
    }

    /// Runs the recording once and returns its GPU time in milliseconds, from timestamps written at the start
    /// and end of its compute pass (`timer` needs 2 queries; see [`GpuTimer`]).
    pub fn time_gpu(&self, gpu: &Gpu, timer: &GpuTimer) -> Result<f64> {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        self.encode_with(&mut enc, Some(timer.pass_writes(0)));
        timer.resolve(&mut enc);
        gpu.submit(vec![enc.finish()], true)?;
        let t = timer.read(gpu)?;
        Ok(timer.span_ms(t[0], t[1]))
    }

    /// Runs the recording with one compute pass per dispatch, timestamps at the start and end of each, and
    /// returns each dispatch's GPU time in milliseconds (in recording order). The passes split what one pass
    /// would overlap, so the sum is an upper bound of [`Recording::time_gpu`]; the shares are what matters.
    pub fn profile(&self, gpu: &Gpu) -> Result<Vec<f64>> {
        let per = (GpuTimer::MAX_QUERIES / 2) as usize;
        let mut out = Vec::with_capacity(self.steps.len());
        for chunk in self.steps.chunks(per) {
            let timer = GpuTimer::new(gpu, 2 * chunk.len() as u32)?;
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            for (i, s) in chunk.iter().enumerate() {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(s.pipeline.key.entry),
                    timestamp_writes: Some(timer.pass_writes(i as u32)),
                });
                s.encode(&mut pass);
            }
            timer.resolve(&mut enc);
            gpu.submit(vec![enc.finish()], true)?;
            let t = timer.read(gpu)?;
            out.extend((0..chunk.len()).map(|i| timer.span_ms(t[2 * i], t[2 * i + 1])));
        }
        Ok(out)
    }

    /// The pipeline of each dispatch, in recording order.
    pub fn keys(&self) -> Vec<&PipelineKey> {
        self.steps.iter().map(|s| &s.pipeline.key).collect()
    }

    /// Encodes, submits and optionally waits.
    pub fn submit(&self, gpu: &Gpu, wait: bool) -> Result<()> {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        self.encode(&mut enc);
        gpu.submit(vec![enc.finish()], wait)
    }

    /// Number of dispatches.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// Splits `n` workgroups into a grid within the per-dimension limit; shaders recover the linear id as
/// `wid.x + wid.y * num_workgroups.x`.
pub fn grid(gpu: &Gpu, n: u32) -> [u32; 3] {
    let max = gpu.limits.max_compute_workgroups_per_dimension.max(1);
    if n <= max {
        [n, 1, 1]
    } else {
        let y = n.div_ceil(max);
        [n.div_ceil(y), y, 1]
    }
}
