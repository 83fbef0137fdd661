//! SVD's `EulerDiscreteScheduler` (Karras sigmas, v-prediction, continuous timesteps) as diffusers 0.27.0
//! computes it (svd-pipeline.md §7): sigmas in float64 then float32, `c_noise = ¼·ln σ` in float32.

use half::f16;
use trajattn_kernels::DType;

/// The schedule of one generation.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    /// `S + 1` float32 sigmas, the last 0.
    pub sigmas: Vec<f32>,
    /// `S` UNet timesteps (`c_noise`).
    pub timesteps: Vec<f32>,
    /// `sqrt(σ_max² + 1)` in float32.
    pub init_noise_sigma: f32,
}

impl Schedule {
    /// Karras sigmas with σ_min 0.002, σ_max 700, ρ 7 for `steps` steps (at least 1).
    pub fn svd(steps: usize) -> Schedule {
        Self::karras(steps, 0.002, 700.0, 7.0)
    }

    /// Karras sigmas between `min` and `max` (NumPy's `linspace` ramp, float64, then float32).
    pub fn karras(steps: usize, min: f64, max: f64, rho: f64) -> Schedule {
        let steps = steps.max(1);
        let (lo, hi) = (min.powf(1.0 / rho), max.powf(1.0 / rho));
        let step = if steps > 1 { 1.0 / (steps - 1) as f64 } else { 0.0 };
        let mut sigmas: Vec<f32> = (0..steps)
            .map(|i| {
                // numpy.linspace: i·step, with the last point set to the end exactly.
                let ramp = if steps > 1 && i == steps - 1 { 1.0 } else { i as f64 * step };
                (hi + ramp * (lo - hi)).powf(rho) as f32
            })
            .collect();
        let timesteps = sigmas.iter().map(|&s| 0.25f32 * s.ln()).collect();
        let smax = sigmas.iter().copied().fold(f32::MIN, f32::max);
        let init_noise_sigma = (smax * smax + 1.0).sqrt();
        sigmas.push(0.0);
        Schedule { sigmas, timesteps, init_noise_sigma }
    }

    /// EDM preconditioning of step `i`: `(c_in, c_skip, c_out, c_noise)` in float32.
    pub fn precondition(&self, i: usize) -> (f32, f32, f32, f32) {
        let s = self.sigmas[i];
        let q = s * s + 1.0;
        (1.0 / q.sqrt(), 1.0 / q, -s / q.sqrt(), self.timesteps[i])
    }

    /// The v-prediction Euler step from `x` (the latents) with model output `v`, result rounded to `dtype`
    /// (the reference rounds `v·c_out` to the model dtype before adding `x/(σ²+1)` in float32).
    pub fn step(&self, i: usize, v: &[f32], x: &[f32], dtype: DType) -> Vec<f32> {
        let s = self.sigmas[i];
        let next = self.sigmas[i + 1];
        let q = s * s + 1.0;
        let c_out = -s / q.sqrt();
        let dt = next - s;
        let r = |a: f32| match dtype {
            DType::F32 => a,
            DType::F16 => f16::from_f32(a).to_f32(),
        };
        v.iter()
            .zip(x)
            .map(|(&v, &x)| {
                let x0 = r(v * c_out) + x / q;
                let d = (x - x0) / s;
                r(x + d * dt)
            })
            .collect()
    }
}
