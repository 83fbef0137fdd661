//! Seeded mutational fuzzing of every parser that reads user files, on stable Rust inside `cargo test`.
//!
//! Each target feeds mutated inputs (bit flips, byte inserts/deletes, truncation, duplication, splicing of
//! two seeds, "interesting" integers written over length fields in binary or as decimal text) through the
//! library's own parse function, starting from seeds made by the project's writers or fixtures. A panic, or
//! one input running longer than [`EXEC_LIMIT`], fails the test and leaves the input in
//! `target/fuzz-failures/<target>-<hash>.bin` (small ones are printed in base64 too); peak memory of the
//! process is checked against [`MAX_RSS_MIB`].
//!
//! Budget: `TRAJATTN_FUZZ_SECS` seconds per target (default 3, fixed seed `TRAJATTN_FUZZ_SEED`, default 1);
//! `cargo test --release --test fuzz -- --ignored` runs each target for ten minutes instead (or
//! `TRAJATTN_FUZZ_SECS` if set). Every crashing input found so far is replayed from `tests/fixtures/fuzz/`
//! by `regressions_never_panic`.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use trajattn::checkpoint::pth;
use trajattn::checkpoint::zip::{crc32, ZipArchive};
use trajattn::checkpoint::{write_safetensors, HostDType, HostData, HostTensor, SafetensorsFile};
use trajattn::image_input;
use trajattn::models::config::{ClipVisionConfig, UNetConfig, VaeConfig};
use trajattn::models::unet_keys::{expected_unet_keys, param_count};
use trajattn::trajectory::{build, npy, poses};

/// One input may run this long before the run counts as a hang.
const EXEC_LIMIT: Duration = Duration::from_secs(10);
/// Peak resident memory of the whole test process (all targets run in parallel threads).
const MAX_RSS_MIB: u64 = 3072;
/// Largest mutated input.
const MAX_INPUT: usize = 1 << 20;

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(p: &str) -> PathBuf {
    manifest().join("tests/fixtures").join(p)
}

