//! The command line: help, info, bench errors and JSON output.

use std::process::Command;

fn trajattn(args: &[&str]) -> std::process::Output {
    let dir = std::env::temp_dir().join("trajattn-cli-test");
    let _ = std::fs::create_dir_all(&dir);
    Command::new(env!("CARGO_BIN_EXE_trajattn"))
        .args(args)
        .env("XDG_RUNTIME_DIR", &dir)
        .env_remove("TRAJATTN_BACKEND")
        .env_remove("TRAJATTN_ADAPTER")
        .output()
        .expect("run trajattn")
}

#[test]
fn help_lists_the_commands() {
    let out = trajattn(&["--help"]);
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    for cmd in ["info", "bench", "demo", "--backend", "--adapter"] {
        assert!(s.contains(cmd), "--help lacks {cmd}: {s}");
    }
}

#[test]
fn info_json_reports_limits() {
    let out = trajattn(&["info", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let first = &v.as_array().unwrap()[0];
    for key in ["name", "backend", "max_storage_buffer_binding_size", "max_buffer_size", "subgroup_min_size"]
    {
        assert!(first.get(key).is_some(), "info --json lacks {key}");
    }
}

#[test]
fn bench_json_has_the_documented_fields() {
    let out = trajattn(&["bench", "elementwise", "--shape", "3x1001", "--runs", "2", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    for key in ["kernel", "shape", "dtype", "median_ms", "gflops", "gbps"] {
        assert!(v.get(key).is_some(), "bench --json lacks {key}: {line}");
    }
    assert!(v["median_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn trajectory_attention_bench_has_both_variants() {
    for v in ["efficient", "literal"] {
        let out = trajattn(&[
            "bench",
            "trajectory-attention",
            "--variant",
            v,
            "--shape",
            "2x3x4x6x64",
            "--runs",
            "1",
            "--json",
        ]);
        assert!(out.status.success(), "{v}: {}", String::from_utf8_lossy(&out.stderr));
        let line = String::from_utf8_lossy(&out.stdout);
        let j: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
        let want = if v == "literal" { "trajectory-attention-literal" } else { "trajectory-attention" };
        assert_eq!(j["kernel"], want);
    }
}

#[test]
fn bad_input_gives_one_clear_error_not_a_panic() {
    for (args, needle) in [
        (vec!["bench", "no-such-kernel"], "unknown kernel"),
        (vec!["bench", "elementwise", "--shape", "3xfoo"], "not a list of integers"),
        (vec!["bench", "elementwise", "--shape", "0x4"], "zero"),
        (vec!["--adapter", "no-such-gpu-xyz", "demo"], "no adapter name contains"),
        (vec!["--backend", "bogus", "info"], "unknown backend"),
        (vec!["bench", "elementwise", "--variant", "literal"], "has no variant"),
    ] {
        let out = trajattn(&args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
}

#[test]
fn quick_demo_checks_kernels_and_writes_pictures() {
    let out = std::env::temp_dir().join(format!("trajattn-demo-{}", std::process::id()));
    let o = trajattn(&["demo", "--quick", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(!s.contains("FAIL"), "{s}");
    for f in [
        "scene.png",
        "inverse_depth.png",
        "camera/preview.png",
        "camera/preview.gif",
        "camera/trans_valid.npy",
    ] {
        assert!(out.join(f).is_file(), "demo did not write {f}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn camera_command_refuses_mismatched_depth() {
    let dir = std::env::temp_dir().join(format!("trajattn-cam-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    image::RgbImage::new(8, 6).save(dir.join("img.png")).unwrap();
    trajattn::trajectory::npy::write_f32(&dir.join("d.npy"), &[5, 8], &[1.0; 40]).unwrap();
    let o = trajattn(&[
        "camera",
        "--image",
        dir.join("img.png").to_str().unwrap(),
        "--depth",
        dir.join("d.npy").to_str().unwrap(),
        "--out",
        dir.join("out").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("8×5") && err.contains("8×6"), "{err}");
    assert!(!err.contains("panicked"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn trajectories_inspect_and_preview() {
    let dir = std::env::temp_dir().join(format!("trajattn-inspect-{}", std::process::id()));
    let (w, h) = (16, 9);
    let inv: Vec<f32> = (0..w * h).map(|i| 1.0 + (i % 3) as f32).collect();
    let mut path =
        trajattn::trajectory::camera::CameraPath::new(trajattn::trajectory::camera::CameraMode::ZoomIn, 3.0);
    path.frames = 3;
    let k = trajattn::trajectory::camera::Intrinsics::official(w, h);
    let g = trajattn::trajectory::camera::camera_trajectories(&inv, w, h, &path, &k).unwrap();
    trajattn::trajectory::folder::write_grid(&dir, &g).unwrap();
    let o = trajattn(&["trajectories", "inspect", dir.to_str().unwrap(), "--frames", "3"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("3 frames × 144 trajectories") && s.contains("frame   2"), "{s}");
    let o = trajattn(&["trajectories", "inspect", dir.to_str().unwrap(), "--frames", "4"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("4 frames"));
    image::RgbImage::new(w as u32, h as u32).save(dir.join("img.png")).unwrap();
    let o = trajattn(&[
        "trajectories",
        "preview",
        dir.to_str().unwrap(),
        "--image",
        dir.join("img.png").to_str().unwrap(),
        "--frames",
        "3",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(dir.join("preview.gif").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn video_camera_merges_tracks_and_checks_counts() {
    use trajattn::trajectory::{folder, npy};
    let dir = std::env::temp_dir().join(format!("trajattn-video-{}", std::process::id()));
    let (w, h, f) = (32usize, 16usize, 3usize);
    std::fs::create_dir_all(dir.join("frames")).unwrap();
    std::fs::create_dir_all(dir.join("depths")).unwrap();
    for t in 0..f {
        image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
            image::Rgb([(x * 8) as u8, (y * 16) as u8, (t * 80) as u8])
        })
        .save(dir.join(format!("frames/frame_{t:04}.png")))
        .unwrap();
        let d: Vec<f32> = (0..w * h).map(|i| 3.0 + (i % 5) as f32 + t as f32).collect();
        npy::write_f32(&dir.join(format!("depths/frame_{t:04}.npy")), &[h, w], &d).unwrap();
    }
    let n = (w / 4) * (h / 4);
    let coords: Vec<f64> =
        (0..f * n).flat_map(|i| [((i % n) % 8 * 4) as f64 + 0.5, ((i % n) / 8 * 4) as f64 + 0.5]).collect();
    folder::write_tracks(
        &dir.join("tracks"),
        &folder::Trajectories { frames: f, n, coords, valid: vec![true; f * n] },
    )
    .unwrap();
    let args = |merge: &str| {
        vec![
            "video-camera".to_string(),
            "--video-frames".into(),
            dir.join("frames").display().to_string(),
            "--depths".into(),
            dir.join("depths").display().to_string(),
            "--tracks".into(),
            dir.join("tracks").display().to_string(),
            "--merge".into(),
            merge.into(),
            "--warp".into(),
            "--out".into(),
            dir.join("out").display().to_string(),
        ]
    };
    let a = args("faithful");
    let o = trajattn(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let merged = folder::read(&dir.join("out/merged"), f).unwrap();
    assert_eq!(merged.n, n);
    assert!(dir.join("out/camera/0001_mask.png").is_file());
    // One depth map too few.
    std::fs::remove_file(dir.join("depths/frame_0002.npy")).unwrap();
    let o = trajattn(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("one depth map per frame"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn generate_with_the_demo_model_writes_a_video_its_drag_and_the_measurement() {
    let out = std::env::temp_dir().join(format!("trajattn-gen-{}", std::process::id()));
    let latents = out.join("latents.safetensors");
    let o = trajattn(&[
        "generate",
        "--steps",
        "1",
        "--dtype",
        "f32",
        "--out",
        out.to_str().unwrap(),
        "--save-latents",
        latents.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("DEMO MODEL"), "the demo model must be labelled: {err}");
    assert!(stdout.contains("[demo model]") && stdout.contains("path error"), "{stdout}");
    for f in [
        "video.gif",
        "frames/frame_007.png",
        "preview.gif",
        "trajectories/drag.json",
        "trajectories/preview.gif",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let bytes = std::fs::read(&latents).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("latents").unwrap().shape(), &[8, 4, 32, 32]);
    // `eval drag` on what it wrote: the drag file beside the tracks gives the dragged and the still region.
    let e = trajattn(&[
        "eval",
        "drag",
        "--video",
        out.to_str().unwrap(),
        "--trajectories",
        out.join("trajectories").to_str().unwrap(),
        "--json",
    ]);
    assert!(e.status.success(), "{}", String::from_utf8_lossy(&e.stderr));
    let v: serde_json::Value = serde_json::from_slice(&e.stdout).unwrap();
    assert_eq!(v["regions"].as_array().unwrap().len(), 2);
    assert!(v["path_mean_px"].as_f64().is_some() && v["still_max_px"].as_f64().is_some());
    // Without the drag: no trajectories, no measurement, and the earlier run's drag files are replaced, not mixed.
    let o = trajattn(&[
        "generate",
        "--steps",
        "1",
        "--dtype",
        "f32",
        "--no-drag",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("path error"));
    assert!(!out.join("preview.gif").exists() && !out.join("trajectories/drag.json").exists());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn generate_and_plan_refuse_bad_input_clearly() {
    let img = std::env::temp_dir().join(format!("trajattn-notimage-{}.png", std::process::id()));
    std::fs::write(&img, b"definitely not a PNG").unwrap();
    let model = std::env::temp_dir().join(format!("trajattn-emptymodel-{}", std::process::id()));
    std::fs::create_dir_all(&model).unwrap();
    for (args, needle) in [
        (vec!["generate", "--no-drag", "--width", "51", "--height", "32", "--steps", "1"], "multiples of"),
        (vec!["generate", "--width", "48", "--steps", "1"], "the demo's drag is for 64×64"),
        (vec!["generate", "--frames", "4", "--steps", "1"], "the demo's drag is for 8 frames"),
        (vec!["generate", "--image", img.to_str().unwrap(), "--steps", "1"], "notimage"),
        (vec!["generate", "--model", model.to_str().unwrap()], "unet/config.json is missing"),
        (
            vec![
                "generate",
                "--trajectories",
                "/nonexistent-dir",
                "--trajectory-weights",
                "/nonexistent.pth",
            ],
            "nonexistent",
        ),
        (vec!["generate", "--nvs", "/nonexistent-warps", "--steps", "1"], "0000.png is missing"),
        (vec!["plan", "--height", "100"], "multiples of 64"),
        (vec!["plan", "--unet-config", "/nonexistent/config.json"], "nonexistent"),
        (vec!["convert", "--input", img.to_str().unwrap(), "--output", "/tmp/x.safetensors"], "notimage"),
    ] {
        let out = trajattn(&args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
}

#[test]
fn plan_json_reports_the_documented_fields() {
    let out = trajattn(&[
        "plan",
        "--unet-config",
        "svd",
        "--frames",
        "14",
        "--height",
        "64",
        "--width",
        "64",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["param_bytes", "peak_activation_bytes", "peak_total_bytes"] {
        assert!(v[key].as_u64().unwrap() > 0, "{key}");
    }
    // f16 weights of the SVD UNet with the branch, attn2's unused Q/K projections excluded.
    assert!(v["param_bytes"].as_u64().unwrap() < 1_574_197_162 * 2);
}

#[test]
fn camera_with_a_model_goes_on_to_generation() {
    // Camera trajectories for a 48×32 image, then the video from them with the bundled tiny model and its
    // trajectory weights (the whole chain of the paper's first workflow).
    let dir = std::env::temp_dir().join(format!("trajattn-camgen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = image::RgbImage::from_fn(48, 32, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 7) as u8, ((x + y) * 3) as u8])
    });
    img.save(dir.join("img.png")).unwrap();
    let depth: Vec<f32> = (0..48 * 32).map(|i| 1.0 + (i % 48) as f32 / 48.0).collect();
    trajattn::trajectory::npy::write_f32(&dir.join("d.npy"), &[32, 48], &depth).unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let model = format!("{root}/tests/fixtures/pipeline/svd");
    let (image, depth) = (dir.join("img.png"), dir.join("d.npy"));
    // `camera` on that image into OUT with the bundled model, then `extra`.
    let camera = |out: &str, extra: &[&str]| {
        let out = dir.join(out);
        let mut args = vec!["camera", "--image", image.to_str().unwrap(), "--depth", depth.to_str().unwrap()];
        args.extend(["--frames", "4", "--out", out.to_str().unwrap(), "--model", &model]);
        args.extend(extra);
        trajattn(&args)
    };
    let weights = format!("{root}/tests/fixtures/pipeline/svd_traj/trajattn_temp.pth");
    let o = camera(
        "out",
        &[
            "--degrees-per-frame",
            "2",
            "--trajectory-weights",
            &weights,
            "--steps",
            "1",
            "--dtype",
            "f32",
            // with the NVS-solver guidance from the warped frames (one crop covers this small latent)
            "--warp",
            "--nvs",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(dir.join("out/trans_coordinates.npy").exists());
    assert!(dir.join("out/0002_mask.png").exists());
    assert!(dir.join("out/video/video.gif").exists());
    // --nvs without --warp: nothing to guide with, said before any GPU work
    let o = camera("out2", &["--nvs"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--nvs needs the warped frames"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn generate_refuses_trajectories_made_for_another_size() {
    let dir = std::env::temp_dir().join(format!("trajattn-trajsize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    image::RgbImage::from_fn(48, 32, |x, _| image::Rgb([x as u8, 0, 0])).save(dir.join("img.png")).unwrap();
    trajattn::trajectory::npy::write_f32(&dir.join("d.npy"), &[32, 48], &[1.0; 48 * 32]).unwrap();
    let (img, d, out) = (dir.join("img.png"), dir.join("d.npy"), dir.join("traj"));
    let o = trajattn(&[
        "camera",
        "--image",
        img.to_str().unwrap(),
        "--depth",
        d.to_str().unwrap(),
        "--frames",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let root = env!("CARGO_MANIFEST_DIR");
    let o = trajattn(&[
        "generate",
        "--model",
        &format!("{root}/tests/fixtures/pipeline/svd"),
        "--trajectories",
        out.to_str().unwrap(),
        "--trajectory-weights",
        &format!("{root}/tests/fixtures/pipeline/svd_traj/trajattn_temp.pth"),
        "--width",
        "64",
        "--height",
        "48",
        "--steps",
        "1",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("48×32 grid") && err.contains("64×48"), "{err}");
    assert!(!err.contains("panicked"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn edit_with_a_model_generates_the_edited_video() {
    // First-frame editing end to end: an "edited" 48×28 frame, 84 source tracks over 4 frames (the camera fixture's
    // tracks in the official folder names), the bundled tiny model and its trajectory weights.
    let dir = std::env::temp_dir().join(format!("trajattn-edit-{}", std::process::id()));
    let tracks = dir.join("tracks");
    std::fs::create_dir_all(&tracks).unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let fx = std::path::Path::new(root).join("tests/fixtures/camera");
    std::fs::copy(fx.join("tracks_coords.npy"), tracks.join("trans_coordinates.npy")).unwrap();
    std::fs::copy(fx.join("tracks_valid.npy"), tracks.join("trans_valid.npy")).unwrap();
    image::RgbImage::from_fn(48, 28, |x, y| image::Rgb([(x * 5) as u8, (y * 9) as u8, 90]))
        .save(dir.join("edited.png"))
        .unwrap();
    let out = dir.join("out");
    let o = trajattn(&[
        "edit",
        "--edited-frame",
        dir.join("edited.png").to_str().unwrap(),
        "--tracks",
        tracks.to_str().unwrap(),
        "--frames",
        "4",
        "--out",
        out.to_str().unwrap(),
        "--model",
        &format!("{root}/tests/fixtures/pipeline/svd"),
        "--trajectory-weights",
        &format!("{root}/tests/fixtures/pipeline/svd_traj/trajattn_temp.pth"),
        "--steps",
        "1",
        "--dtype",
        "f32",
        "--grouping",
        "per-trajectory",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("video/video.gif").exists() && out.join("video/frames/frame_003.png").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
