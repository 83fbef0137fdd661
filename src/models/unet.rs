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

use crate::checkpoint::{self, CheckpointError, HostTensor};
use crate::models::config::{ConfigError, DownBlockKind, UNetConfig, UpBlockKind};
use crate::models::unet_keys::{expected_unet_keys, trajectory_keys};
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
        let file = checkpoint::open_unet(weights_file, &cfg)?;
        let host = host_dtype(dtype);
        let mut unet = Self::from_source(gpu, cfg, dtype, |name| Ok(file.read(name, host)?))?;
        if let Some(path) = trajectory_file {
            let ts = checkpoint::load_trajectory_weights(path, &unet.cfg, host)?;
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

/// Sizes one graph is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UNetShape {
    /// Batch (2 with classifier-free guidance).
    pub batch: usize,
    pub frames: usize,
    /// Latent height and width.
    pub height: usize,
    pub width: usize,
}

/// Trajectories bound to a graph (docs/reference/trajectory-attention.md §4).
#[derive(Clone, Debug)]
pub struct Trajectories {
    /// `(F, N, 2)` pixel coordinates (x, y) of the `origin_w × origin_h` frame.
    pub coords: Vec<f64>,
    /// `(F, N)` visibility.
    pub visible: Vec<bool>,
    pub n: usize,
    pub origin_w: usize,
    pub origin_h: usize,
    pub grouping: Grouping,
}

/// Options of a graph.
#[derive(Clone, Copy, Debug, Default)]
pub struct GraphOptions {
    pub time_context: TimeContext,
    /// Override of the per-chunk element budget (tests use tiny values to exercise the chunked paths).
    pub chunk_elems: Option<usize>,
}

/// One trajectory-branch call of the recorded graph (in execution order).
pub struct TrajSlot {
    /// Module path of the branch.
    pub module: String,
    /// Latent size at this level.
    pub h: usize,
    pub w: usize,
    /// Trajectories sampled per call (`8·⌊h·w/4⌋`, at most N).
    pub m: usize,
    table: Tensor,
    offsets: Tensor,
    hits: Tensor,
}

/// The recorded UNet for one shape: inputs, prelude (conditioning), step recording and output.
pub struct UNetGraph {
    pub shape: UNetShape,
    sample: Tensor,
    t_sin: Tensor,
    add_sin: Tensor,
    context: Tensor,
    prelude: Recording,
    step: Recording,
    out: Tensor,
    /// Trajectory calls in execution order (empty without the branch).
    pub traj_slots: Vec<TrajSlot>,
    trajectories: Option<Trajectories>,
    taps: HashMap<String, Tensor>,
    _persist: Vec<Tensor>,
    /// Owners of the step's and the prelude's intermediate buffers.
    _lender: Lender,
    _pre_lender: Lender,
    dtype: DType,
    /// FLOPs of one step (matmuls, convolutions, attentions).
    pub flops: f64,
    /// FLOPs the reference implementation spends on the same step.
    pub reference_flops: f64,
    cfg: UNetConfig,
}

/// `Timesteps(dim, flip_sin_to_cos=True, shift=0)` of diffusers, in float32 as the reference computes it.
pub fn sinusoid(t: &[f32], dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let neg_ln = -(10000f64.ln()) as f32;
    let freqs: Vec<f32> = (0..half).map(|k| ((k as f32) * neg_ln / half as f32).exp()).collect();
    let mut out = Vec::with_capacity(t.len() * dim);
    for &tv in t {
        let args: Vec<f32> = freqs.iter().map(|&f| tv * f).collect();
        out.extend(args.iter().map(|a| a.cos()));
        out.extend(args.iter().map(|a| a.sin()));
    }
    out
}

/// Uploads host values into a graph input in its dtype (the UNet input of [`UNetGraph::input`]).
pub fn upload_input(gpu: &Gpu, t: &Tensor, data: &[f32]) -> Result<()> {
    upload(gpu, t, data)
}

fn upload(gpu: &Gpu, t: &Tensor, data: &[f32]) -> Result<()> {
    if data.len() != t.numel() {
        return Err(input_err(format!(
            "expected {} values for {:?}, got {}",
            t.numel(),
            t.shape(),
            data.len()
        )));
    }
    match t.dtype() {
        DType::F32 => gpu.queue.write_buffer(t.buffer(), t.byte_offset(), bytemuck::cast_slice(data)),
        DType::F16 => {
            let h: Vec<f16> = data.iter().map(|&x| f16::from_f32(x)).collect();
            gpu.queue.write_buffer(t.buffer(), t.byte_offset(), bytemuck::cast_slice(&h))
        }
    }
    Ok(())
}

