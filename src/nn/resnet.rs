//! diffusers' residual blocks on `(N, C, h, w)` activations, shared by the UNet and the VAE.

use trajattn_kernels::ops::conv::Conv2dOpts;
use trajattn_kernels::ops::elementwise::Bcast;
use trajattn_kernels::ops::group_norm::GroupStats;
use trajattn_kernels::ops::matmul::Epilogue;
use trajattn_kernels::Tensor;

use super::{Act, Builder, Weights, WeightsError};

type Result<T> = std::result::Result<T, WeightsError>;

/// GroupNorm(32) `p.weight`/`p.bias`, optionally followed by SiLU.
pub fn norm(
    b: &mut Builder,
    w: &Weights,
    p: &str,
    x: &Tensor,
    eps: f32,
    stats: GroupStats,
    silu: bool,
) -> Result<Act> {
    Ok(b.group_norm(x, w.get(&format!("{p}.weight"))?, w.get(&format!("{p}.bias"))?, eps, stats, silu)?)
}

/// Conv2d `p.weight` with bias `p.bias`.
pub fn conv(b: &mut Builder, w: &Weights, p: &str, x: &Tensor, opts: Conv2dOpts) -> Result<Act> {
    Ok(b.conv2d(x, w.get(&format!("{p}.weight"))?, Some(w.get(&format!("{p}.bias"))?), opts)?)
}

/// Temporal (3, 1, 1) Conv3d `p.weight` with bias over clips of `frames` rows.
pub fn conv_t(b: &mut Builder, w: &Weights, p: &str, x: &Tensor, frames: usize) -> Result<Act> {
    Ok(b.conv3d_temporal(x, frames, w.get(&format!("{p}.weight"))?, Some(w.get(&format!("{p}.bias"))?))?)
}

/// Linear `p.weight` with bias `p.bias`.
pub fn linear(b: &mut Builder, w: &Weights, p: &str, x: &Tensor, act: Epilogue) -> Result<Act> {
    Ok(b.linear(x, w.get(&format!("{p}.weight"))?, Some(w.get(&format!("{p}.bias"))?), act)?)
}

/// `h += time_emb_proj(temb_act)` per row (frame) and channel, when the block has a time embedding.
fn add_time(b: &mut Builder, w: &Weights, p: &str, h: Act, temb_act: Option<&Tensor>) -> Result<Act> {
    match temb_act {
        None => Ok(h),
        Some(e) => {
            let tp = linear(b, w, &format!("{p}.time_emb_proj"), e, Epilogue::None)?;
            Ok(b.bcast_add(Bcast::SampleChannel, &h, &tp)?)
        }
    }
}

/// `ResnetBlock2D`: GroupNorm + SiLU, conv 3×3, (+ projected time embedding, `temb_act` = SiLU(emb) per row),
/// GroupNorm + SiLU, conv 3×3, plus the input (through a 1×1 `conv_shortcut` when the widths differ).
pub fn resnet2d(
    b: &mut Builder,
    w: &Weights,
    p: &str,
    x: &Tensor,
    eps: f32,
    temb_act: Option<&Tensor>,
) -> Result<Act> {
    let co = w.get(&format!("{p}.conv2.weight"))?.shape()[0];
    let s = x.shape();
    if s.len() != 4 {
        return Err(trajattn_kernels::error::shape_err("resnet2d", "input [N, C, H, W]", &[0; 4], s).into());
    }
    let y = b.empty(&[s[0], co, s[2], s[3]])?;
    resnet2d_into(b, w, p, x, eps, temb_act, &y)?;
    Ok(y)
}

/// [`resnet2d`] written into `y` (e.g. a window of a larger tensor, [`Tensor::narrow0`]).
pub fn resnet2d_into(
    b: &mut Builder,
    w: &Weights,
    p: &str,
    x: &Tensor,
    eps: f32,
    temb_act: Option<&Tensor>,
    y: &Tensor,
) -> Result<()> {
    let mut h = norm(b, w, &format!("{p}.norm1"), x, eps, GroupStats::PerFrame, true)?;
    h = conv(b, w, &format!("{p}.conv1"), &h, Conv2dOpts::new(1, 1))?;
    h = add_time(b, w, p, h, temb_act)?;
    h = norm(b, w, &format!("{p}.norm2"), &h, eps, GroupStats::PerFrame, true)?;
    let c2 = format!("{p}.conv2");
    b.conv2d_into(
        &h,
        w.get(&format!("{c2}.weight"))?,
        Some(w.get(&format!("{c2}.bias"))?),
        Conv2dOpts::new(1, 1),
        y,
    )?;
    drop(h);
    if w.contains(&format!("{p}.conv_shortcut.weight")) {
        let s = conv(b, w, &format!("{p}.conv_shortcut"), x, Conv2dOpts::new(1, 0))?;
        b.add_inplace(y, &s)?;
    } else {
        b.add_inplace(y, x)?;
    }
    Ok(())
}

/// `TemporalResnetBlock` over clips of `frames` rows: GroupNorm with statistics across the clip's frames + SiLU,
/// temporal conv, (+ time embedding), again, plus the input.
pub fn temporal_resnet(
    b: &mut Builder,
    w: &Weights,
    p: &str,
    x: &Tensor,
    frames: usize,
    eps: f32,
    temb_act: Option<&Tensor>,
) -> Result<Act> {
    let st = GroupStats::AcrossFrames(frames);
    let mut h = norm(b, w, &format!("{p}.norm1"), x, eps, st, true)?;
    h = conv_t(b, w, &format!("{p}.conv1"), &h, frames)?;
    h = add_time(b, w, p, h, temb_act)?;
    h = norm(b, w, &format!("{p}.norm2"), &h, eps, st, true)?;
    h = conv_t(b, w, &format!("{p}.conv2"), &h, frames)?;
    b.add_inplace(&h, x)?;
    Ok(h)
}
