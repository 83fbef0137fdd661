//! The matmul benchmark case (`trajattn bench matmul`).

use super::{record, Epilogue, WLayout};
use crate::bench::{parse_shape, BenchCase, BenchEntry};
use crate::dispatch::Recorder;
use crate::dtype::DType;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::tensor::Tensor;

fn bench_build(gpu: &Gpu, shape: &str, dtype: DType) -> Result<BenchCase> {
    let d = parse_shape("matmul", shape, 3)?;
    let (m, n, k) = (d[0], d[1], d[2]);
    let x = Tensor::from_f32(gpu, &crate::bench::random_data(1, m * k), &[m, k], dtype)?;
    let w = Tensor::from_f32(gpu, &crate::bench::random_data(2, n * k), &[n, k], dtype)?;
    let y = Tensor::empty(gpu, &[m, n], dtype)?;
    let mut rec = Recorder::new(gpu);
    record(&mut rec, &x, &w, WLayout::NK, None, Epilogue::None, &y, None)?;
    Ok(BenchCase {
        kernel: "matmul",
        shape: shape.to_string(),
        dtype,
        flops: 2.0 * (m * n * k) as f64,
        bytes: ((m * k + n * k + m * n) as u64 * dtype.size()) as f64,
        recording: rec.finish(),
        keep: vec![x, w, y],
    })
}

/// Benchmark: `[M, K] · [N, K]ᵀ`.
pub const BENCH: BenchEntry = BenchEntry {
    name: "matmul",
    shape_help: "MxNxK: y[M,N] = x[M,K] · w[N,K]ᵀ (a Linear with weight [N,K])",
    default_shapes: &["4096x4096x1024", "9216x320x320", "9216x2560x320", "1800x1280x320"],
    demo_shape: "9216x320x320",
    build: bench_build,
};
