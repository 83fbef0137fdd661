//! Layers built from kernel ops, recorded into a graph: a [`Builder`] records dispatches and lends intermediate
//! tensors from its own [`Lender`] (trajattn-kernels), which reuses a buffer as soon as the tensor it held is
//! dropped — lifetimes are Rust scopes — and keeps all its buffers for the graph.

pub mod resnet;
pub mod weights;

use trajattn_kernels::lender::{Lender, Loan};
use trajattn_kernels::ops::conv::{self, Conv2dOpts};
use trajattn_kernels::ops::elementwise::{self, Alpha, Bcast};
use trajattn_kernels::ops::flash_attention::{self, AttnShape, Strided};
use trajattn_kernels::ops::group_norm::{self, GroupNormOpts, GroupStats};
use trajattn_kernels::ops::layout;
use trajattn_kernels::ops::matmul::{self, BiasMode, Epilogue, Gemm, Operand, WLayout};
use trajattn_kernels::ops::rows;
use trajattn_kernels::ops::temporal_attention;
use trajattn_kernels::tensor::items_per_binding;
use trajattn_kernels::{DType, Gpu, Recorder, Result, Tensor};

pub use weights::{Weights, WeightsError};

/// An intermediate tensor: a buffer on loan from the graph's lender, returned when it drops.
pub type Act = Loan;

/// Records layers into one dispatch list, lending intermediates from its own lender.
pub struct Builder<'g> {
    pub gpu: &'g Gpu,
    pub rec: Recorder<'g>,
    pub dtype: DType,
    lender: Lender,
    /// Multiply-add FLOPs (2 per MAC) of the matmuls, convolutions and attentions recorded so far.
    pub flops: f64,
}

impl<'g> Builder<'g> {
    /// A builder with a fresh lender.
    pub fn new(gpu: &'g Gpu, dtype: DType) -> Self {
        Builder { gpu, rec: Recorder::new(gpu), dtype, lender: Lender::planned(), flops: 0.0 }
    }

    /// The lender of the intermediates (kept with the finished recording: it owns their buffers).
    pub fn lender(&self) -> Lender {
        self.lender.clone()
    }

    /// An uninitialised intermediate.
    pub fn empty(&self, shape: &[usize]) -> Result<Act> {
        self.lender.lend(self.gpu, shape, self.dtype)
    }

    /// `act(x · wᵀ + b)` over the last dim (`w [N, K]`, PyTorch Linear).
    pub fn linear(&mut self, x: &Tensor, w: &Tensor, b: Option<&Tensor>, act: Epilogue) -> Result<Act> {
        let mut shape = x.shape().to_vec();
        if let (Some(l), Some(&n)) = (shape.last_mut(), w.shape().first()) {
            *l = n;
        }
        let y = self.empty(&shape)?;
        matmul::record(&mut self.rec, x, w, WLayout::NK, b, act, &y, None)?;
        self.flops += 2.0 * y.numel() as f64 * x.shape().last().copied().unwrap_or(0) as f64;
        Ok(y)
    }

    /// Whether [`Builder::linear_geglu`] is available: the GPU tier's tiled GEMM fuses the GEGLU.
    pub fn geglu_fused(&self) -> bool {
        matmul::geglu_fused(self.gpu)
    }

