//! Reading model weights: safetensors files (diffusers / transformers exports) and the official
//! Trajectory Attention checkpoint `trajattn_temp.pth` (PyTorch zip + a restricted pickle reader).
//!
//! Nothing here executes code from a file: the pickle reader only understands the opcodes and the three
//! globals a `torch.save` of plain tensors uses (docs/reference/trajectory-attention.md §3) and rejects
//! everything else.

pub mod pickle;
pub mod pth;
pub mod safetensors;
pub mod zip;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use half::{bf16, f16};

pub use self::safetensors::SafetensorsFile;

/// Element types found on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskDType {
    F32,
    F16,
    BF16,
}

impl DiskDType {
    pub fn size(self) -> usize {
        match self {
            DiskDType::F32 => 4,
            DiskDType::F16 | DiskDType::BF16 => 2,
        }
    }
}

impl fmt::Display for DiskDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DiskDType::F32 => "F32",
            DiskDType::F16 => "F16",
            DiskDType::BF16 => "BF16",
        })
    }
}

/// One key problem found while checking a file against the expected parameter list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TensorProblem {
    Missing { tensor: String, expected: Vec<usize> },
    Unexpected { tensor: String, found: Vec<usize> },
    Shape { tensor: String, expected: Vec<usize>, found: Vec<usize> },
}

impl fmt::Display for TensorProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TensorProblem::Missing { tensor, expected } => {
                write!(f, "missing tensor `{tensor}` (expected shape {expected:?})")
            }
            TensorProblem::Unexpected { tensor, found } => {
                write!(f, "unexpected tensor `{tensor}` (shape {found:?})")
            }
            TensorProblem::Shape { tensor, expected, found } => {
                write!(f, "tensor `{tensor}` has shape {found:?}, expected {expected:?}")
            }
        }
    }
}

fn list_problems(problems: &[TensorProblem]) -> String {
    const SHOWN: usize = 8;
    let mut s: Vec<String> = problems.iter().take(SHOWN).map(|p| p.to_string()).collect();
    if problems.len() > SHOWN {
        s.push(format!("… and {} more", problems.len() - SHOWN));
    }
    s.join("; ")
}

/// Every error of this module names the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a valid {format} file: {msg}")]
    Format { path: String, format: &'static str, msg: String },
    #[error("{path}: {} tensor problem(s): {}", problems.len(), list_problems(problems))]
    Tensors { path: String, problems: Vec<TensorProblem> },
    #[error("{path}: tensor `{tensor}` has unsupported dtype {dtype} (supported: F32, F16, BF16)")]
    UnsupportedDType { path: String, tensor: String, dtype: String },
    #[error("{path}: refused pickle content: {what}")]
    UnsafePickle { path: String, what: String },
    #[error("{path}: no tensor named `{tensor}`")]
    NoSuchTensor { path: String, tensor: String },
}

impl CheckpointError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        CheckpointError::Io { path: path.display().to_string(), source }
    }
    pub(crate) fn format(path: &Path, format: &'static str, msg: impl Into<String>) -> Self {
        CheckpointError::Format { path: path.display().to_string(), format, msg: msg.into() }
    }
}

pub type Result<T, E = CheckpointError> = std::result::Result<T, E>;

/// Host copy of one tensor's values.
#[derive(Debug, Clone, PartialEq)]
pub enum HostData {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

impl HostData {
    pub fn len(&self) -> usize {
        match self {
            HostData::F32(v) => v.len(),
            HostData::F16(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Values as f32 (copies if stored as f16).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            HostData::F32(v) => v.clone(),
            HostData::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
        }
    }
}

/// A named host tensor (row-major, contiguous).
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: HostData,
}

/// Requested host precision when reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostDType {
    F32,
    F16,
}

/// Decode little-endian bytes of `dtype` into f32.
pub fn decode_f32(dtype: DiskDType, bytes: &[u8]) -> Vec<f32> {
    match dtype {
        DiskDType::F32 => {
            bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
        }
        DiskDType::F16 => {
            bytes.chunks_exact(2).map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()).collect()
        }
        DiskDType::BF16 => bytes
            .chunks_exact(2)
            .map(|c| bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
            .collect(),
    }
}

