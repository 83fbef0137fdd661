//! The persistent pipeline cache on disk: the bytes of a driver-level [`wgpu::PipelineCache`] (Vulkan), one file
//! per adapter, so a second run skips most of the shader compiler's work.
//!
//! Where: `TRAJATTN_CACHE_DIR`, else the user's cache directory (`$XDG_CACHE_HOME/trajattn`, `~/.cache/trajattn`;
//! `~/Library/Caches/trajattn` on macOS; `%LOCALAPPDATA%\trajattn\cache` on Windows). Off with
//! `--no-pipeline-cache` or `TRAJATTN_NO_PIPELINE_CACHE=1`.
//!
//! File: `pipelines-<hash of the key>.bin` holding a magic, the full key (adapter vendor, device, driver,
//! driver info, backend and the wgpu version), the payload's length and checksum, then the payload. A file whose
//! key, length or checksum does not match is ignored with a log line, never an error (wgpu and the driver
//! validate the payload again). Writes go to a temporary file in the same folder, then are renamed over the old
//! one, so a reader never sees half a file.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The wgpu version the cache bytes come from (checked against `Cargo.lock` by a test).
pub const WGPU_VERSION: &str = "30.0.1";

const MAGIC: &[u8; 8] = b"TRAJPC01";

/// What happened to the pipeline cache of a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    /// No persistent cache: switched off, no cache directory, or the adapter has no `PIPELINE_CACHE`.
    Disabled(String),
    /// No file yet for this adapter; it is written after pipelines are compiled.
    Fresh,
    /// A file was read and handed to the driver (payload bytes).
    Loaded(usize),
    /// A file was there but unusable (why); the cache starts empty and the file is replaced on save.
    Ignored(String),
}

impl std::fmt::Display for CacheStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheStatus::Disabled(why) => write!(f, "off ({why})"),
            CacheStatus::Fresh => f.write_str("empty (first run on this adapter)"),
            CacheStatus::Loaded(n) => write!(f, "loaded {n} bytes"),
            CacheStatus::Ignored(why) => write!(f, "ignored the existing file ({why})"),
        }
    }
}

/// The cache directory: `TRAJATTN_CACHE_DIR` if set, else the platform's user cache directory + `trajattn`.
pub fn default_dir() -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = env("TRAJATTN_CACHE_DIR") {
        return Some(d);
    }
    if cfg!(target_os = "windows") {
        return env("LOCALAPPDATA").map(|d| d.join("trajattn").join("cache"));
    }
    if cfg!(target_os = "macos") {
        return env("HOME").map(|h| h.join("Library").join("Caches").join("trajattn"));
    }
    env("XDG_CACHE_HOME").or_else(|| env("HOME").map(|h| h.join(".cache"))).map(|d| d.join("trajattn"))
}

/// Everything a cache file must match to be used.
pub fn adapter_key(info: &wgpu::AdapterInfo) -> String {
    format!(
        "trajattn pipeline cache\nwgpu {WGPU_VERSION}\nbackend {:?}\nvendor {:#06x}\ndevice {:#06x}\ndriver {}\ndriver_info {}\n",
        info.backend, info.vendor, info.device, info.driver, info.driver_info
    )
}

/// FNV-1a, 64 bits: a file name from the key and a checksum of the payload (not a security measure).
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The file of the adapter with `key` in `dir`.
pub fn file_in(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("pipelines-{:016x}.bin", fnv64(key.as_bytes())))
}

/// Encodes a cache file.
pub fn encode(key: &str, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(32 + key.len() + payload.len());
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&(key.len() as u32).to_le_bytes());
    v.extend_from_slice(key.as_bytes());
    v.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    v.extend_from_slice(&fnv64(payload).to_le_bytes());
    v.extend_from_slice(payload);
    v
}

/// Decodes a cache file made for `key`: the payload, or why the file cannot be used.
pub fn decode(key: &str, file: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let take = |at: usize, n: usize| file.get(at..at + n).ok_or_else(|| "truncated".to_string());
    if take(0, 8)? != MAGIC {
        return Err("not a trajattn pipeline cache".into());
    }
    let klen = u32::from_le_bytes(take(8, 4)?.try_into().map_err(|_| "truncated")?) as usize;
    if klen > 1 << 16 {
        return Err("corrupt header".into());
    }
    let k = take(12, klen)?;
    if k != key.as_bytes() {
        return Err(format!(
            "made for another adapter, driver or wgpu version: {}",
            String::from_utf8_lossy(k).replace('\n', "; ")
        ));
    }
    let at = 12 + klen;
    let plen = u64::from_le_bytes(take(at, 8)?.try_into().map_err(|_| "truncated")?);
    let sum = u64::from_le_bytes(take(at + 8, 8)?.try_into().map_err(|_| "truncated")?);
    let payload = &file[at + 16..];
    if payload.len() as u64 != plen {
        return Err(format!("payload is {} bytes, header says {plen}", payload.len()));
    }
    if fnv64(payload) != sum {
        return Err("checksum mismatch".into());
    }
    Ok(payload.to_vec())
}

/// Reads the file at `path` for `key`: `Ok(None)` when there is none, `Err(why)` when it is unusable.
pub fn read(path: &Path, key: &str) -> std::result::Result<Option<Vec<u8>>, String> {
    match std::fs::read(path) {
        Ok(bytes) => decode(key, &bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes the cache file atomically: a temporary file in the same folder, flushed, then renamed over `path`.
pub fn write(path: &Path, key: &str, payload: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("pipelines.bin");
    // Unique per process and call, so two devices saving at once never share a temporary file.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{seq}.tmp", std::process::id()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&encode(key, payload))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let key = "k1";
        let f = encode(key, b"payload bytes");
        assert_eq!(decode(key, &f).unwrap(), b"payload bytes");
        assert!(decode("k2", &f).unwrap_err().contains("another adapter"));
        let mut bad = f.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(decode(key, &bad).unwrap_err().contains("checksum"));
        assert!(decode(key, &f[..f.len() - 1]).is_err());
        assert!(decode(key, b"garbage").is_err());
        assert!(decode(key, &[]).is_err());
    }

    #[test]
    fn wgpu_version_matches_the_lock_file() {
        let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock")).unwrap();
        let want = format!("name = \"wgpu\"\nversion = \"{WGPU_VERSION}\"");
        assert!(
            lock.contains(&want),
            "Cargo.lock's wgpu is not {WGPU_VERSION}: update disk_cache::WGPU_VERSION"
        );
    }
}
