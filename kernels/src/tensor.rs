//! Tensor = a byte range of a pooled device buffer + shape + dtype; upload, download, views, binding windows.
//!
//! A tensor may also be *planned* ([`Tensor::planned`]): storage whose place is decided later, when the
//! recording that binds it is finished ([`crate::Recorder::finish`] places every planned tensor at an offset
//! inside a few arena buffers from the lifetimes the recording shows). Until then it can be bound into
//! dispatches but not read, written or poisoned from the host.

use crate::dtype::DType;
use crate::error::{invalid, shape_err, KernelError, Result};
use crate::gpu::Gpu;
use crate::pool::PooledBuffer;
use half::f16;
use std::sync::{Arc, OnceLock};

/// Storage of a planned tensor: its size now, its place (arena buffer, byte offset) once its recording is
/// finished.
pub struct Planned {
    size: u64,
    at: OnceLock<(Arc<PooledBuffer>, u64)>,
}

impl Planned {
    /// Bytes reserved.
    pub fn size(&self) -> u64 {
        self.size
    }
    /// The arena buffer and byte offset, once placed.
    pub fn place(&self) -> Option<(&Arc<PooledBuffer>, u64)> {
        self.at.get().map(|(b, o)| (b, *o))
    }
    /// Places it (once; a second call is ignored and returns false).
    pub fn set_place(&self, arena: Arc<PooledBuffer>, offset: u64) -> bool {
        self.at.set((arena, offset)).is_ok()
    }
}

/// Where a tensor's bytes are: a pooled buffer of its own, or a planned place.
#[derive(Clone)]
pub enum Storage {
    /// A buffer from the pool.
    Pooled(Arc<PooledBuffer>),
    /// A place inside an arena, decided when the recording is finished.
    Planned(Arc<Planned>),
}

