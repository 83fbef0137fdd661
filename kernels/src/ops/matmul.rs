//! Matmul and linear (`shaders/matmul.wgsl`): launcher, float64 reference, benchmark case.
//!
//! `Y[b] = act(X[b] · W[b]ᵀ + bias)` with W in PyTorch's `[out, in]` layout (or `[in, out]` with
//! [`WLayout::KN`]). Work is split over batch and row chunks so every binding fits the adapter's limit.

use crate::bench::{parse_shape, BenchCase, BenchEntry};
use crate::dispatch::Recorder;
use crate::dtype::DType;
use crate::error::{invalid, shape_err, KernelError, Result};
use crate::gpu::Gpu;
use crate::shaders::{MATMUL, MATMUL_SG8, MATMUL_VEC4};
use crate::tensor::{items_per_binding, Tensor};
use bytemuck::{Pod, Zeroable};

/// Activation fused into the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    /// Identity.
    None,
    /// x·sigmoid(x).
    Silu,
    /// Exact GELU, 0.5·x·(1 + erf(x/√2)).
    GeluErf,
    /// Tanh-approximated GELU.
    GeluTanh,
}

impl Epilogue {
    fn code(self) -> u32 {
        match self {
            Epilogue::None => 0,
            Epilogue::Silu => 1,
            Epilogue::GeluErf => 2,
            Epilogue::GeluTanh => 3,
        }
    }
}

/// Layout of the second operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WLayout {
    /// `[N, K]`: PyTorch's Linear weight `[out, in]`.
    NK,
    /// `[K, N]`: a plain row-major right-hand matrix.
    KN,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    act: u32,
    base_x: u32,
    base_w: u32,
    base_b: u32,
    base_y: u32,
    x_sb: u32,
    w_sb: u32,
    y_sb: u32,
    has_bias: u32,
    w_sn: u32,
    w_sk: u32,
    ldx: u32,
    ldy: u32,
}

/// Register-block and workgroup shape (pipeline-overridable constants of the shader).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tiling {
    /// Rows per invocation (≤ 8).
    pub tm: u32,
    /// Columns per invocation (≤ 8).
    pub tn: u32,
    /// Invocations along N.
    pub wg_x: u32,
    /// Invocations along M.
    pub wg_y: u32,
}

impl Tiling {
    /// The default for this adapter.
    pub fn for_gpu(_gpu: &Gpu) -> Tiling {
        Tiling { tm: 4, tn: 4, wg_x: 8, wg_y: 8 }
    }
}

const OP: &str = "matmul";
/// Rows and columns one workgroup of `shaders/matmul_sg8.wgsl` covers (TM·8, TG·8 in its generator).
const SG8_ROWS: usize = 16;
const SG8_COLS: usize = 8;