fn upload_u32(gpu: &Gpu, t: &Tensor, data: &[u32]) {
    gpu.queue.write_buffer(t.buffer(), t.byte_offset(), bytemuck::cast_slice(data));
}

/// Per-block constants computed by the prelude.
struct Consts {
    /// `to_out(to_v(context))` of spatial / temporal `attn2`, `[B, C]`, by module prefix.
    cross: HashMap<String, Tensor>,
    /// Frame position embeddings `[B·F, C]` by attention prefix.
    pos: HashMap<String, Tensor>,
}

struct Ctx<'a, 'g> {
    u: &'a UNet,
    b: Builder<'g>,
    shape: UNetShape,
    consts: Consts,
    emb_act: Act,
    traj: Option<&'a Trajectories>,
    slots: Vec<TrajSlot>,
    taps: Option<HashMap<String, Tensor>>,
    opts: GraphOptions,
    /// FLOPs the reference spends beyond ours (full cross-attention, trajectory projections of gathered tokens).
    ref_extra: f64,
}

impl Ctx<'_, '_> {
    fn chunk(&self) -> usize {
        self.opts.chunk_elems.unwrap_or(CHUNK_ELEMS).max(1)
    }

    fn tap(&mut self, name: &str, x: &Tensor) -> Result<()> {
        if let Some(taps) = self.taps.as_mut() {
            let t = Tensor::empty(self.b.gpu, x.shape(), x.dtype())?;
            trajattn_kernels::ops::elementwise::record_unary(
                &mut self.b.rec,
                trajattn_kernels::ops::elementwise::Unary::Scale { alpha: 1.0, beta: 0.0 },
                x,
                &t,
            )?;
            taps.insert(name.to_string(), t);
        }
        Ok(())
    }

    /// `SpatioTemporalResBlock` (docs/reference/svd-architecture.md §3.6).
    fn resnet(&mut self, p: &str, x: &Tensor, eps: f32) -> Result<Act> {
        let (w, e, f) = (&self.u.weights, Some(&*self.emb_act), self.shape.frames);
        let s = resnet::resnet2d(&mut self.b, w, &format!("{p}.spatial_res_block"), x, eps, e)?;
        let t = resnet::temporal_resnet(&mut self.b, w, &format!("{p}.temporal_res_block"), &s, f, eps, e)?;
        let alpha = self.u.alpha(&format!("{p}.time_mixer.mix_factor"))?;
        Ok(self.b.blend(alpha, &s, &t)?)
    }

    /// `x += ff(LN(x))` with a GEGLU feed-forward, over row chunks so the 8·C-wide projection stays small.
    fn feed_forward(&mut self, x: &Tensor, norm: &str, ff: &str) -> Result<()> {
        let u = self.u;
        let c = *x.shape().last().unwrap_or(&1);
        let rows = x.numel() / c.max(1);
        let chunk = (self.chunk() / (8 * c)).clamp(1, rows.max(1));
        let x2 = x.reshape(&[rows, c])?;
        let mut r0 = 0;
        while r0 < rows {
            let nr = chunk.min(rows - r0);
            let xs = x2.narrow0(r0, nr)?;
            let n = self.b.layer_norm(
                &xs,
                u.w(&format!("{norm}.weight"))?,
                u.w(&format!("{norm}.bias"))?,
                1e-5,
            )?;
            let (pw, pb) = (u.w(&format!("{ff}.net.0.proj.weight"))?, u.w(&format!("{ff}.net.0.proj.bias"))?);
            // The GPU tier fuses the GEGLU into the projection's GEMM (the 8·C-wide projection is never written).
            let a = if self.b.geglu_fused() {
                let a = self.b.linear_geglu(&n, pw, Some(pb))?;
                drop(n);
                a
            } else {
                let g = self.b.linear(&n, pw, Some(pb), Epilogue::None)?;
                drop(n);
                let a = self.b.geglu(&g)?;
                drop(g);
                a
            };
            self.b.linear_acc(
                &xs,
                &a,
                u.w(&format!("{ff}.net.2.weight"))?,
                Some(u.w(&format!("{ff}.net.2.bias"))?),
            )?;
            r0 += nr;
        }
        Ok(())
    }

