//! Quick self-checks: each kernel once on small random odd-shaped data against its float64 reference.
//! Used by `trajattn demo`; the thorough tests live in `kernels/tests/`.

use crate::bench::random_data;
use crate::compare::{rel_err, to_f64};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::ops::conv::{self, Conv2dOpts};
use crate::ops::elementwise::{self, Binary, Unary};
use crate::ops::flash_attention::{self, AttnLauncher, AttnShape, Strided};
use crate::ops::group_norm::{self, GroupNormOpts, GroupStats};
use crate::ops::layout;
use crate::ops::matmul::{self, Epilogue, WLayout};
use crate::ops::rows;
use crate::ops::temporal_attention;
use crate::{DType, Recorder, Tensor};

/// One check: a name, its error bound, and the function returning the normalised error.
pub struct Check {
    /// What is checked.
    pub name: &'static str,
    /// Normalised error bound.
    pub tol: f64,
    /// Runs the check and returns the normalised error vs the float64 reference.
    pub run: fn(&Gpu) -> Result<f64>,
}

fn up(gpu: &Gpu, seed: u64, shape: &[usize]) -> Result<(Vec<f32>, Tensor)> {
    let v = random_data(seed, shape.iter().product());
    let t = Tensor::from_f32(gpu, &v, shape, DType::F32)?;
    Ok((v, t))
}

fn add_check(gpu: &Gpu) -> Result<f64> {
    let (a, ta) = up(gpu, 1, &[3, 37, 129])?;
    let (b, tb) = up(gpu, 2, &[3, 37, 129])?;
    let y = elementwise::binary(gpu, Binary::Add, &ta, &tb)?;
    Ok(rel_err(&y.to_f32(gpu)?, &elementwise::reference::binary(Binary::Add, &to_f64(&a), &to_f64(&b))))
}

fn gelu_check(gpu: &Gpu) -> Result<f64> {
    let (a, ta) = up(gpu, 3, &[1001])?;
    let y = elementwise::unary(gpu, Unary::Gelu, &ta)?;
    Ok(rel_err(&y.to_f32(gpu)?, &elementwise::reference::unary(Unary::Gelu, &to_f64(&a))))
}

fn matmul_check(gpu: &Gpu) -> Result<f64> {
    let (x, tx) = up(gpu, 4, &[77, 320])?;
    let (w, tw) = up(gpu, 5, &[45, 320])?;
    let (b, tb) = up(gpu, 6, &[45])?;
    let y = matmul::linear(gpu, &tx, &tw, Some(&tb), Epilogue::Silu)?;
    let want = matmul::reference::matmul(
        &to_f64(&x),
        &to_f64(&w),
        WLayout::NK,
        Some(&to_f64(&b)),
        Epilogue::Silu,
        1,
        1,
        77,
        45,
        320,
    );
    Ok(rel_err(&y.to_f32(gpu)?, &want))
}

fn conv_check(gpu: &Gpu) -> Result<f64> {
    let (x, tx) = up(gpu, 7, &[2, 32, 9, 13])?;
    let (w, tw) = up(gpu, 8, &[11, 32, 3, 3])?;
    let (b, tb) = up(gpu, 9, &[11])?;
    let o = Conv2dOpts::new(1, 1);
    let y = conv::conv2d(gpu, &tx, &tw, Some(&tb), o)?;
    let want =
        conv::reference::conv2d(&to_f64(&x), &to_f64(&w), Some(&to_f64(&b)), (2, 32, 9, 13), (11, 3, 3), o);
    Ok(rel_err(&y.to_f32(gpu)?, &want))
}

fn conv3d_check(gpu: &Gpu) -> Result<f64> {
    let (x, tx) = up(gpu, 10, &[2 * 5, 7, 3, 5])?;
    let (w, tw) = up(gpu, 11, &[6, 7, 3, 1, 1])?;
    let y = conv::conv3d_temporal(gpu, &tx, 5, &tw, None)?;
    let want = conv::reference::conv3d_temporal(&to_f64(&x), &to_f64(&w), None, (10, 5, 7, 15), 6);
    Ok(rel_err(&y.to_f32(gpu)?, &want))
}

fn group_norm_check(gpu: &Gpu) -> Result<f64> {
    let (x, tx) = up(gpu, 12, &[6, 64, 7, 11])?;
    let (g, tg) = up(gpu, 13, &[64])?;
    let (b, tb) = up(gpu, 14, &[64])?;
    let o = GroupNormOpts { groups: 32, eps: 1e-6, stats: GroupStats::AcrossFrames(3), silu: true };
    let y = group_norm::group_norm(gpu, &tx, &tg, &tb, o)?;
    let want = group_norm::reference::group_norm(&to_f64(&x), &to_f64(&g), &to_f64(&b), 6, 64, 77, o);
    Ok(rel_err(&y.to_f32(gpu)?, &want))
}

fn layer_norm_check(gpu: &Gpu) -> Result<f64> {
    let (x, tx) = up(gpu, 15, &[37, 320])?;
    let (g, tg) = up(gpu, 16, &[320])?;
    let (b, tb) = up(gpu, 17, &[320])?;
    let y = rows::layer_norm(gpu, &tx, Some((&tg, &tb)), 1e-5)?;
    let (g64, b64) = (to_f64(&g), to_f64(&b));
    Ok(rel_err(
        &y.to_f32(gpu)?,
        &rows::reference::layer_norm(&to_f64(&x), 320, Some((&g64[..], &b64[..])), 1e-5),
    ))
}

fn softmax_check(gpu: &Gpu) -> Result<f64> {
    let (x, tx) = up(gpu, 18, &[41, 50])?;
    let y = rows::softmax(gpu, &tx, 0.125)?;
    Ok(rel_err(&y.to_f32(gpu)?, &rows::reference::softmax(&to_f64(&x), 50, 0.125)))
}