fn tmp_base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// A scratch directory for targets whose parser takes a path (in memory where Linux offers it: writing the
/// input to disk would otherwise cost more than parsing it).
fn scratch(name: &str) -> PathBuf {
    // One directory per target instance: tests build every target and drop (remove) the ones they skip.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let k = NEXT.fetch_add(1, Ordering::SeqCst);
    let d = tmp_base().join(format!("trajattn-fuzz-{}-{name}-{k}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

// ---------------------------------------------------------------------------------------------------------
// Random numbers and mutations

/// SplitMix64: small, seedable, good enough for choosing mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Values that break length and size arithmetic.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    3,
    7,
    8,
    16,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
    0x1_0000_0000,
    1 << 40,
    1 << 53,
    i64::MAX as u64,
    1 << 63,
    u64::MAX - 1,
    u64::MAX,
];

/// Text fragments worth inserting into JSON and `.npy` headers.
const TOKENS: &[&str] = &[
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "\"",
    "-",
    ".",
    "e308",
    "-1",
    "0",
    "1e999",
    "NaN",
    "null",
    "true",
    "18446744073709551615",
    "18446744073709551616",
    "4294967296",
    "65536",
    "16384",
    "1000000000",
    "(",
    ")",
    "'",
    "\\u0000",
    "\u{1F600}",
];

/// Bracket pairs of a format (`[`/`]` in JSON, MARK/TUPLE in pickle) for deep-nesting mutations.
type Nest = &'static [(&'static [u8], &'static [u8])];

fn mutate(rng: &mut Rng, data: &mut Vec<u8>, seeds: &[Vec<u8>], text: bool, nest: Nest) {
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = data.len();
        let op = rng.below(if text { 12 } else { 10 });
        // The last operation of both lists nests brackets.
        let op = if op == if text { 11 } else { 9 } { 99 } else { op };
        match op {
            // Bit flip.
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            // Random byte.
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.next() as u8;
            }
            // Insert random or repeated bytes.
            2 => {
                let i = rng.below(len + 1);
                let max = if rng.chance(8) { 4096 } else { 16 };
                let n = 1 + rng.below(max);
                let b = rng.next() as u8;
                let repeat = rng.chance(2);
                let ins: Vec<u8> = (0..n).map(|_| if repeat { b } else { rng.next() as u8 }).collect();
                data.splice(i..i, ins);
            }
            // Delete a range.
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                data.drain(i..i + n);
            }
            // Truncate.
            4 if len > 0 => data.truncate(rng.below(len)),
            // Duplicate a range somewhere else.
            5 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(256));
                let chunk = data[i..i + n].to_vec();
                let at = rng.below(len + 1);
                data.splice(at..at, chunk);
            }
            // Splice: our prefix, another seed's suffix.
            6 if !seeds.is_empty() => {
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            // An interesting integer written little-endian over 1, 2, 4 or 8 bytes.
            7 | 8 if len > 0 => {
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let w = [1usize, 2, 4, 8][rng.below(4)];
                let v = if rng.chance(4) { v.wrapping_neg() } else { v };
                let i = rng.below(len);
                let bytes = v.to_le_bytes();
                let end = (i + w).min(len);
                data[i..end].copy_from_slice(&bytes[..end - i]);
            }
            // Text: replace a run of digits by an interesting number.
            9 if len > 0 => {
                let start = rng.below(len);
                if let Some(p) = data[start..].iter().position(u8::is_ascii_digit) {
                    let a = start + p;
                    let b = a + data[a..].iter().take_while(|c| c.is_ascii_digit()).count();
                    let v = INTERESTING[rng.below(INTERESTING.len())];
                    let s = if rng.chance(3) { format!("-{v}") } else { v.to_string() };
                    data.splice(a..b, s.into_bytes());
                }
            }
            // Text: insert a token, sometimes many times (deep nesting).
            10 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                let n = if rng.chance(16) { 1 + rng.below(5000) } else { 1 };
                let i = rng.below(len + 1);
                data.splice(i..i, t.repeat(n).into_bytes());
            }
            // Nest: `open`ⁿ `close`ⁿ, rarely hundreds of thousands deep.
            99 if !nest.is_empty() => {
                let (open, close) = nest[rng.below(nest.len())];
                let max = if rng.chance(64) { 300_000 } else { 300 };
                let n = 1 + rng.below(max);
                let i = rng.below(len + 1);
                let mut ins = open.repeat(n);
                ins.extend(close.repeat(n));
                data.splice(i..i, ins);
            }
            _ => {}
        }
        data.truncate(MAX_INPUT);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Reporting

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            if k <= c.len() {
                s.push(A[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// Save a failing input and describe it.
fn record(target: &str, what: &str, input: &[u8]) -> String {
    let dir = manifest().join("target/fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join(format!("{target}-{:016x}.bin", fnv(input)));
    let _ = std::fs::write(&file, input);
    let mut msg = format!("[{target}] {what}: {} bytes saved to {}", input.len(), file.display());
    if input.len() <= 2048 {
        msg.push_str(&format!("\n  base64: {}", base64(input)));
    }
    msg
}

fn peak_rss_mib() -> u64 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getrusage only writes the struct we pass.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } == 0 {
            return ru.ru_maxrss as u64 / 1024;
        }
    }
    0
}

// ---------------------------------------------------------------------------------------------------------
// The fuzzing loop

/// Runs one input through a parser; `true` when the input was accepted (parsed without error).
type RunFn = dyn Fn(&[u8]) -> bool + Send + Sync;

struct Target {
    name: &'static str,
    /// Scratch directory to remove afterwards.
    dir: Option<PathBuf>,
    seeds: Vec<Vec<u8>>,
    text: bool,
    nest: Nest,
    run: Arc<RunFn>,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn budget(long: bool) -> Duration {
    let secs = std::env::var("TRAJATTN_FUZZ_SECS").ok().and_then(|s| s.parse::<f64>().ok());
    Duration::from_secs_f64(secs.unwrap_or(if long { 600.0 } else { 3.0 }))
}

fn seed() -> u64 {
    std::env::var("TRAJATTN_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1)
}

/// The input being run, mirrored to `<tmp>/trajattn-fuzz-last/<target>.bin` (tmpfs on Linux, so cheap)
/// before each run: an abort that `catch_unwind` cannot catch (stack overflow, allocation failure) kills
/// the whole test process, and this file then holds the input that did it.
struct LastInput(Option<(std::fs::File, PathBuf)>);

impl LastInput {
    fn new(target: &str) -> Self {
        let dir = tmp_base().join("trajattn-fuzz-last");
        let _ = std::fs::create_dir_all(&dir);
        let p = dir.join(format!("{target}.bin"));
        LastInput(std::fs::File::create(&p).ok().map(|f| (f, p)))
    }
    fn set(&self, input: &[u8]) {
        #[cfg(unix)]
        if let Some((f, _)) = &self.0 {
            use std::os::unix::fs::FileExt;
            let _ = f.set_len(input.len() as u64);
            let _ = f.write_all_at(input, 0);
        }
    }
    fn remove(&self) {
        if let Some((_, p)) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Run one input, catching panics; `Err` describes the panic.
fn run_one(run: &RunFn, input: &[u8]) -> Result<bool, String> {
    catch_unwind(AssertUnwindSafe(|| run(input))).map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into())
    })
}

/// Fuzz one target for `dur`; panics (failing the test) with every crash found, or on a hang.
fn fuzz(t: Target, dur: Duration) {
    let name = t.name;
    let current = Arc::new(Mutex::new(Vec::<u8>::new()));
    // Milliseconds since `t0` at which the running input started (u64::MAX: none running).
    let started = Arc::new(AtomicU64::new(u64::MAX));
    let done = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let worker = {
        let (current, started, done) = (current.clone(), started.clone(), done.clone());
        let last = LastInput::new(name);
        std::thread::Builder::new()
            .name(format!("fuzz-{name}"))
            .spawn(move || {
                let mut rng = Rng(seed() ^ fnv(name.as_bytes()));
                let mut crashes: Vec<String> = Vec::new();
                let (mut execs, mut accepted) = (0u64, 0u64);
                // The seeds themselves first: they must parse without panicking too.
                let mut queue: Vec<Vec<u8>> = t.seeds.clone();
                while (!queue.is_empty() || t0.elapsed() < dur) && crashes.len() < 5 {
                    let input = queue.pop().unwrap_or_else(|| {
                        let mut d = t.seeds[rng.below(t.seeds.len())].clone();
                        mutate(&mut rng, &mut d, &t.seeds, t.text, t.nest);
                        d
                    });
                    current.lock().unwrap().clone_from(&input);
                    last.set(&input);
                    started.store(t0.elapsed().as_millis() as u64, Ordering::SeqCst);
                    let r = run_one(&*t.run, &input);
                    started.store(u64::MAX, Ordering::SeqCst);
                    execs += 1;
                    match r {
                        Ok(ok) => accepted += ok as u64,
                        Err(p) => crashes.push(record(name, &format!("panic `{p}`"), &input)),
                    }
                }
                done.store(true, Ordering::SeqCst);
                last.remove();
                (execs, accepted, crashes)
            })
            .expect("fuzz thread")
    };
    loop {
        std::thread::sleep(Duration::from_millis(20));
        if done.load(Ordering::SeqCst) {
            break;
        }
        let s = started.load(Ordering::SeqCst);
        let now = t0.elapsed().as_millis() as u64;
        if s != u64::MAX && now.saturating_sub(s) > EXEC_LIMIT.as_millis() as u64 {
            let input = current.lock().unwrap().clone();
            panic!("{}", record(name, &format!("still running after {EXEC_LIMIT:?} (hang)"), &input));
        }
    }
    let (execs, accepted, crashes) = worker.join().expect("fuzz worker");
    let rss = peak_rss_mib();
    eprintln!(
        "fuzz {name}: {execs} executions in {:.1} s ({:.0}/s), {accepted} accepted, {} crash(es), peak RSS {rss} MiB",
        t0.elapsed().as_secs_f64(),
        execs as f64 / t0.elapsed().as_secs_f64(),
        crashes.len()
    );
    assert!(crashes.is_empty(), "fuzz target {name} crashed:\n{}", crashes.join("\n"));
    assert!(rss <= MAX_RSS_MIB, "fuzz {name}: peak RSS {rss} MiB over {MAX_RSS_MIB} MiB");
}

// ---------------------------------------------------------------------------------------------------------
// Helpers to make seeds

/// A zip archive of stored entries, as `torch.save` writes it.
fn zip_stored(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = out.len() as u32;
        let crc = crc32(data);
        let mut common = Vec::new();
        common.extend_from_slice(&0u16.to_le_bytes()); // flags
        common.extend_from_slice(&0u16.to_le_bytes()); // method: stored
        common.extend_from_slice(&0u32.to_le_bytes()); // time, date
        common.extend_from_slice(&crc.to_le_bytes());
        common.extend_from_slice(&(data.len() as u32).to_le_bytes());
        common.extend_from_slice(&(data.len() as u32).to_le_bytes());
        common.extend_from_slice(&(name.len() as u16).to_le_bytes());
        common.extend_from_slice(&0u16.to_le_bytes()); // extra length
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&common);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&common);
        central.extend_from_slice(&[0u8; 6]); // comment length, disk, internal attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// Every entry of a fixture `.pth`, read with the project's zip reader.
fn pth_entries(file: &str) -> Vec<(String, Vec<u8>)> {
    let mut z = ZipArchive::open(&fixture(&format!("checkpoint/{file}"))).unwrap();
    let names: Vec<String> = z.entries().iter().map(|e| e.name.clone()).collect();
    names.into_iter().map(|n| (n.clone(), z.read(&n, u64::MAX).unwrap())).collect()
}

const PTH_FIXTURES: &[&str] =
    &["list.pth", "named.pth", "int_keys.pth", "half.pth", "mixed_dtypes.pth", "evil.pth"];

/// Write `bytes` to a per-thread scratch file and return its path.
fn scratch_file(dir: &Path, ext: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(format!("input-{:?}.{ext}", std::thread::current().id()).replace(['(', ')'], ""));
    std::fs::write(&p, bytes).unwrap();
    p
}

fn host(name: &str, shape: &[usize], f16: bool) -> HostTensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
    let data = if f16 {
        HostData::F16(v.iter().map(|&x| half::f16::from_f32(x)).collect())
    } else {
        HostData::F32(v)
    };
    HostTensor { name: name.into(), shape: shape.to_vec(), data }
}

