//! Benchmark cases of the branch: the efficient and literal formulations, and the gathered kernel alone.

use super::{
    prepare_efficient, prepare_literal, record_gathered, samples_per_call, tables, Call, Geometry, Grouping,
    Weights, OP,
};
use crate::dispatch::Recorder;
use crate::dtype::DType;
use crate::error::{invalid, Result};
use crate::gpu::Gpu;
use crate::tensor::Tensor;

fn bench_build(gpu: &Gpu, shape: &str, dtype: DType) -> Result<crate::bench::BenchCase> {
    bench_variant(gpu, shape, dtype, BenchPart::Efficient)
}

fn bench_build_literal(gpu: &Gpu, shape: &str, dtype: DType) -> Result<crate::bench::BenchCase> {
    bench_variant(gpu, shape, dtype, BenchPart::Literal)
}

fn bench_build_gathered(gpu: &Gpu, shape: &str, dtype: DType) -> Result<crate::bench::BenchCase> {
    bench_variant(gpu, shape, dtype, BenchPart::Gathered)
}

/// What a trajectory-attention benchmark times.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BenchPart {
    /// The whole branch, efficient formulation.
    Efficient,
    /// The whole branch, literal formulation.
    Literal,
    /// Only the gathered attention of every head group ([`record_gathered`]) on random Q/K/V.
    Gathered,
}

/// The gathered attention alone, as the efficient branch records it (one dispatch series per head group).
fn bench_gathered(gpu: &Gpu, call: &Call, dtype: DType) -> Result<(crate::dispatch::Recording, Vec<Tensor>)> {
    let t = tables(call)?;
    let Call { b, h, w, f, c, heads, .. } = *call;
    let g = Geometry { b, h, w, f, c, heads, m: t.m, seq_len: t.seq_len };
    let group = g.heads_per_group(dtype.size(), gpu.max_binding());
    let [qr, qc] = g.qkv_scratch_shape(group);
    let qkv = Tensor::from_f32(gpu, &crate::bench::random_data(3, qr * qc), &[qr, qc], dtype)?;
    let att = Tensor::empty(gpu, &g.att_scratch_shape(group), dtype)?;
    let table = Tensor::from_u32(gpu, &t.table, &[t.table.len()])?;
    let mut rec = Recorder::new(gpu);
    for _ in (0..heads).step_by(group) {
        record_gathered(&mut rec, &g, &table, &qkv, &att)?;
    }
    Ok((rec.finish(), vec![qkv, att, table]))
}

fn bench_variant(gpu: &Gpu, shape: &str, dtype: DType, part: BenchPart) -> Result<crate::bench::BenchCase> {
    let d = crate::bench::parse_shape("trajectory-attention", shape, 5)?;
    let (b, f, h, w, c) = (d[0], d[1], d[2], d[3], d[4]);
    if c % 64 != 0 {
        return Err(invalid(OP, "C must be a multiple of 64 (heads of 64)"));
    }
    let (s, heads) = (h * w, c / 64);
    let n = 2 * s;
    let rnd =
        |seed, len| crate::bench::random_data(seed, len).iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let hidden = rnd(1, b * s * f * c);
    let (ow, oh) = (w * 8, h * 8);
    let traj: Vec<f64> = rnd(2, f * n * 2)
        .iter()
        .enumerate()
        .map(|(i, &r)| (r * 0.5 + 0.5) * if i % 2 == 0 { ow as f64 } else { oh as f64 })
        .collect();
    let mask = vec![true; f * n];
    let idx: Vec<usize> = (0..samples_per_call(n, h, w)).map(|i| (i * 7919) % n).collect();
    let ws: Vec<Vec<f64>> = (0..4).map(|k| rnd(10 + k, c * c)).collect();
    let bo = rnd(20, c);
    let call = Call {
        hidden: &hidden,
        b,
        h,
        w,
        f,
        c,
        heads,
        traj: &traj,
        mask: &mask,
        n,
        origin_w: ow,
        origin_h: oh,
        idx: &idx,
        grouping: Grouping::Pairs,
    };
    let wts = Weights { wq: &ws[0], wk: &ws[1], wv: &ws[2], wo: &ws[3], bo: &bo };
    let m = idx.len();
    let tokens = b * m * f;
    let l = m * f / s;
    if part == BenchPart::Gathered {
        let (recording, keep) = bench_gathered(gpu, &call, dtype)?;
        return Ok(crate::bench::BenchCase {
            kernel: "trajectory-gathered-attention",
            shape: shape.to_string(),
            dtype,
            // QKᵀ and AV over L-token sequences, every head.
            flops: 4.0 * tokens as f64 * l as f64 * c as f64,
            // Gathered Q, K, V rows read, attention rows written.
            bytes: dtype.size() as f64 * (4 * tokens * c) as f64,
            recording,
            keep,
        });
    }
    let literal = part == BenchPart::Literal;
    let p = if literal {
        prepare_literal(gpu, &call, &wts, dtype)?
    } else {
        prepare_efficient(gpu, &call, &wts, dtype)?
    };
    // QKV and out projections (of the dense grid, or of the gathered tokens for the literal variant) + attention
    // (QKᵀ and AV over L-token sequences).
    let projected = if literal { tokens } else { b * s * f };
    let flops =
        2.0 * projected as f64 * (c * 3 * c + c * c) as f64 + 4.0 * tokens as f64 * l as f64 * c as f64;
    let mut keep = p.keep;
    keep.push(p.out);
    Ok(crate::bench::BenchCase {
        kernel: if literal { "trajectory-attention-literal" } else { "trajectory-attention" },
        shape: shape.to_string(),
        dtype,
        flops,
        bytes: dtype.size() as f64 * (b * s * f * c * 5 + tokens * c * 2) as f64,
        recording: p.recording,
        keep,
    })
}

/// Benchmark: the whole branch (efficient formulation) at one UNet level, faithful pair grouping.
pub const BENCH: crate::bench::BenchEntry = crate::bench::BenchEntry {
    name: "trajectory-attention",
    shape_help: "BxFxHxWxC: batch, frames, latent size and channels of one level (N = 2·h·w trajectories)",
    default_shapes: &["2x25x9x16x1280"],
    demo_shape: "2x14x9x16x320",
    build: bench_build,
};

/// Benchmark: the gathered attention alone (the kernel tiers' `traj_attend*`), every head group of one level.
pub const BENCH_GATHERED: crate::bench::BenchEntry = crate::bench::BenchEntry {
    name: "trajectory-gathered-attention",
    shape_help: "BxFxHxWxC: as trajectory-attention; only the gathered attention over random Q/K/V",
    default_shapes: &["2x25x9x16x1280", "2x14x9x16x320"],
    demo_shape: "2x14x9x16x320",
    build: bench_build_gathered,
};

/// Benchmark: the whole branch, literal formulation (gather, project the gathered tokens, attend, project out,
/// scatter-mean), for comparison with [`BENCH`].
pub const BENCH_LITERAL: crate::bench::BenchEntry = crate::bench::BenchEntry {
    name: "trajectory-attention-literal",
    shape_help: "BxFxHxWxC: as trajectory-attention",
    default_shapes: &["2x25x9x16x1280"],
    demo_shape: "2x14x9x16x320",
    build: bench_build_literal,
};
