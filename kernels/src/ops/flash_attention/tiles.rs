//! Tile constants of `attn_fa2` (`shaders/flash_attention_fa2.wgsl`): chosen per head dim from the adapter's
//! workgroup-memory and invocation limits.

/// `attn_fa2`: most keys per invocation in the score tile (the shader's `MAXRK`).
const FA2_MAX_RK: u32 = 8;
/// `attn_fa2`: fewest keys per invocation in the score tile: each vec4 of K read from workgroup memory then
/// feeds 16 FMAs, and each Q read 4·RK (the shader keeps 4 query rows per invocation).
const FA2_MIN_RK: u32 = 4;
/// `attn_fa2`: most output column groups (vec4) per invocation (the shader's 16 named accumulators).
const FA2_MAX_NU: u32 = 4;
/// `attn_fa2`: preferred column groups per row of invocations: each P value read from workgroup memory feeds
/// `4·NU` vec4 FMAs, and the row reductions combine `TC` partials.
const FA2_COLS: u32 = 8;
/// `attn_fa2`: preferred keys per tile.
const FA2_KEYS: u32 = 32;
/// `attn_fa2`: preferred vec4 columns of Q/K staged per score chunk.
const FA2_DCK4: u32 = 8;
/// `attn_fa2`: preferred row groups (4 queries each) per workgroup.
const FA2_MAX_TR: u32 = 32;
/// `attn_fa2`: preferred bytes of one staged V block (more when the K chunk's space is larger anyway).
const FA2_V_BYTES: u32 = 4096;
/// `attn_fa2`: most vec4 FMAs per unrolled step of the P V loop (`UJ` keys × `NU` column groups × 4 rows):
/// up to 20 steps of 16 FMAs unroll on RADV/ACO, 32 do not.
const FA2_UNROLL: u32 = 20;

/// The largest divisor of `n` that is at most `m` (at least 1).
fn divisor_at_most(n: u32, m: u32) -> u32 {
    (1..=m.min(n)).rev().find(|x| n.is_multiple_of(*x)).unwrap_or(1)
}

/// Tile constants of `attn_fa2` (the shader's override constants) for one head dim on one adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fa2Tiles {
    /// Head dim.
    pub d: u32,
    /// Row groups of 4 queries (the workgroup owns `4·tr` queries).
    pub tr: u32,
    /// Column / key groups (`tr·tc` invocations).
    pub tc: u32,
    /// Keys per invocation in the score tile (`tc·rk` keys per tile).
    pub rk: u32,
    /// vec4 columns of Q/K staged per score chunk.
    pub dck4: u32,
    /// Keys per staged V block (divides `tc·rk`).
    pub bkv: u32,
    /// Output vec4 column groups per invocation.
    pub nu: u32,
    /// Partials per first-level group of the row reductions (divides `tc`; 1: one level).
    pub rg: u32,
}

