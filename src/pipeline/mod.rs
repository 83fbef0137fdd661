//! Image (+ trajectories) → latents → frames: `StableVideoDiffusionPipeline.__call__` of diffusers 0.27.0 as
//! the official code runs it (docs/reference/pipeline.md), on our UNet, VAE and CLIP.
//!
//! Random draws come from the reference stream in the reference's order: the noise-augmentation noise, the
//! initial latents, then per step the trajectory subsets (one `randperm` per trajectory layer, execution order)
//! and, when emulating a CPU reference run, the Euler step's unused noise.

mod memory;
pub mod nvs_guidance;
pub mod resize;
pub mod staged;

use std::path::{Path, PathBuf};

use trajattn_kernels::ops::sampler::{record_cfg_euler, record_scale_input, StepLayout, StepScalars};
use trajattn_kernels::{DType, Gpu, Recorder, Tensor};

use crate::models::clip::ClipVision;
use crate::models::config::{ClipVisionConfig, ConfigError, UNetConfig, VaeConfig};
use crate::models::unet::{GraphOptions, TimeContext, Trajectories, UNet, UNetError, UNetGraph, UNetShape};
use crate::models::vae::{Vae, VaePart};
use crate::rng::{Generator, RandnPath};
use crate::sampler::{self, round_to, Schedule};
use memory::check_memory;
pub use memory::plan_memory;
use staged::Staged;

/// Errors of a generation.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Model(#[from] UNetError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Kernel(#[from] trajattn_kernels::KernelError),
    #[error("{0}")]
    Input(String),
    /// A stage produced NaN or infinity: stops the run instead of writing a black video.
    #[error("{stage} produced {what} ({count} of {total} values){hint}")]
    NonFinite { stage: String, what: &'static str, count: usize, total: usize, hint: String },
}

/// `Err` naming `stage` when `v` holds NaN or infinity; `hint` suggests a remedy.
fn check_finite(stage: impl Into<String>, v: &[f32], dtype: DType) -> Result<()> {
    let nan = v.iter().filter(|x| x.is_nan()).count();
    let inf = v.iter().filter(|x| x.is_infinite()).count();
    if nan + inf == 0 {
        return Ok(());
    }
    let hint = match dtype {
        DType::F16 => {
            "; f16 overflowed: try --dtype f32, or smaller guidance / noise augmentation / NVS step size"
        }
        DType::F32 => "; try smaller guidance, noise augmentation or NVS step size, and check the weights",
    };
    Err(PipelineError::NonFinite {
        stage: stage.into(),
        what: if nan > 0 { "NaN" } else { "infinity" },
        count: nan + inf,
        total: v.len(),
        hint: hint.to_string(),
    })
}

type Result<T> = std::result::Result<T, PipelineError>;

fn sampler_err(e: sampler::SamplerError) -> PipelineError {
    PipelineError::Input(e.to_string())
}

fn input_err(msg: impl Into<String>) -> PipelineError {
    PipelineError::Input(msg.into())
}

