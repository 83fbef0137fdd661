//! Minimal reader for the zip container PyTorch writes (`torch.save`, format ≥ 1.6): entries are
//! *stored* (uncompressed); ZIP64 records appear for large archives. Only the central directory and the
//! local headers are parsed; entry data is read on demand and its CRC-32 verified.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{CheckpointError, Result};

const FMT: &str = "zip (PyTorch)";
const EOCD_SIG: u32 = 0x0605_4b50;
const EOCD64_LOC_SIG: u32 = 0x0706_4b50;
const EOCD64_SIG: u32 = 0x0606_4b50;
const CDH_SIG: u32 = 0x0201_4b50;
const LFH_SIG: u32 = 0x0403_4b50;

/// One entry of the archive.
#[derive(Debug, Clone)]
pub struct ZipEntry {
    pub name: String,
    pub method: u16,
    pub crc32: u32,
    pub size: u64,
    pub compressed_size: u64,
    header_offset: u64,
}

/// An open zip archive.
#[derive(Debug)]
pub struct ZipArchive {
    path: PathBuf,
    file: File,
    file_len: u64,
    entries: Vec<ZipEntry>,
    index: HashMap<String, usize>,
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

impl ZipArchive {
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = File::open(path).map_err(|e| CheckpointError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| CheckpointError::io(path, e))?.len();
        let bad = |msg: &str| CheckpointError::format(path, FMT, msg.to_string());
        // End of central directory: within the last 22 + 65535 bytes.
        let tail_len = file_len.min(22 + 65_535);
        let mut tail = vec![0u8; tail_len as usize];
        let tail_start = file_len - tail_len;
        read_at(&mut file, path, tail_start, &mut tail)?;
        let eocd = (0..tail.len().saturating_sub(21))
            .rev()
            .find(|&i| u32_at(&tail, i) == Some(EOCD_SIG))
            .ok_or_else(|| bad("no end-of-central-directory record (truncated file?)"))?;
        let mut n_entries = u16_at(&tail, eocd + 10).ok_or_else(|| bad("short EOCD"))? as u64;
        let mut cd_size = u32_at(&tail, eocd + 12).ok_or_else(|| bad("short EOCD"))? as u64;
        let mut cd_offset = u32_at(&tail, eocd + 16).ok_or_else(|| bad("short EOCD"))? as u64;
        // ZIP64 locator sits right before the EOCD.
        if eocd >= 20 && u32_at(&tail, eocd - 20) == Some(EOCD64_LOC_SIG) {
            let eocd64_off = u64_at(&tail, eocd - 20 + 8).ok_or_else(|| bad("short ZIP64 locator"))?;
            if eocd64_off.checked_add(56).is_none_or(|e| e > file_len) {
                return Err(bad("ZIP64 end record out of range"));
            }
            let mut rec = [0u8; 56];
            read_at(&mut file, path, eocd64_off, &mut rec)?;
            if u32_at(&rec, 0) != Some(EOCD64_SIG) {
                return Err(bad("bad ZIP64 end record signature"));
            }
            n_entries = u64_at(&rec, 32).unwrap_or(0);
            cd_size = u64_at(&rec, 40).unwrap_or(0);
            cd_offset = u64_at(&rec, 48).unwrap_or(0);
        }
        if cd_offset.checked_add(cd_size).is_none_or(|e| e > file_len) {
            return Err(bad("central directory lies outside the file (truncated?)"));
        }
        if cd_size > 256 << 20 {
            return Err(bad("central directory unreasonably large"));
        }
        let mut cd = vec![0u8; cd_size as usize];
        read_at(&mut file, path, cd_offset, &mut cd)?;
        let mut entries = Vec::new();
        let mut p = 0usize;
        for _ in 0..n_entries {
            if u32_at(&cd, p) != Some(CDH_SIG) {
                return Err(bad("bad central directory entry"));
            }
            let h = |o: usize| u16_at(&cd, p + o).ok_or_else(|| bad("short central directory entry"));
            let w = |o: usize| u32_at(&cd, p + o).ok_or_else(|| bad("short central directory entry"));
            let method = h(10)?;
            let crc32 = w(16)?;
            let mut compressed_size = w(20)? as u64;
            let mut size = w(24)? as u64;
            let name_len = h(28)? as usize;
            let extra_len = h(30)? as usize;
            let comment_len = h(32)? as usize;
            let mut header_offset = w(42)? as u64;
            let name_bytes = cd.get(p + 46..p + 46 + name_len).ok_or_else(|| bad("short entry name"))?;
            let name = String::from_utf8_lossy(name_bytes).into_owned();
            let extra = cd
                .get(p + 46 + name_len..p + 46 + name_len + extra_len)
                .ok_or_else(|| bad("short extra field"))?;
            // ZIP64 extended information: present fields only for values saturated at 0xFFFFFFFF.
            let mut q = 0usize;
            while q + 4 <= extra.len() {
                let id = u16_at(extra, q).unwrap_or(0);
                let len = u16_at(extra, q + 2).unwrap_or(0) as usize;
                if id == 0x0001 {
                    let mut r = q + 4;
                    let mut next = || {
                        let v = u64_at(extra, r);
                        r += 8;
                        v.ok_or_else(|| bad("short ZIP64 extra field"))
                    };
                    if size == 0xFFFF_FFFF {
                        size = next()?;
                    }
                    if compressed_size == 0xFFFF_FFFF {
                        compressed_size = next()?;
                    }
                    if header_offset == 0xFFFF_FFFF {
                        header_offset = next()?;
                    }
                }
                q += 4 + len;
            }
            entries.push(ZipEntry { name, method, crc32, size, compressed_size, header_offset });
            p += 46 + name_len + extra_len + comment_len;
        }
        let index = entries.iter().enumerate().map(|(i, e)| (e.name.clone(), i)).collect();
        Ok(ZipArchive { path: path.to_path_buf(), file, file_len, entries, index })
    }

