//! `trajattn demo`: the adapter, every kernel checked against its float64 reference, the synthetic-scene
//! trajectories, and one timing per kernel.

use anyhow::{bail, Context, Result};
use clap::Args;
use trajattn_kernels::bench;
use trajattn_kernels::DType;

use super::bench::print_result;
use super::gpu_args::GpuArgs;
use super::info::{bytes, yes};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Skip the timing part.
    #[arg(long)]
    pub quick: bool,
    /// Where to write the demo's pictures (synthetic scene, its trajectories and previews).
    #[arg(long, default_value = "out/demo")]
    pub out: std::path::PathBuf,
}

/// Renders the synthetic scene, builds its camera-orbit trajectories and writes them with previews.
fn demo_trajectories(out: &std::path::Path) -> Result<()> {
    use trajattn::trajectory::camera::{camera_trajectories, CameraMode, CameraPath, Intrinsics};
    use trajattn::trajectory::{folder, preview, synthetic};
    let (w, h) = (512, 288);
    let k = Intrinsics { focal: 130.0, cx: 256.0, cy: 144.0 };
    let mut path = CameraPath::new(CameraMode::Horizontal, 1.0);
    path.frames = 14;
    let r = synthetic::render(&synthetic::demo_scene(), path.centers()[0], &k, w, h);
    let inv = synthetic::inverse_depth(&r.depth);
    let g = camera_trajectories(&inv, w, h, &path, &k)?;
    let dir = out.join("camera");
    folder::write_grid(&dir, &g)?;
    r.image.save(out.join("scene.png")).context("writing scene.png")?;
    let max = inv.iter().cloned().fold(f32::MIN, f32::max).max(1e-6);
    let depth_img = image::GrayImage::from_fn(w as u32, h as u32, |x, y| {
        image::Luma([(inv[y as usize * w + x as usize] / max * 255.0) as u8])
    });
    depth_img.save(out.join("inverse_depth.png")).context("writing inverse_depth.png")?;
    let t = folder::read(&dir, path.frames)?;
    preview::write_previews(&r.image, &t, 24, &dir.join("preview.png"), &dir.join("preview.gif"))
        .context("writing previews")?;
    println!(
        "  synthetic scene {w}×{h}, horizontal orbit 1°/frame × {} frames → {}/ (scene.png, inverse_depth.png, camera/)",
        path.frames,
        out.display()
    );
    Ok(())
}

pub fn run(g: &GpuArgs, a: &DemoArgs) -> Result<()> {
    let (quick, out) = (a.quick, a.out.as_path());
    let gpu = g.open()?;
    println!("trajattn demo — adapter: {}", gpu.describe());
    println!(
        "  f16 {}  subgroups {}  max storage binding {}",
        yes(gpu.caps.shader_f16),
        yes(gpu.caps.subgroup),
        bytes(gpu.max_binding())
    );
    println!();
    println!("correctness: every kernel on random odd-shaped data vs its float64 CPU reference");
    for check in trajattn_kernels::selfcheck::checks() {
        let r = (check.run)(&gpu).with_context(|| format!("demo check {}", check.name))?;
        println!(
            "  {:<34} normalised error {:.2e}  (bound {:.0e})  {}",
            check.name,
            r,
            check.tol,
            if r <= check.tol { "ok" } else { "FAIL" }
        );
        if r > check.tol {
            bail!("{} exceeded its error bound", check.name);
        }
    }
    println!();
    println!("trajectories: camera orbit over a synthetic scene with exact depth (no weights needed)");
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    demo_trajectories(out)?;
    if quick {
        return Ok(());
    }
    println!();
    println!("speed: each kernel at one SVD shape (median of 3 runs)");
    for e in trajattn_kernels::ops::bench_entries() {
        let shape = e.demo_shape;
        let case = (e.build)(&gpu, shape, DType::F32).with_context(|| format!("building {}", e.name))?;
        let r = bench::time_case(&gpu, &case, 1, 3)?;
        print_result(&r, false)?;
    }
    Ok(())
}