/// Decode little-endian bytes of `dtype` into f16 (f32/bf16 values are rounded to nearest).
pub fn decode_f16(dtype: DiskDType, bytes: &[u8]) -> Vec<f16> {
    match dtype {
        DiskDType::F16 => {
            bytes.chunks_exact(2).map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]]))).collect()
        }
        DiskDType::F32 => bytes
            .chunks_exact(4)
            .map(|c| f16::from_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        DiskDType::BF16 => bytes
            .chunks_exact(2)
            .map(|c| f16::from_f32(bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()))
            .collect(),
    }
}

pub(crate) fn decode(dtype: DiskDType, bytes: &[u8], host: HostDType) -> HostData {
    match host {
        HostDType::F32 => HostData::F32(decode_f32(dtype, bytes)),
        HostDType::F16 => HostData::F16(decode_f16(dtype, bytes)),
    }
}

/// Compare the `(name, shape)` pairs found in a file with the expected list. Names in `ignore` may be
/// present or absent. Returns every problem at once.
pub fn check_keys<'a>(
    path: &Path,
    found: impl IntoIterator<Item = (&'a str, &'a [usize])>,
    expected: &[(String, Vec<usize>)],
    ignore: &[&str],
) -> Result<()> {
    let found: HashMap<&str, &[usize]> = found.into_iter().collect();
    let mut problems = Vec::new();
    let mut exp_names = HashMap::with_capacity(expected.len());
    for (name, shape) in expected {
        exp_names.insert(name.as_str(), ());
        match found.get(name.as_str()) {
            None => problems.push(TensorProblem::Missing { tensor: name.clone(), expected: shape.clone() }),
            Some(s) if *s != shape.as_slice() => problems.push(TensorProblem::Shape {
                tensor: name.clone(),
                expected: shape.clone(),
                found: s.to_vec(),
            }),
            Some(_) => {}
        }
    }
    let mut extra: Vec<(&str, &[usize])> = found
        .iter()
        .filter(|(k, _)| !exp_names.contains_key(*k) && !ignore.contains(k))
        .map(|(k, s)| (*k, *s))
        .collect();
    extra.sort();
    for (k, s) in extra {
        problems.push(TensorProblem::Unexpected { tensor: k.to_string(), found: s.to_vec() });
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CheckpointError::Tensors { path: path.display().to_string(), problems })
    }
}

/// Write tensors to a safetensors file (F32 or F16 as stored in `HostData`), in the given order.
pub fn write_safetensors(path: &Path, tensors: &[HostTensor]) -> Result<()> {
    let bufs: Vec<(DiskDType, Vec<u8>)> = tensors
        .iter()
        .map(|t| match &t.data {
            HostData::F32(v) => (DiskDType::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            HostData::F16(v) => (DiskDType::F16, v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect()),
        })
        .collect();
    let mut views = Vec::with_capacity(tensors.len());
    for (t, (dt, bytes)) in tensors.iter().zip(&bufs) {
        let dtype = match dt {
            DiskDType::F32 => ::safetensors::Dtype::F32,
            DiskDType::F16 => ::safetensors::Dtype::F16,
            DiskDType::BF16 => ::safetensors::Dtype::BF16,
        };
        let view = ::safetensors::tensor::TensorView::new(dtype, t.shape.clone(), bytes)
            .map_err(|e| CheckpointError::format(path, "safetensors", format!("tensor `{}`: {e}", t.name)))?;
        views.push((t.name.clone(), view));
    }
    ::safetensors::serialize_to_file(views, None, path).map_err(|e| match e {
        ::safetensors::SafeTensorError::IoError(io) => CheckpointError::io(path, io),
        other => CheckpointError::format(path, "safetensors", other.to_string()),
    })
}

/// Whether a weights file is a zip archive (PyTorch's `.pth`), judged by its first bytes.
pub fn is_zip(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| CheckpointError::io(path, e))?;
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic).map_err(|e| CheckpointError::io(path, e))?;
    Ok(n == 4 && magic == *b"PK\x03\x04")
}
