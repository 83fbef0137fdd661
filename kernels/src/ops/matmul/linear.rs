//! PyTorch-Linear conveniences over [`record_gemm`]: `y = act(x · wᵀ + bias)` on whole tensors, and diffusers'
//! GEGLU projection with the GEGLU fused into the tiled GEMM's epilogue where the GPU tier runs it.

use super::{record_gemm, BiasMode, Epilogue, Gemm, Operand, Tiling, WLayout, OP};
use crate::dispatch::Recorder;
use crate::error::{invalid, shape_err, Result};
use crate::gpu::Gpu;
use crate::select::Tier;
use crate::tensor::Tensor;

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
    if let Some(last) = want_y.last_mut() {
        *last = wn;
    }
    if y.shape() != want_y.as_slice() {
        return Err(shape_err(OP, "output", &want_y, y.shape()));
    }
    if let Some(b) = bias {
        if b.shape() != [wn] {
            return Err(shape_err(OP, "bias", &[wn], b.shape()));
        }
    }
    let g = Gemm {
        batch,
        m,
        n: wn,
        k,
        x: Operand { t: x, offset: 0, ld: k, sb: m * k },
        w: Operand {
            t: w,
            offset: 0,
            ld: if layout == WLayout::NK { wk } else { wn },
            sb: if wb > 1 { wn * wk } else { 0 },
        },
        layout,
        bias: bias.map(|b| (b, BiasMode::PerColumn)),
        act,
        y: Operand { t: y, offset: 0, ld: wn, sb: m * wn },
        accumulate: false,
    };
    record_gemm(rec, &g, tiling)
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

/// Whether [`record_linear_geglu`] fuses the GEGLU into the GEMM on this device (the GPU tier's tiled GEMM).
pub fn geglu_fused(gpu: &Gpu) -> bool {
    gpu.tier == Tier::Gpu
}

/// Records diffusers' GEGLU feed-forward input: `y = a · GELU(g)` where `[a | g] = x · wᵀ + bias` (`w [2·I, K]`,
/// `bias [2·I]`, `x [.., K]` → `y [.., I]`). On the GPU tier one tiled GEMM with the GEGLU epilogue: the
/// `[.., 2·I]` projection is never written. Elsewhere the projection goes to `scratch` (`[.., 2·I]`, required
/// there) and `elementwise::record_geglu` halves it.
pub fn record_linear_geglu(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    y: &Tensor,
    scratch: Option<&Tensor>,
) -> Result<()> {
    let gpu = rec.gpu();
    if !geglu_fused(gpu) {
        let Some(h) = scratch else {
            return Err(invalid(OP, "GEGLU without the tiled GEMM needs a [.., 2·I] scratch tensor"));
        };
        record(rec, x, w, WLayout::NK, bias, Epilogue::None, h, None)?;
        return crate::ops::elementwise::record_geglu(rec, h, y);
    }
    let (xs, ws) = (x.shape(), w.shape());
    let k = *xs.last().unwrap_or(&0);
    if ws.len() != 2 || ws[1] != k || !ws[0].is_multiple_of(2) {
        return Err(shape_err(OP, "GEGLU weight [2·I, K] for input [.., K]", &[2, k], ws));
    }
    let n = ws[0];
    let mut want_y = xs.to_vec();
    if let Some(l) = want_y.last_mut() {
        *l = n / 2;
    }
    if y.shape() != want_y.as_slice() {
        return Err(shape_err(OP, "GEGLU output", &want_y, y.shape()));
    }
    if let Some(b) = bias {
        if b.shape() != [n] {
            return Err(shape_err(OP, "bias", &[n], b.shape()));
        }
    }
    let m = x.numel() / k.max(1);
    let g = Gemm {
        batch: 1,
        m,
        n,
        k,
        x: Operand { t: x, offset: 0, ld: k, sb: 0 },
        w: Operand { t: w, offset: 0, ld: k, sb: 0 },
        layout: WLayout::NK,
        bias: bias.map(|b| (b, BiasMode::PerColumn)),
        act: Epilogue::Geglu,
        y: Operand { t: y, offset: 0, ld: n / 2, sb: 0 },
        accumulate: false,
    };
    record_gemm(rec, &g, None)
}
