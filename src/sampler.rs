//! SVD's sampler on the CPU: `EulerDiscreteScheduler` of diffusers 0.27.0 with SVD's config (Karras sigmas,
//! v-prediction, continuous timesteps; docs/reference/pipeline.md §7) and the per-step arithmetic around the
//! UNet call: initial noise scaling (§8), per-frame guidance and its CFG combination (§9, §10), noise
//! augmentation (§5) and the added time ids (§6).
//!
//! Every function reproduces the reference's float32 operation order. `dtype` is the model dtype: with
//! [`DType::F16`] each value the reference stores in fp16 is rounded to fp16 (kept in `f32` slices).

use half::f16;
pub use trajattn_kernels::DType;

/// SVD's `sigma_min`.
pub const SIGMA_MIN: f64 = 0.002;
/// SVD's `sigma_max`.
pub const SIGMA_MAX: f64 = 700.0;
/// Karras' ρ.
pub const RHO: f64 = 7.0;

/// Errors of the sampler (bad step counts, indices or buffer sizes).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SamplerError {
    #[error("the number of inference steps must be at least 1 (got {0})")]
    Steps(usize),
    #[error("Karras sigmas need 0 < sigma_min < sigma_max and rho > 0 (got sigma_min {min}, sigma_max {max}, rho {rho})")]
    Range { min: f64, max: f64, rho: f64 },
    #[error("step index {index} is out of range: the schedule has {steps} steps (indices 0..{steps})")]
    Index { index: usize, steps: usize },
    #[error("the number of frames must be at least 1 (got 0)")]
    Frames,
    #[error("{what}: expected {expected} values, found {found}")]
    Len { what: &'static str, expected: usize, found: usize },
}

type Result<T> = std::result::Result<T, SamplerError>;

/// Rounds `v` to the model dtype (fp16 round-to-nearest-even, or unchanged).
pub fn round_to(dtype: DType, v: f32) -> f32 {
    match dtype {
        DType::F32 => v,
        DType::F16 => f16::from_f32(v).to_f32(),
    }
}

fn check_len(what: &'static str, expected: usize, found: usize) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(SamplerError::Len { what, expected, found })
    }
}

/// EDM preconditioning of one step, float32 as the reference computes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Precondition {
    /// `1/sqrt(σ²+1)` (scale_model_input).
    pub c_in: f32,
    /// `1/(σ²+1)` (the step divides by `σ²+1` instead of multiplying by this).
    pub c_skip: f32,
    /// `−σ/sqrt(σ²+1)`.
    pub c_out: f32,
    /// `¼·ln σ`, the UNet timestep.
    pub c_noise: f32,
}

/// The sigmas and UNet timesteps of one generation.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    /// `S + 1` float32 sigmas, descending, the last one 0.
    pub sigmas: Vec<f32>,
    /// `S` UNet timesteps `c_noise = ¼·ln σ_i`.
    pub timesteps: Vec<f32>,
    /// `sqrt(max σ² + 1)` in float32 (700.000732421875 for SVD).
    pub init_noise_sigma: f32,
}

impl Schedule {
    /// SVD's schedule for `steps` inference steps (Karras, σ 0.002..700, ρ 7).
    pub fn svd(steps: usize) -> Result<Schedule> {
        Self::karras(steps, SIGMA_MIN, SIGMA_MAX, RHO)
    }

    /// Karras sigmas in float64 (NumPy's `linspace(0, 1, S)` ramp) cast to float32, then a final 0.
    pub fn karras(steps: usize, sigma_min: f64, sigma_max: f64, rho: f64) -> Result<Schedule> {
        if steps == 0 {
            return Err(SamplerError::Steps(steps));
        }
        if !(sigma_min > 0.0
            && sigma_max > sigma_min
            && rho > 0.0
            && sigma_max.is_finite()
            && rho.is_finite())
        {
            return Err(SamplerError::Range { min: sigma_min, max: sigma_max, rho });
        }
        let (lo, hi) = (sigma_min.powf(1.0 / rho), sigma_max.powf(1.0 / rho));
        let div = (steps - 1) as f64;
        let mut sigmas: Vec<f32> = (0..steps)
            .map(|i| {
                // numpy.linspace: i·(1/(S−1)), the end point set exactly.
                let ramp = if steps == 1 {
                    0.0 // linspace(0, 1, 1) = [0]
                } else if i + 1 == steps {
                    1.0
                } else {
                    i as f64 * (1.0 / div)
                };
                (hi + ramp * (lo - hi)).powf(rho) as f32
            })
            .collect();
        // ¼·ln σ correctly rounded to float32 (= the spec tables; diffusers' torch CPU log is off by 1 ulp in a few).
        let timesteps = sigmas.iter().map(|&s| (0.25 * (s as f64).ln()) as f32).collect();
        let max = sigmas.iter().copied().fold(f32::MIN, f32::max);
        let init_noise_sigma = (max * max + 1.0).sqrt();
        sigmas.push(0.0);
        Ok(Schedule { sigmas, timesteps, init_noise_sigma })
    }

    /// Number of inference steps `S`.
    pub fn steps(&self) -> usize {
        self.timesteps.len()
    }

    fn sigma(&self, i: usize) -> Result<f32> {
        if i < self.steps() {
            Ok(self.sigmas[i])
        } else {
            Err(SamplerError::Index { index: i, steps: self.steps() })
        }
    }