    /// `x += to_out(attention(to_qkv(n)))` over `seqs` independent sequences of `len` tokens, in chunks of
    /// sequences so the fused QKV tensor stays small.
    fn self_attention_acc(
        &mut self,
        x: &Tensor,
        n: &Tensor,
        p: &str,
        seqs: usize,
        len: usize,
        heads: usize,
    ) -> Result<()> {
        let u = self.u;
        let c = *x.shape().last().unwrap_or(&1);
        let chunk = (self.chunk() / (3 * c * len).max(1)).clamp(1, seqs.max(1));
        let (x2, n2) = (x.reshape(&[seqs * len, c])?, n.reshape(&[seqs * len, c])?);
        let mut s0 = 0;
        while s0 < seqs {
            let ns = chunk.min(seqs - s0);
            let (xs, nsub) = (x2.narrow0(s0 * len, ns * len)?, n2.narrow0(s0 * len, ns * len)?);
            let qkv = self.b.linear(&nsub, u.w(&fused_qkv_name(p))?, None, Epilogue::None)?;
            let a = self.b.self_attention(&qkv, ns, len, heads)?;
            drop(qkv);
            self.b.linear_acc(
                &xs,
                &a,
                u.w(&format!("{p}.to_out.0.weight"))?,
                Some(u.w(&format!("{p}.to_out.0.bias"))?),
            )?;
            s0 += ns;
        }
        Ok(())
    }

    /// `BasicTransformerBlock` (docs/reference/svd-architecture.md §3.9) on `(B·F·S, C)` tokens, in place.
    fn spatial_block(&mut self, p: &str, x: &Tensor, heads: usize, s: usize) -> Result<()> {
        let u = self.u;
        let bf = self.shape.batch * self.shape.frames;
        let n = self.b.layer_norm(
            x,
            u.w(&format!("{p}.norm1.weight"))?,
            u.w(&format!("{p}.norm1.bias"))?,
            1e-5,
        )?;
        self.self_attention_acc(x, &n, &format!("{p}.attn1"), bf, s, heads)?;
        drop(n);
        // Single-token cross-attention: a constant per batch element (rows of F·S tokens).
        let k = &self.consts.cross[&format!("{p}.attn2")];
        let f = self.shape.frames;
        let (rows, c) = (x.numel() / k.shape()[1], k.shape()[1] as f64);
        // The reference projects every token through to_q and to_out and attends to the single key.
        self.ref_extra += 4.0 * rows as f64 * c * c + 4.0 * rows as f64 * c;
        self.b.bcast_add_inplace(Bcast::Table { tokens: f * s, entries: self.shape.batch }, x, k)?;
        self.feed_forward(x, &format!("{p}.norm3"), &format!("{p}.ff"))
    }

    /// `TemporalBasicTransformerBlock` (docs/reference/svd-architecture.md §3.10) on `(B, S, F, C)`
    /// sequences, in place, with the trajectory branch when trajectories are bound.
    fn temporal_block(&mut self, p: &str, x: &Tensor, heads: usize, hw: (usize, usize)) -> Result<()> {
        let u = self.u;
        let UNetShape { batch: b, frames: f, .. } = self.shape;
        let s = hw.0 * hw.1;
        self.feed_forward(x, &format!("{p}.norm_in"), &format!("{p}.ff_in"))?;
        let n = self.b.layer_norm(
            x,
            u.w(&format!("{p}.norm1.weight"))?,
            u.w(&format!("{p}.norm1.bias"))?,
            1e-5,
        )?;
        self.self_attention_acc(x, &n, &format!("{p}.attn1"), b * s, f, heads)?;
        if let Some(tr) = self.traj {
            self.trajectory_branch(&format!("{p}.attn_trajectory"), x, &n, heads, hw, tr)?;
        }
        drop(n);
        let k = &self.consts.cross[&format!("{p}.attn2")];
        let (rows, c) = (x.numel() / k.shape()[1], k.shape()[1] as f64);
        self.ref_extra += 4.0 * rows as f64 * c * c + 4.0 * rows as f64 * c;
        let kind = match self.opts.time_context {
            TimeContext::Faithful => Bcast::Table { tokens: f, entries: b },
            TimeContext::PerBatch => Bcast::Table { tokens: s * f, entries: b },
        };
        self.b.bcast_add_inplace(kind, x, k)?;
        self.feed_forward(x, &format!("{p}.norm3"), &format!("{p}.ff"))
    }

