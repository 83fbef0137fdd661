//! Device weights by checkpoint name, uploaded in the model's dtype.

use std::collections::HashMap;

use half::f16;
use trajattn_kernels::{DType, Gpu, KernelError, Tensor};

use crate::checkpoint::{CheckpointError, HostDType, HostData, HostTensor, SafetensorsFile};

/// Problems finding or uploading a weight.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("weight `{0}` was not loaded")]
    Missing(String),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// A weight holds NaN or infinity, or a value f16 cannot hold.
    #[error("weight `{name}`: element {index} is {value}{hint}")]
    NonFinite { name: String, index: usize, value: f32, hint: &'static str },
}

/// Largest finite f16 value.
const F16_MAX: f32 = 65504.0;

/// Refuses non-finite weights, and weights that would overflow f16 storage, before they reach the device.
fn check_finite(name: &str, data: &HostData, dtype: DType) -> Result<(), WeightsError> {
    let bad = |index: usize, value: f32, hint: &'static str| {
        Err(WeightsError::NonFinite { name: name.to_string(), index, value, hint })
    };
    match data {
        HostData::F16(v) => {
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return bad(i, v[i].to_f32(), " (the file is corrupt or not a trained checkpoint)");
            }
        }
        HostData::F32(v) => {
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return bad(i, v[i], " (the file is corrupt or not a trained checkpoint)");
            }
            if dtype == DType::F16 {
                if let Some(i) = v.iter().position(|x| x.abs() > F16_MAX) {
                    return bad(i, v[i], ", beyond f16's range: run with --dtype f32");
                }
            }
        }
    }
    Ok(())
}

/// Weights on the device, plus the few scalars the host needs (e.g. AlphaBlender mix factors).
pub struct Weights {
    map: HashMap<String, Tensor>,
    scalars: HashMap<String, f32>,
    /// Total bytes on the device.
    pub bytes: u64,
}

impl Weights {
    /// An empty set.
    pub fn new() -> Self {
        Weights { map: HashMap::new(), scalars: HashMap::new(), bytes: 0 }
    }

    /// The tensor named `name`.
    pub fn get(&self, name: &str) -> Result<&Tensor, WeightsError> {
        self.map.get(name).ok_or_else(|| WeightsError::Missing(name.to_string()))
    }

    /// A scalar parameter's host value.
    pub fn scalar(&self, name: &str) -> Result<f32, WeightsError> {
        self.scalars.get(name).copied().ok_or_else(|| WeightsError::Missing(name.to_string()))
    }

    /// Names and shapes of the device tensors, sorted by name.
    pub fn shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut v: Vec<(String, Vec<usize>)> =
            self.map.iter().map(|(k, t)| (k.clone(), t.shape().to_vec())).collect();
        v.sort();
        v
    }

    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// Uploads a host tensor under `name` in `dtype`; one-element tensors are also kept as host scalars.
    pub fn upload(
        &mut self,
        gpu: &Gpu,
        name: &str,
        t: &HostTensor,
        dtype: DType,
    ) -> Result<(), WeightsError> {
        check_finite(name, &t.data, dtype)?;
        let dev = match (&t.data, dtype) {
            // A dry device (`Gpu::emulating`) never runs anything: allocate, do not copy.
            _ if gpu.is_dry() => Tensor::empty(gpu, &t.shape, dtype)?,
            (HostData::F16(v), DType::F16) => Tensor::from_f16(gpu, v, &t.shape)?,
            (data, dtype) => Tensor::from_f32(gpu, &data.to_f32(), &t.shape, dtype)?,
        };
        if t.data.len() == 1 {
            self.scalars.insert(name.to_string(), t.data.to_f32()[0]);
        }
        self.bytes += dev.byte_len();
        self.map.insert(name.to_string(), dev);
        Ok(())
    }

    /// Allocates `name` of `shape` without contents (one-element tensors become the scalar 0): weights of the
    /// right shapes for a memory plan on a dry device ([`Gpu::emulating`]), which never reads them.
    pub fn reserve(
        &mut self,
        gpu: &Gpu,
        name: &str,
        shape: &[usize],
        dtype: DType,
    ) -> Result<(), WeightsError> {
        let dev = Tensor::empty(gpu, shape, dtype)?;
        if shape.iter().product::<usize>() == 1 {
            self.scalars.insert(name.to_string(), 0.0);
        }
        self.bytes += dev.byte_len();
        self.map.insert(name.to_string(), dev);
        Ok(())
    }

    /// Reads `name` from `file` and uploads it.
    pub fn load(
        &mut self,
        gpu: &Gpu,
        file: &SafetensorsFile,
        name: &str,
        dtype: DType,
    ) -> Result<(), WeightsError> {
        let t = file.read(name, host_dtype(dtype))?;
        self.upload(gpu, name, &t, dtype)
    }

    /// Concatenates host tensors along dim 0 and uploads the result under `name` (fused projections).
    pub fn upload_concat(
        &mut self,
        gpu: &Gpu,
        name: &str,
        parts: &[HostTensor],
        dtype: DType,
    ) -> Result<(), WeightsError> {
        let rows: usize = parts.iter().map(|p| p.shape[0]).sum();
        let mut shape = parts[0].shape.clone();
        shape[0] = rows;
        let data = match dtype {
            DType::F16 => HostData::F16(
                parts
                    .iter()
                    .flat_map(|p| match &p.data {
                        HostData::F16(v) => v.clone(),
                        HostData::F32(v) => v.iter().map(|&x| f16::from_f32(x)).collect(),
                    })
                    .collect(),
            ),
            DType::F32 => HostData::F32(parts.iter().flat_map(|p| p.data.to_f32()).collect()),
        };
        self.upload(gpu, name, &HostTensor { name: name.to_string(), shape, data }, dtype)
    }
}

impl Default for Weights {
    fn default() -> Self {
        Self::new()
    }
}

/// The host precision to read for a device dtype.
pub fn host_dtype(dtype: DType) -> HostDType {
    match dtype {
        DType::F16 => HostDType::F16,
        DType::F32 => HostDType::F32,
    }
}