/// What a generation is asked to do (defaults: the official run's values).
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub frames: usize,
    pub steps: usize,
    pub seed: u64,
    /// Output size in pixels (the image is resized to it).
    pub width: usize,
    pub height: usize,
    pub fps: usize,
    pub motion_bucket_id: usize,
    pub noise_aug_strength: f32,
    pub min_guidance: f32,
    pub max_guidance: f32,
    pub decode_chunk: usize,
    /// Device precision of the UNet, CLIP and VAE decoder (the VAE encoder always runs in f32, as the reference).
    pub dtype: DType,
    /// Precision of the initial-latent noise draw (and of the reference's other model-dtype draws). Default f16,
    /// as the official (fp16) run draws it, so a seed means one video whatever `dtype` is (f32 then only adds
    /// precision); f32 reproduces a diffusers run in float32.
    pub noise_dtype: DType,
    pub time_context: TimeContext,
    /// Draw the Euler step's unused noise from the stream, as the reference does when run on the CPU (changes
    /// the trajectory subsets of later steps; the GPU reference draws it elsewhere).
    pub cpu_reference_stream: bool,
    /// NVS-solver guidance before every step (docs/reference/nvs-guidance.md §1); `None`: the plain sampler.
    pub nvs: Option<nvs_guidance::NvsConditioning>,
    /// Keep the latents after each step's guidance and after each step in [`Generated::trace`].
    pub trace: bool,
    /// Device memory the run may use (bytes): [`generate`] refuses before any GPU work when the planned UNet
    /// stage (all loaded weights resident, plus the UNet step's planned intermediates) needs more.
    pub gpu_memory: Option<u64>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            frames: 25,
            steps: 25,
            seed: 12345,
            width: 1024,
            height: 576,
            fps: 7,
            motion_bucket_id: 127,
            noise_aug_strength: 0.02,
            min_guidance: 1.0,
            max_guidance: 3.0,
            decode_chunk: 8,
            dtype: DType::F32,
            noise_dtype: DType::F16,
            time_context: TimeContext::Faithful,
            cpu_reference_stream: false,
            nvs: None,
            trace: false,
            gpu_memory: None,
        }
    }
}

/// Largest motion bucket, fps, and other integer conditioning values: the official run feeds them to the model
/// in f16, which holds every integer up to 2048 exactly (the model was trained on 0–255 buckets and 3–30 fps).
pub const MAX_CONDITIONING_INT: usize = 2048;
/// Largest noise augmentation strength accepted (SVD was trained on ≤ ~1; 0.02 is the default).
pub const MAX_NOISE_AUG: f32 = 10.0;
/// Largest |guidance scale| accepted (the official default is 1 → 3).
pub const MAX_GUIDANCE: f32 = 100.0;

impl GenerateOptions {
    /// Checks every option against the resource limits and the ranges the model can represent, before any
    /// allocation or GPU work; errors name the option, its value and the accepted range.
    pub fn validate(&self) -> Result<()> {
        use crate::limits::{check_range, check_video, STEPS};
        let lim = |e: crate::limits::LimitError| input_err(e.to_string());
        if self.frames == 0 || self.steps == 0 || self.decode_chunk == 0 {
            return Err(input_err("frames, steps and decode chunk must be at least 1"));
        }
        check_video(self.frames, self.width, self.height).map_err(lim)?;
        STEPS.check(self.steps as u64).map_err(lim)?;
        let repr = "the model receives it as an f16 number, exact up to 2048";
        check_range("fps", self.fps, 1, MAX_CONDITIONING_INT, repr).map_err(lim)?;
        check_range("motion bucket id", self.motion_bucket_id, 0, MAX_CONDITIONING_INT, repr).map_err(lim)?;
        check_range(
            "noise augmentation strength",
            self.noise_aug_strength,
            0.0,
            MAX_NOISE_AUG,
            "default 0.02",
        )
        .map_err(lim)?;
        for (what, g) in [("min guidance", self.min_guidance), ("max guidance", self.max_guidance)] {
            check_range(what, g, -MAX_GUIDANCE, MAX_GUIDANCE, "defaults 1 and 3").map_err(lim)?;
        }
        if let Some(n) = &self.nvs {
            check_range("NVS step size", n.params.lr, 0.0, 10.0, "default 0.02").map_err(lim)?;
        }
        Ok(())
    }
}

/// The models of a diffusers SVD folder. The UNet is on the device from loading on; CLIP, the VAE encoder and
/// the VAE decoder are read from the folder when a stage of [`generate`] needs them and leave the device after
/// it ([`staged`]), so they are never resident together with the UNet's intermediates.
pub struct Svd {
    pub unet: Staged<UNet, UNetConfig>,
    /// Whether the UNet holds the trajectory branch's weights.
    pub unet_trajectory: bool,
    /// The VAE's encoder half, in f32 (force_upcast).
    pub vae_encoder: Staged<Vae, VaeConfig>,
    /// The VAE's decoder half, in the model dtype.
    pub vae_decoder: Staged<Vae, VaeConfig>,
    pub clip: Staged<ClipVision, ClipVisionConfig>,
    pub dir: PathBuf,
}

