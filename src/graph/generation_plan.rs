//! Memory plan of a whole generation, stage by stage: CLIP, VAE encode, one UNet step, VAE decode.
//!
//! The schedule is the pipeline's ([`crate::pipeline::generate`], [`crate::pipeline::staged`]): the UNet's
//! weights are on the device from conditioning to the last denoising step; CLIP and the VAE encoder only while
//! conditioning; the VAE decoder only while decoding, after the UNet has left. A stage's peak is therefore the
//! weights resident through it (the UNet's, except while decoding) plus the stage's own weights and buffers.
//!
//! Figures are bytes of the device buffer pool (size classes and arenas as allocated), the unit the pipeline
//! measures. Every stage is planned by recording its real graph on a dry twin of the device
//! ([`Gpu::dry_twin`]): weights of the right shapes without contents, every buffer and arena accounted as a run
//! allocates it, nothing allocated or run. CLIP, the VAE encoder and the VAE decoder record their forward pass;
//! the UNet step records what the pipeline holds through denoising (the graph with its conditioning and input,
//! the latents, guidance scales and NaN flag, and the sampler's recordings around the graph). The decoder's
//! stage is one chunk of `decode_chunk` frames (chunks are recorded and freed one after the other). The
//! analytic replay of [`crate::graph::unet_plan`] (what `trajattn plan` lists as alive at the UNet's peak) is
//! not the stage figure.

use trajattn_kernels::ops::sampler::{record_cfg_euler, record_scale_input, StepLayout, StepScalars};
use trajattn_kernels::ops::trajectory_attention::Grouping;
use trajattn_kernels::pool::size_class;
use trajattn_kernels::{DType, Gpu, Recorder, Tensor};

use crate::models::clip::ClipVision;
use crate::models::config::{ClipVisionConfig, UNetConfig, VaeConfig};
use crate::models::unet::{GraphOptions, TimeContext, Trajectories, UNet, UNetError, UNetGraph, UNetShape};
use crate::models::unet_keys::{expected_unet_keys, is_trajectory_key};
use crate::models::vae::{Vae, VaePart};

/// What a generation runs.
#[derive(Clone, Debug)]
pub struct GenerationShape {
    pub unet: UNetConfig,
    pub vae: VaeConfig,
    pub clip: ClipVisionConfig,
    /// Device precision of the UNet, CLIP and VAE decoder (the VAE encoder runs in f32).
    pub dtype: DType,
    pub frames: usize,
    /// Output size in pixels.
    pub height: usize,
    pub width: usize,
    /// Batch through the UNet (2 with classifier-free guidance).
    pub batch: usize,
    /// Number of trajectories (the trajectory branch runs), or none.
    pub trajectories: Option<usize>,
    /// The trajectory branch's attention grouping.
    pub grouping: Grouping,
    /// How the UNet's temporal layers see the image context.
    pub time_context: TimeContext,
    /// Whether the UNet holds the trajectory branch's weights (resident even when the branch does not run).
    pub trajectory_weights: bool,
    pub decode_chunk: usize,
}

/// The planned device memory of one stage, in bytes of pooled buffers.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StagePlan {
    /// `"CLIP"`, `"VAE encode"`, `"UNet step"` or `"VAE decode"`.
    pub stage: String,
    /// Weights held through the stage for other stages (the UNet's, except while decoding).
    pub resident_bytes: u64,
    /// Weights of the stage's own model (the UNet step: 0, its weights are the resident ones).
    pub weight_bytes: u64,
    /// Intermediates, inputs and outputs of the stage.
    pub work_bytes: u64,
    /// `resident_bytes + weight_bytes + work_bytes`.
    pub peak_bytes: u64,
}

/// Device bytes (pool size classes) of the UNet's weights as the loader uploads them: attn1's Q/K/V fused,
/// attn2's query and key never uploaded; with the trajectory branch, its fused Q/K/V and output projections.
pub fn unet_weight_pool_bytes(cfg: &UNetConfig, trajectory: bool, elem: u64) -> u64 {
    let mut total = 0;
    for (name, shape) in expected_unet_keys(cfg, trajectory) {
        let bytes = shape.iter().product::<usize>() as u64 * elem;
        let traj = is_trajectory_key(&name);
        let fused = name.ends_with(".to_q.weight") && (traj || name.contains("attn1"));
        let skipped = name.ends_with("attn2.to_q.weight")
            || name.ends_with("attn2.to_k.weight")
            || (name.ends_with(".to_k.weight") || name.ends_with(".to_v.weight"))
                && (traj || name.contains("attn1"))
            || traj && !(fused || name.contains(".to_out.0."));
        if fused {
            total += size_class(3 * bytes);
        } else if !skipped {
            total += size_class(bytes);
        }
    }
    total
}

