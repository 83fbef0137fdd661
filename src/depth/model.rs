//! The Depth-Anything-V2 network on the GPU runtime: DINOv2 backbone (docs/reference/depth-anything-v2.md §4) and DPT head
//! (§5), recorded into one dispatch list with intermediates lent from the graph's lender.
//!
//! Load-time rewrites (exact up to f32 rounding): LayerScale is folded into the projection it scales
//! (`γ ⊙ (y·Wᵀ + b) = y·(γ⊙W)ᵀ + γ⊙b`), the 1×1 `projects` convolutions become linears on the token-major
//! features, and the position table stays on the host, where it is resized per input grid (§4.2) and merged
//! with the class token.

use std::collections::HashMap;
use std::path::Path;

use trajattn_kernels::ops::conv::Conv2dOpts;
use trajattn_kernels::ops::dpt;
use trajattn_kernels::ops::layout::record_copy2d;
use trajattn_kernels::ops::matmul::Epilogue;
use trajattn_kernels::{DType, Gpu, Tensor};

use crate::checkpoint::{HostData, HostTensor};
use crate::depth::config::{DepthConfig, Encoder, LN_EPS};
use crate::depth::load::{self, HostWeights};
use crate::depth::{pos_embed, preprocess, DepthError};
use crate::nn::{Act, Builder, Weights};

type Result<T> = std::result::Result<T, DepthError>;

/// The network output and the captured stages by debug name.
pub type DebugRun = (Vec<f32>, HashMap<String, Vec<f32>>);

/// The model's weights on the device, plus the host tables it resizes per input.
pub struct DepthAnything {
    pub cfg: DepthConfig,
    pub dtype: DType,
    weights: Weights,
    /// `pretrained.pos_embed` as `(1 + g·g) × D`.
    pos: Vec<f32>,
    /// `pretrained.cls_token`, D values.
    cls: Vec<f32>,
}

/// How a captured intermediate is turned into the reference layout on the host.
#[derive(Clone, Copy)]
enum Post {
    /// As stored.
    Same,
    /// Token-major `[rows, cols]` → `[cols, rows]` (NCHW).
    Transpose(usize, usize),
}

/// Intermediates kept for inspection (debug runs): name, a private copy, layout fix.
struct Taps {
    on: bool,
    list: Vec<(String, Act, Post)>,
}

impl Taps {
    fn keep(&mut self, b: &mut Builder, name: &str, t: &Tensor, post: Post) -> Result<()> {
        if !self.on {
            return Ok(());
        }
        let copy = b.empty(t.shape())?;
        record_copy2d(&mut b.rec, t, 0, t.numel(), &copy, 0, t.numel(), 1, t.numel())?;
        self.list.push((name.to_string(), copy, post));
        Ok(())
    }
}

fn host(name: &str, shape: &[usize], data: Vec<f32>) -> HostTensor {
    HostTensor { name: name.to_string(), shape: shape.to_vec(), data: HostData::F32(data) }
}

impl DepthAnything {
    /// Reads weights from `path` (see [`load::read`]) and uploads them in `dtype`.
    pub fn load(gpu: &Gpu, path: &Path, encoder: Option<Encoder>, dtype: DType) -> Result<DepthAnything> {
        let hw = load::read(path, encoder)?;
        Self::from_host(gpu, hw, dtype)
    }

