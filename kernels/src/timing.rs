//! GPU timestamps: a query set, its resolve buffer and a read-back buffer, for timing compute passes where the
//! device has `TIMESTAMP_QUERY` (`Gpu::caps.timestamp`; `--disable timestamp` turns it off). Pass-boundary
//! writes (`ComputePassTimestampWrites`) need nothing beyond that feature, so they are what this uses.

use crate::error::{KernelError, Result};
use crate::gpu::Gpu;

/// Timestamp queries for `count / 2` passes (a start and an end query each), read back after a submit.
pub struct GpuTimer {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    count: u32,
    /// Nanoseconds per timestamp tick.
    period_ns: f64,
}

impl GpuTimer {
    /// Most queries one set holds (wgpu's limit).
    pub const MAX_QUERIES: u32 = wgpu::QUERY_SET_MAX_QUERIES;

    /// `count` timestamp queries (`count` ≤ [`GpuTimer::MAX_QUERIES`]); `Err` unless the device has timestamps.
    pub fn new(gpu: &Gpu, count: u32) -> Result<GpuTimer> {
        if !gpu.caps.timestamp {
            return Err(KernelError::MissingFeature {
                op: "GPU timing",
                feature: "TIMESTAMP_QUERY",
                adapter: gpu.info.name.clone(),
            });
        }
        if count == 0 || count > Self::MAX_QUERIES {
            return Err(crate::error::invalid(
                "GPU timing",
                format!("{count} timestamp queries; one set holds 1..={}", Self::MAX_QUERIES),
            ));
        }
        let set = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let bytes = count as u64 * wgpu::QUERY_SIZE as u64;
        let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamp resolve"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamp readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let period_ns = gpu.queue.get_timestamp_period() as f64;
        Ok(GpuTimer { set, resolve, readback, count, period_ns })
    }

    /// Timestamp writes for pass `i`: queries `2i` (start) and `2i + 1` (end).
    pub fn pass_writes(&self, i: u32) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: Some(2 * i),
            end_of_pass_write_index: Some(2 * i + 1),
        }
    }

    /// Resolves every query and copies them to the read-back buffer (encode after the passes).
    pub fn resolve(&self, enc: &mut wgpu::CommandEncoder) {
        enc.resolve_query_set(&self.set, 0..self.count, &self.resolve, 0);
        enc.copy_buffer_to_buffer(&self.resolve, 0, &self.readback, 0, self.resolve.size());
    }

    /// The raw ticks, after the submit that resolved them has finished.
    pub fn read(&self, gpu: &Gpu) -> Result<Vec<u64>> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.readback.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        gpu.wait_idle()?;
        rx.recv()
            .map_err(|_| KernelError::Wgpu("timestamp map callback dropped".into()))?
            .map_err(|e| KernelError::Wgpu(format!("map timestamps: {e}")))?;
        let ticks = {
            let view = self
                .readback
                .get_mapped_range(..)
                .map_err(|e| KernelError::Wgpu(format!("timestamp range: {e}")))?;
            bytemuck::pod_collect_to_vec::<u8, u64>(&view)
        };
        self.readback.unmap();
        Ok(ticks)
    }

    /// Milliseconds between two ticks (0 if the end precedes the start, which some drivers report for empty
    /// passes).
    pub fn span_ms(&self, start: u64, end: u64) -> f64 {
        end.saturating_sub(start) as f64 * self.period_ns * 1e-6
    }
}
