//! Buffer pool: storage buffers are returned on drop and reused by later allocations of the same size class.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// Usage of every tensor buffer: bindable as storage, copyable both ways.
pub const TENSOR_USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

/// Allocation statistics of the pool, in bytes.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct PoolStats {
    /// Bytes of buffers handed out now.
    pub in_use: u64,
    /// Most bytes handed out at once.
    pub peak_in_use: u64,
    /// Bytes held by the pool: handed out plus free for reuse.
    pub reserved: u64,
    /// Most bytes held at once.
    pub peak_reserved: u64,
    /// Allocations served from the free lists.
    pub reuses: u64,
    /// Allocations that created a new buffer.
    pub creations: u64,
}

#[derive(Default)]
struct Inner {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    stats: PoolStats,
    /// Create placeholder buffers of [`PLACEHOLDER_BYTES`] and account the requested sizes (dry devices).
    accounting_only: bool,
}

/// Size of the buffers an accounting-only pool creates.
const PLACEHOLDER_BYTES: u64 = 256;

/// Pools device buffers by size class (sizes rounded up to at most 1/8 above the request).
pub struct BufferPool {
    inner: Arc<Mutex<Inner>>,
}

/// A buffer on loan from the pool; it goes back to the free list when the last handle drops.
pub struct PooledBuffer {
    buffer: wgpu::Buffer,
    size: u64,
    home: Weak<Mutex<Inner>>,
}

impl PooledBuffer {
    /// The wgpu buffer.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }
    /// Its size in bytes (the size class, at least the request).
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let Some(home) = self.home.upgrade() {
            if let Ok(mut inner) = home.lock() {
                inner.stats.in_use -= self.size;
                inner.free.entry(self.size).or_default().push(self.buffer.clone());
            }
        }
    }
}

/// Rounds `bytes` up to its size class: multiples of 256 below 4 KiB, else within 1/8 of a power of two.
pub fn size_class(bytes: u64) -> u64 {
    let b = bytes.max(16);
    if b <= 4096 {
        return b.div_ceil(256) * 256;
    }
    let p = 63 - b.leading_zeros() as u64; // 2^p <= b
    let step = 1u64 << (p - 3);
    b.div_ceil(step) * step
}

impl Default for BufferPool {
    fn default() -> Self {
        Self::new()
    }
}

impl BufferPool {
    /// An empty pool.
    pub fn new() -> Self {
        BufferPool { inner: Arc::new(Mutex::new(Inner::default())) }
    }

    /// A pool for a dry device (nothing is written, read or run there): it hands out placeholder buffers of a
    /// few bytes and accounts the sizes asked for, so memory plans allocate nothing of what they measure.
    pub fn accounting_only() -> Self {
        BufferPool { inner: Arc::new(Mutex::new(Inner { accounting_only: true, ..Inner::default() })) }
    }

    /// A buffer of at least `bytes` bytes (contents undefined: a reused buffer keeps old data).
    pub fn get(&self, device: &wgpu::Device, bytes: u64) -> Arc<PooledBuffer> {
        self.take(device, size_class(bytes), "tensor")
    }

    /// A buffer of exactly `bytes` bytes rounded up to 16 (arenas sized by a plan; contents undefined). It
    /// returns to the free list of its exact size.
    pub fn get_exact(&self, device: &wgpu::Device, bytes: u64) -> Arc<PooledBuffer> {
        self.take(device, bytes.max(16).div_ceil(16) * 16, "arena")
    }

    /// A free buffer of exactly `size` bytes, or a new one labelled `label`.
    fn take(&self, device: &wgpu::Device, size: u64, label: &str) -> Arc<PooledBuffer> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let reused = inner.free.get_mut(&size).and_then(|v| v.pop());
        let buffer = match reused {
            Some(b) => {
                inner.stats.reuses += 1;
                b
            }
            None => {
                inner.stats.creations += 1;
                inner.stats.reserved += size;
                inner.stats.peak_reserved = inner.stats.peak_reserved.max(inner.stats.reserved);
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: if inner.accounting_only { PLACEHOLDER_BYTES } else { size },
                    usage: TENSOR_USAGE,
                    mapped_at_creation: false,
                })
            }
        };
        inner.stats.in_use += size;
        inner.stats.peak_in_use = inner.stats.peak_in_use.max(inner.stats.in_use);
        Arc::new(PooledBuffer { buffer, size, home: Arc::downgrade(&self.inner) })
    }

    /// Current statistics.
    pub fn stats(&self) -> PoolStats {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).stats
    }

    /// Resets the peak counters to the current values.
    pub fn reset_peaks(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.stats.peak_in_use = inner.stats.in_use;
        inner.stats.peak_reserved = inner.stats.reserved;
    }

    /// Destroys every free buffer (memory goes back to the driver).
    pub fn trim(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let freed: u64 = inner
            .free
            .drain()
            .map(|(size, v)| {
                let n = v.len() as u64;
                v.into_iter().for_each(|b| b.destroy());
                size * n
            })
            .sum();
        inner.stats.reserved -= freed;
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_cover_the_request_with_little_waste() {
        let mut x: u64 = 1;
        while x < (1 << 33) {
            for b in [x, x + 1, x * 3 / 2 + 7] {
                let c = size_class(b);
                assert!(c >= b, "{c} < {b}");
                assert_eq!(c % 16, 0);
                // Waste bound: 256 bytes below 4 KiB, else 1/8 of the request.
                assert!(c - b.max(16) <= (b / 8).max(256), "class {c} for {b}");
            }
            x *= 3;
        }
    }
}
