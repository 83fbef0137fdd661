//! Runtime infrastructure: the persistent pipeline cache, GPU timestamps and profiles, dry (emulated) devices.

use trajattn_kernels::bench;
use trajattn_kernels::disk_cache::{self, CacheStatus};
use trajattn_kernels::gpu::{Gpu, GpuOptions};
use trajattn_kernels::ops::elementwise::{self, Binary};
use trajattn_kernels::select::KernelSet;
use trajattn_kernels::testing::{assert_close, rand_vec, to_f64};
use trajattn_kernels::timing::GpuTimer;
use trajattn_kernels::{DType, Recorder, Tensor};

fn cache_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("trajattn-cache-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn with_cache(dir: &std::path::Path) -> Gpu {
    Gpu::new(&GpuOptions { cache_dir: Some(dir.to_path_buf()), ..Default::default() }).unwrap()
}

/// An elementwise multiply on odd sizes, checked against the float64 reference (the device still computes
/// right whatever the cache held).
fn mul_checks_out(gpu: &Gpu) {
    let n = 1237;
    let (a, b) = (rand_vec(3, n), rand_vec(4, n));
    let ta = Tensor::from_f32(gpu, &a, &[n], DType::F32).unwrap();
    let tb = Tensor::from_f32(gpu, &b, &[n], DType::F32).unwrap();
    let y = elementwise::binary(gpu, Binary::Mul, &ta, &tb).unwrap();
    let want = elementwise::reference::binary(Binary::Mul, &to_f64(&a), &to_f64(&b));
    assert_close("mul", &y.to_f32(gpu).unwrap(), &want, 1e-6);
}

#[test]
fn pipeline_cache_is_written_read_back_and_bad_files_are_ignored() {
    let dir = cache_dir("roundtrip");
    let first = with_cache(&dir);
    if matches!(first.pipeline_cache_status(), CacheStatus::Disabled(_)) {
        eprintln!("skipped: {} has no PIPELINE_CACHE ({})", first.describe(), first.pipeline_cache_status());
        return;
    }
    assert_eq!(first.pipeline_cache_status(), &CacheStatus::Fresh);
    mul_checks_out(&first);
    assert!(first.pipelines().compile_stats().pipelines >= 1);
    assert!(first.pipelines().compile_stats().seconds > 0.0);
    let file = first.save_pipeline_cache().expect("a cache file is written after compiling");
    assert!(file.starts_with(&dir) && file.exists());
    assert_eq!(first.save_pipeline_cache(), None, "nothing new compiled: no rewrite");
    drop(first);
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 1, "only the cache file, no temporary files: {leftovers:?}");

    // A second device on the same adapter reads it back.
    let second = with_cache(&dir);
    assert!(
        matches!(second.pipeline_cache_status(), CacheStatus::Loaded(n) if *n > 0),
        "{}",
        second.pipeline_cache_status()
    );
    assert_eq!(second.pipeline_cache_file(), Some(file.as_path()));
    mul_checks_out(&second);
    drop(second);

    // A corrupt file is ignored (logged), never an error, and the device works.
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x5a;
    std::fs::write(&file, &bytes).unwrap();
    let third = with_cache(&dir);
    assert!(matches!(third.pipeline_cache_status(), CacheStatus::Ignored(w) if w.contains("checksum")));
    mul_checks_out(&third);
    assert!(third.save_pipeline_cache().is_some(), "the bad file is replaced");
    drop(third);

    // Garbage, and a file made for another adapter or wgpu version, likewise.
    std::fs::write(&file, b"not a cache").unwrap();
    let fourth = with_cache(&dir);
    assert!(matches!(fourth.pipeline_cache_status(), CacheStatus::Ignored(_)));
    mul_checks_out(&fourth);
    drop(fourth);
    std::fs::write(&file, disk_cache::encode("some other adapter", b"bytes")).unwrap();
    let fifth = with_cache(&dir);
    assert!(
        matches!(fifth.pipeline_cache_status(), CacheStatus::Ignored(w) if w.contains("another adapter"))
    );
    drop(fifth);

    // Switched off: nothing read or written.
    let off =
        Gpu::new(&GpuOptions { cache_dir: Some(dir.clone()), no_pipeline_cache: true, ..Default::default() })
            .unwrap();
    assert!(matches!(off.pipeline_cache_status(), CacheStatus::Disabled(_)));
    mul_checks_out(&off);
    assert_eq!(off.save_pipeline_cache(), None);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unwritable_cache_dir_is_not_an_error() {
    let dir = cache_dir("unwritable");
    std::fs::write(&dir, b"a file where the folder should be").unwrap();
    let gpu = with_cache(&dir);
    mul_checks_out(&gpu);
    assert_eq!(gpu.save_pipeline_cache(), None);
    drop(gpu);
    let _ = std::fs::remove_file(&dir);
}

fn bench_case(gpu: &Gpu) -> bench::BenchCase {
    let e = trajattn_kernels::ops::find_bench("matmul").unwrap();
    (e.build)(gpu, "67x45x33", DType::F32).unwrap()
}