    fn trajectory_branch(
        &mut self,
        p: &str,
        x: &Tensor,
        n: &Tensor,
        heads: usize,
        (h, w): (usize, usize),
        tr: &Trajectories,
    ) -> Result<()> {
        let UNetShape { batch: b, frames: f, .. } = self.shape;
        let s = h * w;
        let c = n.shape()[1];
        let m = traj::samples_per_call(tr.n, h, w);
        let gpu = self.b.gpu;
        if m == 0 {
            // Below 4 latent cells the reference samples no trajectory (8·⌊h·w/4⌋ = 0): the branch adds nothing,
            // but its randperm is still drawn, so the call keeps its slot.
            let empty = || Tensor::from_u32(gpu, &[0], &[1]);
            self.slots.push(TrajSlot {
                module: p.to_string(),
                h,
                w,
                m,
                table: empty()?,
                offsets: empty()?,
                hits: empty()?,
            });
            return Ok(());
        }
        let seq_len =
            traj::sequence_length(tr.grouping, m, f, h, w).map_err(|e| input_err(format!("{p}: {e}")))?;
        let table = Tensor::from_u32(gpu, &vec![u32::MAX; m * f], &[m * f])?;
        let offsets = Tensor::from_u32(gpu, &vec![0u32; f * s + 1], &[f * s + 1])?;
        let hits = Tensor::from_u32(gpu, &vec![0u32; (m * f).max(1)], &[(m * f).max(1)])?;
        let g = traj::Geometry { b, h, w, f, c, heads, m, seq_len };
        let wqkv = self.u.w(&fused_qkv_name(p))?;
        // One group of heads at a time (as many as fit one binding per batch element, see heads_per_group): the
        // group's Q/K/V and attention scratch (reused group after group, bound in windows that fit the adapter) and
        // the means of all heads; the scratch dies before the output is allocated.
        // (In this order the arena's peak matches the plan on the fixtures; the means first lent case a's larger
        // free buffers to the scratch, 1.24× the plan.)
        let group = g.heads_per_group(n.dtype().size(), gpu.max_binding());
        let qkv = self.b.empty(&g.qkv_scratch_shape(group))?;
        let att = self.b.empty(&g.att_scratch_shape(group))?;
        let abar = self.b.empty(&[b * s * f, c])?;
        traj::record_heads(&mut self.b.rec, &g, n, wqkv, &table, &offsets, &hits, &qkv, &att, &abar)?;
        drop((qkv, att));
        let out = self.b.empty(&[b * s * f, c])?;
        let (wo, bo) = (self.u.w(&format!("{p}.to_out.0.weight"))?, self.u.w(&format!("{p}.to_out.0.bias"))?);
        traj::record_output(&mut self.b.rec, &g, &abar, &offsets, wo, bo, &out)?;
        drop(abar);
        // Ours: Q/K/V and output projections of the dense grid; the reference projects the B·M·F gathered
        // tokens instead (twice the grid at the standard sizes). Same attention.
        let (rows, gathered, cf) = ((b * s * f) as f64, (b * m * f) as f64, c as f64);
        self.b.flops +=
            8.0 * rows * cf * cf + 4.0 * (b * m * f / seq_len) as f64 * (seq_len * seq_len) as f64 * cf;
        self.ref_extra += 8.0 * (gathered - rows) * cf * cf;
        self.tap(&format!("{p}.input"), n)?;
        self.tap(&format!("{p}.output"), &out)?;
        self.b.add_inplace(x, &out)?;
        self.slots.push(TrajSlot { module: p.to_string(), h, w, m, table, offsets, hits });
        Ok(())
    }

    /// `TransformerSpatioTemporalModel` (docs/reference/svd-architecture.md §3.11) on `(B·F, C, h, w)`.
    fn transformer(&mut self, p: &str, x: &Tensor, heads: usize, layers: usize) -> Result<Act> {
        let u = self.u;
        let UNetShape { batch: b, frames: f, .. } = self.shape;
        let xs = x.shape().to_vec();
        let (bf, c, hh, ww) = (xs[0], xs[1], xs[2], xs[3]);
        let s = hh * ww;
        let n = self.b.group_norm(
            x,
            u.w(&format!("{p}.norm.weight"))?,
            u.w(&format!("{p}.norm.bias"))?,
            1e-6,
            GroupStats::PerFrame,
            false,
        )?;
        let t = self.b.swap12(&n, [bf, c, s, 1], &[bf * s, c])?;
        drop(n);
        let mut h = self.b.linear(
            &t,
            u.w(&format!("{p}.proj_in.weight"))?,
            Some(u.w(&format!("{p}.proj_in.bias"))?),
            Epilogue::None,
        )?;
        drop(t);
        let alpha = u.alpha(&format!("{p}.time_mixer.mix_factor"))?;
        for l in 0..layers {
            self.spatial_block(&format!("{p}.transformer_blocks.{l}"), &h, heads, s)?;
            let pos = self.consts.pos[p].clone();
            let mix = self.b.bcast_add(Bcast::Table { tokens: s, entries: bf }, &h, &pos)?;
            // (B, F, S, C) → (B, S, F, C): one temporal sequence per pixel.
            let tm = self.b.swap12(&mix, [b, f, s, c], &[b * s * f, c])?;
            drop(mix);
            self.temporal_block(&format!("{p}.temporal_transformer_blocks.{l}"), &tm, heads, (hh, ww))?;
            let back = self.b.swap12(&tm, [b, s, f, c], &[bf * s, c])?;
            drop(tm);
            h = self.b.blend(alpha, &h, &back)?;
        }
        let o = self.b.linear(
            &h,
            u.w(&format!("{p}.proj_out.weight"))?,
            Some(u.w(&format!("{p}.proj_out.bias"))?),
            Epilogue::None,
        )?;
        drop(h);
        let y = self.b.swap12(&o, [bf, s, c, 1], &[bf, c, hh, ww])?;
        drop(o);
        self.b.add_inplace(&y, x)?;
        Ok(y)
    }

