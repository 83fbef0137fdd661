//! Streamed safetensors reading: only the header is parsed up front (with the `safetensors` crate's
//! validated `Metadata`); each tensor is read from disk on demand, so a 6 GB UNet file never has to fit
//! in memory at once.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ::safetensors::tensor::Metadata;
use ::safetensors::Dtype;

use super::{check_keys, decode, CheckpointError, DiskDType, HostDType, HostTensor, Result};

const FMT: &str = "safetensors";
/// Same limit as the `safetensors` crate.
const MAX_HEADER: u64 = 100_000_000;

/// Description of one tensor in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorEntry {
    pub name: String,
    /// `Ok` for supported float types, `Err(name)` otherwise (reported when the tensor is read).
    pub dtype: std::result::Result<DiskDType, String>,
    pub shape: Vec<usize>,
    /// Absolute byte offset in the file.
    pub offset: u64,
    pub len: u64,
}

/// An open safetensors file with a validated header.
#[derive(Debug)]
pub struct SafetensorsFile {
    path: PathBuf,
    file: Mutex<File>,
    /// Entries in file (offset) order.
    entries: Vec<TensorEntry>,
    index: std::collections::HashMap<String, usize>,
}

impl SafetensorsFile {
    /// Open and validate the header: JSON well-formed, offsets contiguous, sizes consistent with
    /// shapes and dtypes, and the data section exactly filling the rest of the file (so a truncated
    /// file is an error here, not later).
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = File::open(path).map_err(|e| CheckpointError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| CheckpointError::io(path, e))?.len();
        if file_len < 8 {
            return Err(CheckpointError::format(path, FMT, format!("file is only {file_len} bytes")));
        }
        let mut n = [0u8; 8];
        file.read_exact(&mut n).map_err(|e| CheckpointError::io(path, e))?;
        let n = u64::from_le_bytes(n);
        if n > MAX_HEADER || n > file_len - 8 {
            return Err(CheckpointError::format(
                path,
                FMT,
                format!("header length {n} does not fit the file ({file_len} bytes)"),
            ));
        }
        let mut header = vec![0u8; n as usize];
        file.read_exact(&mut header).map_err(|e| CheckpointError::io(path, e))?;
        let text = std::str::from_utf8(&header)
            .map_err(|e| CheckpointError::format(path, FMT, format!("header is not UTF-8: {e}")))?;
        let meta: Metadata = serde_json::from_str(text)
            .map_err(|e| CheckpointError::format(path, FMT, format!("bad header: {e}")))?;
        let data_start = 8 + n;
        let data_len = meta.data_len() as u64;
        if data_start.checked_add(data_len) != Some(file_len) {
            return Err(CheckpointError::format(
                path,
                FMT,
                format!(
                    "header describes {data_len} data bytes but the file holds {} (truncated or corrupt)",
                    file_len - data_start
                ),
            ));
        }
        let infos = meta.tensors();
        let mut entries: Vec<TensorEntry> = meta
            .offset_keys()
            .into_iter()
            .filter_map(|name| {
                let info = infos.get(&name)?;
                let dtype = match info.dtype {
                    Dtype::F32 => Ok(DiskDType::F32),
                    Dtype::F16 => Ok(DiskDType::F16),
                    Dtype::BF16 => Ok(DiskDType::BF16),
                    other => Err(format!("{other:?}")),
                };
                let (s, e) = info.data_offsets;
                Some(TensorEntry {
                    name: name.clone(),
                    dtype,
                    shape: info.shape.clone(),
                    offset: data_start + s as u64,
                    len: (e - s) as u64,
                })
            })
            .collect();
        entries.sort_by_key(|e| e.offset);
        let index = entries.iter().enumerate().map(|(i, e)| (e.name.clone(), i)).collect();
        Ok(SafetensorsFile { path: path.to_path_buf(), file: Mutex::new(file), entries, index })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensors in file order.
    pub fn entries(&self) -> &[TensorEntry] {
        &self.entries
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entry(&self, name: &str) -> Option<&TensorEntry> {
        self.index.get(name).and_then(|&i| self.entries.get(i))
    }

    /// Check names and shapes against an expected list (all problems in one error).
    pub fn check(&self, expected: &[(String, Vec<usize>)], ignore: &[&str]) -> Result<()> {
        check_keys(
            &self.path,
            self.entries.iter().map(|e| (e.name.as_str(), e.shape.as_slice())),
            expected,
            ignore,
        )
    }

    fn entry_or_err(&self, name: &str) -> Result<&TensorEntry> {
        self.entry(name).ok_or_else(|| CheckpointError::NoSuchTensor {
            path: self.path.display().to_string(),
            tensor: name.to_string(),
        })
    }

    /// Raw little-endian bytes and dtype of one tensor.
    pub fn read_raw(&self, name: &str) -> Result<(DiskDType, Vec<u8>)> {
        let e = self.entry_or_err(name)?;
        let dtype = e.dtype.clone().map_err(|d| CheckpointError::UnsupportedDType {
            path: self.path.display().to_string(),
            tensor: name.to_string(),
            dtype: d,
        })?;
        let len = usize::try_from(e.len)
            .map_err(|_| CheckpointError::format(&self.path, FMT, format!("tensor `{name}` too large")))?;
        let mut buf = vec![0u8; len];
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.seek(SeekFrom::Start(e.offset)).map_err(|err| CheckpointError::io(&self.path, err))?;
        f.read_exact(&mut buf).map_err(|err| CheckpointError::io(&self.path, err))?;
        Ok((dtype, buf))
    }

    /// Read one tensor, converting to the requested host precision.
    pub fn read(&self, name: &str, host: HostDType) -> Result<HostTensor> {
        let (dtype, bytes) = self.read_raw(name)?;
        let shape = self.entry_or_err(name)?.shape.clone();
        Ok(HostTensor { name: name.to_string(), shape, data: decode(dtype, &bytes, host) })
    }

    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let (dtype, bytes) = self.read_raw(name)?;
        Ok(super::decode_f32(dtype, &bytes))
    }
}
