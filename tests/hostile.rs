//! Hostile and extreme input through the command line: every case ends with exit status 1, a message naming
//! the input and the problem, no panic, within seconds, and nothing written where the command failed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn run(args: &[&str]) -> (bool, String, Duration) {
    let dir = std::env::temp_dir().join("trajattn-hostile-test");
    let _ = std::fs::create_dir_all(&dir);
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_trajattn"))
        .args(args)
        .env("XDG_RUNTIME_DIR", &dir)
        .env_remove("TRAJATTN_BACKEND")
        .env_remove("TRAJATTN_ADAPTER")
        .env_remove("TRAJATTN_DISABLE")
        .output()
        .expect("run trajattn");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    (o.status.success(), err, t.elapsed())
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("trajattn-hostile-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn refused(args: &[&str], needles: &[&str]) {
    let (ok, err, took) = run(args);
    assert!(!ok, "{args:?} should fail");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: message lacks {n:?}: {err}");
    }
    assert!(err.matches("os error").count() <= 1, "{args:?}: a cause printed twice: {err}");
    assert!(took < Duration::from_secs(60), "{args:?} took {took:?}");
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

/// A PNG whose header claims `w × h` pixels and that holds no image data.
fn png_header(path: &Path, w: u32, h: u32) {
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let chunk = |png: &mut Vec<u8>, body: &[u8]| {
        png.extend(((body.len() - 4) as u32).to_be_bytes());
        png.extend(body);
        png.extend(crc32(body).to_be_bytes());
    };
    chunk(&mut png, &ihdr);
    // A tiny (truncated) zlib stream, then the end: decoders learn the size before they miss the pixels.
    chunk(&mut png, b"IDAT\x78\x9c\x03\x00\x00\x00\x00\x01");
    chunk(&mut png, b"IEND");
    std::fs::write(path, png).unwrap();
}