fn swap_check(gpu: &Gpu) -> Result<f64> {
    let dims = [2, 5, 77, 32];
    let n: usize = dims.iter().product();
    let (x, tx) = up(gpu, 19, &[n])?;
    let y = Tensor::empty(gpu, &[n], DType::F32)?;
    let mut rec = Recorder::new(gpu);
    layout::record_swap12(&mut rec, &tx, dims, &y)?;
    rec.run()?;
    Ok(rel_err(&y.to_f32(gpu)?, &layout::reference::swap12(&to_f64(&x), dims)))
}

fn upsample_check(gpu: &Gpu) -> Result<f64> {
    let (x, tx) = up(gpu, 20, &[2, 3, 5, 7])?;
    let y = Tensor::empty(gpu, &[2, 3, 10, 14], DType::F32)?;
    let mut rec = Recorder::new(gpu);
    layout::record_upsample2x(&mut rec, &tx, &y)?;
    rec.run()?;
    Ok(rel_err(&y.to_f32(gpu)?, &layout::reference::upsample2x(&to_f64(&x), 5, 7)))
}

/// Self-attention of `launch` on a fused QKV tensor against the float64 reference.
fn attention_check(
    gpu: &Gpu,
    (b, seq, heads, d): (usize, usize, usize, usize),
    launch: AttnLauncher,
) -> Result<f64> {
    let w = heads * d;
    let (x, tx) = up(gpu, 21, &[b, seq, 3 * w])?;
    let y = Tensor::empty(gpu, &[b, seq, w], DType::F32)?;
    let s = AttnShape::self_attn(b, seq, heads, d);
    let mut rec = Recorder::new(gpu);
    launch(
        &mut rec,
        s,
        Strided::fused(&tx, 0, w),
        Strided::fused(&tx, 1, w),
        Strided::fused(&tx, 2, w),
        &y,
        None,
    )?;
    rec.run()?;
    let h = to_f64(&x);
    let want = flash_attention::reference::attention(
        &s,
        (&h, 0, 3 * w),
        (&h, w, 3 * w),
        (&h, 2 * w, 3 * w),
        1.0 / (d as f64).sqrt(),
    );
    Ok(rel_err(&y.to_f32(gpu)?, &want))
}

fn flash_check(gpu: &Gpu) -> Result<f64> {
    attention_check(gpu, (2, 97, 2, 64), flash_attention::record_flash_attention)
}

fn temporal_check(gpu: &Gpu) -> Result<f64> {
    attention_check(gpu, (37, 14, 3, 32), temporal_attention::record_temporal_attention)
}

fn trajectory_check(gpu: &Gpu) -> Result<f64> {
    use crate::ops::trajectory_attention::{
        prepare_efficient, reference, samples_per_call, Call, Grouping, Weights,
    };
    let (b, h, w, f, c, n) = (2, 6, 10, 5, 16, 150);
    let r = |seed, len| random_data(seed, len).iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let hidden = r(30, b * h * w * f * c);
    let traj: Vec<f64> = r(31, f * n * 2)
        .iter()
        .enumerate()
        .map(|(i, v)| (v * 0.6 + 0.5) * if i % 2 == 0 { 80.0 } else { 48.0 })
        .collect();
    let mask: Vec<bool> = r(32, f * n).iter().map(|&v| v > -0.6).collect();
    let idx: Vec<usize> = (0..samples_per_call(n, h, w)).map(|i| (i * 7 + 3) % n).collect();
    let ws: Vec<Vec<f64>> = (0..4).map(|k| r(33 + k, c * c)).collect();
    let bo = r(40, c);
    let wts = Weights { wq: &ws[0], wk: &ws[1], wv: &ws[2], wo: &ws[3], bo: &bo };
    let call = Call {
        hidden: &hidden,
        b,
        h,
        w,
        f,
        c,
        heads: 2,
        traj: &traj,
        mask: &mask,
        n,
        origin_w: 80,
        origin_h: 48,
        idx: &idx,
        grouping: Grouping::Pairs,
    };
    let got = prepare_efficient(gpu, &call, &wts, DType::F32)?.run_checked(gpu)?;
    Ok(rel_err(&got, &reference::literal(&call, &wts)?))
}

/// Every self-check.
pub fn checks() -> Vec<Check> {
    vec![
        Check { name: "elementwise add [3,37,129]", tol: 1e-5, run: add_check },
        Check { name: "GELU (erf) [1001]", tol: 1e-5, run: gelu_check },
        Check { name: "linear + SiLU 77x45x320", tol: 1e-4, run: matmul_check },
        Check { name: "conv2d 3x3 [2,32,9,13] -> 11", tol: 1e-4, run: conv_check },
        Check { name: "temporal conv (3,1,1) F=5", tol: 1e-4, run: conv3d_check },
        Check { name: "group norm across 3 frames + SiLU", tol: 1e-5, run: group_norm_check },
        Check { name: "layer norm [37,320]", tol: 1e-5, run: layer_norm_check },
        Check { name: "softmax [41,50]", tol: 1e-5, run: softmax_check },
        Check { name: "tokens -> frames swap [2,5,77,32]", tol: 0.0, run: swap_check },
        Check { name: "nearest 2x upsample [2,3,5,7]", tol: 0.0, run: upsample_check },
        Check { name: "flash attention 2x97 tokens, 2 heads of 64", tol: 1e-4, run: flash_check },
        Check { name: "temporal attention 37 sequences x 14, 3 heads of 32", tol: 1e-4, run: temporal_check },
        Check {
            name: "trajectory attention (efficient vs literal) 6x10, F 5",
            tol: 1e-4,
            run: trajectory_check,
        },
    ]
}
