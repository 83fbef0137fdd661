//! The generation's memory by stage: the plan (`graph::generation_plan`, what `trajattn plan` and
//! `generate --gpu-memory` use) against the device peaks a real run of the fixture pipeline measures, under the
//! pipeline's schedule (UNet resident; CLIP, VAE encoder and VAE decoder on the device only for their stage).

mod common;

use std::path::{Path, PathBuf};

use trajattn::models::clip::{self, ClipVision};
use trajattn::models::config::UNetConfig;
use trajattn::models::unet::UNet;
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
    // The UNet through the loader's path (random weights: same fusing and skipping), with and without the
    // trajectory branch.
    let cfg = UNetConfig::from_file(&dir.join("unet/config.json")).unwrap();
    for traj in [false, true] {
        let u = UNet::random(&gpu, cfg.clone(), DType::F32, 1, traj).unwrap();
        let r = UNet::reserved(&gpu, cfg.clone(), DType::F32, traj).unwrap();
        assert_eq!(r.weight_list(), u.weight_list(), "trajectory {traj}");
        assert_eq!(r.weight_bytes(), u.weight_bytes());
    }
}

/// Each stage's measured device peak against the plan's figure, on a device of its own (the pool's counters
/// are per device). Every stage's plan records the same code the run records (CLIP, the VAE halves, the UNet
/// graph with its conditioning, input and the sampler's step recordings) on a dry twin of the device: weights of
/// the planned shapes, buffers and arenas accounted as a run allocates them, nothing run. So each measured peak
/// **equals** the plan to the byte ("UNet steps": the peak of the whole denoising; "UNet graph", after the
/// graph is built, is at most that). This checks the schedule (only the UNet's weights are resident besides a
/// stage's model), the planned weight shapes and the UNet's planned weight bytes, not an independent replay of
/// the graphs (the analytic UNet replay, `graph::unet_plan`, is checked against the graph in `tests/plan.rs`).
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
    assert_eq!(measured("UNet steps"), planned("UNet step"), "UNet step");
    assert!(measured("UNet graph") <= planned("UNet step"));
}

/// The same equality on the other model the repository ships, in the configuration users run by default: the
/// demo model (`assets/demo/`) in f16 (f32 on an adapter without shader-f16) with the trajectory branch and the demo's tracks, one step, no classifier-free
/// guidance (batch 1), the decoder in chunks of 3 of the 8 frames (a short last chunk).
#[test]
fn measured_stage_peaks_match_the_plan_on_the_demo_model_in_f16_with_trajectories() {
    use trajattn_kernels::ops::trajectory_attention::Grouping;
    let gpu = Gpu::new(&GpuOptions::default()).unwrap();
    let dtype = if gpu.caps.shader_f16 { DType::F16 } else { DType::F32 };
    let (spec, _) = trajattn::demo::drag_spec().unwrap();
    let model = trajattn::demo::model();
    let svd = Svd::load(&gpu, &model, Some(&model.join("trajattn_temp.pth")), dtype).unwrap();
    let t = trajattn::trajectory::folder::read(&fixture("demo/trajectories"), spec.frames).unwrap();
    let traj = common::demo_tracks(&spec, &t);
    let o = GenerateOptions { steps: 1, decode_chunk: 3, dtype, ..trajattn::demo::options(&spec) };
    let plan = plan_memory(&gpu, &svd, &o, Some((t.n, Grouping::Pairs))).unwrap();
    let img = trajattn::image_input::open_rgb(&trajattn::demo::image()).unwrap().into_raw();
    let g = generate(&gpu, &svd, &img, Some(traj), &o, &mut Quiet).unwrap();
    let measured = |name: &str| g.memory.iter().find(|(s, _)| s == name).unwrap().1;
    let planned = |name: &str| plan.iter().find(|s| s.stage == name).unwrap().peak_bytes;
    eprintln!("plan {plan:?}\nmeasured {:?}", g.memory);
    for stage in ["CLIP", "VAE encode", "VAE decode"] {
        assert_eq!(measured(stage), planned(stage), "{stage}");
    }
    assert_eq!(measured("UNet steps"), planned("UNet step"), "UNet step");
}
