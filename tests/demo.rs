//! The bundled demo model through this runtime (tests/reference/demo_model.py trains it; assets/demo/README.md):
//! the dragged shape follows its path, the still one stays, without trajectories the shape does not follow (the
//! branch does the work), and the frames equal the PyTorch pipeline's for the same seed.

mod common;
use common::{demo_tracks, rel};

use std::path::Path;

use trajattn::eval::drag::{evaluate, regions_from_spec, summary, DragReport};
use trajattn::models::unet::Trajectories;
use trajattn::models::unet_io::tensor_f32;
use trajattn::pipeline::{generate, GenerateOptions, Quiet, Svd};
use trajattn::trajectory::build::{drags, DragSpec};
use trajattn_kernels::{DType, Gpu};

fn image() -> Vec<u8> {
    trajattn::image_input::open_rgb(&trajattn::demo::image()).unwrap().into_raw()
}

fn run(gpu: &Gpu, svd: &Svd, traj: Option<Trajectories>, o: &GenerateOptions) -> Vec<image::RgbImage> {
    let g = generate(gpu, svd, &image(), traj, o, &mut Quiet).unwrap();
    trajattn::video::frames_from_rgb(&g.frames_u8, g.frames, g.width, g.height)
}

fn measure(spec: &DragSpec, frames: &[image::RgbImage], what: &str) -> DragReport {
    let r = evaluate(frames, &regions_from_spec(spec).unwrap()).unwrap();
    eprintln!("{what}:\n{}", summary(&r));
    r
}

#[test]
fn the_dragged_shape_follows_its_path_and_only_because_of_the_trajectories() {
    let gpu = Gpu::shared().unwrap();
    let (spec, _) = trajattn::demo::drag_spec().unwrap();
    // The precision the default run uses on this adapter.
    let dtype = if gpu.caps.shader_f16 { DType::F16 } else { DType::F32 };
    let model = trajattn::demo::model();
    let svd = Svd::load(&gpu, &model, Some(&model.join("trajattn_temp.pth")), dtype).unwrap();
    let o = GenerateOptions { dtype, ..trajattn::demo::options(&spec) };
    let t = drags(&spec).unwrap();
    let with = measure(&spec, &run(&gpu, &svd, Some(demo_tracks(&spec, &t)), &o), "with the drag");
    let without = measure(&spec, &run(&gpu, &svd, None, &o), "without trajectories");
    let (mean, end, still) = (with.path_mean().unwrap(), with.path_end().unwrap(), with.still_max().unwrap());
    assert!(mean <= 2.0, "path error {mean:.2} px > 2 px");
    assert!(end <= 3.0, "end-of-path error {end:.2} px > 3 px");
    assert!(still <= 1.0, "the still shape drifted {still:.2} px > 1 px");
    let off = without.path_mean().unwrap();
    assert!(
        off >= 3.0 * mean.max(1.0),
        "without trajectories the path error is {off:.2} px, with {mean:.2} px"
    );
}

#[test]
fn the_demo_tracks_are_the_reference_builders() {
    let (spec, _) = trajattn::demo::drag_spec().unwrap();
    let ours = drags(&spec).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/demo/trajectories");
    let theirs = trajattn::trajectory::folder::read(&fixture, spec.frames).unwrap();
    assert_eq!((ours.n, ours.frames), (theirs.n, theirs.frames));
    let worst = ours.coords.iter().zip(&theirs.coords).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    // The fixture stores float32 positions.
    assert!(worst < 1e-4, "tracks differ by {worst}");
    assert_eq!(ours.valid, theirs.valid);
}

#[test]
fn demo_generation_matches_the_pytorch_pipeline() {
    let gpu = Gpu::shared().unwrap();
    let (spec, _) = trajattn::demo::drag_spec().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/demo");
    let bytes = std::fs::read(root.join("demo_io.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let model = trajattn::demo::model();
    let svd = Svd::load(&gpu, &model, Some(&model.join("trajattn_temp.pth")), DType::F32).unwrap();
    let t = trajattn::trajectory::folder::read(&root.join("trajectories"), spec.frames).unwrap();
    // diffusers in float32 draws its initial latents in float32.
    let o = GenerateOptions { dtype: DType::F32, noise_dtype: DType::F32, ..trajattn::demo::options(&spec) };
    let g = generate(&gpu, &svd, &image(), Some(demo_tracks(&spec, &t)), &o, &mut Quiet).unwrap();
    let (_, latents) = tensor_f32(&st, Path::new("demo_io"), "latents").unwrap();
    let e = rel(&g.latents, &latents);
    eprintln!("demo: latents relative error {e:.3e}");
    assert!(e < 1e-4, "latents {e:.3e}");
    let want = st.tensor("frames_uint8").unwrap().data().to_vec();
    let worst = g.frames_u8.iter().zip(&want).map(|(&a, &b)| (a as i32 - b as i32).abs()).max().unwrap();
    eprintln!("demo: frames worst difference {worst} levels");
    assert!(worst <= 1, "frames differ by {worst} uint8 levels");
}