    /// Uploads weights already read (and checked) on the host.
    pub fn from_host(gpu: &Gpu, mut hw: HostWeights, dtype: DType) -> Result<DepthAnything> {
        let cfg = hw.cfg.clone();
        let d = cfg.embed_dim;
        if cfg.heads == 0 || !d.is_multiple_of(cfg.heads) {
            return Err(DepthError::Weights {
                path: hw.path.display().to_string(),
                msg: format!("{} heads do not divide the width {d}", cfg.heads),
            });
        }
        let path = hw.path.display().to_string();
        let take = |ts: &mut HashMap<String, HostTensor>, name: &str| -> Result<Vec<f32>> {
            ts.remove(name).map(|t| t.data.to_f32()).ok_or_else(|| DepthError::Weights {
                path: path.clone(),
                msg: format!("missing tensor `{name}`"),
            })
        };
        let pos = take(&mut hw.tensors, "pretrained.pos_embed")?;
        let cls = take(&mut hw.tensors, "pretrained.cls_token")?;
        // Fold LayerScale into the projection it scales.
        for i in 0..cfg.blocks {
            for (ls, lin, k) in [("ls1", "attn.proj", d), ("ls2", "mlp.fc2", cfg.mlp_hidden)] {
                let p = format!("pretrained.blocks.{i}");
                let g = take(&mut hw.tensors, &format!("{p}.{ls}.gamma"))?;
                let mut w = take(&mut hw.tensors, &format!("{p}.{lin}.weight"))?;
                let mut b = take(&mut hw.tensors, &format!("{p}.{lin}.bias"))?;
                for (r, gr) in g.iter().enumerate() {
                    w[r * k..(r + 1) * k].iter_mut().for_each(|v| *v *= gr);
                    b[r] *= gr;
                }
                hw.tensors
                    .insert(format!("{p}.{lin}.weight"), host(&format!("{p}.{lin}.weight"), &[d, k], w));
                hw.tensors.insert(format!("{p}.{lin}.bias"), host(&format!("{p}.{lin}.bias"), &[d], b));
            }
        }
        // 1×1 projections as linears [Ck, D].
        for (k, &ck) in cfg.out_channels.iter().enumerate() {
            let n = format!("depth_head.projects.{k}.weight");
            let w = take(&mut hw.tensors, &n)?;
            hw.tensors.insert(n.clone(), host(&n, &[ck, d], w));
        }
        let mut weights = Weights::new();
        let mut names: Vec<&String> = hw.tensors.keys().collect();
        names.sort();
        for n in names {
            if n == "pretrained.mask_token" {
                continue;
            }
            weights.upload(gpu, n, &hw.tensors[n], dtype)?;
        }
        Ok(DepthAnything { cfg, dtype, weights, pos, cls })
    }

    /// A model of `cfg` with random weights (benchmarks and memory plans): weights uniform in ±√(3/fan-in),
    /// norms and LayerScale near 1, small biases.
    pub fn random(gpu: &Gpu, cfg: &DepthConfig, dtype: DType, seed: u64) -> Result<DepthAnything> {
        let mut tensors = HashMap::new();
        for (i, (name, shape)) in cfg.expected().into_iter().enumerate() {
            let n: usize = shape.iter().product();
            let u = trajattn_kernels::bench::random_data(seed.wrapping_add(i as u64), n);
            let fan_in: usize = if shape.len() > 1 { shape[1..].iter().product() } else { 1 };
            let data: Vec<f32> =
                if name.ends_with("gamma") || name.contains("norm") && name.ends_with("weight") {
                    u.iter().map(|v| 1.0 + 0.25 * v).collect()
                } else if shape.len() == 1 || name.contains("token") || name.contains("pos_embed") {
                    u.iter().map(|v| 0.1 * v).collect()
                } else {
                    let s = (3.0 / fan_in as f32).sqrt();
                    u.iter().map(|v| s * v).collect()
                };
            tensors.insert(name.clone(), host(&name, &shape, data));
        }
        let hw = HostWeights { path: "random".into(), cfg: cfg.clone(), tensors, hf_layout: false };
        Self::from_host(gpu, hw, dtype)
    }

    /// Bytes of the weights on the device.
    pub fn weight_bytes(&self) -> u64 {
        self.weights.bytes
    }

    fn w(&self, name: &str) -> Result<&Tensor> {
        Ok(self.weights.get(name)?)
    }