impl Storage {
    /// Bytes of the storage.
    pub fn size(&self) -> u64 {
        match self {
            Storage::Pooled(p) => p.size(),
            Storage::Planned(p) => p.size,
        }
    }
    /// The buffer and the byte offset of the storage's start in it (`None`: planned, not placed yet).
    pub fn resolve(&self) -> Option<(&wgpu::Buffer, u64)> {
        match self {
            Storage::Pooled(p) => Some((p.buffer(), 0)),
            Storage::Planned(p) => p.place().map(|(b, o)| (b.buffer(), o)),
        }
    }
    /// Whether two storages are the same.
    pub fn same(&self, other: &Storage) -> bool {
        match (self, other) {
            (Storage::Pooled(a), Storage::Pooled(b)) => Arc::ptr_eq(a, b),
            (Storage::Planned(a), Storage::Planned(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

fn unplaced(what: &'static str) -> KernelError {
    invalid(what, "a planned tensor has no place before the recording that binds it is finished")
}

/// A dense row-major tensor on the device. Cloning shares the storage (a view, not a copy).
#[derive(Clone)]
pub struct Tensor {
    storage: Storage,
    offset: u64,
    shape: Vec<usize>,
    dtype: DType,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({:?}, {})", self.shape, self.dtype)
    }
}

/// Number of elements of a shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// A range of a buffer to bind, and where the wanted elements start inside it.
#[derive(Clone)]
pub struct Window {
    /// The storage (a planned one is placed when the recording is finished).
    pub storage: Storage,
    /// Byte offset of the binding from the storage's start (a multiple of the adapter's storage alignment).
    pub offset: u64,
    /// Byte size of the binding (a multiple of 4).
    pub size: u64,
    /// Index, in elements, of the first wanted element inside the binding.
    pub base: u32,
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Window(+{}, {} B, base {})", self.offset, self.size, self.base)
    }
}

impl Window {
    /// The buffer and absolute byte offset to bind (`None`: planned storage not placed yet).
    pub fn resolve(&self) -> Option<(&wgpu::Buffer, u64)> {
        self.storage.resolve().map(|(b, o)| (b, o + self.offset))
    }
}

impl Tensor {
    /// Bytes of a new tensor rounded up to `round`, after the checks every allocation makes: f16 support, u32
    /// element indices, the adapter's largest buffer.
    fn checked_bytes(gpu: &Gpu, shape: &[usize], dtype: DType, round: u64) -> Result<u64> {
        if dtype == DType::F16 {
            gpu.require_f16("allocate f16 tensor")?;
        }
        let n = numel(shape) as u64;
        if n > u32::MAX as u64 {
            return Err(invalid(
                "allocate",
                format!("shape {shape:?} has {n} elements; kernels index with u32 (at most {})", u32::MAX),
            ));
        }
        let bytes = (n * dtype.size()).max(round).div_ceil(round) * round;
        if bytes > gpu.limits.max_buffer_size {
            return Err(KernelError::TooLarge {
                what: format!("tensor {shape:?} {dtype}"),
                bytes,
                limit: gpu.limits.max_buffer_size,
                limit_name: "max_buffer_size",
            });
        }
        Ok(bytes)
    }

    /// Allocates an uninitialised tensor from the pool.
    pub fn empty(gpu: &Gpu, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let bytes = Self::checked_bytes(gpu, shape, dtype, 4)?;
        Ok(Tensor {
            storage: Storage::Pooled(gpu.pool().get(&gpu.device, bytes)),
            offset: 0,
            shape: shape.to_vec(),
            dtype,
        })
    }

    /// A planned tensor: no memory until the recording that binds it is finished (see the module
    /// documentation). Its reservation is rounded up to 16 bytes, as a pooled buffer's.
    pub fn planned(gpu: &Gpu, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let bytes = Self::checked_bytes(gpu, shape, dtype, 16)?;
        Ok(Tensor {
            storage: Storage::Planned(Arc::new(Planned { size: bytes, at: OnceLock::new() })),
            offset: 0,
            shape: shape.to_vec(),
            dtype,
        })
    }

    /// The storage.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The buffer and absolute byte offset of element 0 (`None`: planned, not placed yet).
    pub fn location(&self) -> Option<(&wgpu::Buffer, u64)> {
        self.storage.resolve().map(|(b, o)| (b, o + self.offset))
    }

    /// Uploads f32 values, converting to `dtype`.
    pub fn from_f32(gpu: &Gpu, data: &[f32], shape: &[usize], dtype: DType) -> Result<Tensor> {
        if data.len() != numel(shape) {
            return Err(shape_err("upload", "data length vs shape", &[numel(shape)], &[data.len()]));
        }
        let t = Tensor::empty(gpu, shape, dtype)?;
        match dtype {
            DType::F32 => t.write_bytes(gpu, bytemuck::cast_slice(data)),
            DType::F16 => {
                let h: Vec<f16> = data.iter().map(|&x| f16::from_f32(x)).collect();
                t.write_bytes(gpu, bytemuck::cast_slice(&h))
            }
        }
        Ok(t)
    }

    /// Uploads raw 32-bit words (index tables read as `array<u32>` by shaders); stored with dtype F32.
    pub fn from_u32(gpu: &Gpu, data: &[u32], shape: &[usize]) -> Result<Tensor> {
        if data.len() != numel(shape) {
            return Err(shape_err("upload", "data length vs shape", &[numel(shape)], &[data.len()]));
        }
        let t = Tensor::empty(gpu, shape, DType::F32)?;
        t.write_bytes(gpu, bytemuck::cast_slice(data));
        Ok(t)
    }

    /// Uploads f16 values as an f16 tensor.
    pub fn from_f16(gpu: &Gpu, data: &[f16], shape: &[usize]) -> Result<Tensor> {
        if data.len() != numel(shape) {
            return Err(shape_err("upload", "data length vs shape", &[numel(shape)], &[data.len()]));
        }
        let t = Tensor::empty(gpu, shape, DType::F16)?;
        t.write_bytes(gpu, bytemuck::cast_slice(data));
        Ok(t)
    }

    fn write_bytes(&self, gpu: &Gpu, bytes: &[u8]) {
        // Only called on tensors just allocated from the pool (always placed). A dry device's buffers are
        // placeholders: nothing is written.
        let Some((buf, at)) = self.location() else { return };
        if gpu.is_dry() {
            return;
        }
        // write_buffer needs a multiple of 4 bytes; an odd f16 count gets one padding element.
        if bytes.len().is_multiple_of(4) {
            gpu.queue.write_buffer(buf, at, bytes);
        } else {
            let mut v = bytes.to_vec();
            v.resize(bytes.len().div_ceil(4) * 4, 0);
            gpu.queue.write_buffer(buf, at, &v);
        }
    }

    /// Fills every byte with 0xFF, which reads as NaN in f32 and f16: an element a kernel forgets to write stays NaN.
    /// A planned tensor not placed yet is left as it is.
    pub fn poison(&self, gpu: &Gpu) {
        let Some((buf, at)) = self.location() else { return };
        if gpu.is_dry() {
            return;
        }
        let total = self.byte_len().div_ceil(4) * 4;
        let chunk = 16u64 << 20;
        let ones = vec![0xFFu8; chunk.min(total) as usize];
        let mut done = 0;
        while done < total {
            let n = chunk.min(total - done);
            gpu.queue.write_buffer(buf, at + done, &ones[..n as usize]);
            done += n;
        }
    }

    /// Downloads as f32 (f16 is widened). Blocks until the GPU is done.
    pub fn to_f32(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        let bytes = self.read_bytes(gpu)?;
        Ok(match self.dtype {
            DType::F32 => bytemuck::pod_collect_to_vec::<u8, f32>(&bytes),
            DType::F16 => {
                bytemuck::pod_collect_to_vec::<u8, f16>(&bytes).into_iter().map(f16::to_f32).collect()
            }
        })
    }

    fn read_bytes(&self, gpu: &Gpu) -> Result<Vec<u8>> {
        let (buf, at) = self.location().ok_or_else(|| unplaced("download"))?;
        let len = self.byte_len();
        if gpu.is_dry() {
            // Nothing ran on a dry device, and its buffers are placeholders: zeros.
            return Ok(vec![0; len as usize]);
        }
        let padded = len.div_ceil(4) * 4;
        let mut out = Vec::with_capacity(padded as usize);
        let chunk = (64u64 << 20).min(gpu.limits.max_buffer_size);
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("download staging"),
            size: chunk.min(padded).max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut done = 0u64;
        while done < padded {
            let n = chunk.min(padded - done);
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            enc.copy_buffer_to_buffer(buf, at + done, &staging, 0, n);
            gpu.submit(vec![enc.finish()], false)?;
            let (tx, rx) = std::sync::mpsc::channel();
            staging.map_async(wgpu::MapMode::Read, 0..n, move |r| {
                let _ = tx.send(r);
            });
            gpu.wait_idle()?;
            rx.recv()
                .map_err(|_| KernelError::Wgpu("map callback dropped".into()))?
                .map_err(|e| KernelError::Wgpu(format!("map for download: {e}")))?;
            {
                let view = staging
                    .get_mapped_range(0..n)
                    .map_err(|e| KernelError::Wgpu(format!("mapped range: {e}")))?;
                out.extend_from_slice(&view);
            }
            staging.unmap();
            done += n;
        }
        out.truncate(len as usize);
        Ok(out)
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// The storage dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }
    /// Size in bytes of the elements.
    pub fn byte_len(&self) -> u64 {
        self.numel() as u64 * self.dtype.size()
    }
    /// The underlying buffer.
    ///
    /// # Panics
    /// On a planned tensor not placed yet (a programming error: see [`Tensor::location`]).
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.location().expect("planned tensor used on the host before its recording was finished").0
    }
    /// Byte offset of element 0 from the start of its storage (see [`Tensor::location`] for the buffer's).
    pub fn byte_offset(&self) -> u64 {
        self.offset
    }
    /// Whether two tensors share storage.
    pub fn same_storage(&self, other: &Tensor) -> bool {
        self.storage.same(&other.storage)
    }

    /// The same data under another shape with the same element count.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if numel(shape) != self.numel() {
            return Err(shape_err("reshape", "element count", &self.shape, shape));
        }
        Ok(Tensor { shape: shape.to_vec(), ..self.clone() })
    }

    /// A tensor of another shape (same dtype) over this one's storage from the same offset, for reusing a
    /// buffer of at least that size (graph arenas). Fails if the new shape does not fit the buffer.
    pub fn fit(&self, shape: &[usize]) -> Result<Tensor> {
        let bytes = numel(shape) as u64 * self.dtype.size();
        if self.offset + bytes > self.storage.size() {
            return Err(shape_err("fit", "a shape within the buffer", &self.shape, shape));
        }
        Ok(Tensor { shape: shape.to_vec(), ..self.clone() })
    }

    /// Bytes of the underlying buffer (its pool size class).
    pub fn capacity_bytes(&self) -> u64 {
        self.storage.size()
    }

    /// A view of rows `start..start+len` along the first axis.
    pub fn narrow0(&self, start: usize, len: usize) -> Result<Tensor> {
        let rows = *self.shape.first().unwrap_or(&1);
        if start + len > rows {
            return Err(invalid("narrow", format!("rows {start}..{} of {rows}", start + len)));
        }
        let row = numel(&self.shape[1.min(self.shape.len())..]) as u64;
        let mut shape = self.shape.clone();
        if shape.is_empty() {
            shape.push(1);
        }
        shape[0] = len;
        Ok(Tensor {
            storage: self.storage.clone(),
            offset: self.offset + start as u64 * row * self.dtype.size(),
            shape,
            dtype: self.dtype,
        })
    }

    /// The binding that covers elements `start..start+len`: offset aligned down to the adapter's storage
    /// alignment, `base` the element index of `start` inside it. Fails if it exceeds the binding limit.
    pub fn window(&self, gpu: &Gpu, start: usize, len: usize) -> Result<Window> {
        let es = self.dtype.size();
        let begin = self.offset + start as u64 * es;
        let align = gpu.storage_align().max(4);
        let off = begin - begin % align;
        // Sizes rounded to 16 bytes so vec4 views of the binding are whole (the pool's size classes allow it).
        let end = (begin + len.max(1) as u64 * es).div_ceil(16) * 16;
        let size = (end - off).min(self.storage.size() - off);
        if size > gpu.max_binding() {
            return Err(KernelError::TooLarge {
                what: format!("binding of {len} elements of tensor {:?}", self.shape),
                bytes: size,
                limit: gpu.max_binding(),
                limit_name: "max_storage_buffer_binding_size",
            });
        }
        Ok(Window { storage: self.storage.clone(), offset: off, size, base: ((begin - off) / es) as u32 })
    }

    /// The binding of the whole tensor (fails if it exceeds the binding limit; see [`Tensor::window`]).
    pub fn whole(&self, gpu: &Gpu) -> Result<Window> {
        self.window(gpu, 0, self.numel())
    }
}

/// How many items of `item_elems` elements each one binding may hold, with room for alignment slack.
pub fn items_per_binding(gpu: &Gpu, item_elems: usize, dtype: DType) -> Result<usize> {
    let slack = gpu.storage_align().max(4) + 4;
    let item_bytes = (item_elems.max(1) as u64) * dtype.size();
    let n = gpu.max_binding().saturating_sub(slack) / item_bytes;
    if n == 0 {
        return Err(KernelError::TooLarge {
            what: format!("one indivisible item of {item_elems} {dtype} elements"),
            bytes: item_bytes,
            limit: gpu.max_binding(),
            limit_name: "max_storage_buffer_binding_size",
        });
    }
    Ok(n.min(usize::MAX as u64) as usize)
}

/// `Err` naming every operand's dtype unless all of `ts` share one.
pub(crate) fn same_dtype(op: &'static str, ts: &[&Tensor]) -> Result<()> {
    let d = ts[0].dtype();
    if ts.iter().any(|t| t.dtype() != d) {
        let found: Vec<String> = ts.iter().map(|t| t.dtype().to_string()).collect();
        return Err(KernelError::DType {
            op,
            found: found.join(", "),
            why: "operands must share one dtype".into(),
        });
    }
    Ok(())
}
