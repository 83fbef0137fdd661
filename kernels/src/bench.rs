//! One benchmark harness for every kernel: a case is a recording plus its FLOP and byte counts; timing comes
//! from GPU timestamps written at the start and end of the recording's compute pass where the device has
//! `TIMESTAMP_QUERY`, else wall clock around submit + wait (GPU-synchronised); warm-up first, median of several
//! runs. [`profile`] times every dispatch of recordings and groups them by kernel family.
//!
//! This module is a leaf below the ops: each op builds its own [`BenchCase`] and exports a [`BenchEntry`];
//! the list of every op's entries lives above them, in `ops::bench_entries`.

use crate::dtype::DType;
use crate::error::{invalid, Result};
use crate::gpu::Gpu;
use crate::tensor::Tensor;
use crate::timing::GpuTimer;
use crate::Recording;
use serde::Serialize;
use std::time::Instant;

/// A ready-to-run benchmark: the recorded dispatches and what one run computes and moves.
pub struct BenchCase {
    /// Kernel name as in `trajattn bench NAME`.
    pub kernel: &'static str,
    /// Shape description, e.g. `4096x4096x1024`.
    pub shape: String,
    /// Storage dtype.
    pub dtype: DType,
    /// Floating-point operations per run (an FMA counts 2).
    pub flops: f64,
    /// Bytes read plus written per run (minimum traffic: each operand once).
    pub bytes: f64,
    /// The dispatches of one run.
    pub recording: Recording,
    /// Tensors the recording binds (kept alive while it runs).
    pub keep: Vec<Tensor>,
}

/// Timing of one case.
#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    pub kernel: String,
    pub shape: String,
    pub dtype: String,
    pub adapter: String,
    pub median_ms: f64,
    pub min_ms: f64,
    pub runs: usize,
    pub gflops: f64,
    pub gbps: f64,
    /// `gpu-timestamps` or `wall-clock`.
    pub timing: String,
    /// Time spent creating pipelines while the case was built (first-run compile time), ms; set by the caller.
    pub compile_ms: f64,
}

/// Runs `case` `warmup` times, then `runs` times, and reports the median.
pub fn time_case(gpu: &Gpu, case: &BenchCase, warmup: usize, runs: usize) -> Result<BenchResult> {
    for _ in 0..warmup {
        case.recording.submit(gpu, true)?;
    }
    let timer = if gpu.caps.timestamp { Some(GpuTimer::new(gpu, 2)?) } else { None };
    let mut ms = Vec::with_capacity(runs.max(1));
    for _ in 0..runs.max(1) {
        match &timer {
            Some(timer) => ms.push(case.recording.time_gpu(gpu, timer)?),
            None => {
                let t = Instant::now();
                case.recording.submit(gpu, true)?;
                ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    let median = ms[ms.len() / 2];
    Ok(BenchResult {
        kernel: case.kernel.to_string(),
        shape: case.shape.clone(),
        dtype: case.dtype.name().to_string(),
        adapter: gpu.info.name.clone(),
        median_ms: median,
        min_ms: ms[0],
        runs: ms.len(),
        gflops: case.flops / (median * 1e-3) / 1e9,
        gbps: case.bytes / (median * 1e-3) / 1e9,
        timing: if timer.is_some() { "gpu-timestamps" } else { "wall-clock" }.to_string(),
        compile_ms: 0.0,
    })
}

/// Largest product of a benchmark shape's dims (2^40).
pub const MAX_SHAPE_PRODUCT: u64 = 1 << 40;

/// GPU time of one kernel family (pipelines of one shader entry point, any dtype or constants).
#[derive(Clone, Debug, Serialize)]
pub struct FamilyTime {
    /// `shader::entry`.
    pub family: String,
    /// Dispatches of the family.
    pub dispatches: usize,
    /// Their summed GPU time, ms.
    pub ms: f64,
    /// Share of the summed time of all dispatches.
    pub share: f64,
}

/// Times every dispatch of `recordings` (one compute pass each, GPU timestamps) and sums them per kernel family,
/// largest first. Needs `TIMESTAMP_QUERY`.
pub fn profile(gpu: &Gpu, recordings: &[&Recording]) -> Result<Vec<FamilyTime>> {
    let mut fams: Vec<FamilyTime> = Vec::new();
    for rec in recordings {
        let times = rec.profile(gpu)?;
        for (key, ms) in rec.keys().into_iter().zip(times) {
            let family = format!("{}::{}", key.shader, key.entry);
            match fams.iter_mut().find(|f| f.family == family) {
                Some(f) => {
                    f.dispatches += 1;
                    f.ms += ms;
                }
                None => fams.push(FamilyTime { family, dispatches: 1, ms, share: 0.0 }),
            }
        }
    }
    let total: f64 = fams.iter().map(|f| f.ms).sum();
    for f in &mut fams {
        f.share = if total > 0.0 { f.ms / total } else { 0.0 };
    }
    fams.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    Ok(fams)
}

/// Parses `AxBxC` (also `A,B,C`) into sizes; `want` is the number of dims expected (or 0 for any).
pub fn parse_shape(kernel: &'static str, s: &str, want: usize) -> Result<Vec<usize>> {
    let dims: std::result::Result<Vec<usize>, _> =
        s.split(['x', 'X', ',', '*']).map(|p| p.trim().parse::<usize>()).collect();
    let dims =
        dims.map_err(|_| invalid(kernel, format!("shape '{s}' is not a list of integers like 64x128")))?;
    if dims.is_empty() || dims.contains(&0) {
        return Err(invalid(kernel, format!("shape '{s}' has an empty or zero dimension")));
    }
    if want != 0 && dims.len() != want {
        return Err(invalid(kernel, format!("shape '{s}' has {} dims, expected {want}", dims.len())));
    }
    // Every tensor a case builds is a product of some of these dims: bounding the whole product keeps every size
    // computation far from overflow, and the device's buffer limits refuse what is still too large.
    let total = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    if total.is_none_or(|t| t > MAX_SHAPE_PRODUCT) {
        return Err(invalid(
            kernel,
            format!("shape '{s}': the product of its dims is above {MAX_SHAPE_PRODUCT}; benchmark a smaller shape"),
        ));
    }
    Ok(dims)
}

/// A benchmarkable kernel.
pub struct BenchEntry {
    /// Name on the command line.
    pub name: &'static str,
    /// What the shape string means.
    pub shape_help: &'static str,
    /// Shapes run when none is given (SVD's real sizes).
    pub default_shapes: &'static [&'static str],
    /// One modest real shape for `trajattn demo` (seconds, not minutes, on a CPU adapter).
    pub demo_shape: &'static str,
    /// Builds the case.
    pub build: fn(&Gpu, &str, DType) -> Result<BenchCase>,
}

/// `n` values uniform in [-1, 1) for benchmark and self-check inputs, from a SplitMix64 stream seeded with `seed`
/// (deterministic, never zeros or constants; tests use the ChaCha-based helpers of the `testing` feature).
pub fn random_data(seed: u64, n: usize) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            // The top 24 bits as a fraction in [0, 1), exact in f32.
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}
