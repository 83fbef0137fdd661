//! The VAE decoder is uploaded only after the UNet steps, so its weights file must be checked when the model
//! folder is opened: a missing, reshaped or unreadable decoder tensor is refused by `Svd::load`, before any
//! conditioning or denoising runs, with an error naming the file and the tensor.

use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use trajattn::pipeline::Svd;
use trajattn_kernels::{DType, Gpu};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pipeline/svd")
}

/// A copy of the fixture model in a temp folder whose VAE weights are the fixture's after `edit` (name,
/// dtype, shape, bytes of each tensor); the other folders are links to the fixture's.
fn model_with_vae(tag: &str, edit: impl Fn(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>)) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trajattn-decoder-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("vae")).unwrap();
    for e in std::fs::read_dir(fixture()).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "vae" {
            std::os::unix::fs::symlink(e.path(), dir.join(e.file_name())).unwrap();
        }
    }
    let src = fixture().join("vae");
    std::fs::copy(src.join("config.json"), dir.join("vae/config.json")).unwrap();
    let bytes = std::fs::read(src.join("diffusion_pytorch_model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut ts: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    ts.sort_by(|a, b| a.0.cmp(&b.0));
    edit(&mut ts);
    let views: Vec<(String, TensorView)> =
        ts.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    let out = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.join("vae/diffusion_pytorch_model.safetensors"), out).unwrap();
    dir
}

fn load_err(gpu: &Gpu, dir: &Path) -> String {
    match Svd::load(gpu, dir, None, DType::F32) {
        Ok(_) => panic!("{}: the broken decoder was accepted", dir.display()),
        Err(e) => format!("{e}"),
    }
}

#[test]
fn broken_decoder_weights_are_refused_when_the_model_is_opened() {
    let gpu = Gpu::shared().unwrap();
    // The unedited copy loads (the checks accept the fixture).
    let ok = model_with_vae("same", |_| {});
    Svd::load(&gpu, &ok, None, DType::F32).unwrap();

    let missing = "decoder.up_blocks.1.resnets.0.spatial_res_block.conv1.weight";
    let dir = model_with_vae("missing", |ts| ts.retain(|t| t.0 != missing));
    let e = load_err(&gpu, &dir);
    assert!(e.contains(missing) && e.contains("diffusion_pytorch_model.safetensors"), "{e}");

    // Same bytes, another shape: only the header tells.
    let reshaped = "decoder.conv_out.weight";
    let dir = model_with_vae("reshaped", |ts| {
        let t = ts.iter_mut().find(|t| t.0 == reshaped).unwrap();
        let (a, b) = (t.2[0], t.2[1..].iter().product());
        t.2 = vec![a, b];
    });
    let e = load_err(&gpu, &dir);
    assert!(e.contains(reshaped), "{e}");

    // An attention projection of the wrong width (q, k, v are fused at upload: each is checked apart).
    let narrow = "decoder.mid_block.attentions.0.to_k.bias";
    let dir = model_with_vae("narrow", |ts| {
        let t = ts.iter_mut().find(|t| t.0 == narrow).unwrap();
        t.2[0] -= 1;
        t.3.truncate(t.3.len() - 4);
    });
    let e = load_err(&gpu, &dir);
    assert!(e.contains(narrow), "{e}");

    // A dtype the loader cannot read (I32 of the same size as the F32 data).
    let odd = "decoder.time_conv_out.bias";
    let dir = model_with_vae("dtype", |ts| ts.iter_mut().find(|t| t.0 == odd).unwrap().1 = Dtype::I32);
    let e = load_err(&gpu, &dir);
    assert!(e.contains(odd) && e.contains("I32"), "{e}");

    for tag in ["same", "missing", "reshaped", "narrow", "dtype"] {
        let _ = std::fs::remove_dir_all(
            std::env::temp_dir().join(format!("trajattn-decoder-{tag}-{}", std::process::id())),
        );
    }
}
