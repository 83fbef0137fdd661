//! Depth-Anything-V2 on the runtime against the official code's debug tensors (reduced random vits-shaped
//! model of docs/reference/depth-anything-v2.md §9, copied into tests/fixtures/depth): stage by stage from `debug.input` and
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
    // The reference ran PyTorch's AVX2 kernel, ≤ 2.6e-6 from a plain f32 replica (docs/reference/depth-anything-v2.md §4.2).
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

// ---- checkpoint layouts ----

use trajattn::checkpoint::zip::crc32;
use trajattn::checkpoint::{write_safetensors, HostData, HostTensor};

/// A zip archive of stored entries, as `torch.save` writes it.
fn zip_stored(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = out.len() as u32;
        let mut common = Vec::new();
        common.extend_from_slice(&0u16.to_le_bytes());
        common.extend_from_slice(&0u16.to_le_bytes());
        common.extend_from_slice(&0u32.to_le_bytes());
        common.extend_from_slice(&crc32(data).to_le_bytes());
        common.extend_from_slice(&(data.len() as u32).to_le_bytes());
        common.extend_from_slice(&(data.len() as u32).to_le_bytes());
        common.extend_from_slice(&(name.len() as u16).to_le_bytes());
        common.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&common);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&common);
        central.extend_from_slice(&[0u8; 6]);
        central.extend_from_slice(&0u32.to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

fn unicode(p: &mut Vec<u8>, s: &str) {
    p.push(b'X');
    p.extend_from_slice(&(s.len() as u32).to_le_bytes());
    p.extend_from_slice(s.as_bytes());
}

fn int(p: &mut Vec<u8>, v: usize) {
    p.push(b'J');
    p.extend_from_slice(&(v as i32).to_le_bytes());
}

fn empty_ordered_dict(p: &mut Vec<u8>) {
    p.extend_from_slice(b"ccollections\nOrderedDict\n)R");
}

/// `torch.save(model.state_dict())` of `tensors` in protocol 2: an OrderedDict of rebuilt tensors, then the
/// `_metadata` attribute set by BUILD (`metadata_state` replaces that state dict's pickle when given).
fn state_dict_pth(tensors: &[(String, Vec<usize>, Vec<f32>)], metadata_state: Option<&[u8]>) -> Vec<u8> {
    let mut p = vec![0x80, 2];
    empty_ordered_dict(&mut p);
    p.push(b'(');
    let mut entries = Vec::new();
    for (i, (name, shape, data)) in tensors.iter().enumerate() {
        unicode(&mut p, name);
        p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.push(b'(');
        unicode(&mut p, "storage");
        p.extend_from_slice(b"ctorch\nFloatStorage\n");
        unicode(&mut p, &i.to_string());
        unicode(&mut p, "cpu");
        int(&mut p, data.len());
        p.extend_from_slice(b"tQ");
        int(&mut p, 0);
        p.push(b'(');
        for &s in shape {
            int(&mut p, s);
        }
        p.push(b't');
        p.push(b'(');
        for j in 0..shape.len() {
            int(&mut p, shape[j + 1..].iter().product());
        }
        p.push(b't');
        p.push(0x89);
        empty_ordered_dict(&mut p);
        p.extend_from_slice(b"tR");
        entries.push((
            format!("archive/data/{i}"),
            data.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
        ));
    }
    p.push(b'u');
    match metadata_state {
        Some(s) => p.extend_from_slice(s),
        None => {
            p.push(b'}');
            unicode(&mut p, "_metadata");
            empty_ordered_dict(&mut p);
            p.push(b'(');
            for m in ["", "pretrained", "depth_head"] {
                unicode(&mut p, m);
                p.push(b'}');
                unicode(&mut p, "version");
                p.extend_from_slice(&[b'K', 1]);
                p.push(b's');
            }
            p.push(b'u');
            p.push(b's');
        }
    }
    p.extend_from_slice(b"b.");
    let mut all =
        vec![("archive/data.pkl".to_string(), p), ("archive/byteorder".to_string(), b"little".to_vec())];
    all.extend(entries);
    zip_stored(&all)
}

/// A fresh scratch folder for one test.
fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("trajattn-depth-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn reduced_tensors() -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let f = SafetensorsFile::open(&fixture("random_vits_weights.safetensors")).unwrap();
    f.entries().iter().map(|e| (e.name.clone(), e.shape.clone(), f.read_f32(&e.name).unwrap())).collect()
}

fn same_host(a: &load::HostWeights, b: &load::HostWeights) {
    assert_eq!(a.tensors.len(), b.tensors.len());
    for (k, t) in &a.tensors {
        assert_eq!(t, &b.tensors[k], "{k}");
    }
}

#[test]
fn official_pth_state_dict_loads_like_the_safetensors() {
    let dir = tempdir("pth");
    let pth = dir.as_path().join("depth_anything_v2_reduced.pth");
    std::fs::write(&pth, state_dict_pth(&reduced_tensors(), None)).unwrap();
    let a = load::read_with(&pth, None, Some(reduced_cfg())).unwrap();
    let b = load::read_with(&fixture("random_vits_weights.safetensors"), None, Some(reduced_cfg())).unwrap();
    assert!(!a.hf_layout);
    same_host(&a, &b);
    // Truncated: an error naming the file, no panic.
    let bytes = std::fs::read(&pth).unwrap();
    for cut in [bytes.len() / 2, bytes.len() - 30, 100] {
        let t = dir.as_path().join("truncated.pth");
        std::fs::write(&t, &bytes[..cut]).unwrap();
        let e = load::read_with(&t, None, Some(reduced_cfg())).err().unwrap().to_string();
        assert!(e.contains("truncated.pth"), "{e}");
    }
    // BUILD setting anything but `_metadata` is refused as unsafe.
    let mut evil = vec![b'}'];
    unicode(&mut evil, "__class__");
    unicode(&mut evil, "x");
    evil.push(b's');
    let h = dir.as_path().join("hostile.pth");
    std::fs::write(&h, state_dict_pth(&reduced_tensors()[..2], Some(&evil))).unwrap();
    let e = load::read_with(&h, None, Some(reduced_cfg())).err().unwrap().to_string();
    assert!(e.contains("hostile.pth") && e.contains("BUILD"), "{e}");
}

/// The -hf names of an official key (§8.2); q/k/v split in three.
fn hf_names(k: &str) -> Vec<String> {
    let s = |x: &str| vec![x.to_string()];
    if let Some(r) = k.strip_prefix("pretrained.blocks.") {
        let (i, rest) = r.split_once('.').unwrap();
        let l = format!("backbone.encoder.layer.{i}");
        return match rest {
            "ls1.gamma" => s(&format!("{l}.layer_scale1.lambda1")),
            "ls2.gamma" => s(&format!("{l}.layer_scale2.lambda1")),
            _ if rest.starts_with("attn.qkv.") => {
                let kind = rest.rsplit('.').next().unwrap();
                ["query", "key", "value"]
                    .iter()
                    .map(|q| format!("{l}.attention.attention.{q}.{kind}"))
                    .collect()
            }
            _ if rest.starts_with("attn.proj.") => {
                s(&format!("{l}.attention.output.dense.{}", rest.rsplit('.').next().unwrap()))
            }
            _ => s(&format!("{l}.{rest}")),
        };
    }
    match k {
        "pretrained.cls_token" => return s("backbone.embeddings.cls_token"),
        "pretrained.mask_token" => return s("backbone.embeddings.mask_token"),
        "pretrained.pos_embed" => return s("backbone.embeddings.position_embeddings"),
        _ => {}
    }
    if let Some(x) = k.strip_prefix("pretrained.patch_embed.proj.") {
        return s(&format!("backbone.embeddings.patch_embeddings.projection.{x}"));
    }
    if let Some(x) = k.strip_prefix("pretrained.norm.") {
        return s(&format!("backbone.layernorm.{x}"));
    }
    if let Some(r) = k.strip_prefix("depth_head.projects.") {
        let (i, x) = r.split_once('.').unwrap();
        return s(&format!("neck.reassemble_stage.layers.{i}.projection.{x}"));
    }
    if let Some(r) = k.strip_prefix("depth_head.resize_layers.") {
        let (i, x) = r.split_once('.').unwrap();
        return s(&format!("neck.reassemble_stage.layers.{i}.resize.{x}"));
    }
    let r = k.strip_prefix("depth_head.scratch.").unwrap();
    if let Some(rest) = r.strip_prefix("layer") {
        let (n, x) = rest.split_once("_rn.").unwrap();
        return s(&format!("neck.convs.{}.{x}", n.parse::<usize>().unwrap() - 1));
    }
    if let Some(rest) = r.strip_prefix("refinenet") {
        let (n, x) = rest.split_once('.').unwrap();
        let j = 4 - n.parse::<usize>().unwrap();
        let l = format!("neck.fusion_stage.layers.{j}");
        if let Some(y) = x.strip_prefix("out_conv.") {
            return s(&format!("{l}.projection.{y}"));
        }
        let (u, y) = x.strip_prefix("resConfUnit").unwrap().split_once(".conv").unwrap();
        let (c, z) = y.split_once('.').unwrap();
        return s(&format!("{l}.residual_layer{u}.convolution{c}.{z}"));
    }
    let (conv, x) = match r {
        _ if r.starts_with("output_conv1.") => ("conv1", &r["output_conv1.".len()..]),
        _ if r.starts_with("output_conv2.0.") => ("conv2", &r["output_conv2.0.".len()..]),
        _ => ("conv3", &r["output_conv2.2.".len()..]),
    };
    s(&format!("head.{conv}.{x}"))
}

/// Writes the reduced model as a transformers folder (`model.safetensors`, and `config.json` when asked).
fn write_hf_folder(dir: &Path, with_config: bool) {
    let mut hf = Vec::new();
    for (name, shape, data) in reduced_tensors() {
        let names = hf_names(&name);
        let rows = shape[0] / names.len();
        let per = data.len() / names.len();
        for (j, n) in names.iter().enumerate() {
            let mut sh = shape.clone();
            sh[0] = rows;
            hf.push(HostTensor {
                name: n.clone(),
                shape: sh,
                data: HostData::F32(data[j * per..(j + 1) * per].to_vec()),
            });
        }
    }
    assert_eq!(hf.len(), 127 + 2 * 4 * 2);
    write_safetensors(&dir.join("model.safetensors"), &hf).unwrap();
    if with_config {
        let cfg = r#"{"model_type": "depth_anything", "backbone_config": {"model_type": "dinov2", "hidden_size": 64,
            "num_hidden_layers": 4, "num_attention_heads": 2, "out_indices": [1, 2, 3, 4], "patch_size": 14,
            "image_size": 518, "mlp_ratio": 4}, "fusion_hidden_size": 16, "neck_hidden_sizes": [8, 16, 32, 64],
            "head_hidden_size": 32, "depth_estimation_type": "relative"}"#;
        std::fs::write(dir.join("config.json"), cfg).unwrap();
    }
}

