//! The generation's memory by stage: the plan (`graph::generation_plan`, what `trajattn plan` and
//! `generate --gpu-memory` use) against the device peaks a real run of the fixture pipeline measures, under the
//! pipeline's schedule (UNet resident; CLIP, VAE encoder and VAE decoder on the device only for their stage).

use std::path::{Path, PathBuf};

use trajattn::models::clip::{self, ClipVision};
use trajattn::models::vae::{self, Vae, VaePart};
use trajattn::pipeline::{generate, plan_memory, GenerateOptions, Quiet, Svd};
use trajattn_kernels::{DType, Gpu, GpuOptions};

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(p)
}

fn sorted(mut v: Vec<(String, Vec<usize>)>) -> Vec<(String, Vec<usize>)> {
    v.sort();
    v
}

/// The shapes the plans reserve are the shapes the loaders upload (fixture VAE and CLIP, every part).
#[test]
fn planned_weight_shapes_are_the_loaded_ones() {
    let gpu = Gpu::shared().unwrap();
    let dir = fixture("pipeline/svd");
    for part in [VaePart::Encoder, VaePart::Decoder, VaePart::Both] {
        let v = Vae::load_dir_part(&gpu, &dir.join("vae"), DType::F32, part).unwrap();
        let want: Vec<_> = vae::weight_shapes(&v.cfg).into_iter().filter(|(n, _)| part.holds(n)).collect();
        assert_eq!(v.weight_list(), sorted(want), "{part:?}");
    }
    let c = ClipVision::load_dir(&gpu, &dir.join("image_encoder"), DType::F32).unwrap();
    assert_eq!(c.weight_list(), sorted(clip::weight_shapes(&c.cfg)));
}

/// Each stage's measured device peak against the plan's figure, on a device of its own (the pool's counters
/// are per device). What is asserted, stage by stage:
/// - CLIP, VAE encode, VAE decode: **equal**, to the byte. Their plan records the same graphs on a dry twin
///   of the device (weights of the planned shapes, buffers accounted, nothing run), so this checks the
///   schedule (only the UNet's weights are resident besides the stage's model), the planned weight shapes
///   and the UNet's planned weight bytes, not an independent replay.
/// - UNet: the plan (UNet weights + the analytic placement of the intermediates + persistent tensors) is an
///   upper bound of the measured "UNet graph" and "UNet steps" peaks, within 25 %; the analytic replay's live
///   bound is checked equal to the graph's in `tests/plan.rs`.
#[test]
fn measured_stage_peaks_match_the_plan() {
    let gpu = Gpu::new(&GpuOptions::default()).unwrap();
    let svd = Svd::load(&gpu, &fixture("pipeline/svd"), None, DType::F32).unwrap();
    let (w, h) = (48, 32);
    let img: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
    let o = GenerateOptions {
        frames: 4,
        steps: 1,
        width: w,
        height: h,
        decode_chunk: 3,
        dtype: DType::F32,
        ..Default::default()
    };
    let plan = plan_memory(&gpu, &svd, &o, None).unwrap();
    let stages: Vec<&str> = plan.iter().map(|s| s.stage.as_str()).collect();
    assert_eq!(stages, ["CLIP", "VAE encode", "UNet step", "VAE decode"]);
    let g = generate(&gpu, &svd, &img, None, &o, &mut Quiet).unwrap();
    let measured = |name: &str| g.memory.iter().find(|(s, _)| s == name).unwrap().1;
    let planned = |name: &str| plan.iter().find(|s| s.stage == name).unwrap().peak_bytes;
    for s in &plan {
        eprintln!("{s:?}");
    }
    eprintln!("measured {:?}", g.memory);
    for stage in ["CLIP", "VAE encode", "VAE decode"] {
        assert_eq!(measured(stage), planned(stage), "{stage}");
    }
    let unet = planned("UNet step");
    for stage in ["UNet graph", "UNet steps"] {
        let m = measured(stage);
        assert!(m <= unet && unet * 4 <= m * 5, "{stage}: measured {m}, plan {unet}");
    }
}
