//! PyTorch `.pth` files (zip serialization) holding a list or dict of plain tensors, read without
//! executing anything: zip entries via [`super::zip`], the pickle via the restricted [`super::pickle`].

use std::path::Path;

use super::pickle::{self, PickleError, TensorRef, Value};
use super::zip::ZipArchive;
use super::{check_keys, decode, CheckpointError, HostDType, HostTensor, Result, TensorProblem};

const FMT: &str = "PyTorch .pth";
const MAX_PICKLE: u64 = 64 << 20;

/// How the tensors were arranged in the pickle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Container {
    /// `list` / `tuple` (or a dict with keys 0..n-1): tensors are identified by position.
    Sequence,
    /// dict with string keys: tensors carry names.
    Named,
}

/// Tensor descriptions of a `.pth` file, before reading their data.
#[derive(Debug)]
pub struct PthFile {
    path: std::path::PathBuf,
    zip: ZipArchive,
    root: String,
    pub container: Container,
    /// `(name or position, tensor)` in container order.
    pub tensors: Vec<(String, TensorRef)>,
}

fn pickle_err(path: &Path, e: PickleError) -> CheckpointError {
    match e {
        PickleError::Unsafe(what) => CheckpointError::UnsafePickle { path: path.display().to_string(), what },
        PickleError::Malformed(msg) => CheckpointError::format(path, FMT, msg),
    }
}

impl PthFile {
    pub fn open(path: &Path) -> Result<Self> {
        let mut zip = ZipArchive::open(path)?;
        let pkl: Vec<&str> = zip
            .entries()
            .iter()
            .map(|e| e.name.as_str())
            .filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
            .collect();
        let pkl_name = match pkl.as_slice() {
            [one] => one.to_string(),
            [] => return Err(CheckpointError::format(path, FMT, "no <root>/data.pkl entry")),
            _ => return Err(CheckpointError::format(path, FMT, "several <root>/data.pkl entries")),
        };
        let root = pkl_name.trim_end_matches("data.pkl").to_string();
        // `torch.save` records the storages' byte order since 1.10; older files are little-endian.
        let byteorder = format!("{root}byteorder");
        if zip.entry(&byteorder).is_some() {
            let order = zip.read(&byteorder, 16)?;
            match order.as_slice() {
                b"little" => {}
                b"big" => return Err(CheckpointError::format(
                    path,
                    FMT,
                    "storages are big-endian (`byteorder` says `big`); only little-endian files are read \
                         (re-save the checkpoint on a little-endian machine)",
                )),
                other => {
                    return Err(CheckpointError::format(
                        path,
                        FMT,
                        format!("unknown `byteorder` record {:?}", String::from_utf8_lossy(other)),
                    ))
                }
            }
        }
        let bytes = zip.read(&pkl_name, MAX_PICKLE)?;
        let value = pickle::load(&bytes).map_err(|e| pickle_err(path, e))?;
        let bad = |msg: String| CheckpointError::format(path, FMT, msg);
        let as_tensor = |v: Value, what: &str| match v {
            Value::Tensor(t) => Ok(t),
            other => Err(bad(format!("{what} is a {}, not a tensor", other.kind()))),
        };
        let (container, tensors) = match value {
            Value::List(items) | Value::Tuple(items) => {
                let ts = items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| Ok((i.to_string(), as_tensor(v, &format!("item {i}"))?)))
                    .collect::<Result<Vec<_>>>()?;
                (Container::Sequence, ts)
            }
            Value::Dict(pairs) => {
                if pairs.iter().all(|(k, _)| matches!(k, Value::Int(_))) {
                    let mut ts = Vec::with_capacity(pairs.len());
                    let n = pairs.len() as i64;
                    let mut slots: Vec<Option<TensorRef>> = vec![None; pairs.len()];
                    for (k, v) in pairs {
                        let Value::Int(i) = k else { continue };
                        if !(0..n).contains(&i) {
                            return Err(bad(format!("dict key {i} outside 0..{n}")));
                        }
                        slots[i as usize] = Some(as_tensor(v, &format!("item {i}"))?);
                    }
                    for (i, s) in slots.into_iter().enumerate() {
                        ts.push((
                            i.to_string(),
                            s.ok_or_else(|| bad(format!("duplicate keys; {i} missing")))?,
                        ));
                    }
                    (Container::Sequence, ts)
                } else {
                    let ts = pairs
                        .into_iter()
                        .map(|(k, v)| match k {
                            Value::Str(s) => Ok((s.clone(), as_tensor(v, &format!("`{s}`"))?)),
                            other => Err(bad(format!(
                                "dict key of type {} (keys must be all int or all str)",
                                other.kind()
                            ))),
                        })
                        .collect::<Result<Vec<_>>>()?;
                    (Container::Named, ts)
                }
            }
            other => {
                return Err(bad(format!(
                    "top-level object is a {}, not a list or dict of tensors",
                    other.kind()
                )))
            }
        };
        Ok(PthFile { path: path.to_path_buf(), zip, root, container, tensors })
    }

    /// Number of elements of tensor `i` (product of its size).
    pub fn shape(&self, i: usize) -> Option<Vec<usize>> {
        self.tensors.get(i).map(|(_, t)| t.size.iter().map(|&s| s as usize).collect())
    }

    /// Read tensor `i` (honouring storage offset and strides) into a contiguous host tensor.
    pub fn read(&mut self, i: usize, name: &str, host: HostDType) -> Result<HostTensor> {
        let path = self.path.clone();
        let bad = |msg: String| CheckpointError::format(&path, FMT, msg);
        let (label, t) = self.tensors.get(i).cloned().ok_or_else(|| bad(format!("no tensor {i}")))?;
        let es = t.storage.dtype.size() as u64;
        let storage_bytes = t
            .storage
            .numel
            .checked_mul(es)
            .ok_or_else(|| bad(format!("tensor {label}: storage size overflows")))?;
        let entry = format!("{}data/{}", self.root, t.storage.key);
        let bytes = self.zip.read(&entry, storage_bytes)?;
        if bytes.len() as u64 != storage_bytes {
            return Err(bad(format!(
                "storage `{}` holds {} bytes, expected {} ({} × {})",
                t.storage.key,
                bytes.len(),
                storage_bytes,
                t.storage.numel,
                t.storage.dtype
            )));
        }
        let numel = t
            .size
            .iter()
            .try_fold(1u64, |a, &s| a.checked_mul(s))
            .ok_or_else(|| bad(format!("tensor {label}: size overflows")))?;
        // A view never holds more elements than its storage unless its strides overlap (an `expand`ed
        // tensor), which `torch.save` of weights does not produce; refusing it bounds the allocation below
        // by the entry's real size.
        if numel > t.storage.numel {
            return Err(bad(format!(
                "tensor {label}: view of size {:?} has {numel} elements but its storage `{}` only {} \
                 (overlapping strides are not supported)",
                t.size, t.storage.key, t.storage.numel
            )));
        }
        let contiguous = gather(&t, &bytes, es as usize).ok_or_else(|| {
            bad(format!("tensor {label}: view {:?}/{:?}+{} exceeds its storage", t.size, t.stride, t.offset))
        })?;
        debug_assert_eq!(contiguous.len() as u64, numel * es);
        Ok(HostTensor {
            name: name.to_string(),
            shape: t.size.iter().map(|&s| s as usize).collect(),
            data: decode(t.storage.dtype, &contiguous, host),
        })
    }
}

