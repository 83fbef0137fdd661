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
use crate::tensor::Tensor;
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
    _pad: u32,
}

/// Layout of the uniform `Params` of `sampler.wgsl`.
pub const PARAMS_LAYOUT: crate::params::ParamsLayout =
    crate::params_layout!(Params { n, plane, frames, cfg, stride, batch, div, c_out, q, sigma, dt, _pad });

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
        _pad: 0,
    })
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
    let groups = grid(gpu, prm.n.div_ceil(WG));
    rec.dispatch_bound(
        &pipe,
        bytemuck::bytes_of(&prm),
        vec![(1, lat.whole(gpu)?), (2, sample.whole(gpu)?)],
        groups,
    )
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
    let groups = grid(gpu, prm.n.div_ceil(WG));
    let bound =
        vec![(1, lat.whole(gpu)?), (3, v.whole(gpu)?), (4, scales.whole(gpu)?), (5, flag.whole(gpu)?)];
    rec.dispatch_bound(&pipe, bytemuck::bytes_of(&prm), bound, groups)
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