// ---------------------------------------------------------------------------------------------------------
// Targets

fn target_safetensors() -> Target {
    let dir = scratch("safetensors");
    let sets = [
        vec![host("a.weight", &[3, 5], false), host("b", &[7], true)],
        vec![host("x", &[2, 3, 1], true)],
        vec![host("scalar", &[], false), host("empty", &[0, 4], false), host("z", &[1, 1, 1, 1], false)],
    ];
    let seeds = sets
        .iter()
        .enumerate()
        .map(|(i, ts)| {
            let p = dir.join(format!("seed{i}.safetensors"));
            write_safetensors(&p, ts).unwrap();
            std::fs::read(&p).unwrap()
        })
        .collect();
    Target {
        name: "safetensors",
        dir: Some(dir.clone()),
        seeds,
        text: false,
        nest: &[],
        run: Arc::new(move |b| {
            let p = scratch_file(&dir, "safetensors", b);
            let Ok(f) = SafetensorsFile::open(&p) else { return false };
            let names: Vec<String> = f.names().map(String::from).collect();
            names.iter().all(|n| f.read(n, HostDType::F32).is_ok() && f.read(n, HostDType::F16).is_ok())
        }),
    }
}

/// Whole `.pth` archives, mutated as bytes (exercises the zip reader).
fn target_pth_zip() -> Target {
    let dir = scratch("pth");
    let seeds =
        PTH_FIXTURES.iter().map(|f| std::fs::read(fixture(&format!("checkpoint/{f}"))).unwrap()).collect();
    Target {
        name: "pth_zip",
        dir: Some(dir.clone()),
        seeds,
        text: false,
        nest: &[],
        run: Arc::new(move |b| {
            let p = scratch_file(&dir, "pth", b);
            pth::read_all(&p, HostDType::F32).is_ok()
        }),
    }
}

