//! The denoising step on the GPU (`shaders/sampler.wgsl`): the scaled UNet input, per-frame classifier-free
//! guidance and the v-prediction Euler update, with float64 references. The latents stay on the device between
//! steps; only a 4-byte non-finite flag comes back.
//!
//! Tolerance against the CPU sampler: the same operations in the same order and roundings, but WGSL allows 2.5
//! ulp for f32 division, so results agree to a few f32 ulp (f32) or to one f16 ulp where a rounding to f16 falls
//! on a tie-breaking boundary (f16), not always bit for bit.

use crate::dispatch::{grid, Recorder};
use crate::dtype::DType;
use crate::error::{invalid, shape_err, KernelError, Result};
use crate::shaders::SAMPLER;
use crate::tensor::{items_per_binding, Tensor};
use bytemuck::{Pod, Zeroable};

const WG: u32 = 256;
const OP: &str = "sampler";

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    n: u32,
    plane: u32,
    frames: u32,
    cfg: u32,
    stride: u32,
    batch: u32,
    div: f32,
    c_out: f32,
    q: f32,
    sigma: f32,
    dt: f32,
    fr0: u32,
    b_stride: u32,
    base_lat: u32,
    base_s: u32,
    base_u: u32,
    base_c: u32,
    _pad: [u32; 3],
}

/// Layout of the uniform `Params` of `sampler.wgsl`.
pub const PARAMS_LAYOUT: crate::params::ParamsLayout = crate::params_layout!(Params {
    n,
    plane,
    frames,
    cfg,
    stride,
    batch,
    div,
    c_out,
    q,
    sigma,
    dt,
    fr0,
    b_stride,
    base_lat,
    base_s,
    base_u,
    base_c,
    _pad
});

/// How latents, the UNet input and its output are laid out.
#[derive(Clone, Copy, Debug)]
pub struct StepLayout {
    /// Frames.
    pub frames: usize,
    /// Latent values of one frame (C·h·w).
    pub plane: usize,
    /// UNet batch: 2 with classifier-free guidance (`[uncond; cond]`), else 1.
    pub batch: usize,
    /// Values of one (batch, frame) block of the UNet input (in_channels·h·w ≥ plane).
    pub stride: usize,
}

impl StepLayout {
    fn n(&self) -> usize {
        self.frames * self.plane
    }
    fn cfg(&self) -> bool {
        self.batch == 2
    }
}

/// The scalars of Euler step `i` (`σ = σ_i`, `σ_next = σ_{i+1}`), computed in f32 as the CPU sampler does.
#[derive(Clone, Copy, Debug)]
pub struct StepScalars {
    /// `sqrt(σ² + 1)`, the model-input divisor.
    pub div: f32,
    /// `−σ / sqrt(σ² + 1)`.
    pub c_out: f32,
    /// `σ² + 1`.
    pub q: f32,
    /// σ.
    pub sigma: f32,
    /// `σ_next − σ`.
    pub dt: f32,
}

impl StepScalars {
    /// The scalars for σ and σ_next.
    pub fn new(sigma: f32, sigma_next: f32) -> Self {
        let q = sigma * sigma + 1.0;
        StepScalars { div: q.sqrt(), c_out: -sigma / q.sqrt(), q, sigma, dt: sigma_next - sigma }
    }
}

fn want(t: &Tensor, what: &str, n: usize, dtype: DType) -> Result<()> {
    if t.numel() != n {
        return Err(shape_err(OP, what, &[n], t.shape()));
    }
    if t.dtype() != dtype {
        return Err(KernelError::DType {
            op: OP,
            found: t.dtype().to_string(),
            why: format!("{what} must be {dtype}"),
        });
    }
    Ok(())
}