/// Records `y = act(x · wᵀ + bias)`.
///
/// Shapes: `x [B, M, K]` (or `[M, K]`), `w [B, N, K]` / `[N, K]` (shared), or with [`WLayout::KN`]
/// `[B, K, N]` / `[K, N]`; `bias [N]`; `y [B, M, N]` (or `[M, N]`). Leading dims of a 2-D-weight
/// linear may be anything: `x [.., K]` → `y [.., N]`.
#[allow(clippy::too_many_arguments)]
pub fn record(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    layout: WLayout,
    bias: Option<&Tensor>,
    act: Epilogue,
    y: &Tensor,
    tiling: Option<Tiling>,
) -> Result<()> {
    let gpu = rec.gpu();
    let dtype = x.dtype();
    for (t, what) in [(w, "weight"), (y, "output")] {
        if t.dtype() != dtype {
            return Err(KernelError::DType {
                op: OP,
                found: format!("{} and {}", dtype, t.dtype()),
                why: format!("input and {what} must have the same dtype"),
            });
        }
    }
    let xs = x.shape();
    let ws = w.shape();
    if xs.is_empty() || ws.len() < 2 || ws.len() > 3 {
        return Err(shape_err(OP, "x [.., K] and weight [N, K] or [B, N, K]", &[0, 0], ws));
    }
    let (wb, wn, wk) = match (ws.len(), layout) {
        (2, WLayout::NK) => (1, ws[0], ws[1]),
        (2, WLayout::KN) => (1, ws[1], ws[0]),
        (_, WLayout::NK) => (ws[0], ws[1], ws[2]),
        (_, WLayout::KN) => (ws[0], ws[2], ws[1]),
    };
    let k = *xs.last().unwrap_or(&0);
    if k != wk {
        return Err(shape_err(OP, "inner dimension K of weight vs input", &[wn, k], ws));
    }
    let (batch, m) = if wb > 1 {
        if xs.len() != 3 || xs[0] != wb {
            return Err(shape_err(OP, "batched input [B, M, K] for weight batch", &[wb, 0, k], xs));
        }
        (wb, xs[1])
    } else if xs.len() == 3 && ws.len() == 3 {
        (xs[0], xs[1])
    } else {
        (1, xs[..xs.len() - 1].iter().product())
    };
    let mut want_y: Vec<usize> = xs.to_vec();
    *want_y.last_mut().unwrap_or(&mut 0) = wn;
    if y.shape() != want_y.as_slice() {
        return Err(shape_err(OP, "output", &want_y, y.shape()));
    }
    if let Some(b) = bias {
        if b.shape() != [wn] {
            return Err(shape_err(OP, "bias", &[wn], b.shape()));
        }
        if b.dtype() != dtype {
            return Err(KernelError::DType {
                op: OP,
                found: b.dtype().to_string(),
                why: "bias dtype".into(),
            });
        }
    }
    if m == 0 || wn == 0 {
        return Ok(());
    }
    if k == 0 {
        return Err(invalid(OP, "K = 0 is not supported"));
    }
    let t = tiling.unwrap_or_else(|| Tiling::for_gpu(gpu));
    if !(1..=8).contains(&t.tm) || !(1..=8).contains(&t.tn) {
        return Err(invalid(OP, format!("tiling {t:?}: tm and tn must be 1..=8")));
    }
    let generic = gpu.pipelines().get(
        &gpu.device,
        &MATMUL,
        "matmul",
        dtype,
        &[("TM", t.tm as f64), ("TN", t.tn as f64), ("WG_X", t.wg_x as f64), ("WG_Y", t.wg_y as f64)],
    )?;
    // The vec4 path needs K-contiguous operands and 4-element-aligned starts (checked per dispatch).
    let vec4 = if layout == WLayout::NK && k.is_multiple_of(4) && tiling.is_none() {
        Some(gpu.pipelines().get(
            &gpu.device,
            &MATMUL_VEC4,
            "matmul_vec4",
            dtype,
            &[("WG_X", t.wg_x as f64), ("WG_Y", t.wg_y as f64)],
        )?)
    } else {
        None
    };
    // Subgroup path: exactly 8-lane subgroups, K % 32 == 0.
    let sg8 = if vec4.is_some()
        && gpu.caps.subgroup
        && gpu.caps.subgroup_min_size == 8
        && gpu.caps.subgroup_max_size == 8
        && k.is_multiple_of(32)
    {
        Some(gpu.pipelines().get(&gpu.device, &MATMUL_SG8, "matmul_sg8", dtype, &[])?)
    } else {
        None
    };
    let (w_sn, w_sk) = match layout {
        WLayout::NK => (wk as u32, 1u32),
        WLayout::KN => (1u32, wn as u32),
    };
    let wmat = wn * wk;
    // Rows per dispatch so that the X and Y windows of one batch element fit a binding.
    let rows_fit = items_per_binding(gpu, k.max(wn), dtype)?;
    let per_wg_m = (t.tm * t.wg_y) as usize;
    let per_wg_n = (t.tn * t.wg_x) as usize;
    let gx = wn.div_ceil(per_wg_n) as u32;
    let maxg = gpu.limits.max_compute_workgroups_per_dimension as usize;
    let rows_chunk = rows_fit.min(maxg * per_wg_m).max(1);
    // Whole batch in one dispatch (grid z) when everything fits one binding each.
    let whole = batch > 1
        && batch <= maxg
        && x.whole(gpu).is_ok()
        && y.whole(gpu).is_ok()
        && w.whole(gpu).is_ok()
        && m <= rows_chunk;
    let batches: Vec<(usize, usize)> =
        if whole { vec![(0, batch)] } else { (0..batch).map(|b| (b, 1)).collect() };
    for (b0, nb) in batches {
        let wstart = if wb > 1 { b0 * wmat } else { 0 };
        let wlen = if wb > 1 { nb * wmat } else { wmat };
        let ww = w.window(gpu, wstart, wlen)?;
        let bw = match bias {
            Some(bt) => bt.whole(gpu)?,
            None => ww.clone(),
        };
        let mut r0 = 0;
        while r0 < m {
            let rows = if nb > 1 { m } else { rows_chunk.min(m - r0) };
            let xw = x.window(gpu, (b0 * m + r0) * k, (nb - 1) * m * k + rows * k)?;
            let yw = y.window(gpu, (b0 * m + r0) * wn, (nb - 1) * m * wn + rows * wn)?;
            let params = Params {
                m: rows as u32,
                n: wn as u32,
                k: k as u32,
                act: act.code(),
                base_x: xw.base,
                base_w: ww.base,
                base_b: bw.base,
                base_y: yw.base,
                x_sb: (m * k) as u32,
                w_sb: if wb > 1 { wmat as u32 } else { 0 },
                y_sb: (m * wn) as u32,
                has_bias: bias.is_some() as u32,
                w_sn,
                w_sk,
                ldx: k as u32,
                ldy: wn as u32,
            };
            let aligned = xw.base % 4 == 0 && ww.base % 4 == 0;
            let (pipe, gx, gy) = match (&vec4, aligned) {
                (Some(_), true) if sg8.is_some() => (
                    sg8.as_ref().unwrap_or(&generic),
                    wn.div_ceil(SG8_COLS) as u32,
                    rows.div_ceil(SG8_ROWS) as u32,
                ),
                (Some(v), true) => {
                    (v, wn.div_ceil(4 * t.wg_x as usize) as u32, rows.div_ceil(4 * t.wg_y as usize) as u32)
                }
                _ => (&generic, gx, rows.div_ceil(per_wg_m) as u32),
            };
            rec.dispatch(
                pipe,
                bytemuck::bytes_of(&params),
                vec![xw, ww.clone(), bw.clone(), yw],
                [gx, gy, nb as u32],
            )?;
            r0 += rows;
        }
    }
    Ok(())
}