impl Svd {
    /// Loads `unet/` of a diffusers folder, checks the configs and weight names of `vae/` and
    /// `image_encoder/` (their weights are read when a stage needs them), and that the parts fit together.
    pub fn load(gpu: &Gpu, dir: &Path, trajectory_weights: Option<&Path>, dtype: DType) -> Result<Svd> {
        for sub in ["unet", "vae", "image_encoder"] {
            if !dir.join(sub).join("config.json").exists() {
                return Err(input_err(format!(
                    "{} is not a diffusers SVD folder: {sub}/config.json is missing (expected model_index.json, unet/, \
                     vae/, image_encoder/, feature_extractor/, scheduler/)",
                    dir.display()
                )));
            }
        }
        let unet = Staged::unet(gpu, &dir.join("unet"), trajectory_weights, dtype)?;
        Self::with_unet(unet, trajectory_weights.is_some(), dir, dtype)
    }

    /// `unet` (holding the trajectory weights or not) with the VAE and image encoder of the diffusers folder
    /// `dir` (see [`Svd::load`]).
    pub fn with_unet(
        unet: Staged<UNet, UNetConfig>,
        unet_trajectory: bool,
        dir: &Path,
        dtype: DType,
    ) -> Result<Svd> {
        let vae_encoder = Staged::vae(&dir.join("vae"), DType::F32, VaePart::Encoder)?;
        let vae_decoder = Staged::vae(&dir.join("vae"), dtype, VaePart::Decoder)?;
        let clip = Staged::clip(&dir.join("image_encoder"), dtype)?;
        let lc = vae_encoder.cfg.latent_channels;
        if unet.cfg.in_channels != 2 * lc {
            return Err(input_err(format!(
                "the UNet takes {} input channels but the VAE's latents have {lc} (the UNet needs 2 × latent channels: \
                 noisy latents and image latents)",
                unet.cfg.in_channels
            )));
        }
        if unet.cfg.out_channels != lc {
            return Err(input_err(format!(
                "the UNet predicts {} channels but the VAE's latents have {lc}",
                unet.cfg.out_channels
            )));
        }
        if unet.cfg.cross_attention_dim[0] != clip.cfg.projection_dim {
            return Err(input_err(format!(
                "the UNet's cross_attention_dim is {} but the image encoder projects to {}",
                unet.cfg.cross_attention_dim[0], clip.cfg.projection_dim
            )));
        }
        Ok(Svd { unet, unet_trajectory, vae_encoder, vae_decoder, clip, dir: dir.to_path_buf() })
    }

    /// Pixel size rule: multiples of VAE factor × 2^(UNet levels − 1).
    pub fn size_unit(&self) -> usize {
        self.vae_encoder.scale_factor() << (self.unet.cfg.n_blocks() - 1)
    }
}

/// The result of a generation.
pub struct Generated {
    /// Final latents `[F, C, h, w]` (before decoding).
    pub latents: Vec<f32>,
    /// Decoded frames `[F, 3, H, W]` in about [-1, 1].
    pub decoded: Vec<f32>,
    /// Frames as RGB bytes, `[F, H, W, 3]`.
    pub frames_u8: Vec<u8>,
    pub width: usize,
    pub height: usize,
    pub frames: usize,
    /// With [`GenerateOptions::trace`]: `("step.{i}.latents_guided" | "step.{i}.latents_out", latents)`.
    pub trace: Vec<(String, Vec<f32>)>,
    /// Measured device memory by stage (`"CLIP"`, `"VAE encode"`, `"UNet graph"`, `"UNet steps"`,
    /// `"VAE decode"`): the most bytes of pooled buffers (weights included) held at once during the stage.
    pub memory: Vec<(String, u64)>,
}

