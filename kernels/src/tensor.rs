//! Tensor = a byte range of a pooled device buffer + shape + dtype; upload, download, views, binding windows.

use crate::dtype::DType;
use crate::error::{invalid, shape_err, KernelError, Result};
use crate::gpu::Gpu;
use crate::pool::PooledBuffer;
use half::f16;
use std::sync::Arc;

/// A dense row-major tensor on the device. Cloning shares the storage (a view, not a copy).
#[derive(Clone)]
pub struct Tensor {
    storage: Arc<PooledBuffer>,
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
#[derive(Clone, Debug)]
pub struct Window {
    /// The buffer.
    pub buffer: wgpu::Buffer,
    /// Byte offset of the binding (a multiple of the adapter's storage alignment).
    pub offset: u64,
    /// Byte size of the binding (a multiple of 4).
    pub size: u64,
    /// Index, in elements, of the first wanted element inside the binding.
    pub base: u32,
}

impl Tensor {
    /// Allocates an uninitialised tensor from the pool.
    pub fn empty(gpu: &Gpu, shape: &[usize], dtype: DType) -> Result<Tensor> {
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
        let bytes = (n * dtype.size()).max(4).div_ceil(4) * 4;
        if bytes > gpu.limits.max_buffer_size {
            return Err(KernelError::TooLarge {
                what: format!("tensor {shape:?} {dtype}"),
                bytes,
                limit: gpu.limits.max_buffer_size,
                limit_name: "max_buffer_size",
            });
        }
        Ok(Tensor { storage: gpu.pool().get(&gpu.device, bytes), offset: 0, shape: shape.to_vec(), dtype })
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
        // write_buffer needs a multiple of 4 bytes; an odd f16 count gets one padding element.
        if bytes.len().is_multiple_of(4) {
            gpu.queue.write_buffer(self.buffer(), self.offset, bytes);
        } else {
            let mut v = bytes.to_vec();
            v.resize(bytes.len().div_ceil(4) * 4, 0);
            gpu.queue.write_buffer(self.buffer(), self.offset, &v);
        }
    }

    /// Fills every byte with 0xFF, which reads as NaN in f32 and f16: an element a kernel forgets to write stays NaN.
    pub fn poison(&self, gpu: &Gpu) {
        let total = self.byte_len().div_ceil(4) * 4;
        let chunk = 16u64 << 20;
        let ones = vec![0xFFu8; chunk.min(total) as usize];
        let mut done = 0;
        while done < total {
            let n = chunk.min(total - done);
            gpu.queue.write_buffer(self.buffer(), self.offset + done, &ones[..n as usize]);
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
        let len = self.byte_len();
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
            enc.copy_buffer_to_buffer(self.buffer(), self.offset + done, &staging, 0, n);
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
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.storage.buffer()
    }
    /// Byte offset of element 0 in the buffer.
    pub fn byte_offset(&self) -> u64 {
        self.offset
    }
    /// Whether two tensors share storage.
    pub fn same_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage)
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
        Ok(Window { buffer: self.buffer().clone(), offset: off, size, base: ((begin - off) / es) as u32 })
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