/// Copy a strided view into contiguous bytes; `None` if any element lies outside the storage.
fn gather(t: &TensorRef, storage: &[u8], es: usize) -> Option<Vec<u8>> {
    let numel: u64 = t.size.iter().try_fold(1u64, |a, &s| a.checked_mul(s))?;
    let n_store = (storage.len() / es) as u64;
    if numel == 0 {
        return Some(Vec::new());
    }
    // Largest element index touched.
    let mut max = t.offset;
    for (&s, &st) in t.size.iter().zip(&t.stride) {
        max = max.checked_add((s - 1).checked_mul(st)?)?;
    }
    if max >= n_store {
        return None;
    }
    let mut out = Vec::with_capacity(usize::try_from(numel.checked_mul(es as u64)?).ok()?);
    // Fast path: contiguous row-major.
    let mut expect = 1u64;
    let mut is_contig = true;
    for (&s, &st) in t.size.iter().zip(&t.stride).rev() {
        if s != 1 && st != expect {
            is_contig = false;
        }
        expect *= s;
    }
    if is_contig {
        let a = (t.offset as usize) * es;
        out.extend_from_slice(storage.get(a..a + numel as usize * es)?);
        return Some(out);
    }
    let rank = t.size.len();
    let mut idx = vec![0u64; rank];
    for _ in 0..numel {
        let e = t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<u64>();
        let a = e as usize * es;
        out.extend_from_slice(storage.get(a..a + es)?);
        for d in (0..rank).rev() {
            idx[d] += 1;
            if idx[d] < t.size[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Some(out)
}

/// Read the trajectory checkpoint: a positional list mapped onto `expected` (registration order), or a
/// dict with real names. Every shape is checked before any data is read.
pub fn load_trajectory_pth(
    path: &Path,
    expected: &[(String, Vec<usize>)],
    host: HostDType,
) -> Result<Vec<HostTensor>> {
    let mut f = PthFile::open(path)?;
    match f.container {
        Container::Sequence => {
            let mut problems = Vec::new();
            for (i, (name, shape)) in expected.iter().enumerate() {
                match f.shape(i) {
                    None => problems.push(TensorProblem::Missing {
                        tensor: format!("[{i}] → {name}"),
                        expected: shape.clone(),
                    }),
                    Some(s) if &s != shape => problems.push(TensorProblem::Shape {
                        tensor: format!("[{i}] → {name}"),
                        expected: shape.clone(),
                        found: s,
                    }),
                    Some(_) => {}
                }
            }
            for i in expected.len()..f.tensors.len() {
                problems.push(TensorProblem::Unexpected {
                    tensor: format!("[{i}] (only {} trajectory parameters)", expected.len()),
                    found: f.shape(i).unwrap_or_default(),
                });
            }
            if !problems.is_empty() {
                return Err(CheckpointError::Tensors { path: path.display().to_string(), problems });
            }
            expected.iter().enumerate().map(|(i, (name, _))| f.read(i, name, host)).collect()
        }
        Container::Named => {
            let shapes: Vec<(String, Vec<usize>)> = (0..f.tensors.len())
                .map(|i| (f.tensors[i].0.clone(), f.shape(i).unwrap_or_default()))
                .collect();
            check_keys(path, shapes.iter().map(|(n, s)| (n.as_str(), s.as_slice())), expected, &[])?;
            expected
                .iter()
                .map(|(name, _)| {
                    let i = shapes.iter().position(|(n, _)| n == name).unwrap_or(usize::MAX);
                    f.read(i, name, host)
                })
                .collect()
        }
    }
}

/// Read every tensor of a `.pth` file (positions become names "0", "1", … for sequences).
pub fn read_all(path: &Path, host: HostDType) -> Result<Vec<HostTensor>> {
    let mut f = PthFile::open(path)?;
    (0..f.tensors.len())
        .map(|i| {
            let name = f.tensors[i].0.clone();
            f.read(i, &name, host)
        })
        .collect()
}
