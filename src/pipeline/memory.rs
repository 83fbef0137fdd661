//! The generation's memory plan for a loaded model and its options, and the up-front refusal of a run whose
//! plan exceeds the memory the user gave ([`crate::graph::generation_plan`] plans the stages).

use trajattn_kernels::ops::trajectory_attention::Grouping;
use trajattn_kernels::Gpu;

use super::{input_err, GenerateOptions, Result, Svd};
use crate::sampler;

/// The memory plan of `o`'s generation on `gpu`, stage by stage, under the pipeline's schedule
/// ([`crate::graph::generation_plan`]).
pub fn plan_memory(
    gpu: &Gpu,
    svd: &Svd,
    o: &GenerateOptions,
    trajectories: Option<(usize, Grouping)>,
) -> Result<Vec<crate::graph::generation_plan::StagePlan>> {
    let shape = crate::graph::generation_plan::GenerationShape {
        unet: svd.unet.cfg.clone(),
        vae: svd.vae_encoder.cfg.clone(),
        clip: svd.clip.cfg.clone(),
        dtype: o.dtype,
        frames: o.frames,
        height: o.height,
        width: o.width,
        batch: if sampler::cfg_enabled(o.max_guidance) { 2 } else { 1 },
        trajectories: trajectories.map(|t| t.0),
        grouping: trajectories.map_or(Grouping::Pairs, |t| t.1),
        time_context: o.time_context,
        trajectory_weights: svd.unet_trajectory,
        decode_chunk: o.decode_chunk,
    };
    Ok(crate::graph::generation_plan::plan_generation(gpu, &shape)?)
}

/// Refuses a run whose largest stage would need more than `budget` bytes (the UNet's weights while they are
/// resident, plus the stage's own weights and buffers).
pub(super) fn check_memory(
    gpu: &Gpu,
    svd: &Svd,
    o: &GenerateOptions,
    trajectories: Option<(usize, Grouping)>,
    budget: u64,
) -> Result<()> {
    let stages = plan_memory(gpu, svd, o, trajectories)?;
    let Some(worst) = crate::graph::generation_plan::largest(&stages) else { return Ok(()) };
    if worst.peak_bytes > budget {
        let gib = |b: u64| format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64);
        return Err(input_err(format!(
            "the {} stage needs {}: resident UNet weights {} + the stage's weights {} + its buffers {}; \
             more than the {} of device memory given",
            worst.stage,
            gib(worst.peak_bytes),
            gib(worst.resident_bytes),
            gib(worst.weight_bytes),
            gib(worst.work_bytes),
            gib(budget)
        )));
    }
    Ok(())
}
