//! Matmul and linear: launcher, float64 reference, benchmark case.
//!
//! `Y[b] = act(X[b] · W[b]ᵀ + bias)` with W in PyTorch's `[out, in]` layout (or `[in, out]` with
//! [`WLayout::KN`]). Work is split over batch and row chunks so every binding fits the adapter's limit.
//!
//! Kernels, by tier (`crate::select`): the GPU tier runs `shaders/gemm_tiled.wgsl` (workgroup-memory block
//! tiles, 8 × 8 register tiles; any strides and layouts) or its vec4-load twin `gemm_tiled_vec4.wgsl` (aligned,
//! K-contiguous operands), with [`GemmTiles`] chosen from the adapter's limits; the 8-lane tier (lavapipe) runs
//! `matmul_sg8.wgsl` where K % 32 == 0, else `matmul_vec4.wgsl` / `matmul.wgsl`. An explicit [`Tiling`] forces
//! the generic register-block kernel `matmul.wgsl` on any adapter.
//!
//! Files: this one holds the general strided [`Gemm`], its kernel choice and the binding splits; `linear.rs` the
//! PyTorch-Linear conveniences on top (`record`, `linear`, the fused GEGLU projection); `reference.rs` the
//! float64 reference; `bench.rs` the benchmark case.

use crate::dispatch::Recorder;
use crate::error::{invalid, shape_err, KernelError, Result};
use crate::gpu::Gpu;
use crate::pipelines::Pipeline;
use crate::select::{AdapterFacts, Tier};
use crate::shaders::{GEMM_TILED, GEMM_TILED_VEC4, MATMUL, MATMUL_SG8, MATMUL_VEC4};
use crate::tensor::{items_per_binding, Tensor};
use bytemuck::{Pod, Zeroable};
use std::sync::Arc;

mod bench;
mod linear;
pub mod reference;

pub use bench::BENCH;
pub use linear::{geglu_fused, linear, record, record_linear_geglu};

/// Activation fused into the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    /// Identity.
    None,
    /// x·sigmoid(x).
    Silu,
    /// Exact GELU, 0.5·x·(1 + erf(x/√2)).
    GeluErf,
    /// Tanh-approximated GELU.
    GeluTanh,
    /// GEGLU (diffusers' feed-forward): the GEMM's `N` columns are a value half and a gate half, and the output
    /// (`N/2` wide) is `value · GELU(gate)` (exact GELU). Only the GPU tier's tiled GEMM fuses it
    /// ([`geglu_fused`]); elsewhere a linear and `elementwise::record_geglu` compute the same.
    Geglu,
}

impl Epilogue {
    fn code(self) -> u32 {
        match self {
            Epilogue::None => 0,
            Epilogue::Silu => 1,
            Epilogue::GeluErf => 2,
            Epilogue::GeluTanh => 3,
            Epilogue::Geglu => 4,
        }
    }
}

/// Layout of the second operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WLayout {
    /// `[N, K]`: PyTorch's Linear weight `[out, in]`.
    NK,
    /// `[K, N]`: a plain row-major right-hand matrix.
    KN,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    act: u32,
    base_x: u32,
    base_w: u32,
    base_b: u32,
    base_y: u32,
    x_sb: u32,
    w_sb: u32,
    y_sb: u32,
    flags: u32,
    w_sn: u32,
    w_sk: u32,
    ldx: u32,
    ldy: u32,
}

/// Layout of the uniform `Params` of `matmul.wgsl`, `matmul_vec4.wgsl` and `matmul_sg8.wgsl`.
pub const PARAMS_LAYOUT: crate::params::ParamsLayout = crate::params_layout!(Params {
    m,
    n,
    k,
    act,
    base_x,
    base_w,
    base_b,
    base_y,
    x_sb,
    w_sb,
    y_sb,
    flags,
    w_sn,
    w_sk,
    ldx,
    ldy
});

/// Register-block and workgroup shape (pipeline-overridable constants of the shader).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tiling {
    /// Rows per invocation (≤ 8).
    pub tm: u32,
    /// Columns per invocation (≤ 8).
    pub tn: u32,
    /// Invocations along N.
    pub wg_x: u32,
    /// Invocations along M.
    pub wg_y: u32,
}

impl Tiling {
    /// The default for this adapter.
    pub fn for_gpu(_gpu: &Gpu) -> Tiling {
        Tiling { tm: 4, tn: 4, wg_x: 8, wg_y: 8 }
    }
}

