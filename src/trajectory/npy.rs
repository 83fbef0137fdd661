//! NumPy `.npy` files (format 1.0/2.0/3.0): the little-endian C-order arrays of the official trajectory folders
//! (`<f8`, `<f4`, `|b1`) and depth maps. Reading checks the header, dtype, order and length; nothing panics.

use std::io::Write;
use std::path::Path;
use thiserror::Error;

/// Errors reading or writing `.npy` files.
#[derive(Debug, Error)]
pub enum NpyError {
    /// The file could not be read or written.
    #[error("cannot read or write {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid `.npy` file or uses a layout we do not read.
    #[error("{path}: {msg}")]
    Format { path: String, msg: String },
}

/// Element data of an array.
#[derive(Clone, Debug, PartialEq)]
pub enum NpyData {
    /// `<f4`
    F32(Vec<f32>),
    /// `<f8`
    F64(Vec<f64>),
    /// `|b1`
    Bool(Vec<bool>),
}

/// An array: shape and data (C order).
#[derive(Clone, Debug, PartialEq)]
pub struct Npy {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Elements in C order.
    pub data: NpyData,
}

impl Npy {
    /// Widens float data to f64 (bool is refused).
    pub fn to_f64(&self) -> Option<Vec<f64>> {
        match &self.data {
            NpyData::F32(v) => Some(v.iter().map(|&x| x as f64).collect()),
            NpyData::F64(v) => Some(v.clone()),
            NpyData::Bool(_) => None,
        }
    }
}

fn fmt_err(path: &Path, msg: impl Into<String>) -> NpyError {
    NpyError::Format { path: path.display().to_string(), msg: msg.into() }
}

/// Reads an `.npy` file.
pub fn read(path: &Path) -> Result<Npy, NpyError> {
    let bytes =
        std::fs::read(path).map_err(|e| NpyError::Io { path: path.display().to_string(), source: e })?;
    parse(path, &bytes)
}

fn header_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let k = header.find(&format!("'{key}'"))?;
    let rest = &header[k + key.len() + 2..];
    let colon = rest.find(':')?;
    Some(rest[colon + 1..].trim_start())
}

/// Parses the bytes of an `.npy` file (`path` only names it in errors).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Npy, NpyError> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(fmt_err(path, "not a .npy file (missing the \\x93NUMPY magic)"));
    }
    let major = bytes[6];
    let (hlen, hstart): (usize, usize) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => {
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        _ => return Err(fmt_err(path, format!("unsupported .npy version {major}"))),
    };
    let hend = hstart
        .checked_add(hlen)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| fmt_err(path, "truncated header"))?;
    let header =
        std::str::from_utf8(&bytes[hstart..hend]).map_err(|_| fmt_err(path, "header is not text"))?;
    let descr = header_value(header, "descr").ok_or_else(|| fmt_err(path, "header lacks 'descr'"))?;
    let descr = descr.trim_start_matches(['\'', '"']);
    let descr = &descr[..descr.find(['\'', '"']).unwrap_or(descr.len())];
    let fortran =
        header_value(header, "fortran_order").ok_or_else(|| fmt_err(path, "header lacks 'fortran_order'"))?;
    if fortran.starts_with("True") {
        return Err(fmt_err(path, "Fortran-order arrays are not supported (save with C order)"));
    }
    let shape_s = header_value(header, "shape").ok_or_else(|| fmt_err(path, "header lacks 'shape'"))?;
    let open = shape_s.find('(').ok_or_else(|| fmt_err(path, "bad shape"))?;
    let close = open + shape_s[open..].find(')').ok_or_else(|| fmt_err(path, "bad shape"))?;
    let shape: Result<Vec<usize>, _> = shape_s[open + 1..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>())
        .collect();
    let shape = shape.map_err(|_| fmt_err(path, format!("bad shape {}", &shape_s[open..=close])))?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| fmt_err(path, "shape overflows"))?;
    let body = &bytes[hend..];
    let need = |size: usize| -> Result<&[u8], NpyError> {
        let len = n.checked_mul(size).ok_or_else(|| fmt_err(path, "shape overflows"))?;
        body.get(..len).ok_or_else(|| {
            fmt_err(path, format!("truncated data: {} bytes for {n} elements of {descr}", body.len()))
        })
    };
    let data = match descr {
        "<f4" => NpyData::F32(
            need(4)?.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        ),
        "<f8" => NpyData::F64(
            need(8)?.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect(),
        ),
        "|b1" => NpyData::Bool(need(1)?.iter().map(|&b| b != 0).collect()),
        other => return Err(fmt_err(path, format!("unsupported dtype {other} (expected <f4, <f8 or |b1)"))),
    };
    Ok(Npy { shape, data })
}

fn header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_s = if shape.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_s}, }}");
    // Pad with spaces so that magic + length + header + newline is a multiple of 64.
    let total = 10 + h.len() + 1;
    h.push_str(&" ".repeat((64 - total % 64) % 64));
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out
}

fn write_bytes(
    path: &Path,
    head: Vec<u8>,
    body: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), NpyError> {
    let io = |e| NpyError::Io { path: path.display().to_string(), source: e };
    let f = std::fs::File::create(path).map_err(io)?;
    let mut w = std::io::BufWriter::new(f);
    w.write_all(&head).map_err(io)?;
    body(&mut w).map_err(io)?;
    w.flush().map_err(io)
}

/// Writes `<f8` data.
pub fn write_f64(path: &Path, shape: &[usize], data: &[f64]) -> Result<(), NpyError> {
    write_bytes(path, header("<f8", shape), |w| data.iter().try_for_each(|v| w.write_all(&v.to_le_bytes())))
}

/// Writes `<f4` data.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    write_bytes(path, header("<f4", shape), |w| data.iter().try_for_each(|v| w.write_all(&v.to_le_bytes())))
}

/// Writes `|b1` data.
pub fn write_bool(path: &Path, shape: &[usize], data: &[bool]) -> Result<(), NpyError> {
    write_bytes(path, header("|b1", shape), |w| {
        let bytes: Vec<u8> = data.iter().map(|&b| b as u8).collect();
        w.write_all(&bytes)
    })
}