/// The most bytes of the pool in use since its peak was last reset.
fn stage_peak(gpu: &Gpu) -> u64 {
    gpu.pool().stats().peak_in_use
}

/// Plans every stage of a generation of shape `s` for the device `gpu` (its alignment, binding limit and
/// kernels; nothing is allocated on it).
pub fn plan_generation(gpu: &Gpu, s: &GenerationShape) -> Result<Vec<StagePlan>, UNetError> {
    let dry = gpu.dry_twin();
    let elem = s.dtype.size();
    let resident = unet_weight_pool_bytes(&s.unet, s.trajectory_weights, elem);
    let stage = |name: &str, weights: u64, peak: u64| {
        let resident = if name == "VAE decode" { 0 } else { resident };
        StagePlan {
            stage: name.to_string(),
            resident_bytes: resident,
            weight_bytes: weights,
            work_bytes: peak - weights,
            peak_bytes: resident + peak,
        }
    };
    let mut out = Vec::new();
    // Each stage on an empty pool: its weights, then its recording.
    {
        let clip = ClipVision::reserved(&dry, &s.clip, s.dtype)?;
        let w = dry.pool().stats().in_use;
        let side = s.clip.image_size;
        clip.encode(&dry, &vec![0.0; s.clip.num_channels * side * side], 1)?;
        out.push(stage("CLIP", w, stage_peak(&dry)));
    }
    dry.pool().trim();
    dry.pool().reset_peaks();
    {
        let vae = Vae::reserved(&dry, &s.vae, DType::F32, VaePart::Encoder)?;
        let w = dry.pool().stats().in_use;
        vae.encode(&dry, &vec![0.0; s.vae.in_channels * s.height * s.width], 1, s.height, s.width)?;
        out.push(stage("VAE encode", w, stage_peak(&dry)));
    }
    dry.pool().trim();
    dry.pool().reset_peaks();
    let f8 = 1usize << (s.vae.block_out_channels.len() - 1);
    let (h, w) = (s.height / f8, s.width / f8);
    // The UNet stage as the pipeline runs it: the graph, its conditioning and input, the latents, guidance
    // scales and NaN flag, and one step's sampler recordings around the graph (the UNet's weights are the
    // resident ones; the dry twin's pool holds them during the recording, so they are subtracted).
    {
        let unet = UNet::reserved(&dry, s.unet.clone(), s.dtype, s.trajectory_weights)?;
        let wb = dry.pool().stats().in_use;
        let traj = s.trajectories.map(|n| Trajectories {
            coords: vec![0.0; s.frames * n * 2],
            visible: vec![true; s.frames * n],
            n,
            origin_w: s.width,
            origin_h: s.height,
            grouping: s.grouping,
        });
        let shape = UNetShape { batch: s.batch, frames: s.frames, height: h, width: w };
        let opts = GraphOptions { time_context: s.time_context, chunk_elems: None };
        let graph = UNetGraph::build(&dry, &unet, shape, opts, traj)?;
        let plane = s.unet.out_channels * h * w;
        let lat = Tensor::empty(&dry, &[s.frames * plane], DType::F32)?;
        let scales = Tensor::empty(&dry, &[s.frames], DType::F32)?;
        let flag = Tensor::empty(&dry, &[1], DType::F32)?;
        let layout =
            StepLayout { frames: s.frames, plane, batch: s.batch, stride: s.unet.in_channels * h * w };
        let sc = StepScalars::new(1.0, 0.5);
        let mut rec = Recorder::new(&dry);
        record_scale_input(&mut rec, &lat, graph.input(), &layout, &sc)?;
        rec.run()?;
        let mut rec = Recorder::new(&dry);
        record_cfg_euler(&mut rec, graph.output(), &scales, &lat, &flag, &layout, &sc)?;
        rec.run()?;
        out.push(stage("UNet step", 0, stage_peak(&dry) - wb));
    }
    dry.pool().trim();
    dry.pool().reset_peaks();
    {
        let vae = Vae::reserved(&dry, &s.vae, s.dtype, VaePart::Decoder)?;
        let wb = dry.pool().stats().in_use;
        let n = s.decode_chunk.min(s.frames).max(1);
        let lc = s.vae.latent_channels;
        vae.decode_clip(&dry, &vec![0.0; n * lc * h * w], n, h, w)?;
        out.push(stage("VAE decode", wb, stage_peak(&dry)));
    }
    Ok(out)
}

/// The stage with the largest peak.
pub fn largest(stages: &[StagePlan]) -> Option<&StagePlan> {
    stages.iter().max_by_key(|s| s.peak_bytes)
}