const OP: &str = "matmul";
/// Rows and columns one workgroup of `shaders/matmul_sg8.wgsl` covers (TM·8, TG·8 in its generator).
const SG8_ROWS: usize = 16;
const SG8_COLS: usize = 8;

/// One strided operand of a [`Gemm`]: element offset of its first element, row stride, batch stride.
#[derive(Clone, Copy, Debug)]
pub struct Operand<'a> {
    /// The tensor holding the operand.
    pub t: &'a Tensor,
    /// Element index of element (0, 0, 0).
    pub offset: usize,
    /// Elements between consecutive rows.
    pub ld: usize,
    /// Elements between consecutive batch entries (0: shared by the batch).
    pub sb: usize,
}

/// Where bias is added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BiasMode {
    /// One value per output column `n` (Linear).
    PerColumn,
    /// One value per output row `m` (a convolution computed as `W · colsᵀ`).
    PerRow,
}

/// A general strided GEMM: `y[b, m, n] (+)= act(Σ_k x[b, m, k] · w[b, n, k] + bias)`.
#[derive(Clone, Copy, Debug)]
pub struct Gemm<'a> {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// `[M, K]` rows of length K (row stride `ld`).
    pub x: Operand<'a>,
    /// `[N, K]` (NK) or `[K, N]` (KN).
    pub w: Operand<'a>,
    pub layout: WLayout,
    pub bias: Option<(&'a Tensor, BiasMode)>,
    pub act: Epilogue,
    /// `[M, N]` rows of length N (row stride `ld`).
    pub y: Operand<'a>,
    /// Add into the existing `y` instead of overwriting it (the epilogue must then be `None`).
    pub accumulate: bool,
}

fn span(rows: usize, ld: usize, cols: usize) -> usize {
    if rows == 0 {
        0
    } else {
        (rows - 1) * ld + cols
    }
}

/// Workgroup shape and K step of the GPU-tier tiled GEMM (`shaders/gemm_tiled*.wgsl`): a workgroup of
/// `wg_x × wg_y` invocations, each with an 8 × 8 register tile, computes an `8·wg_y × 8·wg_x` block of Y, staging
/// `bk`-deep blocks of X and W in workgroup memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmTiles {
    /// Invocations along N.
    pub wg_x: u32,
    /// Invocations along M.
    pub wg_y: u32,
    /// K step of one staged block (a multiple of 4).
    pub bk: u32,
}

impl GemmTiles {
    /// Rows of Y one workgroup covers.
    pub fn bm(&self) -> u32 {
        8 * self.wg_y
    }

    /// Columns of Y one workgroup covers.
    pub fn bn(&self) -> u32 {
        8 * self.wg_x
    }

    /// Workgroup memory the staged blocks take (f32 vec4s), bytes.
    pub fn workgroup_bytes(&self) -> u32 {
        32 * self.bk * (self.wg_x + self.wg_y)
    }

    /// The largest tiling the adapter allows: 16 × 16 invocations (128 × 128 blocks) with BK = 8 (8 KiB of
    /// workgroup memory) where it can, smaller where its invocation or workgroup-memory limits say so.
    pub fn for_facts(f: &AdapterFacts) -> GemmTiles {
        for (wg_x, wg_y) in [(16, 16), (16, 8), (8, 8), (8, 4), (4, 4)] {
            for bk in [8, 4] {
                let t = GemmTiles { wg_x, wg_y, bk };
                if wg_x * wg_y <= f.max_invocations && t.workgroup_bytes() <= f.max_workgroup_storage {
                    return t;
                }
            }
        }
        // 16 invocations and 1 KiB: below every adapter wgpu accepts (WebGPU guarantees 256 and 16 KiB).
        GemmTiles { wg_x: 4, wg_y: 4, bk: 4 }
    }

    /// `Err` unless this adapter can run the tiling.
    fn check(&self, gpu: &Gpu) -> Result<()> {
        let l = &gpu.limits;
        let ok = self.wg_x >= 1
            && self.wg_y >= 1
            && self.bk >= 4
            && self.bk.is_multiple_of(4)
            && self.wg_x <= l.max_compute_workgroup_size_x
            && self.wg_y <= l.max_compute_workgroup_size_y
            && self.wg_x * self.wg_y <= l.max_compute_invocations_per_workgroup
            && self.workgroup_bytes() <= l.max_compute_workgroup_storage_size;
        if ok {
            Ok(())
        } else {
            Err(invalid(
                OP,
                format!(
                    "tiles {self:?} ({} invocations, {} bytes of workgroup memory; BK a multiple of 4) exceed \
                     this adapter ({} invocations, {} bytes, workgroup size {}x{})",
                    self.wg_x * self.wg_y,
                    self.workgroup_bytes(),
                    l.max_compute_invocations_per_workgroup,
                    l.max_compute_workgroup_storage_size,
                    l.max_compute_workgroup_size_x,
                    l.max_compute_workgroup_size_y
                ),
            ))
        }
    }
}

