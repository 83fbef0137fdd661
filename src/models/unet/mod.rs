//! `UNetSpatioTemporalConditionModel` (diffusers 0.27.0) with the official trajectory-attention branch,
//! recorded once per (batch, frames, height, width) and replayed per denoising step.
//!
//! Module names mirror diffusers (`down_blocks.i.resnets.j`, `…attentions.j.temporal_transformer_blocks.0`),
//! so this file reads side by side with `unet_spatio_temporal_condition.py` and `unet_3d_blocks.py`.
//! Layouts: res-blocks work on `(B·F, C, h, w)`; transformer blocks on channel-last tokens `(B·F, h·w, C)`
//! (spatial) and `(B, h·w, F, C)` (temporal, one sequence per pixel).
//!
//! Everything that depends only on the conditioning (the single-token cross-attention outputs
//! `to_out(to_v(context))` of every block, and the frame position embeddings) is computed once by
//! [`UNetGraph::set_conditioning`]; a step uploads the latents, the timestep embedding input and the
//! trajectory tables, and replays the recorded dispatches.
//!
//! Files: this one holds the model (errors, loading, the weights); `load.rs` the weight files (checked
//! against the config's parameter list) and the trajectory conversion; `graph.rs` the recorded graph (shapes,
//! options, build, conditioning, run); `blocks.rs` the builder of each diffusers block the graph records.

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use half::f16;
use trajattn_kernels::ops::conv::Conv2dOpts;
use trajattn_kernels::ops::elementwise::Bcast;
use trajattn_kernels::ops::group_norm::GroupStats;
use trajattn_kernels::ops::matmul::Epilogue;
use trajattn_kernels::ops::trajectory_attention::{self as traj, Grouping};
use trajattn_kernels::{DType, Gpu, KernelError, Recording, Tensor};

use crate::checkpoint::{CheckpointError, HostTensor};
use crate::models::config::{ConfigError, DownBlockKind, UNetConfig, UpBlockKind};
use crate::models::unet_keys::{check_model_size, expected_unet_keys, trajectory_keys};
use crate::nn::weights::host_dtype;
use crate::nn::{resnet, Act, Builder, Weights, WeightsError};
use trajattn_kernels::lender::{Lender, LenderStats};

/// Errors of building or running the UNet.
#[derive(Debug, thiserror::Error)]
pub enum UNetError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("{0}")]
    Input(String),
}

type Result<T, E = UNetError> = std::result::Result<T, E>;

fn input_err(msg: impl Into<String>) -> UNetError {
    UNetError::Input(msg.into())
}

/// Elements of the widest per-chunk intermediate (the feed-forward's 8·C projection, the fused QKV): bounds
/// the activation memory of the finest level independently of the frame count.
const CHUNK_ELEMS: usize = 1 << 24;

/// Which context the temporal cross-attention reads (docs/reference/svd-architecture.md §3.11.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TimeContext {
    /// diffusers 0.27.0 (the official code): sequence `r = b·S + s` reads batch element `r mod B`.
    #[default]
    Faithful,
    /// diffusers ≥ 0.28: every pixel of batch element `b` reads `b`'s context.
    PerBatch,
}

/// The UNet's weights on the device.
pub struct UNet {
    pub cfg: UNetConfig,
    pub dtype: DType,
    weights: Weights,
    /// Whether the trajectory-branch weights are loaded.
    pub has_trajectory: bool,
}

fn fused_qkv_name(p: &str) -> String {
    format!("{p}.to_qkv.weight")
}

impl UNet {
    /// Loads `diffusion_pytorch_model[.fp16].safetensors` (every key and shape checked against `cfg`) and,
    /// if given, the trajectory branch (`trajattn_temp.pth` or safetensors with real names).
    pub fn load(
        gpu: &Gpu,
        cfg: UNetConfig,
        weights_file: &Path,
        trajectory_file: Option<&Path>,
        dtype: DType,
    ) -> Result<UNet> {
        check_model_size(&cfg)?;
        let file = open_unet(weights_file, &cfg)?;
        let host = host_dtype(dtype);
        let mut unet = Self::from_source(gpu, cfg, dtype, |name| Ok(file.read(name, host)?))?;
        if let Some(path) = trajectory_file {
            let ts = load_trajectory_weights(path, &unet.cfg, host)?;
            unet.add_trajectory_weights(gpu, &ts)?;
        }
        Ok(unet)
    }