fn params(l: &StepLayout, s: &StepScalars) -> Result<Params> {
    let n = l.n();
    if l.batch == 0 || l.batch > 2 || l.plane == 0 || l.frames == 0 || l.stride < l.plane {
        return Err(invalid(OP, format!("layout {l:?}: batch 1 or 2, stride ≥ plane > 0")));
    }
    let total = l.batch.checked_mul(l.frames).and_then(|v| v.checked_mul(l.stride));
    if total.is_none_or(|t| t > u32::MAX as usize) || n > u32::MAX as usize / 2 {
        return Err(invalid(OP, format!("layout {l:?} is too large for 32-bit indexing")));
    }
    Ok(Params {
        n: n as u32,
        plane: l.plane as u32,
        frames: l.frames as u32,
        cfg: l.cfg() as u32,
        stride: l.stride as u32,
        batch: l.batch as u32,
        div: s.div,
        c_out: s.c_out,
        q: s.q,
        sigma: s.sigma,
        dt: s.dt,
        ..Default::default()
    })
}

/// Frames per dispatch: all of them when every operand fits one binding whole (`None`), else the most whose
/// windows of `item` elements per frame (one per operand, in its dtype) each fit one binding.
fn frames_per_dispatch(rec: &Recorder, whole: &[&Tensor], items: &[(usize, DType)]) -> Result<Option<usize>> {
    let gpu = rec.gpu();
    if whole.iter().all(|t| t.whole(gpu).is_ok()) {
        return Ok(None);
    }
    let mut per = usize::MAX;
    for &(item, dtype) in items {
        per = per.min(items_per_binding(gpu, item, dtype).map_err(|e| match e {
            KernelError::TooLarge { bytes, limit, limit_name, .. } => KernelError::TooLarge {
                what: format!("{OP}: one frame of {item} values"),
                bytes,
                limit,
                limit_name,
            },
            other => other,
        })?);
    }
    Ok(Some(per))
}

/// Records `sample[b, f, 0..plane] = T(lat[f] / div)` for every batch entry `b`. `lat`: f32 `[frames·plane]`;
/// `sample`: the UNet input `[batch·frames·stride]` in the model dtype.
pub fn record_scale_input(
    rec: &mut Recorder,
    lat: &Tensor,
    sample: &Tensor,
    l: &StepLayout,
    s: &StepScalars,
) -> Result<()> {
    let prm = params(l, s)?;
    want(lat, "latents", l.n(), DType::F32)?;
    want(sample, "UNet input", l.batch * l.frames * l.stride, sample.dtype())?;
    let gpu = rec.gpu();
    let pipe = gpu.pipelines().get(&gpu.device, &SAMPLER, "scale_input", sample.dtype(), &[])?;
    // Whole tensors in one dispatch when they fit one binding; else frame chunks, one batch entry at a time, each
    // binding a window of the latents and of that entry's UNet input.
    let Some(per) =
        frames_per_dispatch(rec, &[lat, sample], &[(l.plane, DType::F32), (l.stride, sample.dtype())])?
    else {
        let (lw, sw) = (lat.whole(gpu)?, sample.whole(gpu)?);
        let prm =
            Params { b_stride: (l.frames * l.stride) as u32, base_lat: lw.base, base_s: sw.base, ..prm };
        let groups = grid(gpu, prm.n.div_ceil(WG));
        return rec.dispatch_bound(&pipe, bytemuck::bytes_of(&prm), vec![(1, lw), (2, sw)], groups);
    };
    for f0 in (0..l.frames).step_by(per) {
        let nf = per.min(l.frames - f0);
        let lw = lat.window(gpu, f0 * l.plane, nf * l.plane)?;
        for b in 0..l.batch {
            let sw = sample.window(gpu, (b * l.frames + f0) * l.stride, (nf - 1) * l.stride + l.plane)?;
            let n = (nf * l.plane) as u32;
            let prm = Params { n, batch: 1, fr0: f0 as u32, base_lat: lw.base, base_s: sw.base, ..prm };
            let groups = grid(gpu, n.div_ceil(WG));
            rec.dispatch_bound(&pipe, bytemuck::bytes_of(&prm), vec![(1, lw.clone()), (2, sw)], groups)?;
        }
    }
    Ok(())
}