/// Which kernel family records a [`Gemm`].
#[derive(Clone, Copy, Debug)]
enum Kernel {
    /// `matmul.wgsl` with this register block (an explicit [`Tiling`]).
    Generic(Tiling),
    /// Today's default for the 8-lane tier: `matmul_sg8` / `matmul_vec4` / `matmul`.
    Sg8Tier(Tiling),
    /// The GPU tier: `gemm_tiled_vec4` / `gemm_tiled`.
    Tiled(GemmTiles),
}

/// Records a [`Gemm`]. Splits over batch entries, row chunks and (an `[N, K]` weight above the binding limit)
/// output-column chunks so every binding fits the adapter.
///
/// The kernel: an explicit `tiling` forces the generic register-block kernel; otherwise the GPU tier gets the
/// workgroup-tiled GEMM ([`GemmTiles::for_facts`]) and the 8-lane tier its subgroup kernel where it applies.
pub fn record_gemm(rec: &mut Recorder, g: &Gemm, tiling: Option<Tiling>) -> Result<()> {
    let gpu = rec.gpu();
    let kernel = match (tiling, gpu.tier) {
        (Some(t), _) => Kernel::Generic(t),
        (None, Tier::Gpu) => Kernel::Tiled(GemmTiles::for_facts(&gpu.facts)),
        (None, Tier::Sg8) => Kernel::Sg8Tier(Tiling::for_gpu(gpu)),
    };
    record_with(rec, g, kernel)
}

/// Records a [`Gemm`] with the GPU-tier tiled kernel and the given tiles, whatever the adapter's tier (tests,
/// tuning). `Err` when the adapter cannot run `tiles`.
pub fn record_gemm_tiled(rec: &mut Recorder, g: &Gemm, tiles: GemmTiles) -> Result<()> {
    tiles.check(rec.gpu())?;
    record_with(rec, g, Kernel::Tiled(tiles))
}