    /// diffusers' GEGLU projection in one GEMM: `a · GELU(g)` where `[a | g] = x · wᵀ + b` (`w [2·I, K]`), so
    /// the `2·I`-wide projection is never written. Only where [`Builder::geglu_fused`]; elsewhere use
    /// [`Builder::linear`] then [`Builder::geglu`].
    pub fn linear_geglu(&mut self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Act> {
        let mut shape = x.shape().to_vec();
        if let (Some(l), Some(&n)) = (shape.last_mut(), w.shape().first()) {
            *l = n / 2;
        }
        let y = self.empty(&shape)?;
        matmul::record_linear_geglu(&mut self.rec, x, w, b, &y, None)?;
        self.flops += 4.0 * y.numel() as f64 * x.shape().last().copied().unwrap_or(0) as f64;
        Ok(y)
    }

    /// `y += x · wᵀ + b` (a projection added onto a residual stream in place).
    pub fn linear_acc(&mut self, y: &Tensor, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<()> {
        let (n, k) = (w.shape()[0], w.shape()[1]);
        let m = x.numel() / k.max(1);
        if x.numel() != m * k || y.numel() != m * n {
            return Err(trajattn_kernels::error::shape_err(
                "linear_acc",
                "x [M, K], y [M, N]",
                &[m, n],
                y.shape(),
            ));
        }
        let g = Gemm {
            batch: 1,
            m,
            n,
            k,
            x: Operand { t: x, offset: 0, ld: k, sb: 0 },
            w: Operand { t: w, offset: 0, ld: k, sb: 0 },
            layout: WLayout::NK,
            bias: b.map(|b| (b, BiasMode::PerColumn)),
            act: Epilogue::None,
            y: Operand { t: y, offset: 0, ld: n, sb: 0 },
            accumulate: true,
        };
        matmul::record_gemm(&mut self.rec, &g, None)?;
        self.flops += 2.0 * (m * n * k) as f64;
        Ok(())
    }

    /// 2-D convolution.
    pub fn conv2d(&mut self, x: &Tensor, w: &Tensor, b: Option<&Tensor>, opts: Conv2dOpts) -> Result<Act> {
        let (xs, ws) = (x.shape(), w.shape());
        let (ho, wo) = opts.out_size(xs[2], xs[3], ws[2], ws[3]).ok_or_else(|| {
            trajattn_kernels::error::shape_err("conv2d", "input larger than the kernel", ws, xs)
        })?;
        let y = self.empty(&[xs[0], ws[0], ho, wo])?;
        self.conv2d_into(x, w, b, opts, &y)?;
        Ok(y)
    }

    /// 2-D convolution written into `y` (e.g. a window of a larger tensor, [`Tensor::narrow0`]).
    pub fn conv2d_into(
        &mut self,
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        opts: Conv2dOpts,
        y: &Tensor,
    ) -> Result<()> {
        conv::record_conv2d(&mut self.rec, x, w, b, opts, y)?;
        self.flops += 2.0 * y.numel() as f64 * (w.shape()[1] * w.shape()[2] * w.shape()[3]) as f64;
        Ok(())
    }

    /// Temporal (3, 1, 1) convolution over clips of `frames` rows.
    pub fn conv3d_temporal(
        &mut self,
        x: &Tensor,
        frames: usize,
        w: &Tensor,
        b: Option<&Tensor>,
    ) -> Result<Act> {
        let xs = x.shape();
        let y = self.empty(&[xs[0], w.shape()[0], xs[2], xs[3]])?;
        conv::record_conv3d_temporal(&mut self.rec, x, frames, w, b, &y)?;
        self.flops += 2.0 * y.numel() as f64 * (xs[1] * 3) as f64;
        Ok(y)
    }

    /// GroupNorm (optionally followed by SiLU).
    pub fn group_norm(
        &mut self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
        stats: GroupStats,
        silu: bool,
    ) -> Result<Act> {
        let y = self.empty(x.shape())?;
        let o = GroupNormOpts { groups: 32, eps, stats, silu };
        group_norm::record(&mut self.rec, x, gamma, beta, o, &y)?;
        Ok(y)
    }

    /// LayerNorm over the last dim.
    pub fn layer_norm(&mut self, x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f32) -> Result<Act> {
        let y = self.empty(x.shape())?;
        rows::record_layer_norm(&mut self.rec, x, Some((gamma, beta)), eps, &y)?;
        Ok(y)
    }

    /// `y += a` in place.
    pub fn add_inplace(&mut self, y: &Tensor, a: &Tensor) -> Result<()> {
        elementwise::record_add_inplace(&mut self.rec, y, a)
    }

    /// `a + b` broadcast along `kind`.
    pub fn bcast_add(&mut self, kind: Bcast, a: &Tensor, b: &Tensor) -> Result<Act> {
        let y = self.empty(a.shape())?;
        elementwise::record_broadcast_add(&mut self.rec, kind, a, b, &y)?;
        Ok(y)
    }

    /// `y += b` broadcast along `kind`, in place.
    pub fn bcast_add_inplace(&mut self, kind: Bcast, y: &Tensor, b: &Tensor) -> Result<()> {
        elementwise::record_broadcast_add(&mut self.rec, kind, y, b, y)
    }

    /// `α·a + (1 − α)·b`.
    pub fn blend(&mut self, alpha: f32, a: &Tensor, b: &Tensor) -> Result<Act> {
        let y = self.empty(a.shape())?;
        elementwise::record_blend(&mut self.rec, Alpha::Scalar(alpha), a, b, &y)?;
        Ok(y)
    }

    /// GEGLU of the last dim.
    pub fn geglu(&mut self, x: &Tensor) -> Result<Act> {
        let mut shape = x.shape().to_vec();
        if let Some(l) = shape.last_mut() {
            *l /= 2;
        }
        let y = self.empty(&shape)?;
        elementwise::record_geglu(&mut self.rec, x, &y)?;
        Ok(y)
    }

    /// Swaps axes 1 and 2 of `x` viewed as `dims = [A, B, C, D]`; the result has shape `out`.
    pub fn swap12(&mut self, x: &Tensor, dims: [usize; 4], out: &[usize]) -> Result<Act> {
        let y = self.empty(out)?;
        layout::record_swap12(&mut self.rec, x, dims, &y)?;
        Ok(y)
    }

    /// Nearest-neighbour 2× upsampling of `[N, C, H, W]`.
    pub fn upsample2x(&mut self, x: &Tensor) -> Result<Act> {
        let s = x.shape();
        let y = self.empty(&[s[0], s[1], 2 * s[2], 2 * s[3]])?;
        layout::record_upsample2x(&mut self.rec, x, &y)?;
        Ok(y)
    }

    /// Channel concatenation `[a, b]`.
    pub fn concat_channels(&mut self, a: &Tensor, b: &Tensor) -> Result<Act> {
        let mut shape = a.shape().to_vec();
        shape[1] += b.shape()[1];
        let y = self.empty(&shape)?;
        layout::record_concat_channels(&mut self.rec, a, b, &y)?;
        Ok(y)
    }

    /// Multi-head self-attention over `batch` sequences of `seq` tokens from a fused `[.., 3·C]` QKV tensor:
    /// the short-sequence kernel (scores in registers, many sequences per workgroup) up to its length limit,
    /// flash attention beyond. Where the fused rows of one sequence exceed a storage binding (flash attention
    /// binds all of a sequence's keys at once), Q, K and V are first copied apart into dense `[batch·seq, C]`
    /// blocks, whose K and V each need a third of the span.
    pub fn self_attention(&mut self, qkv: &Tensor, batch: usize, seq: usize, heads: usize) -> Result<Act> {
        let c = qkv.shape().last().copied().unwrap_or(0) / 3;
        let y = self.empty(&[batch * seq, c])?;
        let d = c / heads.max(1);
        let s = AttnShape::self_attn(batch, seq, heads, d);
        let (q, k, v) = (Strided::fused(qkv, 0, c), Strided::fused(qkv, 1, c), Strided::fused(qkv, 2, c));
        if seq <= temporal_attention::MAX_SEQ && d.is_multiple_of(4) && d <= temporal_attention::MAX_HEAD_DIM
        {
            temporal_attention::record_temporal_attention(&mut self.rec, s, q, k, v, &y, None)?;
        } else if items_per_binding(self.gpu, seq * 3 * c, self.dtype).is_ok() {
            flash_attention::record_flash_attention(&mut self.rec, s, q, k, v, &y, None)?;
        } else {
            // [batch·seq, 3, C] → [3, batch·seq, C]: Q, K and V as three dense blocks of one buffer.
            let apart = self.empty(&[3, batch * seq, c])?;
            layout::record_swap12(&mut self.rec, qkv, [1, batch * seq, 3, c], &apart)?;
            let (q, k, v) = (apart.narrow0(0, 1)?, apart.narrow0(1, 1)?, apart.narrow0(2, 1)?);
            let (q, k, v) = (Strided::dense(&q), Strided::dense(&k), Strided::dense(&v));
            flash_attention::record_flash_attention(&mut self.rec, s, q, k, v, &y, None)?;
        }
        self.flops += 4.0 * (batch * seq * seq * c) as f64;
        Ok(y)
    }
}