    fn downsample(&mut self, p: &str, x: &Tensor) -> Result<Act> {
        let u = self.u;
        Ok(self.b.conv2d(
            x,
            u.w(&format!("{p}.conv.weight"))?,
            Some(u.w(&format!("{p}.conv.bias"))?),
            Conv2dOpts::new(2, 1),
        )?)
    }

    fn upsample(&mut self, p: &str, x: &Tensor) -> Result<Act> {
        let u = self.u;
        let up = self.b.upsample2x(x)?;
        Ok(self.b.conv2d(
            &up,
            u.w(&format!("{p}.conv.weight"))?,
            Some(u.w(&format!("{p}.conv.bias"))?),
            Conv2dOpts::new(1, 1),
        )?)
    }
}

/// Attention prefixes of the model (those whose constants the prelude computes) with their widths.
fn attention_prefixes(cfg: &UNetConfig) -> Vec<(String, usize, usize)> {
    let n = cfg.n_blocks();
    let mut v = Vec::new();
    for i in 0..n {
        if cfg.down_block_types[i] == DownBlockKind::CrossAttn {
            for j in 0..cfg.layers_per_block[i] {
                v.push((
                    format!("down_blocks.{i}.attentions.{j}"),
                    cfg.block_out_channels[i],
                    cfg.transformer_layers_per_block[i],
                ));
            }
        }
    }
    v.push((
        "mid_block.attentions.0".to_string(),
        cfg.block_out_channels[n - 1],
        cfg.transformer_layers_per_block[n - 1],
    ));
    for i in 0..n {
        if cfg.up_block_types[i] == UpBlockKind::CrossAttn {
            let r = n - 1 - i;
            for j in 0..cfg.layers_per_block[r] + 1 {
                v.push((
                    format!("up_blocks.{i}.attentions.{j}"),
                    cfg.block_out_channels[r],
                    cfg.transformer_layers_per_block[r],
                ));
            }
        }
    }
    v
}

