//! `trajattn shaders --dump DIR`: the exact pipelines the runtime would create on one adapter for a generation
//! at one shape, as final WGSL files and a radvstats manifest (`label<TAB>entry<TAB>file<TAB>K=V,K=V`).
//!
//! The device is dry ([`Gpu::emulating`]): kernel selection follows the chosen adapter's facts, limits and tier
//! even when that adapter cannot be opened (RADV's null device under `RADV_FORCE_FAMILY`), the graphs of a
//! generation (CLIP, VAE encoder, UNet with the trajectory branch, temporal VAE decoder) are built as a
//! generation builds them, and every pipeline key the launchers ask for is recorded; nothing is compiled or run.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use trajattn::models::unet::{GraphOptions, Trajectories, UNet, UNetGraph, UNetShape};
use trajattn::pipeline::staged::Staged;
use trajattn::pipeline::Svd;
use trajattn_kernels::ops::trajectory_attention::Grouping;
use trajattn_kernels::pipelines::PipelineKey;
use trajattn_kernels::shaders::ALL;
use trajattn_kernels::{DType, Gpu, GpuOptions, Recorder, Tensor};

const BUNDLED_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pipeline/svd");
const BUNDLED_TRAJ_WEIGHTS: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pipeline/svd_traj/trajattn_temp.pth");

/// Arguments of `trajattn shaders`.
#[derive(Args, Debug)]
pub struct ShadersArgs {
    /// Write every pipeline's final WGSL and `manifest.tsv` (for `../shared/tools/radvstats/run.sh --manifest`)
    /// into this folder.
    #[arg(long)]
    pub dump: PathBuf,
    /// Generation size `HxWxF`: pixels and frames (default: 64x64 and the model's frame count; the bundled tiny
    /// model needs multiples of 16 pixels, SVD widths multiples of 64).
    #[arg(long)]
    pub shape: Option<String>,
    /// Model precision (the VAE encoder is always f32, as in generation).
    #[arg(long, default_value = "f16", value_parser = ["f16", "f32"])]
    pub dtype: String,
    /// A diffusers SVD folder for the configs and weights of UNet, VAE and CLIP (default: the bundled tiny model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Replace the model's UNet by one of these widths (`svd-xt`, `svd` or a `config.json`; weights are not
    /// read: the dry device allocates them uninitialised). VAE and CLIP stay the model's.
    #[arg(long)]
    pub unet_config: Option<String>,
    /// Frames the temporal VAE decoder decodes together (as `generate --decode-chunk`).
    #[arg(long, default_value_t = 8)]
    pub decode_chunk: usize,
}

