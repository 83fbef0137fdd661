//! NVS-solver guidance (docs/reference/nvs-guidance.md §1, the official `--use_nvs_solver` path): before each
//! ordinary denoising step, the predicted clean latents of four overlapping crops are pulled towards the VAE
//! latents of the depth-warped frames, on the cells those frames cover.
//!
//! Conditioning comes from a camera-trajectory folder's warps (`NNNN.png` = frame `NNNN + 1` warped, `NNNN_mask.png`
//! = its dilated holes, as `trajattn camera --warp` writes them). The λ table is [`crate::nvs::search`]'s.
//!
//! Generalisations beyond the official code (which handles 25 frames of 72×128 latents only):
//! * the hole map averages blocks of the VAE's scale factor (the official reshape hard-codes 8, SVD's factor);
//! * the λ search's `τ/24` becomes `τ/(F − 1)`;
//! * the crops keep the official latent-cell constants — rows `[0, 40)` and `[24, h)`, columns `[0, 72)` and
//!   `[56, w)`, stitched at row 40 and column 72 — which is exactly the official geometry at every size where it
//!   runs; a bottom (right) crop that contributes nothing (h ≤ 40, resp. w ≤ 72) is not run (the reference runs
//!   it when h > 24 and discards it; its unused scheduler noise is still drawn when emulating a CPU run);
//! * a crop gradient with zero spread (std 0, where the reference divides by zero) contributes nothing.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::path::Path;

use trajattn_kernels::{DType, Gpu};

use super::{input_err, PipelineError};
use crate::models::unet::{GraphOptions, UNet, UNetGraph, UNetShape};
use crate::sampler::{round_to, Schedule};

type Result<T> = std::result::Result<T, PipelineError>;

/// The official learning rate.
pub const LR: f32 = 0.02;
/// λ values are clamped to `[WEIGHT_CLAMP, 1]` before use.
pub const WEIGHT_CLAMP: f64 = 0.6;
/// Raw VAE latents / 5.6 ≈ the 0.18215-scaled latent space.
pub const FACTOR_S: f32 = 5.6;
/// Official crop constants in latent cells: top rows `[0, TOP)`, bottom rows `[BOTTOM, h)`, left columns
/// `[0, LEFT)`, right columns `[RIGHT, w)`.
const TOP: usize = 40;
const BOTTOM: usize = 24;
const LEFT: usize = 72;
const RIGHT: usize = 56;

/// Tunable constants of the guidance (defaults: the official values).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NvsParams {
    pub lr: f32,
    pub weight_clamp: f64,
    pub factor_s: f32,
}

impl Default for NvsParams {
    fn default() -> Self {
        NvsParams { lr: LR, weight_clamp: WEIGHT_CLAMP, factor_s: FACTOR_S }
    }
}

/// The warped frames and their hole maps.
#[derive(Clone, Debug)]
pub struct NvsConditioning {
    /// Frames `1..F` warped from the first: RGB bytes `[H, W, 3]` at the generation size.
    pub images: Vec<Vec<u8>>,
    /// Hole maps `(F − 1, h, w)` at latent resolution: 1 where a block has ≥ 20 % hole pixels.
    pub hole: Vec<f32>,
    pub width: usize,
    pub height: usize,
    /// VAE scale factor the hole maps were averaged with.
    pub factor: usize,
    pub params: NvsParams,
}

/// The official `generate()` mask steps: `/255`, binarise at 0.5, mean over the channels, mean over each
/// `k × k` block, 1 where that mean is ≥ 0.2. `mask` is RGB `[H, W, 3]`.
pub fn hole_map(mask: &[u8], width: usize, height: usize, k: usize) -> Vec<f32> {
    let (h, w) = (height / k, width / k);
    let mut out = vec![0f32; h * w];
    for by in 0..h {
        for bx in 0..w {
            let mut s = 0f64;
            for y in by * k..(by + 1) * k {
                for x in bx * k..(bx + 1) * k {
                    let p = &mask[(y * width + x) * 3..(y * width + x) * 3 + 3];
                    let on: f64 = p.iter().map(|&v| if v as f64 / 255.0 >= 0.5 { 1.0 } else { 0.0 }).sum();
                    s += on / 3.0;
                }
            }
            out[by * w + bx] = if s / (k * k) as f64 >= 0.2 { 1.0 } else { 0.0 };
        }
    }
    out
}

fn read_rgb(path: &Path) -> Result<(Vec<u8>, usize, usize)> {
    let img = crate::image_input::open_oriented(path).map_err(|e| input_err(e.to_string()))?.to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    Ok((img.into_raw(), w, h))
}