    /// `(c_in, c_skip, c_out, c_noise)` of step `i`.
    pub fn precondition(&self, i: usize) -> Result<Precondition> {
        let s = self.sigma(i)?;
        let q = s * s + 1.0;
        let r = q.sqrt();
        Ok(Precondition { c_in: 1.0 / r, c_skip: 1.0 / q, c_out: -s / r, c_noise: self.timesteps[i] })
    }

    /// Initial latents: `noise · init_noise_sigma` in float32, rounded once to `dtype`
    /// (docs/reference/pipeline.md §8).
    pub fn init_latents(&self, noise: &[f32], dtype: DType) -> Vec<f32> {
        noise.iter().map(|&n| round_to(dtype, n * self.init_noise_sigma)).collect()
    }

    /// `scale_model_input` of step `i` in place: `x / sqrt(σ_i² + 1)` (a true division), rounded to `dtype`.
    pub fn scale_model_input(&self, i: usize, x: &mut [f32], dtype: DType) -> Result<()> {
        let s = self.sigma(i)?;
        let d = (s * s + 1.0).sqrt();
        x.iter_mut().for_each(|v| *v = round_to(dtype, *v / d));
        Ok(())
    }

    /// The deterministic v-prediction Euler step `i` from latents `x` with model output `v` (§7.5): `v·c_out`
    /// rounded to `dtype`, plus `x/(σ²+1)`; `x + (x − x̂0)/σ·(σ_next − σ)`; result rounded to `dtype`.
    pub fn step(&self, i: usize, v: &[f32], x: &[f32], dtype: DType) -> Result<Vec<f32>> {
        let s = self.sigma(i)?;
        check_len("Euler step: model output vs latents", x.len(), v.len())?;
        let q = s * s + 1.0;
        let c_out = -s / q.sqrt();
        let dt = self.sigmas[i + 1] - s;
        Ok(v.iter()
            .zip(x)
            .map(|(&v, &x)| {
                let x0 = round_to(dtype, v * c_out) + x / q;
                let d = (x - x0) / s;
                round_to(dtype, x + d * dt)
            })
            .collect())
    }
}

/// Per-frame guidance scales `torch.linspace(min, max, frames)` (float32, CPU scalar path with fused
/// multiply-adds), rounded to `dtype`. Exact for frames ≤ 31; torch's vector path (≥ 32 frames) can differ by
/// 1 float32 ulp.
pub fn guidance_scales(min: f32, max: f32, frames: usize, dtype: DType) -> Result<Vec<f32>> {
    if frames == 0 {
        return Err(SamplerError::Frames);
    }
    if frames == 1 {
        return Ok(vec![round_to(dtype, min)]);
    }
    let step = (max - min) / (frames - 1) as f32;
    let half = frames / 2;
    Ok((0..frames)
        .map(|i| {
            let v = if i < half {
                step.mul_add(i as f32, min)
            } else {
                (-step).mul_add((frames - i - 1) as f32, max)
            };
            round_to(dtype, v)
        })
        .collect())
}

/// Whether the reference runs classifier-free guidance (`max_guidance_scale > 1`).
pub fn cfg_enabled(max_guidance: f32) -> bool {
    max_guidance > 1.0
}

/// CFG combination `v_u + g_f·(v_c − v_u)` per frame; `v` is the batch-2 output `[uncond; cond]`, each half
/// `frames × per_frame` values. With fp16 every operation is rounded to fp16 as PyTorch's half ops do.
pub fn cfg_combine(v: &[f32], scales: &[f32], per_frame: usize, dtype: DType) -> Result<Vec<f32>> {
    let half = scales.len() * per_frame;
    check_len("CFG: model output [2, frames, ...]", 2 * half, v.len())?;
    let (u, c) = v.split_at(half);
    Ok(u.iter()
        .zip(c)
        .enumerate()
        .map(|(k, (&u, &c))| {
            let g = scales[k / per_frame.max(1)];
            let diff = round_to(dtype, c - u);
            round_to(dtype, u + round_to(dtype, g * diff))
        })
        .collect())
}

/// Noise augmentation of the conditioning image: `x + strength·n` in float32 (the product rounded first).
pub fn noise_augment(image: &[f32], noise: &[f32], strength: f32) -> Result<Vec<f32>> {
    check_len("noise augmentation: noise vs image", image.len(), noise.len())?;
    Ok(image.iter().zip(noise).map(|(&x, &n)| x + strength * n).collect())
}

/// Added time ids `[fps − 1, motion_bucket_id, noise_aug_strength]` as `torch.tensor(..., dtype)` builds them
/// (each value rounded once from f64), repeated for the two CFG rows when `cfg` (`fps` is the pipeline's, e.g. 7).
pub fn added_time_ids(
    fps: u32,
    motion_bucket_id: u32,
    noise_aug_strength: f64,
    dtype: DType,
    cfg: bool,
) -> Vec<f32> {
    let row =
        [fps.saturating_sub(1) as f64, motion_bucket_id as f64, noise_aug_strength].map(|v| match dtype {
            DType::F32 => v as f32,
            DType::F16 => f16::from_f64(v).to_f32(),
        });
    let rows = if cfg { 2 } else { 1 };
    row.iter().copied().cycle().take(3 * rows).collect()
}

/// CFG batch of the image latents `[zeros; z]` (or `z` alone without CFG), rounded to `dtype`, not yet repeated
/// over frames.
pub fn cfg_image_latents(z: &[f32], dtype: DType, cfg: bool) -> Vec<f32> {
    let zeros = if cfg { z.len() } else { 0 };
    std::iter::repeat_n(0.0, zeros).chain(z.iter().map(|&v| round_to(dtype, v))).collect()
}
