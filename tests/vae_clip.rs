//! VAE (encoder mean, temporal decoder whole and in chunks) and CLIP image encoder against diffusers 0.27.0 /
//! transformers 4.33.2 on tiny random models (tests/reference/pipeline_fixtures.py).

mod common;
use common::rel;

use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use trajattn::models::clip::ClipVision;
use trajattn::models::unet_io::tensor_f32;
use trajattn::models::vae::Vae;
use trajattn_kernels::{DType, Gpu};

fn dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pipeline").join(case)
}

fn dtypes(gpu: &Gpu) -> Vec<(DType, f64)> {
    // f32: accumulation order only. f16: every activation and weight stored in half precision.
    let mut v = vec![(DType::F32, 1e-4)];
    if gpu.caps.shader_f16 {
        v.push((DType::F16, 1e-2));
    }
    v
}

#[test]
fn vae_encoder_mean_and_temporal_decoder_match_diffusers() {
    let gpu = Gpu::shared().unwrap();
    let bytes = std::fs::read(dir("vae").join("vae_io.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let p = Path::new("vae_io.safetensors");
    let get = |n: &str| tensor_f32(&st, p, n).unwrap();
    let (is, image) = get("image");
    let (_, mean) = get("posterior_mean");
    let (ls, latents) = get("latents");
    let (_, decoded) = get("decoded");
    let (_, chunked) = get("decoded_chunked");
    for (dtype, tol) in dtypes(&gpu) {
        let vae = Vae::load_dir(&gpu, &dir("svd").join("vae"), dtype).unwrap();
        let ours = vae.encode(&gpu, &image, is[0], is[2], is[3]).unwrap();
        let e = rel(&ours, &mean);
        eprintln!("vae encode {dtype}: {e:.3e}");
        assert!(e <= tol, "encode {dtype}: {e:.3e}");
        let ours = vae.decode_clip(&gpu, &latents, ls[0], ls[2], ls[3]).unwrap();
        let e = rel(&ours, &decoded);
        eprintln!("vae decode {dtype}: {e:.3e}");
        assert!(e <= tol, "decode {dtype}: {e:.3e}");
        let mut seen = vec![];
        let ours = vae.decode(&gpu, &latents, ls[0], ls[2], ls[3], 2, |f| seen.push(f)).unwrap();
        let e = rel(&ours, &chunked);
        eprintln!("vae decode in chunks of 2 {dtype}: {e:.3e}");
        assert!(e <= tol, "chunked decode {dtype}: {e:.3e}");
        assert_eq!(seen, vec![2, 4, 5]);
        // Chunking changes the result (the temporal layers see only their chunk): the fixture must show it.
        assert!(rel(&chunked, &decoded) > 1e-3);
    }
}

#[test]
fn clip_image_embeddings_match_transformers() {
    let gpu = Gpu::shared().unwrap();
    let bytes = std::fs::read(dir("clip").join("clip_io.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let p = Path::new("clip_io.safetensors");
    let (ps, pixels) = tensor_f32(&st, p, "pixel_values").unwrap();
    let (_, want) = tensor_f32(&st, p, "image_embeds").unwrap();
    for (dtype, tol) in dtypes(&gpu) {
        let clip = ClipVision::load_dir(&gpu, &dir("svd").join("image_encoder"), dtype).unwrap();
        let ours = clip.encode(&gpu, &pixels, ps[0]).unwrap();
        let e = rel(&ours, &want);
        eprintln!("clip {dtype}: {e:.3e}");
        assert!(e <= tol, "clip {dtype}: {e:.3e}");
    }
}

#[test]
fn vae_and_clip_refuse_folders_with_wrong_keys() {
    let gpu = Gpu::shared().unwrap();
    let tmp = std::env::temp_dir().join(format!("trajattn-vae-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::copy(dir("svd").join("vae/config.json"), tmp.join("config.json")).unwrap();
    // The CLIP weights under the VAE's name: every VAE key missing, every CLIP key unexpected.
    std::fs::copy(
        dir("svd").join("image_encoder/model.safetensors"),
        tmp.join("diffusion_pytorch_model.safetensors"),
    )
    .unwrap();
    let e = Vae::load_dir(&gpu, &tmp, DType::F32).err().expect("must fail").to_string();
    assert!(e.contains("missing tensor `encoder.conv_in.weight`") || e.contains("encoder.conv_in"), "{e}");
    std::fs::write(tmp.join("config.json"), "{not json").unwrap();
    assert!(Vae::load_dir(&gpu, &tmp, DType::F32).is_err());
}

#[test]
fn clip_exports_with_position_ids_load() {
    // Some transformers exports include `vision_model.embeddings.position_ids` (int64): ignored, as the spec says.
    let gpu = Gpu::shared().unwrap();
    let src = dir("svd").join("image_encoder");
    let tmp = std::env::temp_dir().join(format!("trajattn-clip-posids-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::copy(src.join("config.json"), tmp.join("config.json")).unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let ids: Vec<u8> = (0..50i64).flat_map(|i| i.to_le_bytes()).collect();
    let mut views: Vec<(String, safetensors::tensor::TensorView)> =
        st.tensors().into_iter().map(|(n, v)| (n.to_string(), v)).collect();
    views.push((
        "vision_model.embeddings.position_ids".into(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![1, 50], &ids).unwrap(),
    ));
    safetensors::serialize_to_file(views, None, &tmp.join("model.safetensors")).unwrap();
    let clip = ClipVision::load_dir(&gpu, &tmp, DType::F32).unwrap();
    assert_eq!(clip.cfg.hidden_size, 32);
}