#[test]
fn sizes_and_numbers_are_checked_before_any_work() {
    let d = scratch("sizes");
    let out = d.join("out");
    let o = out.to_str().unwrap();
    refused(
        &["generate", "--motion-bucket", "4294967296", "--out", o],
        &["motion bucket", "4294967296", "2048"],
    );
    refused(&["generate", "--frames", "10000000", "--out", o], &["frames", "TRAJATTN_MAX_FRAMES"]);
    refused(
        &["generate", "--width", "100000", "--height", "64", "--out", o],
        &["100000", "TRAJATTN_MAX_SIDE"],
    );
    refused(&["generate", "--steps", "100000000", "--out", o], &["steps", "TRAJATTN_MAX_STEPS"]);
    refused(&["generate", "--noise-aug", "1e6", "--out", o], &["noise augmentation"]);
    refused(&["generate", "--max-guidance", "inf", "--out", o], &["max guidance"]);
    refused(&["generate", "--min-guidance", "NaN", "--out", o], &["min guidance"]);
    refused(&["generate", "--nvs-lr", "1e30", "--out", o], &["--nvs-lr"]);
    refused(&["generate", "--fps", "0", "--out", o], &["fps"]);
    refused(&["plan", "--frames", "18446744073709551615"], &["frames", "TRAJATTN_MAX_FRAMES"]);
    refused(&["plan", "--width", "18446744073709551552", "--height", "64"], &["TRAJATTN_MAX_SIDE"]);
    refused(&["bench", "matmul", "--shape", "18446744073709551615x2x2"], &["18446744073709551615"]);
    refused(&["--disable", "f16,warp-drive", "bench", "matmul", "--shape", "8x8x8"], &["warp-drive"]);
    assert!(!out.exists(), "a refused run creates nothing, not even its output folder");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn absurd_model_configs_are_refused_and_harmless_fields_tolerated() {
    let d = scratch("configs");
    let base: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/pipeline/svd/unet/config.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let with = |k: &str, v: serde_json::Value| {
        let mut c = base.clone();
        c[k] = v;
        let p = d.join(format!("{k}.json"));
        std::fs::write(&p, serde_json::to_string(&c).unwrap()).unwrap();
        p
    };
    let huge = with("layers_per_block", serde_json::json!(1_000_000_000u64));
    refused(
        &["plan", "--unet-config", huge.to_str().unwrap(), "--height", "64", "--width", "64"],
        &["layers_per_block", "layers_per_block.json", "TRAJATTN_MAX_LAYERS"],
    );
    let wide = with("block_out_channels", serde_json::json!([1 << 20, 1 << 20]));
    refused(
        &["plan", "--unet-config", wide.to_str().unwrap(), "--height", "64", "--width", "64"],
        &["block_out_channels"],
    );
    // diffusers writes a list for models built with a tuple; the field does not affect the computation.
    let listed = with("sample_size", serde_json::json!([12, 20]));
    let (ok, err, _) =
        run(&["plan", "--unet-config", listed.to_str().unwrap(), "--height", "64", "--width", "64"]);
    assert!(ok, "sample_size as a list must be accepted: {err}");
    // CLIP image size and layer-norm epsilon (library level: no model folder needed).
    use trajattn::models::config::ClipVisionConfig;
    let clip = |k: &str, v: serde_json::Value| {
        let mut c = serde_json::json!({"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
            "num_hidden_layers": 1, "image_size": 28, "patch_size": 14, "projection_dim": 32});
        c[k] = v;
        ClipVisionConfig::from_json_value(&c)
    };
    assert!(clip("image_size", serde_json::json!(28)).is_ok());
    let e = clip("image_size", serde_json::json!(3_200_000)).unwrap_err().to_string();
    assert!(e.contains("image_size") && e.contains("TRAJATTN_MAX_CLIP_SIDE"), "{e}");
    let e = clip("layer_norm_eps", serde_json::json!(-1.0)).unwrap_err().to_string();
    assert!(e.contains("layer_norm_eps"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn images_claiming_huge_sizes_are_refused_before_decoding() {
    let d = scratch("images");
    let img = d.join("huge.png");
    png_header(&img, 100_000, 100_000);
    let out = d.join("out");
    refused(
        &["generate", "--image", img.to_str().unwrap(), "--out", out.to_str().unwrap()],
        &["huge.png", "limit"],
    );
    let depth = d.join("d.npy");
    trajattn::trajectory::npy::write_f32(&depth, &[2, 2], &[1.0; 4]).unwrap();
    refused(
        &[
            "camera",
            "--image",
            img.to_str().unwrap(),
            "--depth",
            depth.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &["huge.png"],
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn non_finite_inputs_are_refused_where_they_enter() {
    let d = scratch("nonfinite");
    // A depth map with a NaN.
    let img = d.join("img.png");
    image::RgbImage::from_fn(8, 8, |x, y| image::Rgb([x as u8 * 30, y as u8 * 30, 9])).save(&img).unwrap();
    let depth = d.join("depth.npy");
    let mut v = vec![1.0f32; 64];
    v[10] = f32::NAN;
    trajattn::trajectory::npy::write_f32(&depth, &[8, 8], &v).unwrap();
    let out = d.join("cam");
    refused(
        &[
            "camera",
            "--image",
            img.to_str().unwrap(),
            "--depth",
            depth.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &["depth.npy", "NaN"],
    );
    // Camera settings of the video mode.
    refused(
        &[
            "video-camera",
            "--video-frames",
            d.to_str().unwrap(),
            "--depths",
            d.to_str().unwrap(),
            "--tracks",
            d.to_str().unwrap(),
            "--degrees-per-frame",
            "NaN",
            "--out",
            out.to_str().unwrap(),
        ],
        &["finite"],
    );
    // A model whose UNet weights hold a NaN: refused at load, naming the weight.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pipeline/svd");
    let model = d.join("model");
    for sub in ["unet", "vae", "image_encoder", "scheduler", "feature_extractor"] {
        std::fs::create_dir_all(model.join(sub)).unwrap();
        for e in std::fs::read_dir(src.join(sub)).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, model.join(sub).join(p.file_name().unwrap())).unwrap();
        }
    }
    std::fs::copy(src.join("model_index.json"), model.join("model_index.json")).unwrap();
    let wfile = model.join("unet/diffusion_pytorch_model.safetensors");
    let bytes = std::fs::read(&wfile).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect();
    owned.sort_by(|a, b| a.0.cmp(&b.0));
    let victim = owned.iter_mut().find(|t| t.0.ends_with("conv_in.weight")).expect("conv_in.weight");
    let victim_name = victim.0.clone();
    match victim.1 {
        safetensors::Dtype::F32 => victim.3[..4].copy_from_slice(&f32::NAN.to_le_bytes()),
        safetensors::Dtype::F16 => victim.3[..2].copy_from_slice(&half::f16::NAN.to_le_bytes()),
        other => panic!("unexpected dtype {other:?}"),
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = owned
        .iter()
        .map(|(n, dt, s, b)| (n.clone(), safetensors::tensor::TensorView::new(*dt, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &wfile).unwrap();
    let gout = d.join("gen");
    refused(
        &[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--width",
            "48",
            "--height",
            "32",
            "--out",
            gout.to_str().unwrap(),
        ],
        &[&victim_name, "NaN"],
    );
    assert!(!gout.exists(), "a failed generation leaves no output folder");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn outputs_are_checked_and_never_overwrite_inputs() {
    let d = scratch("outputs");
    let file = d.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    refused(&["generate", "--out", "/"], &["filesystem root"]);
    refused(&["generate", "--out", file.to_str().unwrap()], &["a-file", "not a folder"]);
    refused(
        &["generate", "--save-latents", d.to_str().unwrap(), "--out", d.join("o").to_str().unwrap()],
        &["is a folder"],
    );
    let pth =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pipeline/svd_traj/trajattn_temp.pth");
    let copy = d.join("t.pth");
    std::fs::copy(&pth, &copy).unwrap();
    let before = std::fs::read(&copy).unwrap();
    let alias = d.join("sub/../t.pth");
    std::fs::create_dir_all(d.join("sub")).unwrap();
    refused(
        &["convert", "--input", copy.to_str().unwrap(), "--output", alias.to_str().unwrap()],
        &["would overwrite the input"],
    );
    assert_eq!(std::fs::read(&copy).unwrap(), before, "the input is untouched");
    // Restricting a trajectory folder into itself would overwrite what it reads.
    let tracks = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pipeline/svd_traj/trajectories");
    let own = d.join("tracks");
    std::fs::create_dir_all(&own).unwrap();
    for e in std::fs::read_dir(&tracks).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, own.join(p.file_name().unwrap())).unwrap();
    }
    let o = own.to_str().unwrap();
    refused(
        &["trajectories", "build", "--from", o, "--frames", "4", "--sparse", "2", "--out", o],
        &["would overwrite the input"],
    );
    // A drag whose preview image has the wrong size fails before anything is written.
    let spec = d.join("drag.json");
    std::fs::write(
        &spec,
        r#"{"width": 48, "height": 32, "frames": 4, "drags": [{"path": [[5, 5], [20, 9]], "radius": 4}]}"#,
    )
    .unwrap();
    let wrong = d.join("wrong.png");
    image::RgbImage::new(10, 10).save(&wrong).unwrap();
    let dout = d.join("drag-out");
    refused(
        &[
            "drag",
            "--spec",
            spec.to_str().unwrap(),
            "--image",
            wrong.to_str().unwrap(),
            "--out",
            dout.to_str().unwrap(),
        ],
        &["wrong.png"],
    );
    assert!(std::fs::read_dir(&dout).map(|mut r| r.next().is_none()).unwrap_or(true), "nothing written");
    let _ = std::fs::remove_dir_all(&d);
}