    /// The network output `H' × W'` (raw disparity after the final ReLU) of a prepared input
    /// `1×3×H'×W'` (H', W' multiples of 14).
    pub fn forward(&self, gpu: &Gpu, input: &[f32], h: usize, w: usize) -> Result<Vec<f32>> {
        Ok(self.run(gpu, input, h, w, false)?.0)
    }

    /// Like [`DepthAnything::forward`], also returning every stage under the reference's debug names
    /// (`patch_embed`, `tokens_in`, `block_out.i`, `feature.k`, `project.k`, `resize.k`, `layer_rn.k`,
    /// `path_4..1`, `output_conv1`, `output_interp`), NCHW where the reference is.
    pub fn forward_debug(&self, gpu: &Gpu, input: &[f32], h: usize, w: usize) -> Result<DebugRun> {
        self.run(gpu, input, h, w, true)
    }

    /// Depth of an RGB image at its own size (official `infer_image`): prepare, run, resize back.
    pub fn infer_image(&self, gpu: &Gpu, img: &image::RgbImage, input_size: usize) -> Result<Vec<f32>> {
        let p = preprocess::prepare(img, input_size)?;
        let d = self.forward(gpu, &p.data, p.height, p.width)?;
        Ok(preprocess::upsample_to(&d, p.height, p.width, img.height() as usize, img.width() as usize))
    }

    /// `pos'` merged with the class token: row 0 = cls + pos'₀, rows 1.. = pos'.
    pub fn position_rows(&self, gh: usize, gw: usize) -> Result<Vec<f32>> {
        let d = self.cfg.embed_dim;
        let mut pe = pos_embed::interpolate(&self.pos, self.cfg.pos_grid, d, gh, gw).ok_or_else(|| {
            DepthError::Input(format!(
                "a {gh}×{gw} patch grid cannot be reached by the position-embedding resize"
            ))
        })?;
        for (v, c) in pe.iter_mut().zip(&self.cls) {
            *v += c;
        }
        Ok(pe)
    }

