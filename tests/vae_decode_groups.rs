//! The VAE decoder's per-frame stretches (each upsampler and the next block's first spatial res-block) run in
//! groups of frames so that no tensor exceeds the adapter's largest buffer: the grouping must not change the
//! decoded frames, and the group size follows the buffer limit.

mod common;
use common::rel;

use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use trajattn::models::unet_io::tensor_f32;
use trajattn::models::vae::Vae;
use trajattn_kernels::{DType, Gpu};

fn dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pipeline").join(case)
}

/// Decoding the fixture clip (5 frames) whole, per frame, in groups of 2 (2 + 2 + 1) and with the automatic
/// grouping gives the same frames (f32: within f32 rounding of the unsplit run; f16: within f16 storage
/// rounding), and all of them match diffusers.
#[test]
fn grouped_stretches_decode_the_same_frames() {
    let gpu = Gpu::shared().unwrap();
    let bytes = std::fs::read(dir("vae").join("vae_io.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let p = Path::new("vae_io.safetensors");
    let (ls, latents) = tensor_f32(&st, p, "latents").unwrap();
    let (_, decoded) = tensor_f32(&st, p, "decoded").unwrap();
    let mut dtypes = vec![(DType::F32, 1e-6, 1e-4)];
    if gpu.caps.shader_f16 {
        dtypes.push((DType::F16, 2e-3, 1e-2));
    }
    for (dtype, same, tol) in dtypes {
        let mut vae = Vae::load_dir(&gpu, &dir("svd").join("vae"), dtype).unwrap();
        let mut run = |k: Option<usize>| {
            vae.stretch_frames = k;
            vae.decode_clip(&gpu, &latents, ls[0], ls[2], ls[3]).unwrap()
        };
        let whole = run(Some(ls[0]));
        for k in [Some(1), Some(2), None] {
            let ours = run(k);
            let e = rel(&ours, &whole);
            let bits = ours.iter().zip(&whole).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
            eprintln!(
                "{dtype} groups of {k:?}: {e:.3e} from the unsplit decode ({bits} values differ in bits)"
            );
            assert!(e <= same, "{dtype} groups of {k:?}: {e:.3e}");
            assert!(rel(&ours, &decoded) <= tol, "{dtype} groups of {k:?} against diffusers");
        }
    }
}

/// The automatic group: the fixture VAE (widths 32, 64) splits its stretch per frame (the peak cap), and an
/// SVD-sized VAE at 576×1024 f16 keeps every tensor of its last stretch within the buffer limit.
#[test]
fn stretch_groups_fit_the_buffer_limit_and_cap_the_peak() {
    let gpu = Gpu::shared().unwrap();
    let vae = Vae::load_dir(&gpu, &dir("svd").join("vae"), DType::F32).unwrap();
    // Stretch after block 0: input 64 channels, next block 32: cap 5·(64 − 16)/160 → 1.
    assert_eq!(vae.stretch_group(u64::MAX, 0, 5, 64, 4, 6), 1);
    assert_eq!(vae.stretch_group(u64::MAX, 0, 40, 64, 4, 6), 12);
    // A buffer limit of 3 frames' widest tensor (64 × 8 × 12 f32) wins over the cap.
    assert_eq!(vae.stretch_group(3 * 64 * 8 * 12 * 4, 0, 40, 64, 4, 6), 3);
    // Smaller than one frame: one frame per group (the allocation itself then reports the limit).
    assert_eq!(vae.stretch_group(16, 0, 40, 64, 4, 6), 1);
    let svd = trajattn::models::config::VaeConfig {
        block_out_channels: vec![128, 256, 512, 512],
        ..vae.cfg.clone()
    };
    let big =
        Vae::reserved(&gpu.dry_twin(), &svd, DType::F32, trajattn::models::vae::VaePart::Decoder).unwrap();
    // Last upsampler (block 2 → 3): 256 channels at 288×512 → 576×1024; i32::MAX bytes hold 3 f32 frames.
    let k = big.stretch_group(i32::MAX as u64, 2, 8, 256, 288, 512);
    assert_eq!(k, 2);
    assert!(k as u64 * 256 * 576 * 1024 * 4 <= i32::MAX as u64);
    assert_eq!(big.stretch_group(i32::MAX as u64, 2, 25, 256, 288, 512), 3);
}
