//! `cargo bench`: every kernel at its default (SVD) shapes, through the same cases as `trajattn bench`.
//! Set TRAJATTN_BENCH_FILTER=name to run one kernel; TRAJATTN_BENCH_DTYPE=f16 for f16 storage.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;
use trajattn_kernels::{ops, DType, Gpu};

fn kernels(c: &mut Criterion) {
    let gpu = match Gpu::shared() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("no GPU, skipping kernel benches: {e}");
            return;
        }
    };
    let dtype =
        std::env::var("TRAJATTN_BENCH_DTYPE").ok().and_then(|d| DType::parse(&d)).unwrap_or(DType::F32);
    if dtype == DType::F16 && !gpu.caps.shader_f16 {
        eprintln!("adapter has no SHADER_F16; skipping f16 benches");
        return;
    }
    let filter = std::env::var("TRAJATTN_BENCH_FILTER").ok();
    for entry in ops::bench_entries() {
        if filter.as_deref().is_some_and(|f| !entry.name.contains(f)) {
            continue;
        }
        let mut group = c.benchmark_group(entry.name);
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(5));
        for shape in entry.default_shapes {
            let case = match (entry.build)(&gpu, shape, dtype) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{} {shape}: {e}", entry.name);
                    continue;
                }
            };
            if case.flops > 0.0 {
                group.throughput(Throughput::Elements(case.flops as u64));
            }
            group.bench_function(format!("{shape}/{dtype}"), |b| {
                b.iter(|| case.recording.submit(&gpu, true).expect("kernel run failed"))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, kernels);
criterion_main!(benches);