    /// Builds the device weights from a source of host tensors by name (base keys only).
    fn from_source(
        gpu: &Gpu,
        cfg: UNetConfig,
        dtype: DType,
        mut read: impl FnMut(&str) -> Result<HostTensor>,
    ) -> Result<UNet> {
        let mut w = Weights::new();
        let mut pending: Vec<(String, HostTensor)> = Vec::new();
        for (name, _) in expected_unet_keys(&cfg, false) {
            if let Some(p) = name.strip_suffix(".to_q.weight").filter(|p| p.ends_with("attn1")) {
                pending.push((p.to_string(), read(&name)?));
                continue;
            }
            if name.ends_with("attn1.to_k.weight") || name.ends_with("attn1.to_v.weight") {
                continue;
            }
            // The single-token cross-attention never needs its query and key projections.
            if name.ends_with("attn2.to_q.weight") || name.ends_with("attn2.to_k.weight") {
                continue;
            }
            let t = read(&name)?;
            w.upload(gpu, &name, &t, dtype)?;
        }
        for (p, q) in pending {
            let k = read(&format!("{p}.to_k.weight"))?;
            let v = read(&format!("{p}.to_v.weight"))?;
            w.upload_concat(gpu, &fused_qkv_name(&p), &[q, k, v], dtype)?;
        }
        Ok(UNet { cfg, dtype, weights: w, has_trajectory: false })
    }