/// `act(x · wᵀ + bias)` with `w [N, K]` (PyTorch Linear), into a new tensor, run now.
pub fn linear(gpu: &Gpu, x: &Tensor, w: &Tensor, bias: Option<&Tensor>, act: Epilogue) -> Result<Tensor> {
    let mut shape = x.shape().to_vec();
    if let (Some(last), Some(&n)) = (shape.last_mut(), w.shape().first()) {
        *last = n;
    }
    let y = Tensor::empty(gpu, &shape, x.dtype())?;
    let mut rec = Recorder::new(gpu);
    record(&mut rec, x, w, WLayout::NK, bias, act, &y, None)?;
    rec.run()?;
    Ok(y)
}

/// Float64 reference.
pub mod reference {
    use super::{Epilogue, WLayout};

    /// Exact GELU / SiLU / tanh-GELU in f64.
    pub fn activate(v: f64, act: Epilogue) -> f64 {
        match act {
            Epilogue::None => v,
            Epilogue::Silu => v / (1.0 + (-v).exp()),
            Epilogue::GeluErf => 0.5 * v * (1.0 + erf(v / std::f64::consts::SQRT_2)),
            Epilogue::GeluTanh => {
                let u = (2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v);
                0.5 * v * (1.0 + u.tanh())
            }
        }
    }

    /// erf to ~1e-15 (series below 3, continued fraction of erfc above).
    pub fn erf(x: f64) -> f64 {
        let a = x.abs();
        let r = if a < 3.0 {
            // Maclaurin series: erf(x) = 2/√π Σ (-1)^n x^(2n+1) / (n! (2n+1)).
            let mut term = a;
            let mut sum = a;
            let x2 = a * a;
            let mut n = 0.0;
            while term.abs() > 1e-17 * sum.abs() {
                n += 1.0;
                term *= -x2 / n;
                sum += term / (2.0 * n + 1.0);
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc(x) = exp(-x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...)))).
            let mut f = a;
            for i in (1..60).rev() {
                f = a + (i as f64 / 2.0) / f;
            }
            1.0 - (-a * a).exp() / (std::f64::consts::PI.sqrt() * f)
        };
        r.copysign(x)
    }

    /// `y[b, m, n] = act(Σ_k x[b, m, k] w[b, n, k] + bias[n])`, `wb` = 1 for a shared weight.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        x: &[f64],
        w: &[f64],
        layout: WLayout,
        bias: Option<&[f64]>,
        act: Epilogue,
        batch: usize,
        wb: usize,
        m: usize,
        n: usize,
        k: usize,
    ) -> Vec<f64> {
        let mut y = vec![0.0; batch * m * n];
        for b in 0..batch {
            let wo = if wb > 1 { b * n * k } else { 0 };
            for i in 0..m {
                let xr = &x[(b * m + i) * k..(b * m + i + 1) * k];
                for j in 0..n {
                    let mut s = 0.0;
                    for (kk, xv) in xr.iter().enumerate() {
                        let wv = match layout {
                            WLayout::NK => w[wo + j * k + kk],
                            WLayout::KN => w[wo + kk * n + j],
                        };
                        s += xv * wv;
                    }
                    if let Some(bv) = bias {
                        s += bv[j];
                    }
                    y[(b * m + i) * n + j] = activate(s, act);
                }
            }
        }
        y
    }
}

fn bench_build(gpu: &Gpu, shape: &str, dtype: DType) -> Result<BenchCase> {
    let d = parse_shape("matmul", shape, 3)?;
    let (m, n, k) = (d[0], d[1], d[2]);
    let x = Tensor::from_f32(gpu, &crate::testing::rand_vec(1, m * k), &[m, k], dtype)?;
    let w = Tensor::from_f32(gpu, &crate::testing::rand_vec(2, n * k), &[n, k], dtype)?;
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
    build: bench_build,
};
