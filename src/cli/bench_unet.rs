//! `trajattn bench unet-step`: one denoising step of the full-width SVD UNet (random weights) with the
//! trajectory branch, and the FLOPs it executes beside what the reference implementation spends on that step.
//! Timed with GPU timestamps around the step's compute pass where the device has them (inputs uploaded once by
//! the first run), else wall clock around upload + submit + wait; `--profile` adds the time per kernel family.

use anyhow::{bail, Context, Result};
use trajattn::models::config::UNetConfig;
use trajattn::models::unet::{GraphOptions, Trajectories, UNet, UNetGraph, UNetShape};
use trajattn_kernels::bench::profile;
use trajattn_kernels::ops::trajectory_attention::Grouping;
use trajattn_kernels::timing::GpuTimer;
use trajattn_kernels::{DType, Gpu};

/// Shape syntax: `HxWxF` in pixels (VAE factor 8) and frames.
pub const SHAPE_HELP: &str =
    "HxWxF: pixels (multiples of 64 for SVD widths) and frames; --unet-config svd|svd-xt|FILE (default svd), batch 2, \
     random weights; --profile: time per kernel family";

/// Runs the benchmark at each shape.
#[allow(clippy::too_many_arguments)]
pub fn run(
    gpu: &Gpu,
    cfg: UNetConfig,
    shapes: &[String],
    dtype: DType,
    warmup: usize,
    runs: usize,
    json: bool,
    with_profile: bool,
) -> Result<()> {
    let shapes: Vec<String> = if shapes.is_empty() { vec!["64x64x14".into()] } else { shapes.to_vec() };
    let t0 = std::time::Instant::now();
    let unet = UNet::random(gpu, cfg.clone(), dtype, 7, true).context("creating the random-weight UNet")?;
    if !json {
        println!(
            "adapter: {}\nUNet with trajectory branch, random weights ({:.2} GiB {dtype}, made in {:.1} s)",
            gpu.describe(),
            unet.weight_bytes() as f64 / (1u64 << 30) as f64,
            t0.elapsed().as_secs_f64()
        );
    }
    for shape in shapes {
        let d: Vec<usize> = shape
            .split('x')
            .map(|v| v.trim().parse::<usize>())
            .collect::<Result<_, _>>()
            .with_context(|| format!("shape {shape:?} is not HxWxF"))?;
        let [ph, pw, f] = d[..] else { bail!("shape {shape:?} is not HxWxF") };
        if ph == 0 || pw == 0 || f == 0 || ph % 64 != 0 || pw % 64 != 0 {
            bail!(
                "shape {shape:?}: height and width must be positive multiples of 64 pixels, frames positive"
            );
        }
        let (h, w) = (ph / 8, pw / 8);
        let n = 2 * h * w;
        let mut state = 1u64;
        let mut rnd = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 40) as f64 / (1u64 << 24) as f64
        };
        let coords: Vec<f64> =
            (0..f * n * 2).map(|i| rnd() * if i % 2 == 0 { pw } else { ph } as f64).collect();
        let visible: Vec<bool> = (0..f * n).map(|_| rnd() > 0.1).collect();
        let traj = Trajectories { coords, visible, n, origin_w: pw, origin_h: ph, grouping: Grouping::Pairs };
        let shape_u = UNetShape { batch: 2, frames: f, height: h, width: w };
        let tb = std::time::Instant::now();
        let c0 = gpu.pipelines().compile_stats();
        let g = UNetGraph::build(gpu, &unet, shape_u, GraphOptions::default(), Some(traj))?;
        let build_s = tb.elapsed().as_secs_f64();
        let c1 = gpu.pipelines().compile_stats();
        let (compiled, compile_s) = (c1.pipelines - c0.pipelines, c1.seconds - c0.seconds);
        let ctx: Vec<f32> = (0..2 * cfg.cross_attention_dim[0])
            .map(|i| if i < 1024 { 0.0 } else { rnd() as f32 - 0.5 })
            .collect();
        g.set_conditioning(gpu, &ctx, &[6.0, 127.0, 0.02, 6.0, 127.0, 0.02])?;
        let sample: Vec<f32> = (0..2 * f * cfg.in_channels * h * w).map(|_| rnd() as f32 - 0.5).collect();
        let idx: Vec<Vec<usize>> =
            g.traj_slots.iter().map(|s| (0..s.m).map(|i| (i * 7919) % n).collect()).collect();
        let timer = if gpu.caps.timestamp { Some(GpuTimer::new(gpu, 2)?) } else { None };
        let mut times = Vec::new();
        for i in 0..warmup.max(timer.is_some() as usize) + runs.max(1) {
            let t = std::time::Instant::now();
            match &timer {
                // The inputs stay uploaded after the first run: the step alone is re-submitted.
                Some(timer) if i > 0 => {
                    let ms = g.step_recording().time_gpu(gpu, timer)?;
                    if i >= warmup.max(1) {
                        times.push(ms * 1e-3);
                    }
                }
                _ => {
                    g.run(gpu, &sample, &[0.5, 0.5], &idx)?;
                    if i >= warmup {
                        times.push(t.elapsed().as_secs_f64());
                    }
                }
            }
        }
        let timing = if timer.is_some() { "gpu-timestamps" } else { "wall-clock" };
        times.sort_by(f64::total_cmp);
        let med = times[times.len() / 2];
        let arena = g.arena_stats();
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "kernel": "unet-step", "shape": shape, "dtype": dtype.to_string(), "median_ms": med * 1e3,
                    "gflops": g.flops / med / 1e9, "flops": g.flops, "reference_flops": g.reference_flops,
                    "flops_ratio": g.flops / g.reference_flops, "dispatches": g.dispatches(),
                    "intermediate_bytes": arena.allocated_bytes, "peak_live_bytes": arena.peak_live_bytes,
                    "weight_bytes": unet.weight_bytes(), "build_s": build_s, "timing": timing,
                    "pipelines_compiled": compiled, "compile_s": compile_s,
                })
            );
        } else {
            println!(
                "unet-step {shape} {dtype}: {:.2} s/step ({:.1} GFLOP/s), {:.1} GFLOP executed vs {:.1} GFLOP in the \
                 reference ({:.2}×), {} dispatches, intermediates {:.0} MiB (live peak {:.0} MiB), graph built in {:.1} s \
                 ({compiled} pipelines compiled in {compile_s:.2} s; pipeline cache {}), timing: {timing}",
                med,
                g.flops / med / 1e9,
                g.flops / 1e9,
                g.reference_flops / 1e9,
                g.flops / g.reference_flops,
                g.dispatches(),
                arena.allocated_bytes as f64 / (1 << 20) as f64,
                arena.peak_live_bytes as f64 / (1 << 20) as f64,
                build_s,
                gpu.pipeline_cache_status()
            );
        }
        if with_profile {
            let fams = profile(gpu, &[g.step_recording()])?;
            let total: f64 = fams.iter().map(|f| f.ms).sum();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"kernel": "unet-step-profile", "shape": shape, "dtype": dtype.to_string(),
                        "step_ms": med * 1e3, "dispatch_sum_ms": total, "families": fams})
                );
            } else {
                println!(
                    "profile (one compute pass per dispatch, GPU timestamps): {:.1} ms summed over {} dispatches \
                     ({:.1} ms for the step in one pass)",
                    total,
                    g.dispatches(),
                    med * 1e3
                );
                println!("  {:<44} {:>6} {:>11} {:>7}", "family (shader::entry)", "count", "ms", "share");
                for f in &fams {
                    println!(
                        "  {:<44} {:>6} {:>11.2} {:>6.1}%",
                        f.family,
                        f.dispatches,
                        f.ms,
                        f.share * 100.0
                    );
                }
            }
        }
    }
    Ok(())
}