impl UNetGraph {
    /// Records the UNet for `shape`. With `trajectories`, every temporal block runs the trajectory branch
    /// (the weights must be loaded). `taps` keeps copies of block outputs for debugging.
    pub fn build(
        gpu: &Gpu,
        u: &UNet,
        shape: UNetShape,
        opts: GraphOptions,
        trajectories: Option<Trajectories>,
        taps: bool,
    ) -> Result<UNetGraph> {
        let cfg = &u.cfg;
        let UNetShape { batch: b, frames: f, height: h0, width: w0 } = shape;
        if b == 0 || f == 0 || h0 == 0 || w0 == 0 {
            return Err(input_err(format!("empty UNet shape {shape:?}")));
        }
        let levels = cfg.n_blocks() - 1;
        let unit = 1usize << levels;
        if !h0.is_multiple_of(unit) || !w0.is_multiple_of(unit) {
            return Err(input_err(format!(
                "latent size {h0}×{w0} must be a multiple of {unit} (the UNet halves it {levels} times and doubles it back; \
                 pixel sizes must be multiples of {})",
                unit * 8
            )));
        }
        if let Some(tr) = &trajectories {
            if !u.has_trajectory {
                return Err(input_err("trajectories given but no trajectory weights are loaded"));
            }
            if tr.coords.len() != f * tr.n * 2 || tr.visible.len() != f * tr.n {
                return Err(input_err(format!(
                    "trajectories hold {} coordinates and {} visibility flags; {f} frames × {} trajectories need {} and {}",
                    tr.coords.len(),
                    tr.visible.len(),
                    tr.n,
                    f * tr.n * 2,
                    f * tr.n
                )));
            }
            if tr.n == 0 {
                return Err(input_err("no trajectories"));
            }
            if let Some(i) = tr.coords.iter().position(|v| !v.is_finite()) {
                return Err(input_err(format!(
                    "trajectory {} in frame {} has a non-finite coordinate",
                    i / 2 % tr.n,
                    i / 2 / tr.n
                )));
            }
        }
        let dtype = u.dtype;
        let bf = b * f;
        let ted = cfg.time_embed_dim();
        let c0 = cfg.block_out_channels[0];
        let adt = cfg.addition_time_embed_dim;
        let sample = Tensor::empty(gpu, &[bf, cfg.in_channels, h0, w0], dtype)?;
        let t_sin = Tensor::empty(gpu, &[bf, c0], dtype)?;
        let add_sin = Tensor::empty(gpu, &[bf, 3 * adt], dtype)?;
        let cross_dim = cfg.cross_attention_dim[0];
        if cfg.cross_attention_dim.iter().any(|&d| d != cross_dim) {
            return Err(input_err("per-block cross_attention_dim values that differ are not supported"));
        }
        let context = Tensor::empty(gpu, &[b, cross_dim], dtype)?;

        // Prelude: conditioning constants.
        let mut pre = Builder::new(gpu, dtype);
        let mut consts = Consts { cross: HashMap::new(), pos: HashMap::new() };
        let mut persist = Vec::new();
        let frame_idx: Vec<f32> = (0..bf).map(|r| (r % f) as f32).collect();
        for (p, c, layers) in attention_prefixes(cfg) {
            let sin = sinusoid(&frame_idx, c);
            let sin_t = Tensor::from_f32(gpu, &sin, &[bf, c], dtype)?;
            let hid = pre.linear(
                &sin_t,
                u.w(&format!("{p}.time_pos_embed.linear_1.weight"))?,
                Some(u.w(&format!("{p}.time_pos_embed.linear_1.bias"))?),
                Epilogue::Silu,
            )?;
            let pos = Tensor::empty(gpu, &[bf, c], dtype)?;
            trajattn_kernels::ops::matmul::record(
                &mut pre.rec,
                &hid,
                u.w(&format!("{p}.time_pos_embed.linear_2.weight"))?,
                trajattn_kernels::ops::matmul::WLayout::NK,
                Some(u.w(&format!("{p}.time_pos_embed.linear_2.bias"))?),
                Epilogue::None,
                &pos,
                None,
            )?;
            drop(hid);
            persist.push(sin_t);
            consts.pos.insert(p.clone(), pos);
            for l in 0..layers {
                for blk in [
                    format!("{p}.transformer_blocks.{l}.attn2"),
                    format!("{p}.temporal_transformer_blocks.{l}.attn2"),
                ] {
                    let v =
                        pre.linear(&context, u.w(&format!("{blk}.to_v.weight"))?, None, Epilogue::None)?;
                    let o = Tensor::empty(gpu, &[b, c], dtype)?;
                    trajattn_kernels::ops::matmul::record(
                        &mut pre.rec,
                        &v,
                        u.w(&format!("{blk}.to_out.0.weight"))?,
                        trajattn_kernels::ops::matmul::WLayout::NK,
                        Some(u.w(&format!("{blk}.to_out.0.bias"))?),
                        Epilogue::None,
                        &o,
                        None,
                    )?;
                    consts.cross.insert(blk, o);
                }
            }
        }
        let pre_lender = pre.lender();
        let prelude = pre.rec.finish();

        // Step graph.
        let mut bd = Builder::new(gpu, dtype);
        let emb_act = {
            let t1 = bd.linear(
                &t_sin,
                u.w("time_embedding.linear_1.weight")?,
                Some(u.w("time_embedding.linear_1.bias")?),
                Epilogue::Silu,
            )?;
            let temb = bd.linear(
                &t1,
                u.w("time_embedding.linear_2.weight")?,
                Some(u.w("time_embedding.linear_2.bias")?),
                Epilogue::None,
            )?;
            drop(t1);
            let a1 = bd.linear(
                &add_sin,
                u.w("add_embedding.linear_1.weight")?,
                Some(u.w("add_embedding.linear_1.bias")?),
                Epilogue::Silu,
            )?;
            bd.linear_acc(
                &temb,
                &a1,
                u.w("add_embedding.linear_2.weight")?,
                Some(u.w("add_embedding.linear_2.bias")?),
            )?;
            drop(a1);
            // Every res-block applies SiLU to the embedding before its projection: do it once.
            let act = bd.empty(&[bf, ted])?;
            trajattn_kernels::ops::elementwise::record_unary(
                &mut bd.rec,
                trajattn_kernels::ops::elementwise::Unary::Silu,
                &temb,
                &act,
            )?;
            act
        };
        let mut cx = Ctx {
            u,
            b: bd,
            shape,
            consts,
            emb_act,
            traj: trajectories.as_ref(),
            slots: Vec::new(),
            taps: if taps { Some(HashMap::new()) } else { None },
            opts,
            ref_extra: 0.0,
        };
        let n = cfg.n_blocks();
        // Activations are shared with the skip list: a buffer returns to the lender when its last holder drops.
        let mut x: Rc<Act> = Rc::new(cx.b.conv2d(
            &sample,
            u.w("conv_in.weight")?,
            Some(u.w("conv_in.bias")?),
            Conv2dOpts::new(1, 1),
        )?);
        cx.tap("conv_in", &x)?;
        let mut skips: Vec<Rc<Act>> = vec![x.clone()];
        for i in 0..n {
            let p = format!("down_blocks.{i}");
            let eps = if cfg.down_block_types[i] == DownBlockKind::CrossAttn { 1e-6 } else { 1e-5 };
            for j in 0..cfg.layers_per_block[i] {
                x = Rc::new(cx.resnet(&format!("{p}.resnets.{j}"), &x, eps)?);
                if cfg.down_block_types[i] == DownBlockKind::CrossAttn {
                    x = Rc::new(cx.transformer(
                        &format!("{p}.attentions.{j}"),
                        &x,
                        cfg.num_attention_heads[i],
                        cfg.transformer_layers_per_block[i],
                    )?);
                }
                skips.push(x.clone());
            }
            if i + 1 < n {
                x = Rc::new(cx.downsample(&format!("{p}.downsamplers.0"), &x)?);
                skips.push(x.clone());
            }
            cx.tap(&p, &x)?;
        }
        let y: Act = cx.resnet("mid_block.resnets.0", &x, 1e-5)?;
        drop(x);
        let mut x = y;
        let tl = cfg.transformer_layers_per_block[n - 1];
        x = cx.transformer("mid_block.attentions.0", &x, cfg.num_attention_heads[n - 1], tl)?;
        x = cx.resnet("mid_block.resnets.1", &x, 1e-5)?;
        cx.tap("mid_block", &x)?;
        for i in 0..n {
            let p = format!("up_blocks.{i}");
            let r = n - 1 - i;
            for j in 0..cfg.layers_per_block[r] + 1 {
                let skip = skips.pop().ok_or_else(|| input_err("skip list exhausted"))?;
                let cat = cx.b.concat_channels(&x, &skip)?;
                // Both halves live on in the concatenation: release them before the res-block allocates.
                drop(skip);
                drop(x);
                x = cx.resnet(&format!("{p}.resnets.{j}"), &cat, 1e-6)?;
                drop(cat);
                if cfg.up_block_types[i] == UpBlockKind::CrossAttn {
                    x = cx.transformer(
                        &format!("{p}.attentions.{j}"),
                        &x,
                        cfg.num_attention_heads[r],
                        cfg.transformer_layers_per_block[r],
                    )?;
                }
            }
            if i + 1 < n {
                x = cx.upsample(&format!("{p}.upsamplers.0"), &x)?;
            }
            cx.tap(&p, &x)?;
        }
        let u2 = cx.u;
        let y = cx.b.group_norm(
            &x,
            u2.w("conv_norm_out.weight")?,
            u2.w("conv_norm_out.bias")?,
            1e-5,
            GroupStats::PerFrame,
            true,
        )?;
        drop(x);
        let out = Tensor::empty(gpu, &[b, f, cfg.out_channels, h0, w0], dtype)?;
        {
            let o4 = out.reshape(&[bf, cfg.out_channels, h0, w0])?;
            trajattn_kernels::ops::conv::record_conv2d(
                &mut cx.b.rec,
                &y,
                u2.w("conv_out.weight")?,
                Some(u2.w("conv_out.bias")?),
                Conv2dOpts::new(1, 1),
                &o4,
            )?;
        }
        drop(y);
        drop(skips);
        cx.b.flops += 2.0 * (bf * cfg.out_channels * h0 * w0 * 9 * cfg.block_out_channels[0]) as f64;
        let Ctx { b: bd, slots, taps, consts, emb_act, ref_extra, .. } = cx;
        let flops = bd.flops;
        let lender = bd.lender();
        drop(emb_act);
        let step = bd.rec.finish();
        persist.extend(consts.cross.into_values());
        persist.extend(consts.pos.into_values());
        Ok(UNetGraph {
            shape,
            sample,
            t_sin,
            add_sin,
            context,
            prelude,
            step,
            out,
            traj_slots: slots,
            trajectories,
            taps: taps.unwrap_or_default(),
            _persist: persist,
            _lender: lender,
            _pre_lender: pre_lender,
            dtype,
            flops,
            reference_flops: flops + ref_extra,
            cfg: cfg.clone(),
        })
    }