    fn run(&self, gpu: &Gpu, input: &[f32], h: usize, w: usize, debug: bool) -> Result<DebugRun> {
        let c = &self.cfg;
        let p = c.patch;
        if h == 0 || w == 0 || !h.is_multiple_of(p) || !w.is_multiple_of(p) || input.len() != 3 * h * w {
            return Err(DepthError::Input(format!(
                "network input must be 1×3×H×W with H, W positive multiples of {p}; got {} values for {h}×{w}",
                input.len()
            )));
        }
        let (gh, gw) = (h / p, w / p);
        let np = gh * gw;
        let d = c.embed_dim;
        let dt = self.dtype;
        let mut taps = Taps { on: debug, list: Vec::new() };
        let x = Tensor::from_f32(gpu, input, &[1, 3, h, w], dt)?;
        let pos = self.position_rows(gh, gw)?;
        let hs = Tensor::from_f32(gpu, &pos, &[1 + np, d], dt)?;
        let mut b = Builder::new(gpu, dt);

        // §4.1–4.2: patch embedding, tokens, class token and positions.
        let pe = b.conv2d(
            &x,
            self.w("pretrained.patch_embed.proj.weight")?,
            Some(self.w("pretrained.patch_embed.proj.bias")?),
            Conv2dOpts::new(p, 0),
        )?;
        let tok = b.swap12(&pe, [1, d, np, 1], &[np, d])?;
        drop(pe);
        taps.keep(&mut b, "patch_embed", &tok, Post::Same)?;
        b.add_inplace(&hs.narrow0(1, np)?, &tok)?;
        drop(tok);
        taps.keep(&mut b, "tokens_in", &hs, Post::Same)?;

        // §4.3–4.4: blocks; the taken outputs are normalised and projected at once (token-major [N, Ck]).
        let mut projected: Vec<Option<Act>> = vec![None, None, None, None];
        let last = c.take.iter().copied().max().unwrap_or(0);
        for i in 0..=last.min(c.blocks - 1) {
            self.block(&mut b, &hs, i, 1 + np)?;
            taps.keep(&mut b, &format!("block_out.{i}"), &hs, Post::Same)?;
            for (k, _) in c.take.iter().enumerate().filter(|(_, &t)| t == i) {
                let f = b.layer_norm(
                    &hs,
                    self.w("pretrained.norm.weight")?,
                    self.w("pretrained.norm.bias")?,
                    LN_EPS,
                )?;
                let ft = f.narrow0(1, np)?;
                taps.keep(&mut b, &format!("feature.{k}"), &ft, Post::Same)?;
                let pk = b.linear(
                    &ft,
                    self.w(&format!("depth_head.projects.{k}.weight"))?,
                    Some(self.w(&format!("depth_head.projects.{k}.bias"))?),
                    Epilogue::None,
                )?;
                taps.keep(&mut b, &format!("project.{k}"), &pk, Post::Transpose(np, c.out_channels[k]))?;
                projected[k] = Some(pk);
            }
        }
        // `x` and `hs` are pool tensors, not loans: they stay alive until the recording has run.
        let mut proj = Vec::with_capacity(4);
        for (k, pk) in projected.into_iter().enumerate() {
            proj.push(pk.ok_or_else(|| {
                DepthError::Input(format!("taken block {} is beyond the model", c.take[k]))
            })?);
        }

        // §5: reassemble, layer_rn, fusion, head.
        let mut rn: Vec<Act> = Vec::with_capacity(4);
        for (k, pk) in proj.into_iter().enumerate() {
            let ck = c.out_channels[k];
            let r = match k {
                0 | 1 => {
                    let kk = if k == 0 { 4 } else { 2 };
                    let y = b.empty(&[1, ck, kk * gh, kk * gw])?;
                    dpt::record_conv_transpose_ks(
                        &mut b.rec,
                        &pk,
                        (gh, gw),
                        self.w(&format!("depth_head.resize_layers.{k}.weight"))?,
                        self.w(&format!("depth_head.resize_layers.{k}.bias"))?,
                        &y,
                    )?;
                    y
                }
                2 => b.swap12(&pk, [1, np, ck, 1], &[1, ck, gh, gw])?,
                _ => {
                    let m = b.swap12(&pk, [1, np, ck, 1], &[1, ck, gh, gw])?;
                    b.conv2d(
                        &m,
                        self.w("depth_head.resize_layers.3.weight")?,
                        Some(self.w("depth_head.resize_layers.3.bias")?),
                        Conv2dOpts::new(2, 1),
                    )?
                }
            };
            drop(pk);
            taps.keep(&mut b, &format!("resize.{k}"), &r, Post::Same)?;
            let l = b.conv2d(
                &r,
                self.w(&format!("depth_head.scratch.layer{}_rn.weight", k + 1))?,
                None,
                Conv2dOpts::new(1, 1),
            )?;
            taps.keep(&mut b, &format!("layer_rn.{k}"), &l, Post::Same)?;
            rn.push(l);
        }
        let size = |t: &Act| (t.shape()[2], t.shape()[3]);
        let (s0, s1, s2) = (size(&rn[0]), size(&rn[1]), size(&rn[2]));
        let rn3 = rn.pop().ok_or_else(|| DepthError::Input("no features".into()))?;
        let none = || DepthError::Input("no fusion output".into());
        let mut path = self.fuse(&mut b, 4, &rn3, None, s2, None)?.ok_or_else(none)?;
        drop(rn3);
        taps.keep(&mut b, "path_4", &path, Post::Same)?;
        for (n, target) in [(3, s1), (2, s0)] {
            let skip = rn.pop().ok_or_else(|| DepthError::Input("no features".into()))?;
            path = self.fuse(&mut b, n, &path, Some(&skip), target, None)?.ok_or_else(none)?;
            taps.keep(&mut b, &format!("path_{n}"), &path, Post::Same)?;
        }
        let skip = rn.pop().ok_or_else(|| DepthError::Input("no features".into()))?;
        let s1x = (2 * s0.0, 2 * s0.1);
        // The full-resolution head runs as a second recording: path_1 goes to a pool tensor, the first graph
        // runs and its buffers go back to the device (pool trimmed), so the two phases' intermediates never
        // coexist (vitl at 924×518 in f32: 2.21 GiB as one graph).
        let path1 = Tensor::empty(gpu, &[1, c.features, s1x.0, s1x.1], dt)?;
        self.fuse(&mut b, 1, &path, Some(&skip), s1x, Some(&path1))?;
        drop((path, skip));
        taps.keep(&mut b, "path_1", &path1, Post::Same)?;
        log::info!("depth graph, backbone and fusion: {:?}", b.lender().stats());
        std::mem::replace(&mut b.rec, trajattn_kernels::Recorder::new(gpu)).run()?;
        let mut dbg_phase1 = Vec::new();
        for (name, t, post) in taps.list.drain(..) {
            let v = if gpu.is_dry() { Vec::new() } else { t.to_f32(gpu)? };
            dbg_phase1.push((name, v, post));
        }
        drop(b);
        drop((x, hs));
        gpu.pool().trim();
        let mut b = Builder::new(gpu, dt);
        let path = path1;

        let s = "depth_head.scratch";
        let o1 = b.conv2d(
            &path,
            self.w(&format!("{s}.output_conv1.weight"))?,
            Some(self.w(&format!("{s}.output_conv1.bias"))?),
            Conv2dOpts::new(1, 1),
        )?;
        drop(path);
        taps.keep(&mut b, "output_conv1", &o1, Post::Same)?;
        let oi = bilinear(&mut b, &o1, (h, w))?;
        drop(o1);
        taps.keep(&mut b, "output_interp", &oi, Post::Same)?;
        let o2 = b.conv2d(
            &oi,
            self.w(&format!("{s}.output_conv2.0.weight"))?,
            Some(self.w(&format!("{s}.output_conv2.0.bias"))?),
            Conv2dOpts::new(1, 1),
        )?;
        drop(oi);
        dpt::record_relu_inplace(&mut b.rec, &o2)?;
        let o3 = b.conv2d(
            &o2,
            self.w(&format!("{s}.output_conv2.2.weight"))?,
            Some(self.w(&format!("{s}.output_conv2.2.bias"))?),
            Conv2dOpts::new(1, 0),
        )?;
        drop(o2);
        // Two ReLUs in the reference (head, then forward); one is enough.
        dpt::record_relu_inplace(&mut b.rec, &o3)?;
        let out = o3;
        log::info!("depth graph, head: {:?}", b.lender().stats());
        b.rec.run()?;
        if gpu.is_dry() {
            // A dry device (memory plans) runs nothing: there is nothing to read.
            return Ok((vec![0.0; h * w], HashMap::new()));
        }
        let depth = out.to_f32(gpu)?;
        let mut dbg = HashMap::new();
        let mut all = dbg_phase1;
        for (name, t, post) in taps.list {
            all.push((name, t.to_f32(gpu)?, post));
        }
        for (name, v, post) in all {
            let v = match post {
                Post::Same => v,
                Post::Transpose(r, cc) => {
                    let mut o = vec![0f32; v.len()];
                    for i in 0..r {
                        for j in 0..cc {
                            o[j * r + i] = v[i * cc + j];
                        }
                    }
                    o
                }
            };
            dbg.insert(name, v);
        }
        Ok((depth, dbg))
    }