/// Records the pool's peak since the last mark as `stage` (and logs it), then restarts the peak.
fn mark_memory(gpu: &Gpu, memory: &mut Vec<(String, u64)>, stage: &str) {
    let peak = gpu.pool().stats().peak_in_use;
    log::info!("memory: {stage}: device peak {:.2} GiB", peak as f64 / (1u64 << 30) as f64);
    memory.push((stage.to_string(), peak));
    gpu.pool().reset_peaks();
}

/// Progress callbacks (the CLI draws bars).
pub trait Progress {
    fn stage(&mut self, _name: &str, _total: usize) {}
    fn advance(&mut self, _done: usize) {}
}

/// No progress output.
pub struct Quiet;
impl Progress for Quiet {}

/// `clamp(x/2 + 0.5, 0, 1)·255` rounded half to even (NumPy), `[F, 3, H, W]` → `[F, H, W, 3]`.
pub fn to_uint8(decoded: &[f32], frames: usize, h: usize, w: usize) -> Vec<u8> {
    let mut out = vec![0u8; frames * h * w * 3];
    for f in 0..frames {
        for c in 0..3 {
            for p in 0..h * w {
                let x = decoded[(f * 3 + c) * h * w + p];
                let v = ((x / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0).round_ties_even();
                out[(f * h * w + p) * 3 + c] = v as u8;
            }
        }
    }
    out
}

/// The CLIP input of docs/reference/pipeline.md §3 from `image [3, H, W]` in [0, 1]: `2x − 1`, antialiased
/// resize to `size × size`, `(x + 1)/2`, CLIP normalisation.
pub fn clip_pixels(image: &[f32], h: usize, w: usize, size: usize) -> Vec<f32> {
    const MEAN: [f32; 3] = [0.48145466, 0.4578275, 0.40821073];
    // The preprocessor config's values as written (f32 rounds the last digit).
    #[allow(clippy::excessive_precision)]
    const STD: [f32; 3] = [0.26862954, 0.26130258, 0.27577711];
    let x: Vec<f32> = image.iter().map(|v| 2.0 * v - 1.0).collect();
    let r = resize::antialias_resize(&x, 3, h, w, size, size);
    let mut out = Vec::with_capacity(r.len());
    for c in 0..3 {
        for p in 0..size * size {
            let v = (r[c * size * size + p] + 1.0) / 2.0;
            out.push((v - MEAN[c]) / STD[c]);
        }
    }
    out
}

/// RGB bytes `[H, W, 3]` → planar `[3, H, W]` in [0, 1].
fn planar_unit(rgb: &[u8], h: usize, w: usize) -> Vec<f32> {
    let mut planar = vec![0f32; 3 * h * w];
    for p in 0..h * w {
        for c in 0..3 {
            planar[c * h * w + p] = rgb[p * 3 + c] as f32 / 255.0;
        }
    }
    planar
}

/// The generation's first two draws from the reference stream (`torch.manual_seed(seed)`): the noise
/// augmentation of the `[3, H, W]` image (float32, as the reference's image tensor), then the initial latents
/// before scaling by σ_max, drawn in `noise_dtype` (returned as f32 values).
pub fn initial_draws(
    seed: u64,
    image_numel: usize,
    latent_numel: usize,
    noise_dtype: DType,
) -> std::result::Result<(Generator, Vec<f32>, Vec<f32>), crate::rng::RngError> {
    let mut rng = Generator::new(seed);
    let path = RandnPath::default();
    let aug = rng.randn_f32(image_numel, path)?;
    let lat = match noise_dtype {
        DType::F32 => rng.randn_f32(latent_numel, path)?,
        DType::F16 => rng.randn_f16(latent_numel)?.iter().map(|v| v.to_f32()).collect(),
    };
    Ok((rng, aug, lat))
}

/// Runs the whole pipeline on `image` (RGB bytes `[H, W, 3]` already at the output size).
pub fn generate(
    gpu: &Gpu,
    svd: &Svd,
    image: &[u8],
    trajectories: Option<Trajectories>,
    o: &GenerateOptions,
    progress: &mut dyn Progress,
) -> Result<Generated> {
    let (hh, ww, f) = (o.height, o.width, o.frames);
    let unit = svd.size_unit();
    if hh == 0 || ww == 0 || !hh.is_multiple_of(unit) || !ww.is_multiple_of(unit) {
        return Err(input_err(format!(
            "width and height must be positive multiples of {unit} pixels (got {ww}×{hh})"
        )));
    }
    if image.len() != hh * ww * 3 {
        return Err(input_err(format!(
            "image has {} bytes; {ww}×{hh} RGB needs {}",
            image.len(),
            hh * ww * 3
        )));
    }
    o.validate()?;
    let dtype = o.dtype;
    let path = RandnPath::default();
    let rn = |e: crate::rng::RngError| input_err(e.to_string());
    let lc = svd.vae_encoder.cfg.latent_channels;
    let f8 = svd.vae_encoder.scale_factor();
    let (h, w) = (hh / f8, ww / f8);
    let plane = lc * h * w;
    // Both draws up front (nothing else draws before the latents): noise augmentation, initial latents.
    let (mut rng, noise, latent_noise) =
        initial_draws(o.seed, 3 * hh * ww, f * plane, o.noise_dtype).map_err(rn)?;
    // The reference's later draws of model-output shape (CPU Euler steps, NVS crops) use the model dtype.
    let draw_dropped = |rng: &mut Generator, n: usize| -> Result<()> {
        match o.noise_dtype {
            DType::F32 => drop(rng.randn_f32(n, path).map_err(rn)?),
            DType::F16 => drop(rng.randn_f16(n).map_err(rn)?),
        }
        Ok(())
    };

    if let Some(budget) = o.gpu_memory {
        check_memory(gpu, svd, o, trajectories.as_ref().map(|t| (t.n, t.grouping)), budget)?;
    }
    let mut memory = Vec::new();
    // The UNet is on the device from conditioning to the last step (read again if an earlier generation
    // released it).
    let unet = svd.unet.get(gpu)?;
    gpu.pool().reset_peaks();
    // 1. Image in [0, 1], planar.
    let planar = planar_unit(image, hh, ww);
    // 2. CLIP conditioning.
    progress.stage("encoding", 2);
    let side = svd.clip.cfg.image_size;
    let pixels = clip_pixels(&planar, hh, ww, side);
    // CLIP is on the device for this stage only (as the VAE encoder and decoder for theirs).
    let embeds = svd.clip.get(gpu)?.encode(gpu, &pixels, 1);
    svd.clip.release(gpu);
    let embeds = embeds?;
    check_finite("the CLIP image encoder", &embeds, dtype)?;
    mark_memory(gpu, &mut memory, "CLIP");
    let d = embeds.len();
    let mut context = vec![0f32; d];
    context.extend(embeds.iter().map(|&v| round_to(dtype, v)));
    progress.advance(1);
    // 3. VAE conditioning latents: noise augmentation (first draw), f32 encoder, posterior mean.
    let vae_in: Vec<f32> =
        planar.iter().zip(&noise).map(|(&x, &n)| (2.0 * x - 1.0) + o.noise_aug_strength * n).collect();
    let encoder = svd.vae_encoder.get(gpu)?;
    let z = encoder.encode(gpu, &vae_in, 1, hh, ww);
    let z = match z {
        Ok(z) => z,
        Err(e) => {
            drop(encoder);
            svd.vae_encoder.release(gpu);
            return Err(e.into());
        }
    };
    check_finite("the VAE encoder", &z, DType::F32)?;
    let z: Vec<f32> = z.iter().map(|&v| round_to(dtype, v)).collect();
    progress.advance(2);
    // 4. Added time ids, schedule, initial latents (second draw), guidance scales.
    let added = sampler::added_time_ids(
        o.fps as u32,
        o.motion_bucket_id as u32,
        o.noise_aug_strength as f64,
        dtype,
        true,
    );
    let sched = Schedule::svd(o.steps).map_err(sampler_err)?;
    let init = sched.init_noise_sigma;
    let latents: Vec<f32> = latent_noise.iter().map(|&v| round_to(dtype, v * init)).collect();
    let guidance = sampler::guidance_scales(o.min_guidance, o.max_guidance, f, dtype).map_err(sampler_err)?;
    let cfg_on = sampler::cfg_enabled(o.max_guidance);
    // The warped frames' VAE latents for NVS guidance (with the encoder still on the device).
    let warped = (|| -> Result<Option<(&nvs_guidance::NvsConditioning, Vec<f32>)>> {
        let Some(cond) = &o.nvs else { return Ok(None) };
        if !cfg_on {
            return Err(input_err(
                "NVS guidance follows the official pipeline, which needs classifier-free guidance \
                 (max guidance > 1)",
            ));
        }
        cond.check(f, ww, hh, f8)?;
        // Preprocessing without noise augmentation, f32 encoder, mean.
        progress.stage("encoding warped frames", cond.images.len());
        let mut encoded = Vec::with_capacity(cond.images.len() * plane);
        for (k, img) in cond.images.iter().enumerate() {
            let px: Vec<f32> = planar_unit(img, hh, ww).iter().map(|&v| 2.0 * v - 1.0).collect();
            encoded.extend(encoder.encode(gpu, &px, 1, hh, ww)?);
            progress.advance(k + 1);
        }
        Ok(Some((cond, encoded)))
    })();
    drop(encoder);
    svd.vae_encoder.release(gpu);
    let warped = warped?;
    mark_memory(gpu, &mut memory, "VAE encode");
    let mut guide = match warped {
        None => None,
        Some((cond, encoded)) => {
            let dims = (f, lc, h, w);
            Some(nvs_guidance::Guide::new(&unet, cond, &encoded, &z, &sched, dims, dtype, d, &added)?)
        }
    };
    let batch = if cfg_on { 2 } else { 1 };
    let shape = UNetShape { batch, frames: f, height: h, width: w };
    let opts = GraphOptions { time_context: o.time_context, chunk_elems: None };
    let n_traj = trajectories.as_ref().map(|t| t.n);
    let graph = UNetGraph::build(gpu, &unet, shape, opts, trajectories)?;
    let ctx = if cfg_on { context } else { context[d..].to_vec() };
    let added = if cfg_on { added } else { added[..3].to_vec() };
    graph.set_conditioning(gpu, &ctx, &added)?;
    {
        let a = graph.arena_stats();
        let p = crate::graph::unet_plan::plan_unet(&svd.unet.cfg, batch, f, h, w, dtype.size(), n_traj);
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        log::info!(
            "memory: UNet step intermediates: {:.1} MiB in {} arenas (live peak {:.1} MiB); plan {:.1} MiB (live \
             peak {:.1} MiB)",
            mib(a.allocated_bytes),
            a.buffers,
            mib(a.peak_live_bytes),
            mib(p.peak_activation_bytes),
            mib(p.peak_live_bytes)
        );
    }
    mark_memory(gpu, &mut memory, "UNet graph");
    // 5. Denoising, on the device: the latents stay there between steps (scaled input, CFG and Euler update are
    // kernels, `ops::sampler`); NVS guidance and traces bring them to the host when they need them.
    progress.stage("denoising", o.steps);
    let cin = svd.unet.cfg.in_channels;
    let layout = StepLayout { frames: f, plane, batch, stride: cin * h * w };
    // The UNet input once: image latents in the conditional half (zeros in the unconditional one); its noisy
    // channels are rewritten by the scale kernel every step.
    let mut sample = vec![0f32; batch * f * cin * h * w];
    for b in 0..batch {
        for fr in 0..f {
            if !cfg_on || b == 1 {
                sample[(b * f + fr) * cin * h * w + plane..][..plane].copy_from_slice(&z[..plane]);
            }
        }
    }
    crate::models::unet::upload_input(gpu, graph.input(), &sample)?;
    drop(sample);
    let lat_t = Tensor::from_f32(gpu, &latents, &[f * plane], DType::F32)?;
    let scales_t = Tensor::from_f32(gpu, &guidance, &[f], DType::F32)?;
    let flag = Tensor::from_f32(gpu, &[0.0], &[1], DType::F32)?;
    let mut trace = Vec::new();
    for i in 0..o.steps {
        if let Some(gd) = guide.as_mut() {
            let mut host = lat_t.to_f32(gpu)?;
            let g = gd.pass(gpu, &sched, i, &host)?;
            host.iter_mut().zip(&g).for_each(|(l, gv)| *l = round_to(dtype, *l - gv));
            check_finite(format!("NVS guidance at step {} of {}", i + 1, o.steps), &host, dtype)?;
            crate::models::unet::upload_input(gpu, &lat_t, &host)?;
            if o.cpu_reference_stream {
                // Each crop's step_single draws (and ignores) noise of the crop's shape.
                for n in gd.crop_draws() {
                    draw_dropped(&mut rng, n)?;
                }
            }
            if o.trace {
                trace.push((format!("step.{i}.latents_guided"), host));
            }
        }
        let sc = StepScalars::new(sched.sigmas[i], sched.sigmas[i + 1]);
        let mut rec = Recorder::new(gpu);
        record_scale_input(&mut rec, &lat_t, graph.input(), &layout, &sc)?;
        rec.run()?;
        let idx: Vec<Vec<usize>> = graph
            .traj_slots
            .iter()
            .map(|s| rng.randperm(n_traj.unwrap_or(0)).into_iter().take(s.m).map(|v| v as usize).collect())
            .collect();
        graph.run_on_input(gpu, &vec![sched.timesteps[i]; batch], &idx)?;
        // Per-frame guidance, then the v-prediction Euler step, in place on the device.
        let mut rec = Recorder::new(gpu);
        record_cfg_euler(&mut rec, graph.output(), &scales_t, &lat_t, &flag, &layout, &sc)?;
        rec.run()?;
        // A 4-byte read per step: the kernel flagged NaN or infinity in the new latents.
        if flag.to_f32(gpu)?[0].to_bits() != 0 {
            let host = lat_t.to_f32(gpu)?;
            check_finite(
                format!("denoising step {} of {} (UNet + Euler update)", i + 1, o.steps),
                &host,
                dtype,
            )?;
        }
        if o.cpu_reference_stream {
            // The CPU reference's Euler step draws (and ignores) noise of the model output's shape.
            draw_dropped(&mut rng, f * plane)?;
        }
        if o.trace {
            trace.push((format!("step.{i}.latents_out"), lat_t.to_f32(gpu)?));
        }
        progress.advance(i + 1);
    }
    let latents = lat_t.to_f32(gpu)?;
    mark_memory(gpu, &mut memory, "UNet steps");
    drop((graph, guide, lat_t, scales_t, flag));
    drop(unet);
    // The UNet and its intermediates leave the device before the decoder comes.
    svd.unet.release(gpu);
    gpu.pool().reset_peaks();

    // 6. Decoding in chunks.
    progress.stage("decoding", f);
    let sf = svd.vae_encoder.cfg.scaling_factor;
    let scaled: Vec<f32> = latents.iter().map(|&v| round_to(dtype, (v as f64 * (1.0 / sf)) as f32)).collect();
    let decoded = svd
        .vae_decoder
        .get(gpu)?
        .decode(gpu, &scaled, f, h, w, o.decode_chunk, |done| progress.advance(done));
    svd.vae_decoder.release(gpu);
    let decoded = decoded?;
    check_finite("the VAE decoder", &decoded, dtype)?;
    mark_memory(gpu, &mut memory, "VAE decode");
    let frames_u8 = to_uint8(&decoded, f, hh, ww);
    Ok(Generated { latents, decoded, frames_u8, width: ww, height: hh, frames: f, trace, memory })
}