    /// Memory of the step graph's intermediates (and op scratch): the arenas its recording placed them in.
    pub fn arena_stats(&self) -> LenderStats {
        self.step.arena_stats()
    }

    /// The recorded dispatches of one step (for profiling; [`UNetGraph::run`] uploads the inputs first).
    pub fn step_recording(&self) -> &Recording {
        &self.step
    }

    /// Dispatches per step.
    pub fn dispatches(&self) -> usize {
        self.step.len()
    }

    /// Sets the conditioning: `context [B, D]` (the CLIP embeddings, unconditional first) and
    /// `added_time_ids [B, 3]` (fps − 1, motion bucket, noise augmentation). Runs the prelude.
    pub fn set_conditioning(&self, gpu: &Gpu, context: &[f32], added_time_ids: &[f32]) -> Result<()> {
        let b = self.shape.batch;
        if added_time_ids.len() != 3 * b {
            return Err(input_err(format!(
                "added_time_ids: expected {} values, got {}",
                3 * b,
                added_time_ids.len()
            )));
        }
        upload(gpu, &self.context, context)?;
        // The reference casts the ids to the model dtype before embedding them (0.02 → 0.0200042724609375 in fp16).
        let ids: Vec<f32> = match self.dtype {
            DType::F16 => added_time_ids.iter().map(|&v| f16::from_f32(v).to_f32()).collect(),
            DType::F32 => added_time_ids.to_vec(),
        };
        let adt = self.cfg.addition_time_embed_dim;
        let emb = sinusoid(&ids, adt); // (3B, adt) = (B, 3·adt)
        let f = self.shape.frames;
        let mut rep = Vec::with_capacity(b * f * 3 * adt);
        for bi in 0..b {
            for _ in 0..f {
                rep.extend_from_slice(&emb[bi * 3 * adt..(bi + 1) * 3 * adt]);
            }
        }
        upload(gpu, &self.add_sin, &rep)?;
        self.prelude.submit(gpu, true)?;
        Ok(())
    }