    /// One pre-norm block, in place on the residual stream `hs [seq, D]`.
    fn block(&self, b: &mut Builder, hs: &Tensor, i: usize, seq: usize) -> Result<()> {
        let p = format!("pretrained.blocks.{i}");
        let w = |n: &str| self.w(&format!("{p}.{n}"));
        let ln = b.layer_norm(hs, w("norm1.weight")?, w("norm1.bias")?, LN_EPS)?;
        let qkv = b.linear(&ln, w("attn.qkv.weight")?, Some(w("attn.qkv.bias")?), Epilogue::None)?;
        drop(ln);
        let a = b.self_attention(&qkv, 1, seq, self.cfg.heads)?;
        drop(qkv);
        b.linear_acc(hs, &a, w("attn.proj.weight")?, Some(w("attn.proj.bias")?))?;
        drop(a);
        let ln = b.layer_norm(hs, w("norm2.weight")?, w("norm2.bias")?, LN_EPS)?;
        let f1 = b.linear(&ln, w("mlp.fc1.weight")?, Some(w("mlp.fc1.bias")?), Epilogue::GeluErf)?;
        drop(ln);
        b.linear_acc(hs, &f1, w("mlp.fc2.weight")?, Some(w("mlp.fc2.bias")?))?;
        Ok(())
    }