#[test]
fn hf_layout_loads_like_the_official_one() {
    let dir = tempdir("hf");
    write_hf_folder(&dir, false);
    let a = load::read_with(dir.as_path(), None, Some(reduced_cfg())).unwrap();
    assert!(a.hf_layout);
    let b = load::read_with(&fixture("random_vits_weights.safetensors"), None, Some(reduced_cfg())).unwrap();
    same_host(&a, &b);
    // A folder without model.safetensors says what it expects.
    let e = load::read(&dir.as_path().join("nothing"), None).err().unwrap().to_string();
    assert!(e.contains("nothing"), "{e}");
}

#[test]
fn mismatched_encoder_is_refused_before_reading_data() {
    // A vits-shaped file whose data is all zeros (sparse): the shapes say vits.
    let dir = tempdir("enc");
    let cfg = DepthConfig::preset(Encoder::Vits);
    let mut header = String::from("{");
    let mut off = 0usize;
    for (i, (k, s)) in cfg.expected().iter().enumerate() {
        let n: usize = s.iter().product::<usize>() * 4;
        if i > 0 {
            header.push(',');
        }
        header.push_str(&format!(
            "\"{k}\":{{\"dtype\":\"F32\",\"shape\":{s:?},\"data_offsets\":[{off},{}]}}",
            off + n
        ));
        off += n;
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let path = dir.as_path().join("depth_anything_v2_vits.safetensors");
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    std::fs::write(&path, &bytes).unwrap();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len((bytes.len() + off) as u64).unwrap();
    let e = load::read(&path, Some(Encoder::Vitl)).err().unwrap().to_string();
    assert!(
        e.contains("--encoder vitl") && e.contains("vits weights") && e.contains("vits.safetensors"),
        "{e}"
    );
    let hw = load::read(&path, Some(Encoder::Vits)).unwrap();
    assert_eq!(hw.cfg.encoder, Some(Encoder::Vits));
}

// ---- command line ----

fn trajattn(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_trajattn")).args(args).output().unwrap()
}

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn err_text(o: &std::process::Output) -> String {
    assert!(!o.status.success(), "expected a failure");
    let e = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!e.contains("panicked"), "{e}");
    e
}