/// Builds the graphs on a dry device emulating the chosen adapter and writes the dump.
pub fn run(opts: &GpuOptions, a: &ShadersArgs) -> Result<()> {
    let gpu = Gpu::emulating(opts).context("choosing the adapter to dump for")?;
    let dtype = if a.dtype == "f16" { DType::F16 } else { DType::F32 };
    if dtype == DType::F16 && !gpu.caps.shader_f16 {
        bail!("--dtype f16 needs SHADER_F16, which {} does not offer (use --dtype f32)", gpu.info.name);
    }
    let model = a.model.clone().unwrap_or_else(|| PathBuf::from(BUNDLED_MODEL));
    let traj_file =
        if a.model.is_none() { PathBuf::from(BUNDLED_TRAJ_WEIGHTS) } else { model.join("trajattn_temp.pth") };
    let mut svd = Svd::load(&gpu, &model, traj_file.exists().then_some(traj_file.as_path()), dtype)
        .with_context(|| format!("loading the model configs from {}", model.display()))?;
    if let Some(spec) = &a.unet_config {
        let cfg = super::convert::unet_config(spec)?;
        let unet = UNet::random(&gpu, cfg.clone(), dtype, 1, true)
            .context("building the UNet at the requested widths")?;
        svd.unet = Staged::resident(cfg.clone(), unet, move |gpu: &Gpu| {
            UNet::random(gpu, cfg.clone(), dtype, 1, true)
        });
        svd.unet_trajectory = true;
    } else if !svd.unet_trajectory {
        bail!(
            "{} has no trajattn_temp.pth: the dump covers the trajectory branch (or pass --unet-config)",
            model.display()
        );
    }
    let frames_default = svd.unet.cfg.num_frames;
    let (ph, pw, f) = match &a.shape {
        None => (64, 64, frames_default),
        Some(s) => {
            let d: Vec<usize> = s
                .split('x')
                .map(|v| v.trim().parse::<usize>())
                .collect::<Result<_, _>>()
                .with_context(|| format!("--shape {s:?} is not HxWxF"))?;
            let [h, w, f] = d[..] else { bail!("--shape {s:?} is not HxWxF") };
            (h, w, f)
        }
    };
    let unit = svd.size_unit();
    if ph == 0 || pw == 0 || f == 0 || ph % unit != 0 || pw % unit != 0 {
        bail!("--shape: height and width must be positive multiples of {unit} pixels for this model, frames positive");
    }
    if a.decode_chunk == 0 {
        bail!("--decode-chunk must be at least 1");
    }
    eprintln!(
        "dumping the pipelines of a {ph}x{pw}x{f} {dtype} generation for {} ({:?}), kernels {}, built on {}",
        gpu.info.name,
        gpu.info.backend,
        gpu.tier,
        gpu.host_adapter().map(|h| h.name.as_str()).unwrap_or("?")
    );

    // The order of a generation: CLIP, VAE encoder, UNet (+ trajectory branch), VAE decoder.
    let side = svd.clip.cfg.image_size;
    svd.clip.get(&gpu)?.encode(&gpu, &vec![0.0; 3 * side * side], 1).context("CLIP")?;
    svd.vae_encoder.get(&gpu)?.encode(&gpu, &vec![0.0; 3 * ph * pw], 1, ph, pw).context("VAE encoder")?;
    // The UNet's latents: the model's VAE factor, or SVD's 8 when --unet-config replaces the UNet (the bundled
    // VAE halves only once; its own graphs still run at its factor).
    let f8 = svd.vae_encoder.scale_factor();
    let uf = if a.unet_config.is_some() { 8 } else { f8 };
    if ph % (uf * (1 << (svd.unet.cfg.n_blocks() - 1))) != 0
        || pw % (uf * (1 << (svd.unet.cfg.n_blocks() - 1))) != 0
    {
        bail!(
            "--shape: height and width must be multiples of {} pixels for this UNet",
            uf * (1 << (svd.unet.cfg.n_blocks() - 1))
        );
    }
    let (h, w) = (ph / uf, pw / uf);
    let n = h * w;
    let coords: Vec<f64> =
        (0..f * n * 2).map(|i| ((i * 7) % if i % 2 == 0 { pw } else { ph }) as f64).collect();
    let traj = Trajectories {
        coords,
        visible: vec![true; f * n],
        n,
        origin_w: pw,
        origin_h: ph,
        grouping: Grouping::Pairs,
    };
    let shape = UNetShape { batch: 2, frames: f, height: h, width: w };
    let unet = svd.unet.get(&gpu)?;
    let graph = UNetGraph::build(&gpu, &unet, shape, GraphOptions::default(), Some(traj))
        .context("UNet with the trajectory branch")?;
    // The denoising step's kernels (scaled input, CFG + Euler update) around the UNet.
    {
        use trajattn_kernels::ops::sampler::{record_cfg_euler, record_scale_input, StepLayout, StepScalars};
        let plane = svd.unet.cfg.out_channels * n;
        let layout = StepLayout { frames: f, plane, batch: 2, stride: svd.unet.cfg.in_channels * n };
        let f32t = |len: usize| Tensor::from_f32(&gpu, &vec![0.0; len], &[len], DType::F32);
        let (lat, scales, flag) = (f32t(f * plane)?, f32t(f)?, f32t(1)?);
        let sc = StepScalars::new(700.0, 500.0);
        let mut rec = Recorder::new(&gpu);
        record_scale_input(&mut rec, &lat, graph.input(), &layout, &sc).context("sampler")?;
        record_cfg_euler(&mut rec, graph.output(), &scales, &lat, &flag, &layout, &sc).context("sampler")?;
        rec.run()?;
    }
    drop(graph);
    let lc = svd.vae_encoder.cfg.latent_channels;
    let dec = svd.vae_decoder.get(&gpu)?;
    let chunk = a.decode_chunk.min(f);
    let (vh, vw) = (ph / f8, pw / f8);
    dec.decode_clip(&gpu, &vec![0.0; chunk * lc * vh * vw], chunk, vh, vw).context("VAE decoder")?;
    if f % chunk != 0 {
        let r = f % chunk;
        dec.decode_clip(&gpu, &vec![0.0; r * lc * vh * vw], r, vh, vw).context("VAE decoder (last chunk)")?;
    }
    gpu.check_errors()?;

    let keys = gpu.pipelines().keys();
    let unused: Vec<&PipelineKey> = keys.iter().filter(|k| !gpu.pipelines().was_dispatched(k)).collect();
    let n = write_dump(&a.dump, &keys, &unused)?;
    println!(
        "{} pipelines ({} WGSL files) for {} written to {}{}",
        keys.len(),
        n,
        gpu.info.name,
        a.dump.join("manifest.tsv").display(),
        if unused.is_empty() {
            String::new()
        } else {
            format!("; {} created but never dispatched (listed, and commented in the manifest)", unused.len())
        }
    );
    Ok(())
}

/// Writes `DIR/<shader>.<dtype>.wgsl` for every (shader, dtype) of `keys` and `DIR/manifest.tsv`, one pipeline a
/// line (`unused`: created but never dispatched, named in a comment line too); returns the number of WGSL files.
pub fn write_dump(dir: &Path, keys: &[PipelineKey], unused: &[&PipelineKey]) -> Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut files: BTreeMap<String, ()> = BTreeMap::new();
    let mut manifest = String::from("# label\tentry\tfile\tconstants\n");
    for k in unused {
        manifest.push_str(&format!("# created but never dispatched: {k}\n"));
    }
    for k in keys {
        let sh = ALL
            .iter()
            .find(|s| s.name == k.shader)
            .with_context(|| format!("shader {} is not in shaders::ALL", k.shader))?;
        let file = format!("{}.{}.wgsl", k.shader, k.dtype);
        if files.insert(file.clone(), ()).is_none() {
            let src = sh.source(k.dtype)?;
            std::fs::write(dir.join(&file), src).with_context(|| format!("writing {file}"))?;
        }
        manifest.push_str(&format!("{k}\t{}\t{file}\t{}\n", k.entry, k.constants_string()));
    }
    std::fs::write(dir.join("manifest.tsv"), manifest).context("writing manifest.tsv")?;
    Ok(files.len())
}
