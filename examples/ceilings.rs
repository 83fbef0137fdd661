//! Measures this machine's own ceilings for BENCHMARKS.md: the f32 FMA rate of its vector units
//! (AVX2+FMA on x86-64, all cores) and its memory bandwidth (a STREAM-like triad on all cores).
//! Run: `cargo run --release --example ceilings`.

use std::time::Instant;

fn threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_kernel(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    // 10 independent accumulators hide the FMA latency; two FMA ports × 8 lanes × 2 flops per cycle.
    let m = _mm256_set1_ps(0.999_999);
    let a = _mm256_set1_ps(1e-7);
    let mut acc = [_mm256_set1_ps(1.0); 10];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, m, a);
        }
    }
    let mut out = [0f32; 8];
    let mut s = _mm256_setzero_ps();
    for v in acc {
        s = _mm256_add_ps(s, v);
    }
    _mm256_storeu_ps(out.as_mut_ptr(), s);
    out.iter().sum()
}

fn fma_gflops() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return None;
        }
        let iters = 200_000_000u64;
        let t = Instant::now();
        let hs: Vec<_> =
            (0..threads()).map(|_| std::thread::spawn(move || unsafe { fma_kernel(iters) })).collect();
        let sink: f32 = hs.into_iter().map(|h| h.join().unwrap_or(0.0)).sum();
        let s = t.elapsed().as_secs_f64();
        std::hint::black_box(sink);
        Some(threads() as f64 * iters as f64 * 10.0 * 8.0 * 2.0 / s / 1e9)
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

fn triad_gbps() -> f64 {
    let n = 32 << 20; // 3 × 128 MiB per run, far beyond caches
    let t = threads();
    let per = n / t;
    let mut best = f64::MAX;
    let mut a = vec![0f32; n];
    let b = vec![1.5f32; n];
    let c = vec![2.5f32; n];
    for _ in 0..5 {
        let start = Instant::now();
        std::thread::scope(|sc| {
            for ((ac, bc), cc) in a.chunks_mut(per).zip(b.chunks(per)).zip(c.chunks(per)) {
                sc.spawn(move || {
                    for ((x, y), z) in ac.iter_mut().zip(bc).zip(cc) {
                        *x = y + 3.0 * z;
                    }
                });
            }
        });
        best = best.min(start.elapsed().as_secs_f64());
    }
    std::hint::black_box(&a);
    3.0 * n as f64 * 4.0 / best / 1e9
}

fn main() {
    println!("threads: {}", threads());
    match fma_gflops() {
        Some(g) => println!("f32 FMA peak (AVX2, all threads): {g:.1} GFLOP/s"),
        None => println!("f32 FMA peak: not measured (no AVX2+FMA)"),
    }
    println!("memory bandwidth (triad a = b + 3c, all threads): {:.1} GB/s", triad_gbps());
}