    /// A UNet of configuration `cfg` with seeded random weights (benchmarks and memory measurements): weights
    /// uniform in ±1/sqrt(fan-in), norm scales 1, biases and shifts 0.1-scale, mix factors 0.
    pub fn random(gpu: &Gpu, cfg: UNetConfig, dtype: DType, seed: u64, trajectory: bool) -> Result<UNet> {
        let shapes: HashMap<String, Vec<usize>> = expected_unet_keys(&cfg, true).into_iter().collect();
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut make = |name: &str| -> Result<HostTensor> {
            let shape =
                shapes.get(name).cloned().ok_or_else(|| input_err(format!("no parameter `{name}`")))?;
            let n: usize = shape.iter().product();
            let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
            let norm = name.contains("norm");
            let (scale, base) = if name.ends_with("mix_factor") {
                (0.0, 0.0)
            } else if norm && name.ends_with(".weight") {
                (0.0, 1.0)
            } else if name.ends_with(".bias") || norm {
                (0.1, 0.0)
            } else {
                (1.0 / (fan_in as f32).sqrt(), 0.0)
            };
            let data = (0..n)
                .map(|_| {
                    // xorshift64*: fast and reproducible; quality is irrelevant for weights of a benchmark.
                    state ^= state >> 12;
                    state ^= state << 25;
                    state ^= state >> 27;
                    let u = (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32;
                    base + scale * (2.0 * u - 1.0)
                })
                .collect();
            Ok(HostTensor { name: name.to_string(), shape, data: crate::checkpoint::HostData::F32(data) })
        };
        let mut unet = Self::from_source(gpu, cfg.clone(), dtype, &mut make)?;
        if trajectory {
            let ts: Vec<HostTensor> =
                trajectory_keys(&cfg).iter().map(|(k, _)| make(k)).collect::<Result<_>>()?;
            unet.add_trajectory_weights(gpu, &ts)?;
        }
        Ok(unet)
    }

    /// A UNet of `cfg` whose weights have the shapes the loaders upload (attn1's Q/K/V fused, attn2's query and
    /// key left out; with `trajectory`, the branch's fused Q/K/V and output projections) and no contents: for
    /// memory plans on a dry device ([`Gpu::emulating`]), which never reads them.
    pub fn reserved(gpu: &Gpu, cfg: UNetConfig, dtype: DType, trajectory: bool) -> Result<UNet> {
        check_model_size(&cfg)?;
        let mut w = Weights::new();
        let fused = |s: &[usize]| [vec![3 * s[0]], s[1..].to_vec()].concat();
        for (name, shape) in expected_unet_keys(&cfg, false) {
            if let Some(p) = name.strip_suffix(".to_q.weight").filter(|p| p.ends_with("attn1")) {
                w.reserve(gpu, &fused_qkv_name(p), &fused(&shape), dtype)?;
            } else if !["attn1.to_k.weight", "attn1.to_v.weight", "attn2.to_q.weight", "attn2.to_k.weight"]
                .iter()
                .any(|e| name.ends_with(e))
            {
                w.reserve(gpu, &name, &shape, dtype)?;
            }
        }
        if trajectory {
            for (name, shape) in trajectory_keys(&cfg) {
                if let Some(p) = name.strip_suffix(".to_q.weight") {
                    w.reserve(gpu, &fused_qkv_name(p), &fused(&shape), dtype)?;
                } else if name.ends_with(".to_out.0.weight") || name.ends_with(".to_out.0.bias") {
                    w.reserve(gpu, &name, &shape, dtype)?;
                }
            }
        }
        Ok(UNet { cfg, dtype, weights: w, has_trajectory: trajectory })
    }

    /// Names and shapes of the device weights, sorted by name.
    pub fn weight_list(&self) -> Vec<(String, Vec<usize>)> {
        self.weights.shapes()
    }

    /// Installs trajectory-branch weights given with their real names (registration order not required).
    pub fn add_trajectory_weights(&mut self, gpu: &Gpu, ts: &[HostTensor]) -> Result<()> {
        let expected = trajectory_keys(&self.cfg);
        let by_name: HashMap<&str, &HostTensor> = ts.iter().map(|t| (t.name.as_str(), t)).collect();
        for (name, shape) in &expected {
            let t = by_name
                .get(name.as_str())
                .ok_or_else(|| input_err(format!("missing trajectory weight `{name}`")))?;
            if &t.shape != shape {
                return Err(input_err(format!(
                    "trajectory weight `{name}` has shape {:?}, expected {shape:?}",
                    t.shape
                )));
            }
        }
        for (name, _) in &expected {
            if let Some(p) = name.strip_suffix(".to_q.weight") {
                let get = |s: &str| by_name[format!("{p}.{s}.weight").as_str()].clone();
                self.weights.upload_concat(
                    gpu,
                    &fused_qkv_name(p),
                    &[get("to_q"), get("to_k"), get("to_v")],
                    self.dtype,
                )?;
            } else if name.ends_with(".to_out.0.weight") || name.ends_with(".to_out.0.bias") {
                self.weights.upload(gpu, name, by_name[name.as_str()], self.dtype)?;
            }
        }
        self.has_trajectory = true;
        Ok(())
    }

    /// Reads a diffusers `unet/` folder: `config.json` and the weights (full precision preferred, else fp16).
    pub fn load_dir(gpu: &Gpu, dir: &Path, trajectory_file: Option<&Path>, dtype: DType) -> Result<UNet> {
        let cfg = UNetConfig::from_file(&dir.join("config.json"))?;
        let full = dir.join("diffusion_pytorch_model.safetensors");
        let half = dir.join("diffusion_pytorch_model.fp16.safetensors");
        let file = if full.exists() || !half.exists() { full } else { half };
        Self::load(gpu, cfg, &file, trajectory_file, dtype)
    }

    /// Device bytes of the weights.
    pub fn weight_bytes(&self) -> u64 {
        self.weights.bytes
    }

    fn w(&self, name: &str) -> Result<&Tensor> {
        Ok(self.weights.get(name)?)
    }

    /// `sigmoid(mix_factor)` of an AlphaBlender, in the parameter dtype as the reference computes it.
    fn alpha(&self, name: &str) -> Result<f32> {
        let m = self.weights.scalar(name)?;
        Ok(match self.dtype {
            DType::F32 => 1.0 / (1.0 + (-m).exp()),
            DType::F16 => f16::from_f32(1.0 / (1.0 + (-f16::from_f32(m).to_f32()).exp())).to_f32(),
        })
    }
}

mod blocks;
mod graph;
mod load;

pub use graph::{sinusoid, upload_input, GraphOptions, TrajSlot, Trajectories, UNetGraph, UNetShape};
pub use load::{
    convert_trajectory_checkpoint, convert_trajectory_checkpoint_with_config, load_trajectory_weights,
    open_unet,
};
