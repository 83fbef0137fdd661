//! The bundled demo (assets/demo/README.md): a tiny SVD with the trajectory branch, trained by
//! `tests/reference/demo_model.py` on synthetic videos of coloured shapes, with its first frame and its drag. It is
//! what `trajattn generate` runs without `--model`, and the end-to-end proof (tests/demo.rs) that trajectories
//! steer the motion through this runtime.

use crate::pipeline::GenerateOptions;
use crate::trajectory::build::DragSpec;
use std::path::PathBuf;

/// Denoising steps of the demo (Karras sigmas from 700 down, as every SVD run).
pub const STEPS: usize = 6;

/// `assets/demo/` of the source tree.
pub fn dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/demo"))
}

/// The model folder (diffusers layout, float16 weights, `trajattn_temp.pth` inside).
pub fn model() -> PathBuf {
    dir().join("model")
}

/// The first frame (64×64).
pub fn image() -> PathBuf {
    dir().join("image.png")
}

/// The drag file: the red disc pulled along a curve, the blue square held still.
pub fn drag() -> PathBuf {
    dir().join("drag.json")
}

/// Reads the demo's drag file.
pub fn drag_spec() -> Result<(DragSpec, String), String> {
    let p = drag();
    let text = std::fs::read_to_string(&p).map_err(|e| format!("reading {}: {e}", p.display()))?;
    let spec = DragSpec::from_json(&p.display().to_string(), &text).map_err(|e| e.to_string())?;
    Ok((spec, text))
}

/// The options the model was trained for: its frames and size, no classifier-free guidance (it was trained
/// without conditioning dropout), the official fps, motion bucket and noise augmentation.
pub fn options(spec: &DragSpec) -> GenerateOptions {
    GenerateOptions {
        frames: spec.frames,
        steps: STEPS,
        width: spec.width,
        height: spec.height,
        min_guidance: 1.0,
        max_guidance: 1.0,
        ..Default::default()
    }
}