/// The `data.pkl` of each fixture, mutated, then zipped back with valid CRCs next to the fixture's storages
/// (first input byte: which fixture), so mutations reach the pickle machine and the tensor views.
fn target_pickle() -> Target {
    let dir = scratch("pickle");
    let archives: Vec<Vec<(String, Vec<u8>)>> = PTH_FIXTURES.iter().map(|f| pth_entries(f)).collect();
    let seeds = archives
        .iter()
        .enumerate()
        .map(|(i, entries)| {
            let pkl = &entries.iter().find(|(n, _)| n.ends_with("/data.pkl")).unwrap().1;
            let mut s = vec![i as u8];
            s.extend_from_slice(pkl);
            s
        })
        .collect();
    Target {
        name: "pickle",
        dir: Some(dir.clone()),
        seeds,
        text: false,
        nest: &[(b"(", b"t"), (b"]", b"a"), (b")", b"\x85"), (b"}K\x01", b"s"), (b"(]", b"ea")],
        run: Arc::new(move |b| {
            let Some((&which, pkl)) = b.split_first() else { return false };
            let entries = &archives[which as usize % archives.len()];
            let rebuilt: Vec<(String, Vec<u8>)> = entries
                .iter()
                .map(|(n, d)| (n.clone(), if n.ends_with("/data.pkl") { pkl.to_vec() } else { d.clone() }))
                .collect();
            let p = scratch_file(&dir, "pth", &zip_stored(&rebuilt));
            pth::read_all(&p, HostDType::F32).is_ok()
        }),
    }
}

fn target_npy() -> Target {
    let dir = scratch("npy");
    let mut seeds = Vec::new();
    let p = dir.join("seed.npy");
    npy::write_f32(&p, &[3, 5], &(0..15).map(|i| i as f32).collect::<Vec<_>>()).unwrap();
    seeds.push(std::fs::read(&p).unwrap());
    npy::write_f64(&p, &[2, 1, 3], &[1.0, -2.0, 3.5, 0.0, 1e300, -0.0]).unwrap();
    seeds.push(std::fs::read(&p).unwrap());
    npy::write_bool(&p, &[7], &[true, false, true, true, false, false, true]).unwrap();
    seeds.push(std::fs::read(&p).unwrap());
    npy::write_f32(&p, &[], &[4.0]).unwrap();
    seeds.push(std::fs::read(&p).unwrap());
    for f in ["camera/merged_valid.npy", "camera/tracks_coords.npy"] {
        seeds.push(std::fs::read(fixture(f)).unwrap());
    }
    Target {
        name: "npy",
        dir: Some(dir),
        seeds,
        text: true,
        nest: &[],
        run: Arc::new(|b| npy::parse(Path::new("fuzz.npy"), b).map(|a| a.to_f64()).is_ok()),
    }
}