fn record_with(rec: &mut Recorder, g: &Gemm, kernel: Kernel) -> Result<()> {
    let gpu = rec.gpu();
    let dtype = g.x.t.dtype();
    if g.w.t.dtype() != dtype || g.y.t.dtype() != dtype || g.bias.is_some_and(|(b, _)| b.dtype() != dtype) {
        return Err(KernelError::DType {
            op: OP,
            found: format!("x {}, w {}, y {}", dtype, g.w.t.dtype(), g.y.t.dtype()),
            why: "all operands must have the same dtype".into(),
        });
    }
    if g.accumulate && g.act != Epilogue::None {
        return Err(invalid(OP, "accumulate needs the identity epilogue"));
    }
    let geglu = g.act == Epilogue::Geglu;
    if geglu {
        if !matches!(kernel, Kernel::Tiled(_)) {
            return Err(invalid(OP, "the GEGLU epilogue needs the GPU tier's tiled GEMM (see geglu_fused)"));
        }
        if !g.n.is_multiple_of(2) || g.layout != WLayout::NK {
            return Err(invalid(OP, format!("GEGLU needs an even N and an [N, K] weight (N = {})", g.n)));
        }
        if matches!(g.bias, Some((_, BiasMode::PerRow))) {
            return Err(invalid(OP, "GEGLU takes a per-column bias only"));
        }
    }
    // Columns of Y: GEGLU writes one per value/gate pair.
    let yn = if geglu { g.n / 2 } else { g.n };
    if g.m == 0 || g.n == 0 || g.batch == 0 {
        return Ok(());
    }
    if g.k == 0 {
        return Err(invalid(OP, "K = 0 is not supported"));
    }
    // Bounds of every operand, so a bad descriptor is an Err and never an out-of-range binding.
    let wspan = match g.layout {
        WLayout::NK => span(g.n, g.w.ld, g.k),
        WLayout::KN => span(g.k, g.w.ld, g.n),
    };
    for (what, o, need) in
        [("x", &g.x, span(g.m, g.x.ld, g.k)), ("w", &g.w, wspan), ("y", &g.y, span(g.m, g.y.ld, yn))]
    {
        let end = o.offset + (g.batch - 1) * o.sb + need;
        if end > o.t.numel() {
            return Err(invalid(
                OP,
                format!("{what} needs {end} elements, tensor {:?} has {}", o.t.shape(), o.t.numel()),
            ));
        }
    }
    if let Some((b, mode)) = g.bias {
        let want = if mode == BiasMode::PerColumn { g.n } else { g.m };
        if b.numel() != want {
            return Err(shape_err(OP, "bias", &[want], b.shape()));
        }
    }
    if let Kernel::Generic(t) | Kernel::Sg8Tier(t) = kernel {
        if !(1..=8).contains(&t.tm) || !(1..=8).contains(&t.tn) {
            return Err(invalid(OP, format!("tiling {t:?}: tm and tn must be 1..=8")));
        }
    }
    // The vec4 paths need K-contiguous operands with 4-aligned strides (starts are checked per dispatch).
    let k_contig = g.layout == WLayout::NK
        && g.k.is_multiple_of(4)
        && g.x.ld.is_multiple_of(4)
        && g.w.ld.is_multiple_of(4)
        && g.x.sb.is_multiple_of(4)
        && g.w.sb.is_multiple_of(4);
    // Pipelines are compiled when first chosen, so the pipeline cache says which variants really ran.
    let pick = |aligned: bool, rows: usize, n: usize| -> Result<(Arc<Pipeline>, usize, usize)> {
        let get = |shader, entry, consts: &[(&'static str, f64)]| {
            gpu.pipelines().get(&gpu.device, shader, entry, dtype, consts)
        };
        let generic = |t: Tiling| -> Result<(Arc<Pipeline>, usize, usize)> {
            let consts =
                [("TM", t.tm as f64), ("TN", t.tn as f64), ("WG_X", t.wg_x as f64), ("WG_Y", t.wg_y as f64)];
            let grid = (n.div_ceil((t.tn * t.wg_x) as usize), rows.div_ceil((t.tm * t.wg_y) as usize));
            Ok((get(&MATMUL, "matmul", &consts)?, grid.0, grid.1))
        };
        match kernel {
            Kernel::Generic(t) => generic(t),
            Kernel::Sg8Tier(t) => {
                if k_contig && aligned && g.k.is_multiple_of(32) {
                    let grid = (n.div_ceil(SG8_COLS), rows.div_ceil(SG8_ROWS));
                    Ok((get(&MATMUL_SG8, "matmul_sg8", &[])?, grid.0, grid.1))
                } else if k_contig && aligned {
                    let consts = [("WG_X", t.wg_x as f64), ("WG_Y", t.wg_y as f64)];
                    let grid = (n.div_ceil(4 * t.wg_x as usize), rows.div_ceil(4 * t.wg_y as usize));
                    Ok((get(&MATMUL_VEC4, "matmul_vec4", &consts)?, grid.0, grid.1))
                } else {
                    generic(t)
                }
            }
            Kernel::Tiled(t) => {
                let consts = [("WG_X", t.wg_x as f64), ("WG_Y", t.wg_y as f64), ("BK", t.bk as f64)];
                let grid = (n.div_ceil(t.bn() as usize), rows.div_ceil(t.bm() as usize));
                let pipe = if k_contig && aligned {
                    get(&GEMM_TILED_VEC4, "gemm_tiled_vec4", &consts)?
                } else {
                    get(&GEMM_TILED, "gemm_tiled", &consts)?
                };
                Ok((pipe, grid.0, grid.1))
            }
        }
    };
    let (w_sn, w_sk) = match g.layout {
        WLayout::NK => (g.w.ld as u32, 1u32),
        WLayout::KN => (1u32, g.w.ld as u32),
    };
    let flags = match g.bias {
        Some((_, BiasMode::PerColumn)) => 1,
        Some((_, BiasMode::PerRow)) => 2,
        None => 0,
    } | if g.accumulate { 4 } else { 0 };
    let maxg = gpu.limits.max_compute_workgroups_per_dimension as usize;
    // Every kernel covers at least 8 rows per workgroup along grid y.
    let row_elems = g.x.ld.max(g.y.ld).max(g.k).max(g.n);
    let rows_chunk = items_per_binding(gpu, row_elems, dtype)?.min(maxg * 8).max(1);
    let fits = |o: &Operand, need: usize| o.t.window(gpu, o.offset, (g.batch - 1) * o.sb + need).is_ok();
    // The whole batch in one dispatch (grid z) when every operand fits one binding.
    let whole = g.batch > 1
        && g.batch <= maxg
        && g.m <= rows_chunk
        && fits(&g.x, span(g.m, g.x.ld, g.k))
        && fits(&g.y, span(g.m, g.y.ld, yn))
        && fits(&g.w, wspan);
    let batches: Vec<(usize, usize)> =
        if whole { vec![(0, g.batch)] } else { (0..g.batch).map(|b| (b, 1)).collect() };
    // Output columns per dispatch: all of them when the weight fits one binding; otherwise (an `[N, K]` weight,
    // no GEGLU pairing of its two halves) chunks of whole weight rows that fit, multiples of 64 so vec4 loads
    // stay aligned. A `[K, N]` or GEGLU weight that does not fit is refused (`TooLarge`).
    let split_cols = g.layout == WLayout::NK && !geglu;
    let cols_per_window = |nb: usize| -> Result<usize> {
        let per = items_per_binding(gpu, g.w.ld.max(g.k), dtype)?;
        Ok(if nb > 1 || per >= g.n {
            g.n
        } else if per >= 64 {
            per - per % 64
        } else {
            per
        })
    };
    for (b0, nb) in batches {
        let whole_w = || g.w.t.window(gpu, g.w.offset + b0 * g.w.sb, (nb - 1) * g.w.sb + wspan);
        let w_whole = whole_w();
        let cols_chunk = match &w_whole {
            Ok(_) => g.n,
            Err(KernelError::TooLarge { .. }) if split_cols => cols_per_window(nb)?,
            Err(_) => g.n,
        };
        for n0 in (0..g.n).step_by(cols_chunk) {
            let nn = cols_chunk.min(g.n - n0);
            let (ww, y_off, y_cols) = if nn == g.n {
                let ww = match &w_whole {
                    Ok(w) => w.clone(),
                    Err(_) => whole_w()?,
                };
                (ww, 0, yn)
            } else {
                (g.w.t.window(gpu, g.w.offset + b0 * g.w.sb + n0 * g.w.ld, span(nn, g.w.ld, g.k))?, n0, nn)
            };
            let bw = match g.bias {
                Some((bt, BiasMode::PerColumn)) if nn < g.n => bt.window(gpu, n0, nn)?,
                Some((bt, _)) => bt.whole(gpu)?,
                None => ww.clone(),
            };
            let mut r0 = 0;
            while r0 < g.m {
                let rows = if nb > 1 { g.m } else { rows_chunk.min(g.m - r0) };
                let xw = g.x.t.window(
                    gpu,
                    g.x.offset + b0 * g.x.sb + r0 * g.x.ld,
                    (nb - 1) * g.x.sb + span(rows, g.x.ld, g.k),
                )?;
                let yw = g.y.t.window(
                    gpu,
                    g.y.offset + b0 * g.y.sb + r0 * g.y.ld + y_off,
                    (nb - 1) * g.y.sb + span(rows, g.y.ld, y_cols),
                )?;
                // A per-row bias is indexed by the row inside this chunk: offset its base.
                let base_b =
                    if matches!(g.bias, Some((_, BiasMode::PerRow))) { bw.base + r0 as u32 } else { bw.base };
                let params = Params {
                    m: rows as u32,
                    n: nn as u32,
                    k: g.k as u32,
                    act: g.act.code(),
                    base_x: xw.base,
                    base_w: ww.base,
                    base_b,
                    base_y: yw.base,
                    x_sb: g.x.sb as u32,
                    w_sb: g.w.sb as u32,
                    y_sb: g.y.sb as u32,
                    flags,
                    w_sn,
                    w_sk,
                    ldx: g.x.ld as u32,
                    ldy: g.y.ld as u32,
                };
                let aligned = xw.base % 4 == 0 && ww.base % 4 == 0;
                let (pipe, gx, gy) = pick(aligned, rows, nn)?;
                let groups = [gx as u32, gy as u32, nb as u32];
                rec.dispatch(
                    &pipe,
                    bytemuck::bytes_of(&params),
                    vec![xw, ww.clone(), bw.clone(), yw],
                    groups,
                )?;
                r0 += rows;
            }
        }
    }
    Ok(())
}