    /// Runs one UNet call: `sample [B, F, Cin, h, w]`, one `timestep` (c_noise) per batch element, and for
    /// each trajectory call (execution order) its sampled indices. Output in [`UNetGraph::output`].
    pub fn run(&self, gpu: &Gpu, sample: &[f32], timestep: &[f32], indices: &[Vec<usize>]) -> Result<()> {
        upload(gpu, &self.sample, sample)?;
        self.run_on_input(gpu, timestep, indices)
    }

    /// The UNet input tensor `[B, F, in_channels, h, w]` (model dtype), for callers that fill it on the device.
    pub fn input(&self) -> &Tensor {
        &self.sample
    }

    /// Like [`UNetGraph::run`] on whatever [`UNetGraph::input`] already holds (written on the device).
    pub fn run_on_input(&self, gpu: &Gpu, timestep: &[f32], indices: &[Vec<usize>]) -> Result<()> {
        let UNetShape { batch: b, frames: f, .. } = self.shape;
        if timestep.len() != b {
            return Err(input_err(format!("timestep: expected {b} values, got {}", timestep.len())));
        }
        let t: Vec<f32> = (0..b * f).map(|r| timestep[r / f]).collect();
        upload(gpu, &self.t_sin, &sinusoid(&t, self.cfg.block_out_channels[0]))?;
        if let Some(tr) = &self.trajectories {
            if indices.len() != self.traj_slots.len() {
                return Err(input_err(format!(
                    "{} trajectory index sets given; the graph makes {} trajectory calls",
                    indices.len(),
                    self.traj_slots.len()
                )));
            }
            for (slot, idx) in self.traj_slots.iter().zip(indices) {
                if slot.m == 0 && idx.is_empty() {
                    continue;
                }
                if idx.len() != slot.m {
                    return Err(input_err(format!(
                        "{}: {} sampled indices given, the call samples {}",
                        slot.module,
                        idx.len(),
                        slot.m
                    )));
                }
                let call = traj::Call {
                    hidden: &[],
                    b,
                    h: slot.h,
                    w: slot.w,
                    f,
                    c: 1,
                    heads: 1,
                    traj: &tr.coords,
                    mask: &tr.visible,
                    n: tr.n,
                    origin_w: tr.origin_w,
                    origin_h: tr.origin_h,
                    idx,
                    grouping: tr.grouping,
                };
                let t = traj::tables(&call)?;
                upload_u32(gpu, &slot.table, &t.table);
                upload_u32(gpu, &slot.offsets, &t.offsets);
                if !t.hits.is_empty() {
                    upload_u32(gpu, &slot.hits, &t.hits);
                }
            }
        }
        self.step.submit(gpu, true)?;
        Ok(())
    }

    /// The last output `[B, F, out_channels, h, w]`.
    pub fn output(&self) -> &Tensor {
        &self.out
    }

    /// Debug copies of block outputs (when built with taps), by module name.
    pub fn taps(&self) -> &HashMap<String, Tensor> {
        &self.taps
    }
}
