//! One module per op family: the launcher(s), the float64 CPU reference, and the benchmark case.

pub mod activation;
pub(crate) mod attention_windows;
pub mod conv;
pub mod dpt;
pub mod elementwise;
pub mod flash_attention;
pub mod group_norm;
pub mod layout;
pub mod matmul;
pub mod rows;
pub mod sampler;
pub mod temporal_attention;
pub mod trajectory_attention;

/// Every benchmarkable kernel (`trajattn bench NAME`, `trajattn demo`, `cargo bench`): each op's entries, listed
/// here above the ops so that [`crate::bench`] stays a leaf they import.
pub fn bench_entries() -> Vec<crate::bench::BenchEntry> {
    vec![
        elementwise::BENCH,
        matmul::BENCH,
        conv::BENCH_CONV2D,
        conv::BENCH_CONV3D,
        group_norm::BENCH,
        rows::BENCH_LAYER_NORM,
        rows::BENCH_SOFTMAX,
        layout::BENCH_TRANSPOSE,
        layout::BENCH_UPSAMPLE,
        temporal_attention::BENCH,
        trajectory_attention::BENCH,
        trajectory_attention::BENCH_LITERAL,
        trajectory_attention::BENCH_GATHERED,
        flash_attention::BENCH,
        dpt::BENCH_BILINEAR,
        dpt::BENCH_CONV_TRANSPOSE,
    ]
}

/// Looks a benchmarkable kernel up by name.
pub fn find_bench(name: &str) -> Option<crate::bench::BenchEntry> {
    bench_entries().into_iter().find(|e| e.name == name)
}