impl NvsConditioning {
    /// From `frames − 1` warped frames and their masks (RGB, 0/255), all `width × height`.
    pub fn new(
        images: Vec<Vec<u8>>,
        masks: &[Vec<u8>],
        width: usize,
        height: usize,
        factor: usize,
        params: NvsParams,
    ) -> Result<Self> {
        if factor == 0 || !width.is_multiple_of(factor) || !height.is_multiple_of(factor) {
            return Err(input_err(format!(
                "NVS masks: {width}×{height} is not a multiple of the VAE factor {factor}"
            )));
        }
        if images.len() != masks.len() {
            return Err(input_err(format!("NVS: {} warped frames but {} masks", images.len(), masks.len())));
        }
        let n = width * height * 3;
        if let Some(i) = images.iter().chain(masks).position(|v| v.len() != n) {
            return Err(input_err(format!("NVS conditioning image {i} is not {width}×{height} RGB")));
        }
        let ok = params.lr.is_finite()
            && params.factor_s.is_finite()
            && params.factor_s != 0.0
            && (0.0..=1.0).contains(&params.weight_clamp);
        if !ok {
            return Err(input_err(
                "NVS parameters: the step size must be finite, the latent factor finite and non-zero, the λ clamp \
                 within [0, 1]",
            ));
        }
        let hole = masks.iter().flat_map(|m| hole_map(m, width, height, factor)).collect();
        Ok(NvsConditioning { images, hole, width, height, factor, params })
    }

    /// Whether this conditioning fits a generation of `frames` frames of `width × height` pixels with VAE factor
    /// `factor` (one warped frame per frame after the first).
    pub fn check(&self, frames: usize, width: usize, height: usize, factor: usize) -> Result<()> {
        if (self.width, self.height, self.factor) != (width, height, factor) {
            return Err(input_err(format!(
                "NVS conditioning is {}×{} (factor {}); the video is {width}×{height} (VAE factor {factor})",
                self.width, self.height, self.factor
            )));
        }
        if self.images.len() + 1 != frames {
            return Err(input_err(format!(
                "NVS conditioning holds {} warped frames; {frames} frames need {}",
                self.images.len(),
                frames.saturating_sub(1)
            )));
        }
        Ok(())
    }

    /// Reads `NNNN.png` and `NNNN_mask.png` (`NNNN = 0 … frames − 2`) from a camera-trajectory folder.
    pub fn load_dir(
        dir: &Path,
        frames: usize,
        width: usize,
        height: usize,
        factor: usize,
        params: NvsParams,
    ) -> Result<Self> {
        if frames < 2 {
            return Err(input_err("NVS guidance needs at least 2 frames"));
        }
        let (mut images, mut masks) = (Vec::new(), Vec::new());
        for i in 0..frames - 1 {
            for (suffix, list) in [("", &mut images), ("_mask", &mut masks)] {
                let p = dir.join(format!("{i:04}{suffix}.png"));
                if !p.exists() {
                    return Err(input_err(format!(
                        "NVS conditioning: {} is missing ({frames} frames need {:04}.png … {:04}.png and their \
                         _mask.png; `trajattn camera --warp` writes them)",
                        p.display(),
                        0,
                        frames - 2
                    )));
                }
                let (px, w, h) = read_rgb(&p)?;
                if (w, h) != (width, height) {
                    return Err(input_err(format!(
                        "{} is {w}×{h} but the video is generated at {width}×{height} (warp the image at the \
                         generation size)",
                        p.display()
                    )));
                }
                list.push(px);
            }
        }
        Self::new(images, &masks, width, height, factor, params)
    }
}

/// One crop: latent rows `r0..r1`, columns `c0..c1`; it supplies stitched rows `sr0..r1` and columns `sc0..c1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crop {
    pub r0: usize,
    pub r1: usize,
    pub c0: usize,
    pub c1: usize,
    pub sr0: usize,
    pub sc0: usize,
    /// Whether it supplies any cell (the reference runs non-contributing crops anyway).
    pub contributes: bool,
}

/// The official crops in their order (top-left, bottom-left, top-right, bottom-right) for an `h × w` latent;
/// crops the reference could not run (empty) are left out.
pub fn crops(h: usize, w: usize) -> Vec<Crop> {
    let rows = [(0, h.min(TOP), 0), (BOTTOM, h, TOP)];
    let cols = [(0, w.min(LEFT), 0), (RIGHT, w, LEFT)];
    let mut out = Vec::new();
    for &(c0, c1, sc0) in &cols {
        for &(r0, r1, sr0) in &rows {
            if r1 > r0 && c1 > c0 {
                out.push(Crop { r0, r1, c0, c1, sr0, sc0, contributes: r1 > sr0 && c1 > sc0 });
            }
        }
    }
    out
}