impl Fa2Tiles {
    /// Tiles for head dim `d` within `max_bytes` of workgroup memory and `max_invocations` per workgroup;
    /// `None` when even the smallest tiles do not fit.
    pub fn choose(d: usize, max_bytes: u32, max_invocations: u32) -> Option<Self> {
        let d = u32::try_from(d).ok().filter(|&d| d > 0)?;
        // At most 256 invocations even where more are allowed, so every adapter with ≥ 32 KiB of workgroup
        // memory runs the tiles tested on lavapipe.
        let max_invocations = max_invocations.min(256);
        let d4 = d.div_ceil(4);
        let nu = d4.div_ceil(FA2_COLS).clamp(1, FA2_MAX_NU);
        // At least 4 column groups: no workgroups of a handful of invocations for tiny heads.
        let tc = d4.div_ceil(nu).max(4);
        if tc > max_invocations {
            return None;
        }
        let nck = d4.div_ceil(FA2_DCK4);
        let dck4 = d4.div_ceil(nck);
        let rk = FA2_KEYS.div_ceil(tc).clamp(FA2_MIN_RK, FA2_MAX_RK);
        // Two reduction levels where they read fewer partials: rg + 1 + tc/rg instead of tc.
        let rg = (2..tc)
            .filter(|g| tc.is_multiple_of(*g))
            .min_by_key(|g| g + 1 + tc / g)
            .filter(|g| g + 1 + tc / g < tc)
            .unwrap_or(1);
        let tr = (max_invocations / tc).clamp(1, FA2_MAX_TR);
        let mut t = Fa2Tiles { d, tr, tc, rk, dck4, bkv: 1, nu, rg };
        // At most 32 KiB even where more is allowed: ≥ 4 waves per SIMD on RDNA (radvstats), and every adapter
        // with ≥ 32 KiB runs the tiles tested on lavapipe.
        let budget = max_bytes.min(32 << 10);
        while t.bytes() > budget {
            if t.dck4 > 4 {
                t.dck4 = t.dck4.div_ceil(2);
            } else if t.tr > 1 {
                t.tr /= 2;
            } else if t.dck4 > 1 {
                t.dck4 = t.dck4.div_ceil(2);
            } else if t.rk > 1 {
                t.rk -= 1;
            } else {
                return None;
            }
        }
        // V blocks as large as the K chunk's space (free), or FA2_V_BYTES where that still fits.
        let tcn = t.tc * t.nu;
        let free = t.kv_base();
        t.bkv = divisor_at_most(t.bk(), (free.max(FA2_V_BYTES / 16) / tcn).max(1));
        if t.bytes() > budget {
            t.bkv = divisor_at_most(t.bk(), (free / tcn).max(1));
        }
        Some(t)
    }
    /// Queries per workgroup.
    pub fn bq(&self) -> u32 {
        4 * self.tr
    }
    /// Keys per tile.
    pub fn bk(&self) -> u32 {
        self.tc * self.rk
    }
    /// Invocations per workgroup.
    pub fn invocations(&self) -> u32 {
        self.tr * self.tc
    }
    fn qs_n(&self) -> u32 {
        self.bq() * (self.dck4 + 1)
    }
    /// vec4s of `kv` the K chunk and the row reductions need.
    fn kv_base(&self) -> u32 {
        let nt = self.invocations();
        let red = if self.rg > 1 { nt / self.rg } else { 0 };
        (self.bk() * (self.dck4 + 1)).max(nt + red)
    }
    fn kv_n(&self) -> u32 {
        self.kv_base().max(self.bkv * self.tc * self.nu)
    }
    fn ps_n(&self) -> u32 {
        self.bk() * self.tr
    }
    /// Workgroup memory bytes.
    pub fn bytes(&self) -> u32 {
        16 * (self.qs_n() + self.kv_n() + self.ps_n())
    }
    /// Keys per unrolled step of the P V loop: the largest divisor of `bkv` with at most `FA2_UNROLL` groups of
    /// four vec4 FMAs per step.
    pub fn uj(&self) -> u32 {
        divisor_at_most(self.bkv, (FA2_UNROLL / self.nu).max(1))
    }
    /// The shader's override constants.
    pub fn constants(&self) -> [(&'static str, f64); 14] {
        [
            ("D", self.d as f64),
            ("TR", self.tr as f64),
            ("TC", self.tc as f64),
            ("NT", self.invocations() as f64),
            ("BQ", self.bq() as f64),
            ("RK", self.rk as f64),
            ("DCK4", self.dck4 as f64),
            ("BKV", self.bkv as f64),
            ("NU", self.nu as f64),
            ("RG", self.rg as f64),
            ("UJ", self.uj() as f64),
            ("QS_N", self.qs_n() as f64),
            ("KV_N", self.kv_n() as f64),
            ("PS_N", self.ps_n() as f64),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::Fa2Tiles;

    #[test]
    fn fa2_tiles_fit_every_limit_and_cover_the_head() {
        // wgpu's default limits, lavapipe, AMD (RADV).
        for (bytes, inv) in [(16384, 256), (32768, 256), (65536, 1024)] {
            for d in 1..=1024 {
                let t = Fa2Tiles::choose(d, bytes, inv).unwrap_or_else(|| panic!("d {d}, {bytes} B, {inv}"));
                let d4 = (d as u32).div_ceil(4);
                assert!(t.bytes() <= bytes && t.invocations() <= inv.min(256), "{t:?}");
                assert!(t.tc >= 4 && t.nu <= super::FA2_MAX_NU && t.rk <= super::FA2_MAX_RK, "{t:?}");
                assert!(t.nu * t.tc >= d4 && t.bk().is_multiple_of(t.bkv) && t.dck4 >= 1, "{t:?}");
                assert!(t.tc.is_multiple_of(t.rg) && t.bkv.is_multiple_of(t.uj()), "{t:?}");
            }
        }
        assert!(Fa2Tiles::choose(0, 32768, 256).is_none());
    }
}