    /// `RCU(x) = x + conv2(ReLU(conv1(ReLU(x))))`.
    fn rcu(&self, b: &mut Builder, x: &Tensor, prefix: &str) -> Result<Act> {
        let r = relu(b, x)?;
        let c1 = b.conv2d(
            &r,
            self.w(&format!("{prefix}.conv1.weight"))?,
            Some(self.w(&format!("{prefix}.conv1.bias"))?),
            Conv2dOpts::new(1, 1),
        )?;
        drop(r);
        dpt::record_relu_inplace(&mut b.rec, &c1)?;
        let c2 = b.conv2d(
            &c1,
            self.w(&format!("{prefix}.conv2.weight"))?,
            Some(self.w(&format!("{prefix}.conv2.bias"))?),
            Conv2dOpts::new(1, 1),
        )?;
        drop(c1);
        b.add_inplace(&c2, x)?;
        Ok(c2)
    }

    /// `refinenet{n}`: `OC(up(RCU2(x [+ RCU1(skip)]), size))`, into `out` when given (then `None`).
    fn fuse(
        &self,
        b: &mut Builder,
        n: usize,
        x: &Tensor,
        skip: Option<&Tensor>,
        size: (usize, usize),
        out: Option<&Tensor>,
    ) -> Result<Option<Act>> {
        let p = format!("depth_head.scratch.refinenet{n}");
        let o = match skip {
            Some(s) => {
                let r = self.rcu(b, s, &format!("{p}.resConfUnit1"))?;
                b.add_inplace(&r, x)?;
                let o = self.rcu(b, &r, &format!("{p}.resConfUnit2"))?;
                drop(r);
                o
            }
            None => self.rcu(b, x, &format!("{p}.resConfUnit2"))?,
        };
        // `OC(up(o))` computed as `up(OC(o))`: a 1×1 convolution commutes with the bilinear resize (its
        // weights sum to 1, so the bias passes through), at a quarter of the work and memory.
        let small = b.conv2d(
            &o,
            self.w(&format!("{p}.out_conv.weight"))?,
            Some(self.w(&format!("{p}.out_conv.bias"))?),
            Conv2dOpts::new(1, 0),
        )?;
        drop(o);
        match out {
            Some(y) => {
                dpt::record_bilinear_ac(&mut b.rec, &small, y)?;
                Ok(None)
            }
            None => Ok(Some(bilinear(b, &small, size)?)),
        }
    }
}

fn relu(b: &mut Builder, x: &Tensor) -> Result<Act> {
    let y = b.empty(x.shape())?;
    dpt::record_relu(&mut b.rec, x, &y)?;
    Ok(y)
}

fn bilinear(b: &mut Builder, x: &Tensor, (h, w): (usize, usize)) -> Result<Act> {
    let s = x.shape();
    let y = b.empty(&[s[0], s[1], h, w])?;
    dpt::record_bilinear_ac(&mut b.rec, x, &y)?;
    Ok(y)
}