/// A trajectory folder (`trans_coordinates.npy` + `trans_valid.npy`) read as `generate` reads it. Input:
/// frame count byte, coordinates file length (u32 LE), the coordinates file, the validity file.
fn target_tracks() -> Target {
    use trajattn::trajectory::folder;
    let dir = scratch("tracks");
    let mut seeds = Vec::new();
    for (frames, n, w) in [(3usize, 5usize, 0.5f64), (2, 1, 3.0), (4, 7, 1.25)] {
        let t = folder::Trajectories {
            frames,
            n,
            coords: (0..frames * n * 2).map(|i| i as f64 * w).collect(),
            valid: (0..frames * n).map(|i| i % 3 != 0).collect(),
        };
        folder::write_tracks(&dir, &t).unwrap();
        let c = std::fs::read(dir.join(folder::COORDS)).unwrap();
        let v = std::fs::read(dir.join(folder::VALID)).unwrap();
        let mut s = vec![frames as u8];
        s.extend_from_slice(&(c.len() as u32).to_le_bytes());
        s.extend(c);
        s.extend(v);
        seeds.push(s);
    }
    Target {
        name: "tracks",
        dir: Some(dir.clone()),
        seeds,
        text: false,
        nest: &[],
        run: Arc::new(move |b| {
            if b.len() < 5 {
                return false;
            }
            let frames = b[0] as usize;
            let len = u32::from_le_bytes([b[1], b[2], b[3], b[4]]) as usize;
            let rest = &b[5..];
            let (c, v) = rest.split_at(len.min(rest.len()));
            let sub = dir.join(format!("{:?}", std::thread::current().id()).replace(['(', ')'], ""));
            std::fs::create_dir_all(&sub).unwrap();
            std::fs::write(sub.join(folder::COORDS), c).unwrap();
            std::fs::write(sub.join(folder::VALID), v).unwrap();
            folder::read(&sub, frames).is_ok()
        }),
    }
}

fn target_poses() -> Target {
    let seeds = [
        r#"{ "frames": [
            { "position": [0, 0, 200], "look_at": [0, 0, 0] },
            { "position": [3.5, 0, 199.97], "look_at": [0, 0, 0], "up": [0, 1, 0] },
            { "world_to_camera": [[-1,0,0,0],[0,1,0,0],[0,0,-1,200],[0,0,0,1]] }
        ] }"#,
        r#"{"frames":[{"world_to_camera":[[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]}]}"#,
        r#"{"frames":[{"position":[1e-9,2,3],"look_at":[4,5,6],"up":[0,0,1]}]}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    Target {
        name: "poses",
        dir: None,
        seeds,
        text: true,
        nest: &[(b"[", b"]"), (b"{\"a\":", b"}"), (b"{\"frames\":[", b"]}")],
        run: Arc::new(|b| poses::parse(Path::new("fuzz.json"), &String::from_utf8_lossy(b)).is_ok()),
    }
}

fn target_drags() -> Target {
    let seeds = [
        r#"{ "width": 64, "height": 48, "frames": 5, "grid_step": 4, "static_background": true,
             "drags": [ { "path": [[20, 30], [40, 28], [50, 33]], "radius": 10 } ] }"#,
        r#"{ "width": 33, "height": 17, "frames": 3, "grid_step": 3, "static_background": false,
             "drags": [ { "path": [[1, 1], [2, 2]], "radius": 5 }, { "path": [[30, 10], [30, 10]], "radius": 2.5 } ] }"#,
        r#"{ "width": 9, "height": 7, "frames": 2, "drags": [ { "path": [[4, 3], [0, 0], [8, 6]], "radius": 1e3 } ] }"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    Target {
        name: "drags",
        dir: None,
        seeds,
        text: true,
        nest: &[(b"[", b"]"), (b"{\"a\":", b"}"), (b"{\"frames\":[", b"]}")],
        run: Arc::new(|b| {
            let Ok(spec) = build::DragSpec::from_json("fuzz.json", &String::from_utf8_lossy(b)) else {
                return false;
            };
            let Ok(t) = build::drags(&spec) else { return false };
            let _ = build::sparse(&t, 2);
            let mask = vec![true; spec.width * spec.height / 2];
            let _ = build::apply_mask(&t, &mask, spec.width / 2, spec.height);
            true
        }),
    }
}

fn target_config() -> Target {
    let seeds = [
        "pipeline/svd/unet/config.json",
        "pipeline/svd/vae/config.json",
        "pipeline/svd/image_encoder/config.json",
        "pipeline/nvs/unet/config.json",
    ]
    .iter()
    .map(|f| std::fs::read(fixture(f)).unwrap())
    .collect();
    Target {
        name: "config",
        dir: None,
        seeds,
        text: true,
        nest: &[(b"[", b"]"), (b"{\"a\":", b"}"), (b"{\"frames\":[", b"]}")],
        run: Arc::new(|b| {
            let text = String::from_utf8_lossy(b);
            let mut ok = false;
            if let Ok(cfg) = UNetConfig::from_json_str(&text) {
                let _ = param_count(&expected_unet_keys(&cfg, true));
                let _ = cfg.time_embed_dim();
                ok = true;
            }
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                ok |= VaeConfig::from_json_value(&v).is_ok();
                if let Ok(c) = ClipVisionConfig::from_json_value(&v) {
                    let _ = c.num_positions();
                    ok = true;
                }
            }
            ok
        }),
    }
}

