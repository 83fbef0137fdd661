//! Recording kernel dispatches: bindings, per-dispatch parameters and workgroup counts, encoded into one
//! compute pass and submitted together. A finished [`Recording`] can be replayed.

use crate::arena::{self, Lifetime};
use crate::dtype::DType;
use crate::error::{invalid, Result};
use crate::gpu::Gpu;
use crate::lender::{Lender, LenderStats, Loan};
use crate::pipelines::{Pipeline, PipelineKey};
use crate::pool::PooledBuffer;
use crate::tensor::{Planned, Storage, Window};
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
    /// The arenas holding the planned tensors this recording placed.
    arenas: Vec<Arc<PooledBuffer>>,
    arena_stats: LenderStats,
}

/// Places every planned tensor the dispatches bind and that has no place yet (see [`crate::arena`]): its
/// lifetime runs from the first to the last dispatch binding it — to the end of the recording if anything
/// outside the recording still holds it — and tensors bound by one dispatch conflict (kept in different arenas,
/// since wgpu forbids a read-only and a read-write binding of one buffer in a dispatch).
fn place_planned(gpu: &Gpu, dispatches: &[Dispatch]) -> (Vec<Arc<PooledBuffer>>, LenderStats) {
    let mut index: std::collections::HashMap<*const Planned, usize> = Default::default();
    let mut tensors: Vec<Arc<Planned>> = Vec::new();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut window_refs: Vec<usize> = Vec::new();
    let mut conflicts: Vec<(usize, usize)> = Vec::new();
    let mut here: Vec<usize> = Vec::new();
    for (i, d) in dispatches.iter().enumerate() {
        here.clear();
        for (_, w) in &d.windows {
            let Storage::Planned(p) = &w.storage else { continue };
            if p.place().is_some() {
                continue;
            }
            let k = *index.entry(Arc::as_ptr(p)).or_insert_with(|| {
                tensors.push(p.clone());
                spans.push((i, i));
                window_refs.push(0);
                tensors.len() - 1
            });
            spans[k].1 = i;
            window_refs[k] += 1;
            if !here.contains(&k) {
                here.push(k);
            }
        }
        for (x, &a) in here.iter().enumerate() {
            conflicts.extend(here[x + 1..].iter().map(|&b| (a, b)));
        }
    }
    let end = dispatches.len();
    let lifetimes: Vec<Lifetime> = tensors
        .iter()
        .zip(&spans)
        .zip(&window_refs)
        .map(|((p, &(first, last)), &refs)| {
            // Held outside (a loan still alive, a view kept by the caller): it must survive the recording.
            let held = Arc::strong_count(p) > refs + 1;
            Lifetime { bytes: p.size(), first, last: if held { end } else { last } }
        })
        .collect();
    let align = gpu.storage_align().max(16);
    let mut arenas = Vec::new();
    match arena::place(&lifetimes, &conflicts, align, gpu.limits.max_buffer_size) {
        Ok(plan) => {
            arenas = plan.arena_bytes.iter().map(|&b| gpu.pool().get_exact(&gpu.device, b)).collect();
            for (p, &(a, off)) in tensors.iter().zip(&plan.at) {
                p.set_place(arenas[a].clone(), off);
            }
        }
        Err(_) => {
            // A tensor within max_buffer_size whose aligned reservation is not: a buffer of its own each.
            for p in &tensors {
                let b = gpu.pool().get_exact(&gpu.device, p.size());
                p.set_place(b.clone(), 0);
                arenas.push(b);
            }
        }
    }
    let stats = LenderStats {
        allocated_bytes: arenas.iter().map(|a| a.size()).sum(),
        peak_live_bytes: arena::peak_live_bytes(&lifetimes),
        buffers: arenas.len(),
    };
    (arenas, stats)
}

impl<'g> Recorder<'g> {
    /// An empty recorder on `gpu`.
    pub fn new(gpu: &'g Gpu) -> Self {
        Recorder { gpu, dispatches: Vec::new(), scratch: Lender::planned() }
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

    /// Places the planned tensors the dispatches bind (see [`place_planned`]), then builds the parameter
    /// buffer and bind groups.
    pub fn finish(self) -> Recording {
        let gpu = self.gpu;
        let (arenas, arena_stats) = place_planned(gpu, &self.dispatches);
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
                // Every planned storage a dispatch binds was placed above (or by an earlier recording).
                let Some((buffer, offset)) = w.resolve() else { continue };
                entries.push(wgpu::BindGroupEntry {
                    binding: *b,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer,
                        offset,
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
        Recording { steps, params, param_offsets: offsets, _scratch: self.scratch, arenas, arena_stats }
    }

    /// Finishes, submits and waits for completion.
    pub fn run(self) -> Result<()> {
        let gpu = self.gpu;
        let rec = self.finish();
        rec.submit(gpu, true)
    }
}

impl Recording {
    /// Memory of the planned tensors this recording placed: bytes and number of its arenas, and the most
    /// bytes alive at one dispatch (the lower bound of any placement).
    pub fn arena_stats(&self) -> LenderStats {
        self.arena_stats
    }

    /// Bytes of the arenas this recording holds.
    pub fn arena_bytes(&self) -> u64 {
        self.arenas.iter().map(|a| a.size()).sum()
    }

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