    pub fn entries(&self) -> &[ZipEntry] {
        &self.entries
    }

    pub fn entry(&self, name: &str) -> Option<&ZipEntry> {
        self.index.get(name).and_then(|&i| self.entries.get(i))
    }

    /// Read a whole stored entry and verify its CRC-32. `max_len` guards against absurd sizes.
    pub fn read(&mut self, name: &str, max_len: u64) -> Result<Vec<u8>> {
        let path = self.path.clone();
        let bad = |msg: String| CheckpointError::format(&path, FMT, msg);
        let e = self.entry(name).cloned().ok_or_else(|| bad(format!("no entry `{name}`")))?;
        if e.method != 0 {
            return Err(bad(format!(
                "entry `{name}` is compressed (method {}); only stored entries",
                e.method
            )));
        }
        if e.size != e.compressed_size {
            return Err(bad(format!("entry `{name}`: stored sizes differ")));
        }
        if e.size > max_len {
            return Err(bad(format!("entry `{name}` is {} bytes, more than the expected {max_len}", e.size)));
        }
        let mut lfh = [0u8; 30];
        if e.header_offset.checked_add(30).is_none_or(|x| x > self.file_len) {
            return Err(bad(format!("entry `{name}`: local header outside the file")));
        }
        read_at(&mut self.file, &path, e.header_offset, &mut lfh)?;
        if u32_at(&lfh, 0) != Some(LFH_SIG) {
            return Err(bad(format!("entry `{name}`: bad local header")));
        }
        let name_len = u16_at(&lfh, 26).unwrap_or(0) as u64;
        let extra_len = u16_at(&lfh, 28).unwrap_or(0) as u64;
        let start = e.header_offset + 30 + name_len + extra_len;
        if start.checked_add(e.size).is_none_or(|x| x > self.file_len) {
            return Err(bad(format!("entry `{name}` runs past the end of the file (truncated?)")));
        }
        let mut buf = vec![0u8; e.size as usize];
        read_at(&mut self.file, &path, start, &mut buf)?;
        if crc32(&buf) != e.crc32 {
            return Err(bad(format!("entry `{name}`: CRC-32 mismatch (corrupt file)")));
        }
        Ok(buf)
    }
}

fn read_at(file: &mut File, path: &Path, offset: u64, buf: &mut [u8]) -> Result<()> {
    file.seek(SeekFrom::Start(offset)).map_err(|e| CheckpointError::io(path, e))?;
    file.read_exact(buf).map_err(|e| CheckpointError::io(path, e))
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) as used by zip.
pub fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            *slot = c;
        }
        t
    });
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c = table[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    c ^ 0xFFFF_FFFF
}