fn target_image() -> Target {
    use image::{DynamicImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
    let rgb = RgbImage::from_fn(13, 7, |x, y| Rgb([(x * 19) as u8, (y * 37) as u8, (x ^ y) as u8]));
    let rgba = RgbaImage::from_fn(5, 3, |x, y| Rgba([x as u8 * 50, y as u8 * 80, 7, 200]));
    let enc = |img: &DynamicImage, f: ImageFormat| {
        let mut c = Cursor::new(Vec::new());
        img.write_to(&mut c, f).unwrap();
        c.into_inner()
    };
    let mut seeds = vec![
        enc(&DynamicImage::ImageRgb8(rgb.clone()), ImageFormat::Png),
        enc(&DynamicImage::ImageRgba8(rgba.clone()), ImageFormat::Png),
        enc(&DynamicImage::ImageRgba16(DynamicImage::ImageRgba8(rgba.clone()).to_rgba16()), ImageFormat::Png),
        enc(&DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(rgb.clone()).to_luma8()), ImageFormat::Png),
        enc(&DynamicImage::ImageRgb8(rgb.clone()), ImageFormat::Jpeg),
        enc(&DynamicImage::ImageRgba8(rgba), ImageFormat::Gif),
    ];
    seeds.push(std::fs::read(fixture("pipeline/svd/input.png")).unwrap());
    Target {
        name: "image",
        dir: None,
        seeds,
        text: false,
        nest: &[],
        run: Arc::new(|b| image_input::decode("fuzz-image", b).map(|img| img.to_rgb8()).is_ok()),
    }
}

fn all_targets() -> Vec<Target> {
    vec![
        target_safetensors(),
        target_pth_zip(),
        target_pickle(),
        target_npy(),
        target_tracks(),
        target_poses(),
        target_drags(),
        target_config(),
        target_image(),
    ]
}

fn by_name(name: &str) -> Target {
    all_targets().into_iter().find(|t| t.name == name).unwrap()
}

macro_rules! fuzz_tests {
    ($($name:ident),*) => {
        mod short {
            $(
                #[test]
                fn $name() {
                    super::fuzz(super::by_name(stringify!($name)), super::budget(false));
                }
            )*
        }
        mod long {
            $(
                #[test]
                #[ignore = "long fuzzing run: cargo test --release --test fuzz -- --ignored"]
                fn $name() {
                    super::fuzz(super::by_name(stringify!($name)), super::budget(true));
                }
            )*
        }
    };
}

fuzz_tests!(safetensors, pth_zip, pickle, npy, tracks, poses, drags, config, image);

// ---------------------------------------------------------------------------------------------------------
// Regressions: every input that ever crashed a target, replayed.

#[test]
fn regressions_never_panic() {
    let root = fixture("fuzz");
    let mut n = 0;
    for t in all_targets() {
        let Ok(dir) = std::fs::read_dir(root.join(t.name)) else { continue };
        for e in dir {
            let p = e.unwrap().path();
            let input = std::fs::read(&p).unwrap();
            let t0 = Instant::now();
            if let Err(msg) = run_one(&*t.run, &input) {
                panic!("{}: panicked: {msg}", p.display());
            }
            assert!(t0.elapsed() < EXEC_LIMIT, "{}: took {:?}", p.display(), t0.elapsed());
            n += 1;
        }
    }
    eprintln!("{n} regression inputs replayed");
}

// ---------------------------------------------------------------------------------------------------------
// Hand-made hostile inputs: each names the file and the problem, none panics or allocates wildly.

mod hostile {
    use super::*;