#[test]
fn depth_command_writes_the_official_npy_and_refuses_bad_input() {
    let dir = tempdir("cli");
    let model = dir.join("hf");
    std::fs::create_dir_all(&model).unwrap();
    write_hf_folder(&model, true);
    let png = fixture("random_vits_input.png");
    let (m, p) = (model.to_str().unwrap(), png.to_str().unwrap());
    let out = dir.join("d.npy");
    let prev = dir.join("d.png");
    let o = trajattn(&[
        "depth",
        "--image",
        p,
        "--model",
        m,
        "--input-size",
        "140",
        "--out",
        out.to_str().unwrap(),
        "--preview",
        prev.to_str().unwrap(),
    ]);
    ok(&o);
    let got = trajattn::trajectory::npy::read(&out).unwrap();
    assert_eq!(got.shape, vec![70, 98]);
    let bytes = std::fs::read(&out).unwrap();
    assert!(
        bytes.starts_with(b"\x93NUMPY\x01\x00") && String::from_utf8_lossy(&bytes[..128]).contains("'<f4'")
    );
    let want = trajattn::trajectory::npy::read(&fixture("random_vits_depth.npy")).unwrap().to_f64().unwrap();
    let g = got.to_f64().unwrap();
    let d = g.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(d <= 1e-4, "CLI depth: max|Δ| {d:.3e}");
    assert!(prev.is_file());
    // Batch mode over a folder of frames.
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    std::fs::copy(&png, frames.join("0000.png")).unwrap();
    std::fs::copy(&png, frames.join("0001.png")).unwrap();
    let od = dir.join("depths");
    ok(&trajattn(&[
        "depth",
        "--images",
        frames.to_str().unwrap(),
        "--model",
        m,
        "--input-size",
        "140",
        "--out",
        od.to_str().unwrap(),
        "--previews",
    ]));
    for n in ["0000.npy", "0001.npy", "0000.png"] {
        assert!(od.join(n).is_file(), "{n}");
    }
    assert_eq!(std::fs::read(od.join("0001.npy")).unwrap(), bytes);
    // Bad input: each a clear error, no panic.
    let e =
        err_text(&trajattn(&["depth", "--image", p, "--model", m, "--input-size", "100", "--out", "x.npy"]));
    assert!(e.contains("multiple of 14"), "{e}");
    let e = err_text(&trajattn(&[
        "depth",
        "--image",
        p,
        "--model",
        m,
        "--encoder",
        "vitl",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(e.contains("--encoder vitl") && e.contains("model.safetensors"), "{e}");
    let junk = dir.join("junk.pth");
    std::fs::write(&junk, b"PK\x03\x04 not really a zip").unwrap();
    let e = err_text(&trajattn(&[
        "depth",
        "--image",
        p,
        "--model",
        junk.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(e.contains("junk.pth"), "{e}");
    let e = err_text(&trajattn(&["depth", "--image", m, "--model", m, "--out", out.to_str().unwrap()]));
    assert!(e.contains("hf"), "{e}");
    // A one-pixel grey image works (resized up to the input size).
    let tiny = dir.join("tiny.png");
    image::GrayImage::from_pixel(1, 1, image::Luma([77])).save(&tiny).unwrap();
    ok(&trajattn(&[
        "depth",
        "--image",
        tiny.to_str().unwrap(),
        "--model",
        m,
        "--input-size",
        "28",
        "--out",
        dir.join("tiny.npy").to_str().unwrap(),
    ]));
    assert_eq!(trajattn::trajectory::npy::read(&dir.join("tiny.npy")).unwrap().shape, vec![1, 1]);
}

#[test]
fn camera_from_depth_model_equals_camera_from_its_depth_file() {
    let dir = tempdir("camera");
    let model = dir.join("hf");
    std::fs::create_dir_all(&model).unwrap();
    write_hf_folder(&model, true);
    let png = fixture("random_vits_input.png");
    let (m, p) = (model.to_str().unwrap(), png.to_str().unwrap());
    let a = dir.join("a");
    let b = dir.join("b");
    ok(&trajattn(&[
        "camera",
        "--image",
        p,
        "--depth-model",
        m,
        "--input-size",
        "140",
        "--frames",
        "3",
        "--out",
        a.to_str().unwrap(),
    ]));
    let depth = a.join("depth.npy");
    assert!(depth.is_file());
    ok(&trajattn(&[
        "camera",
        "--image",
        p,
        "--depth",
        depth.to_str().unwrap(),
        "--frames",
        "3",
        "--out",
        b.to_str().unwrap(),
    ]));
    let mut compared = 0;
    for e in std::fs::read_dir(&b).unwrap() {
        let name = e.unwrap().file_name();
        if name.to_string_lossy().ends_with(".npy") {
            assert_eq!(
                std::fs::read(a.join(&name)).unwrap(),
                std::fs::read(b.join(&name)).unwrap(),
                "{name:?}"
            );
            compared += 1;
        }
    }
    assert!(compared >= 2, "trajectory files compared: {compared}");
    let e = err_text(&trajattn(&[
        "camera",
        "--image",
        p,
        "--frames",
        "3",
        "--out",
        dir.join("c").to_str().unwrap(),
    ]));
    assert!(e.contains("--depth"), "{e}");
}

/// The second reference model (tests/reference/depth_fixtures.py): D=32, 4 blocks, 2 heads of 16, F=8,
/// C=[8,16,24,32], a 61×83 photo at `--input-size 70` (patch grid 5×7, so the stride-2 layer gives 3×4).
fn vits_small_cfg() -> DepthConfig {
    DepthConfig {
        encoder: None,
        embed_dim: 32,
        blocks: 4,
        heads: 2,
        mlp_hidden: 128,
        features: 8,
        out_channels: [8, 16, 24, 32],
        take: [0, 1, 2, 3],
        patch: 14,
        pos_grid: 37,
    }
}

#[test]
fn second_reference_model_matches_the_official_code_from_png_and_from_its_input() {
    // Made by our fixture script with the official repository's model code: a different seed, odd image sizes
    // and a patch grid whose stride-2 layer rounds up. f32: depth from the PNG ≤ 1e-4, head output from the
    // official input tensor ≤ 1e-4 × its range.
    let gpu = Gpu::shared().unwrap();
    let hw = load::read_with(&fixture("vits_small.safetensors"), None, Some(vits_small_cfg())).unwrap();
    let m = DepthAnything::from_host(&gpu, hw, DType::F32).unwrap();
    let img = trajattn::image_input::open_rgb(&fixture("vits_small_input.png")).unwrap();
    let got = m.infer_image(&gpu, &img, 70).unwrap();
    let npy = trajattn::trajectory::npy::read(&fixture("vits_small_depth.npy")).unwrap();
    assert_eq!(npy.shape, vec![61, 83]);
    let want: Vec<f32> = npy.to_f64().unwrap().into_iter().map(|v| v as f32).collect();
    let (d, mx) = errs(&got, &want);
    eprintln!("vits_small depth: max|Δ| {d:.3e} (max {mx:.3e})");
    assert!(d <= 1e-4, "vits_small depth from the PNG: max|Δ| {d:.3e} (max {mx:.3e})");
    let f = SafetensorsFile::open(&fixture("vits_small_debug.safetensors")).unwrap();
    let names: Vec<String> = f.entries().iter().map(|e| e.name.clone()).collect();
    let input = f.read_f32("debug.input").unwrap();
    let out = m.forward(&gpu, &input, 70, 98).unwrap();
    let (d, mx) = errs(&out, &f.read_f32("debug.output_conv2").unwrap());
    assert!(d <= 1e-4 * mx, "vits_small output_conv2: max|Δ| {d:.3e} > 1e-4 × {mx:.3e} ({names:?})");
}

#[test]
fn video_camera_from_depth_model_equals_video_camera_from_its_depth_files() {
    use trajattn::trajectory::folder;
    // Three frames and a tracks folder; depth per frame from the model (written to OUT/depth/NNNN.npy), then the
    // same run from those files: every trajectory file must be byte-equal.
    let dir = tempdir("video-camera");
    let model = dir.join("hf");
    std::fs::create_dir_all(&model).unwrap();
    write_hf_folder(&model, true);
    let (w, h, f) = (32usize, 16usize, 3usize);
    std::fs::create_dir_all(dir.join("frames")).unwrap();
    for t in 0..f {
        image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
            image::Rgb([(x * 8) as u8, (y * 16) as u8, (t * 80 + x as usize) as u8])
        })
        .save(dir.join(format!("frames/frame_{t:04}.png")))
        .unwrap();
    }
    let n = (w / 4) * (h / 4);
    let coords: Vec<f64> =
        (0..f * n).flat_map(|i| [((i % n) % 8 * 4) as f64 + 0.5, ((i % n) / 8 * 4) as f64 + 0.5]).collect();
    folder::write_tracks(
        &dir.join("tracks"),
        &folder::Trajectories { frames: f, n, coords, valid: vec![true; f * n] },
    )
    .unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let run = |depth: [&str; 2], out: &Path| {
        let mut a = vec!["video-camera".to_string(), "--video-frames".into(), s(&dir.join("frames"))];
        a.extend(depth.iter().map(|x| x.to_string()));
        a.extend(["--tracks".into(), s(&dir.join("tracks")), "--out".into(), s(out)]);
        if depth[0] == "--depth-model" {
            a.extend(["--input-size".into(), "140".into()]);
        }
        trajattn(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (a, b) = (dir.join("a"), dir.join("b"));
    ok(&run(["--depth-model", &s(&model)], &a));
    for t in 0..f {
        assert!(a.join(format!("depth/{t:04}.npy")).is_file(), "depth of frame {t}");
    }
    ok(&run(["--depths", &s(&a.join("depth"))], &b));
    let mut compared = 0;
    for sub in ["camera", "merged"] {
        for e in std::fs::read_dir(b.join(sub)).unwrap() {
            let name = e.unwrap().file_name();
            if name.to_string_lossy().ends_with(".npy") {
                let (x, y) = (a.join(sub).join(&name), b.join(sub).join(&name));
                assert_eq!(std::fs::read(&x).unwrap(), std::fs::read(&y).unwrap(), "{x:?}");
                compared += 1;
            }
        }
    }
    assert!(compared >= 4, "trajectory files compared: {compared}");
}