/// Records the guidance and Euler update of one step in place on `lat` (f32 `[frames·plane]`) from the UNet
/// output `v` (`[batch·frames·plane]`, model dtype) and per-frame guidance `scales` (f32 `[frames]`, already
/// rounded to the model dtype); sets `flag` (a 4-byte tensor, zeroed by the caller) when a result is NaN or
/// infinite.
pub fn record_cfg_euler(
    rec: &mut Recorder,
    v: &Tensor,
    scales: &Tensor,
    lat: &Tensor,
    flag: &Tensor,
    l: &StepLayout,
    s: &StepScalars,
) -> Result<()> {
    let prm = params(l, s)?;
    want(lat, "latents", l.n(), DType::F32)?;
    want(v, "model output", l.batch * l.n(), v.dtype())?;
    want(scales, "guidance scales", l.frames, DType::F32)?;
    want(flag, "non-finite flag", 1, DType::F32)?;
    let gpu = rec.gpu();
    let pipe = gpu.pipelines().get(&gpu.device, &SAMPLER, "cfg_euler", v.dtype(), &[])?;
    let (scw, fw) = (scales.whole(gpu)?, flag.whole(gpu)?);
    // The unconditional and conditional halves of `v` are bound separately (the same window twice when `v` fits
    // whole), so frame chunks bind only their own rows of each.
    let Some(per) = frames_per_dispatch(rec, &[lat, v], &[(l.plane, DType::F32), (l.plane, v.dtype())])?
    else {
        let (lw, vw) = (lat.whole(gpu)?, v.whole(gpu)?);
        let base_c = vw.base + if l.cfg() { prm.n } else { 0 };
        let prm = Params { base_lat: lw.base, base_u: vw.base, base_c, ..prm };
        let bound = vec![(1, lw), (3, vw.clone()), (4, scw), (5, fw), (6, vw)];
        return rec.dispatch_bound(&pipe, bytemuck::bytes_of(&prm), bound, grid(gpu, prm.n.div_ceil(WG)));
    };
    for f0 in (0..l.frames).step_by(per) {
        let nf = per.min(l.frames - f0);
        let (i0, len) = (f0 * l.plane, nf * l.plane);
        let (lw, uw) = (lat.window(gpu, i0, len)?, v.window(gpu, i0, len)?);
        let cw = if l.cfg() { v.window(gpu, l.n() + i0, len)? } else { uw.clone() };
        let n = len as u32;
        let prm = Params { n, fr0: f0 as u32, base_lat: lw.base, base_u: uw.base, base_c: cw.base, ..prm };
        let bound = vec![(1, lw), (3, uw), (4, scw.clone()), (5, fw.clone()), (6, cw)];
        rec.dispatch_bound(&pipe, bytemuck::bytes_of(&prm), bound, grid(gpu, n.div_ceil(WG)))?;
    }
    Ok(())
}

/// Float64 references with the kernels' roundings (`dtype` F16: rounded to f16 where the reference rounds).
pub mod reference {
    use super::{StepLayout, StepScalars};
    use crate::dtype::DType;

    fn rt(dtype: DType, x: f64) -> f64 {
        match dtype {
            DType::F32 => x,
            DType::F16 => half::f16::from_f64(x).to_f64(),
        }
    }

    /// The UNet input after [`super::record_scale_input`] (`sample` holds the other channels).
    pub fn scale_input(
        lat: &[f64],
        sample: &[f64],
        l: &StepLayout,
        s: &StepScalars,
        dtype: DType,
    ) -> Vec<f64> {
        let mut out = sample.to_vec();
        for b in 0..l.batch {
            for f in 0..l.frames {
                for k in 0..l.plane {
                    out[(b * l.frames + f) * l.stride + k] = rt(dtype, lat[f * l.plane + k] / s.div as f64);
                }
            }
        }
        out
    }

    /// The latents after [`super::record_cfg_euler`].
    pub fn cfg_euler(
        v: &[f64],
        scales: &[f64],
        lat: &[f64],
        l: &StepLayout,
        s: &StepScalars,
        dtype: DType,
    ) -> Vec<f64> {
        let n = l.frames * l.plane;
        (0..n)
            .map(|i| {
                let g = if l.batch == 2 {
                    let (u, c) = (v[i], v[n + i]);
                    rt(dtype, u + rt(dtype, scales[i / l.plane] * rt(dtype, c - u)))
                } else {
                    v[i]
                };
                let x = lat[i];
                let x0 = rt(dtype, g * s.c_out as f64) + x / s.q as f64;
                rt(dtype, x + (x - x0) / s.sigma as f64 * s.dt as f64)
            })
            .collect()
    }
}