/// What one guidance pass needs besides the latents.
pub(super) struct Guide<'a> {
    pub unet: &'a UNet,
    pub frames: usize,
    pub lc: usize,
    pub h: usize,
    pub w: usize,
    pub dtype: DType,
    /// Image latents `(lc, h, w)` (the conditional ones, rounded to the model dtype).
    pub z: &'a [f32],
    /// Targets `(F, lc, h, w)`: `[z, e_1 … e_{F−1}] / factor_s`.
    pub targets: Vec<f32>,
    /// Valid pixels `(F, h, w)` (frame 0 all valid).
    pub valid: Vec<bool>,
    /// λ table `[step][τ]`.
    pub lambda: Vec<Vec<f64>>,
    pub params: NvsParams,
    /// The unconditional (zero) image embedding and the first row of the added time ids.
    pub context: Vec<f32>,
    pub added: Vec<f32>,
    graphs: HashMap<(usize, usize), UNetGraph>,
}

impl<'a> Guide<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        unet: &'a UNet,
        cond: &NvsConditioning,
        encoded: &[f32],
        z: &'a [f32],
        sched: &Schedule,
        (frames, lc, h, w): (usize, usize, usize, usize),
        dtype: DType,
        context_dim: usize,
        added: &[f32],
    ) -> Result<Self> {
        let plane = lc * h * w;
        cond.check(frames, cond.width, cond.height, cond.factor)?;
        if encoded.len() != (frames - 1) * plane || z.len() != plane {
            return Err(input_err("NVS: encoded conditioning frames have the wrong size"));
        }
        let fs = cond.params.factor_s;
        let mut targets: Vec<f32> = z.iter().map(|&v| v / fs).collect();
        targets.extend(encoded.iter().map(|&v| v / fs));
        let mut valid = vec![true; h * w];
        valid.extend(cond.hole.iter().map(|&x| 1.0 - x > 0.5));
        let sigmas: Vec<f64> = sched.sigmas[..sched.steps()].iter().map(|&s| s as f64).collect();
        let lambda = crate::nvs::search(&sigmas, frames)
            .ok_or_else(|| input_err("NVS: the λ search found no admissible candidate for this schedule"))?
            .table;
        Ok(Guide {
            unet,
            frames,
            lc,
            h,
            w,
            dtype,
            z,
            targets,
            valid,
            lambda,
            params: cond.params,
            context: vec![0.0; context_dim],
            added: added[..3].to_vec(),
            graphs: HashMap::new(),
        })
    }

    /// Elements of the scheduler noise each crop's `step_single` draws (in the reference's order), including
    /// crops that contribute nothing.
    pub fn crop_draws(&self) -> Vec<usize> {
        crops(self.h, self.w).iter().map(|c| self.frames * self.lc * (c.r1 - c.r0) * (c.c1 - c.c0)).collect()
    }

    /// The guidance pass of step `i` (docs/reference/nvs-guidance.md §4): returns the stitched update
    /// `g` `(F, lc, h, w)`, rounded to f16 as the reference subtracts it.
    pub fn pass(&mut self, gpu: &Gpu, sched: &Schedule, i: usize, latents: &[f32]) -> Result<Vec<f32>> {
        let (f, lc, h, w) = (self.frames, self.lc, self.h, self.w);
        let sigma = sched.sigmas[i];
        let pre = sched.precondition(i).map_err(super::sampler_err)?;
        let q = sigma * sigma + 1.0;
        let mut g = vec![0f32; f * lc * h * w];
        for crop in crops(h, w).into_iter().filter(|c| c.contributes) {
            let x = self.cut(latents, f * lc, &crop);
            let v = self.predict(gpu, &crop, &x, pre.c_noise, q.sqrt())?;
            // x̂0 − Cnd with x̂0 = fp(v·c_out) + x/(σ² + 1) (docs/reference/pipeline.md §7.5).
            let target = self.cut(&self.targets, f * lc, &crop);
            let diff: Vec<f32> = v
                .iter()
                .zip(&x)
                .zip(&target)
                .map(|((&v, &x), &t)| (round_to(self.dtype, v * pre.c_out) + x / q) - t)
                .collect();
            let gc = self.top_masked(i, &crop, diff);
            // g = lr·sqrt(σ)·G / std(G) (unbiased std over the crop), pasted where the crop supplies the stitch.
            let cnt = gc.len() as f64;
            let mean = gc.iter().map(|&v| v as f64).sum::<f64>() / cnt;
            let var = gc.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / (cnt - 1.0).max(1.0);
            let std = var.sqrt();
            if !(std.is_finite() && std > 0.0) {
                continue;
            }
            let scale = self.params.lr as f64 * (sigma as f64).sqrt() / std;
            let (ch, cw) = (crop.r1 - crop.r0, crop.c1 - crop.c0);
            for plane in 0..f * lc {
                for y in crop.sr0 - crop.r0..ch {
                    for xx in crop.sc0 - crop.c0..cw {
                        let v = gc[(plane * ch + y) * cw + xx] as f64 * scale;
                        g[(plane * h + crop.r0 + y) * w + crop.c0 + xx] = v as f32;
                    }
                }
            }
        }
        Ok(g.into_iter().map(|v| half::f16::from_f32(v).to_f32()).collect())
    }

    /// The crop of `planes` stacked `h × w` planes, as `(planes, ch, cw)`.
    fn cut(&self, t: &[f32], planes: usize, crop: &Crop) -> Vec<f32> {
        let (h, w) = (self.h, self.w);
        let mut out = Vec::with_capacity(planes * (crop.r1 - crop.r0) * (crop.c1 - crop.c0));
        for plane in 0..planes {
            for y in crop.r0..crop.r1 {
                out.extend_from_slice(&t[(plane * h + y) * w + crop.c0..(plane * h + y) * w + crop.c1]);
            }
        }
        out
    }

    /// The UNet's output for the crop (batch 1, unconditional context, no trajectory branch): input = the
    /// scaled latents of the crop and the conditional image latents.
    fn predict(&mut self, gpu: &Gpu, crop: &Crop, x: &[f32], c_noise: f32, div: f32) -> Result<Vec<f32>> {
        let (f, lc) = (self.frames, self.lc);
        let (ch, cw) = (crop.r1 - crop.r0, crop.c1 - crop.c0);
        let per = lc * ch * cw;
        let zc = self.cut(self.z, lc, crop);
        let mut input = Vec::with_capacity(f * (per + zc.len()));
        for fr in 0..f {
            input.extend(x[fr * per..(fr + 1) * per].iter().map(|&v| round_to(self.dtype, v / div)));
            input.extend_from_slice(&zc);
        }
        let graph = match self.graphs.entry((ch, cw)) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let shape = UNetShape { batch: 1, frames: f, height: ch, width: cw };
                let gr = UNetGraph::build(gpu, self.unet, shape, GraphOptions::default(), None)?;
                gr.set_conditioning(gpu, &self.context, &self.added)?;
                e.insert(gr)
            }
        };
        graph.run(gpu, &input, &[c_noise], &[])?;
        Ok(graph.output().to_f32(gpu)?)
    }

    /// `T ⊙ diff` (docs/reference/nvs-guidance.md §4.3–§4.4): frame 0 whole; frame τ keeps, on valid pixels,
    /// the entries whose error is within the smallest `⌊w·(L − nz)⌋ + nz` of `|diff·m|` (`w` = the clamped λ,
    /// `L` entries, `nz` invalid PIXELS).
    fn top_masked(&self, i: usize, crop: &Crop, mut diff: Vec<f32>) -> Vec<f32> {
        let (ch, cw) = (crop.r1 - crop.r0, crop.c1 - crop.c0);
        let (px, n) = (ch * cw, self.lc * ch * cw);
        for fr in 1..self.frames {
            let m: Vec<bool> = (0..px)
                .map(|p| self.valid[(fr * self.h + crop.r0 + p / cw) * self.w + crop.c0 + p % cw])
                .collect();
            let d = &mut diff[fr * n..(fr + 1) * n];
            let e: Vec<f32> = (0..n).map(|k| if m[k % px] { d[k].abs() } else { 0.0 }).collect();
            let nz = m.iter().filter(|&&v| !v).count();
            let wgt = self.lambda[i][fr].clamp(self.params.weight_clamp, 1.0);
            let k = (wgt * (n - nz) as f64).floor() as usize + nz;
            let mut sorted = e.clone();
            sorted.sort_by(f32::total_cmp);
            let cut = sorted[k.clamp(1, n) - 1];
            for (kk, v) in d.iter_mut().enumerate() {
                if !(m[kk % px] && e[kk] <= cut) {
                    *v = 0.0;
                }
            }
        }
        diff
    }
}