    fn write(name: &str, bytes: &[u8]) -> PathBuf {
        let d = tmp_base().join("trajattn-fuzz-hostile");
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// A `.pth` archive holding `pkl` as `archive/data.pkl`, a 16-byte storage `0` and a byte order.
    fn pth_with(pkl: &[u8], byteorder: &[u8]) -> Vec<u8> {
        zip_stored(&[
            ("archive/data.pkl".into(), pkl.to_vec()),
            ("archive/byteorder".into(), byteorder.to_vec()),
            ("archive/data/0".into(), vec![0u8; 16]),
        ])
    }

    fn pth_err(name: &str, pkl: &[u8]) -> String {
        let p = write(name, &pth_with(pkl, b"little"));
        let e = pth::read_all(&p, HostDType::F32).expect_err("hostile pickle accepted").to_string();
        let _ = std::fs::remove_file(&p);
        assert!(e.contains(name), "error does not name the file: {e}");
        e
    }

    #[test]
    fn two_million_nested_tuples_are_an_error_not_a_stack_overflow() {
        let n = 2_000_000;
        let mut pkl = b"\x80\x02".to_vec();
        pkl.extend(std::iter::repeat_n(b'(', n));
        pkl.extend(std::iter::repeat_n(b't', n));
        pkl.push(b'.');
        let e = pth_err("nested_tuples.pth", &pkl);
        assert!(e.contains("more than 2000000 objects") || e.contains("nested"), "{e}");
        let n = 5000;
        let mut pkl = b"\x80\x02".to_vec();
        pkl.extend(std::iter::repeat_n(b'(', n));
        pkl.extend(std::iter::repeat_n(b't', n));
        pkl.push(b'.');
        let e = pth_err("nested_tuples_5000.pth", &pkl);
        assert!(e.contains("TUPLE: objects nested more than 100 levels"), "{e}");
    }

    #[test]
    fn two_million_nested_lists_are_an_error_not_a_stack_overflow() {
        // ]]]]…aaaa…: every APPEND puts the list below into the one above.
        let n = 2_000_000;
        let mut pkl = b"\x80\x02".to_vec();
        pkl.extend(std::iter::repeat_n(b']', n));
        pkl.extend(std::iter::repeat_n(b'a', n - 1));
        pkl.push(b'.');
        let e = pth_err("nested_lists.pth", &pkl);
        assert!(e.contains("more than 2000000 objects") || e.contains("nested"), "{e}");
        // Below the object cap the depth limit answers.
        let n = 5000;
        let mut pkl = b"\x80\x02".to_vec();
        pkl.extend(std::iter::repeat_n(b']', n));
        pkl.extend(std::iter::repeat_n(b'a', n - 1));
        pkl.push(b'.');
        let e = pth_err("nested_lists_5000.pth", &pkl);
        assert!(e.contains("APPEND: objects nested more than 100 levels"), "{e}");
        // Nesting through TUPLE1 and through dict values.
        let mut pkl = b"\x80\x02)".to_vec();
        pkl.extend(std::iter::repeat_n(0x85u8, 1000));
        pkl.push(b'.');
        assert!(pth_err("nested_tuple1.pth", &pkl).contains("nested more than"));
        let mut pkl = b"\x80\x02".to_vec();
        for _ in 0..1000 {
            pkl.extend_from_slice(b"}K\x01");
        }
        pkl.push(b')');
        pkl.extend(std::iter::repeat_n(b's', 1000));
        pkl.push(b'.');
        assert!(pth_err("nested_dicts.pth", &pkl).contains("SETITEM: objects nested more than"));
    }

    #[test]
    fn memo_copies_cannot_blow_up_memory() {
        // A list of 1000 ints, memoised, then fetched and appended 10⁶ times: 10⁹ nodes if allowed.
        let mut pkl = b"\x80\x02](".to_vec();
        pkl.extend(std::iter::repeat_n(*b"K\x07", 1000).flatten());
        pkl.extend_from_slice(b"eq\x00](");
        pkl.extend(std::iter::repeat_n(*b"h\x00", 1_000_000).flatten());
        pkl.extend_from_slice(b"e.");
        let e = pth_err("laughs.pth", &pkl);
        assert!(e.contains("more than 2000000 objects"), "{e}");
    }

    #[test]
    fn a_pickle_of_marks_is_bounded() {
        // 16 M MARKs would take gigabytes of stack slots if they were free.
        let mut pkl = b"\x80\x02".to_vec();
        pkl.extend(std::iter::repeat_n(b'(', 16 << 20));
        pkl.push(b'.');
        let e = pth_err("marks.pth", &pkl);
        assert!(e.contains("more than 2000000 objects"), "{e}");
    }

    /// `[_rebuild_tensor_v2(storage('0', FloatStorage, numel 4), 0, size, stride, False, {})]`.
    fn tensor_pickle(size: &[u16], stride: &[u16]) -> Vec<u8> {
        let mut p = b"\x80\x02]ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage".to_vec();
        p.extend_from_slice(b"ctorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQK\x00(");
        for s in size {
            p.push(b'M');
            p.extend_from_slice(&s.to_le_bytes());
        }
        p.extend_from_slice(b"t(");
        for s in stride {
            p.push(b'M');
            p.extend_from_slice(&s.to_le_bytes());
        }
        p.extend_from_slice(b"t\x89}tRa.");
        p
    }

    #[test]
    fn tensor_views_are_checked_against_the_storage_before_allocating() {
        // The well-formed view reads.
        let p = write("view_ok.pth", &pth_with(&tensor_pickle(&[2, 2], &[2, 1]), b"little"));
        let ts = pth::read_all(&p, HostDType::F32).unwrap();
        assert_eq!(ts[0].shape, vec![2, 2]);
        // 65535 × 65535 × 65535 elements with zero strides over a 4-element storage: 1 PB if allocated.
        let e = pth_err("view_huge.pth", &tensor_pickle(&[65535, 65535, 65535], &[0, 0, 0]));
        assert!(e.contains("overlapping strides are not supported"), "{e}");
        let e = pth_err("view_out.pth", &tensor_pickle(&[2, 2], &[3, 1]));
        assert!(e.contains("exceeds its storage"), "{e}");
    }

    #[test]
    fn big_endian_checkpoints_are_refused() {
        let pkl = tensor_pickle(&[4], &[1]);
        let p = write("big.pth", &pth_with(&pkl, b"big"));
        let e = pth::read_all(&p, HostDType::F32).unwrap_err().to_string();
        assert!(e.contains("big.pth") && e.contains("big-endian"), "{e}");
        let p = write("odd_order.pth", &pth_with(&pkl, b"middle"));
        let e = pth::read_all(&p, HostDType::F32).unwrap_err().to_string();
        assert!(e.contains("odd_order.pth") && e.contains("byteorder"), "{e}");
        // Without a byteorder record (torch < 1.10) little-endian is assumed.
        let old = zip_stored(&[
            ("archive/data.pkl".into(), pkl.clone()),
            ("archive/data/0".into(), 1.5f32.to_le_bytes().repeat(4)),
        ]);
        let ts = pth::read_all(&write("no_order.pth", &old), HostDType::F32).unwrap();
        assert_eq!(ts[0].data.to_f32(), vec![1.5; 4]);
    }

    /// A PNG signature and IHDR announcing `w × h` RGB8, then a truncated IDAT: no pixel data at all.
    fn png_header(w: u32, h: u32) -> Vec<u8> {
        let chunk = |kind: &[u8], data: &[u8]| {
            let mut c = (data.len() as u32).to_be_bytes().to_vec();
            let mut body = kind.to_vec();
            body.extend_from_slice(data);
            c.extend_from_slice(&body);
            c.extend_from_slice(&crc32(&body).to_be_bytes());
            c
        };
        let mut ihdr = w.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        let mut p = b"\x89PNG\r\n\x1a\n".to_vec();
        p.extend(chunk(b"IHDR", &ihdr));
        p.extend(chunk(b"IDAT", &[0x78, 0x9c]));
        p.extend(chunk(b"IEND", &[]));
        p
    }

    #[test]
    fn oversized_image_headers_are_refused_before_decoding() {
        let p = write("huge.png", &png_header(100_000, 100_000));
        let e = image_input::open(&p).unwrap_err().to_string();
        assert!(e.contains("huge.png") && e.contains("100000×100000") && e.contains("16384"), "{e}");
        let e = image_input::decode("wide.png", &png_header(16_384, 4_097)).unwrap_err().to_string();
        assert!(e.contains("wide.png") && e.contains("16384×4097") && e.contains("67108864 pixels"), "{e}");
        // Within the limits, a header without data is a decode error naming the file.
        let e = image_input::decode("empty.png", &png_header(64, 64)).unwrap_err().to_string();
        assert!(e.contains("empty.png"), "{e}");
    }

    #[test]
    fn npy_with_a_backwards_shape_is_an_error() {
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': )3, 4(, }\n";
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(h.as_bytes());
        let e = npy::parse(Path::new("back.npy"), &b).unwrap_err().to_string();
        assert!(e.contains("back.npy") && e.contains("shape"), "{e}");
    }

    #[test]
    fn drag_specs_asking_for_huge_grids_are_refused() {
        let spec = |w: usize, h: usize, f: usize, step: usize| {
            format!(
                r#"{{"width": {w}, "height": {h}, "frames": {f}, "grid_step": {step},
                    "drags": [{{"path": [[1, 1], [2, 2]], "radius": 3}}]}}"#
            )
        };
        for (w, h, f, step) in [(16384, 16384, 4096, 1), (100_000, 10, 2, 1), (64, 64, 1_000_000, 4)] {
            let s = build::DragSpec::from_json("d.json", &spec(w, h, f, step)).unwrap();
            let e = build::drags(&s).unwrap_err().to_string();
            assert!(e.contains("limit"), "{e}");
        }
        let e = build::DragSpec::from_json("bad.json", "{").unwrap_err().to_string();
        assert!(e.contains("bad.json"), "{e}");
        let s = build::DragSpec::from_json("d.json", &spec(64, 48, 5, 4)).unwrap();
        assert!(build::drags(&s).is_ok());
    }

    #[test]
    fn configs_with_absurd_sizes_name_the_file_and_field() {
        let p = write("config.json", br#"{"layers_per_block": 1000000000000}"#);
        let e = UNetConfig::from_file(&p).unwrap_err().to_string();
        assert!(e.contains("config.json") && e.contains("layers_per_block") && e.contains("limit"), "{e}");
        let e = VaeConfig::from_json_value(&serde_json::json!({"latent_channels": 1u64 << 40}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("latent_channels"), "{e}");
        let e = ClipVisionConfig::from_json_value(&serde_json::json!({"image_size": 1u64 << 40}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("image_size"), "{e}");
        // serde_json's recursion limit stays on: deep JSON is a parse error, not a stack overflow.
        let deep = "[".repeat(100_000);
        assert!(UNetConfig::from_json_str(&deep).is_err());
        assert!(poses::parse(Path::new("deep.json"), &deep).is_err());
    }
}