#[test]
fn bench_uses_timestamps_when_present_and_wall_clock_otherwise() {
    let gpu = Gpu::new(&GpuOptions::default()).unwrap();
    let case = bench_case(&gpu);
    let r = bench::time_case(&gpu, &case, 1, 3).unwrap();
    assert!(r.median_ms.is_finite() && r.median_ms >= 0.0 && r.min_ms <= r.median_ms);
    assert_eq!(r.timing, if gpu.caps.timestamp { "gpu-timestamps" } else { "wall-clock" });
    let plain = Gpu::new(&GpuOptions { disable: vec!["timestamp".into()], ..Default::default() }).unwrap();
    assert!(!plain.caps.timestamp);
    assert!(GpuTimer::new(&plain, 2).is_err(), "no timer without TIMESTAMP_QUERY");
    let r = bench::time_case(&plain, &bench_case(&plain), 0, 2).unwrap();
    assert_eq!(r.timing, "wall-clock");
    assert!(r.median_ms > 0.0);
}

#[test]
fn profile_times_every_dispatch_and_groups_families() {
    let gpu = Gpu::new(&GpuOptions::default()).unwrap();
    if !gpu.caps.timestamp {
        eprintln!("skipped: {} has no timestamps", gpu.describe());
        return;
    }
    let n = 999;
    let a = Tensor::from_f32(&gpu, &rand_vec(1, n), &[n], DType::F32).unwrap();
    let b = Tensor::from_f32(&gpu, &rand_vec(2, n), &[n], DType::F32).unwrap();
    let y = Tensor::empty(&gpu, &[n], DType::F32).unwrap();
    let z = Tensor::empty(&gpu, &[n], DType::F32).unwrap();
    let mut rec = Recorder::new(&gpu);
    elementwise::record_binary(&mut rec, Binary::Mul, &a, &b, &y).unwrap();
    elementwise::record_binary(&mut rec, Binary::Add, &y, &b, &z).unwrap();
    elementwise::record_binary(&mut rec, Binary::Mul, &z, &a, &y).unwrap();
    let rec = rec.finish();
    let times = rec.profile(&gpu).unwrap();
    assert_eq!(times.len(), rec.len());
    assert!(times.iter().all(|t| t.is_finite() && *t >= 0.0), "{times:?}");
    let fams = bench::profile(&gpu, &[&rec]).unwrap();
    assert_eq!(fams.iter().map(|f| f.dispatches).sum::<usize>(), rec.len());
    let keys: Vec<String> = rec.keys().iter().map(|k| format!("{}::{}", k.shader, k.entry)).collect();
    for f in &fams {
        assert_eq!(f.dispatches, keys.iter().filter(|k| **k == f.family).count(), "{}", f.family);
    }
    let share: f64 = fams.iter().map(|f| f.share).sum();
    assert!(fams.iter().all(|f| f.ms == 0.0) || (share - 1.0).abs() < 1e-9, "shares sum to 1: {share}");
    // The profiled run computed the same thing as a plain one: y = (a·b + b)·a.
    let (av, bv) = (to_f64(&rand_vec(1, n)), to_f64(&rand_vec(2, n)));
    let want: Vec<f64> = av.iter().zip(&bv).map(|(a, b)| (a * b + b) * a).collect();
    assert_close("profiled", &y.to_f32(&gpu).unwrap(), &want, 1e-5);
}

#[test]
fn a_dry_device_selects_like_the_target_and_runs_nothing() {
    for (set, sg8) in [(KernelSet::Gpu, false), (KernelSet::Auto, true)] {
        let gpu = Gpu::emulating(&GpuOptions { kernels: Some(set), ..Default::default() }).unwrap();
        assert!(gpu.is_dry() && gpu.host_adapter().is_some());
        if set == KernelSet::Auto && !gpu.facts.subgroup8() {
            continue;
        }
        assert_eq!(gpu.subgroup8(), sg8);
        let (m, nn, k) = (37, 29, 64); // K % 32 == 0: the sg8 GEMM applies
        let x = Tensor::from_f32(&gpu, &rand_vec(5, m * k), &[m, k], DType::F32).unwrap();
        let w = Tensor::from_f32(&gpu, &rand_vec(6, nn * k), &[nn, k], DType::F32).unwrap();
        let y = Tensor::from_f32(&gpu, &vec![f32::NAN; m * nn], &[m, nn], DType::F32).unwrap();
        let mut rec = Recorder::new(&gpu);
        trajattn_kernels::ops::matmul::record(
            &mut rec,
            &x,
            &w,
            trajattn_kernels::ops::matmul::WLayout::NK,
            None,
            trajattn_kernels::ops::matmul::Epilogue::None,
            &y,
            None,
        )
        .unwrap();
        assert!(!rec.is_empty());
        rec.run().unwrap();
        // Nothing is written, run or read on a dry device: its buffers are placeholders whose sizes the pool
        // accounts (memory plans), and downloads give zeros.
        assert!(y.to_f32(&gpu).unwrap().iter().all(|&v| v == 0.0), "a dry device reads nothing");
        assert!(gpu.pool().stats().in_use >= 4 * (m * k + nn * k + m * nn) as u64);
        assert_eq!(gpu.pipelines().compile_stats().pipelines, 0, "a dry device compiles nothing");
        assert_eq!(gpu.pipelines().used("matmul_sg8", "matmul_sg8"), sg8, "tier {}", gpu.tier);
        assert!(gpu.pipelines().keys().iter().all(|k| !k.shader.ends_with("_sg8") || sg8));
        let pc = gpu.pipelines();
        let keys = pc.keys();
        assert!(keys.iter().any(|k| pc.was_dispatched(k)), "dry devices track dispatched pipelines");
        if sg8 {
            let k = keys.iter().find(|k| k.entry == "matmul_sg8").unwrap();
            assert!(pc.was_dispatched(k));
        }
    }
}
