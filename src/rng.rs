//! The reference random stream: PyTorch 2.1's CPU generator, reproduced bit for bit so that `--seed S` draws
//! exactly what `torch.manual_seed(S)` draws in the reference pipeline (docs/reference/random-stream.md).
//!
//! * [`Generator`]: MT19937 seeded like `torch.manual_seed` (the seed's low 32 bits).
//! * [`Generator::randn_f32`]: `torch.randn` in float32 — the vectorised AVX2 kernel's arithmetic
//!   ([`RandnPath::Avx2`], the reference machine's) or the scalar "default" kernel with the C library's
//!   `logf/cosf/sinf` ([`RandnPath::Libm`]; Rust's `f32::ln/cos/sin` call the platform libm, glibc on Linux).
//! * [`Generator::randn_f16`]: `torch.randn(dtype=float16)`, every intermediate rounded to fp16.
//! * [`Generator::randperm`]: `torch.randperm` (int64 on the CPU).

use half::f16;
use thiserror::Error;

/// Errors of the random stream.
#[derive(Debug, Error)]
pub enum RngError {
    /// PyTorch draws tensors of fewer than 16 elements with a different, double-precision path that the
    /// pipeline never uses and this module does not reproduce.
    #[error("randn of {0} elements: tensors below 16 elements use a path that is not reproduced")]
    TooSmall(usize),
}

const N: usize = 624;
const M: usize = 397;

/// MT19937 with PyTorch's seeding.
#[derive(Clone)]
pub struct Generator {
    state: [u32; N],
    index: usize,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Generator(index {})", self.index)
    }
}

/// Which float32 `randn` kernel to reproduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RandnPath {
    /// PyTorch's vectorised kernel on x86 with AVX2 (Cephes log/sincos with fused multiply-adds): the reference.
    #[default]
    Avx2,
    /// PyTorch's scalar kernel (CPUs without AVX2), with the C library's `logf`, `cosf`, `sinf`.
    Libm,
}

impl Generator {
    /// `torch.manual_seed(seed)`: the generator keeps the seed's low 32 bits.
    pub fn new(seed: u64) -> Self {
        let mut state = [0u32; N];
        state[0] = seed as u32;
        for i in 1..N {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32.wrapping_mul(prev ^ (prev >> 30)).wrapping_add(i as u32);
        }
        Generator { state, index: N }
    }

    fn twist(&mut self) {
        for i in 0..N {
            let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % N] & 0x7fff_ffff);
            let mut v = self.state[(i + M) % N] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= 0x9908_b0df;
            }
            self.state[i] = v;
        }
        self.index = 0;
    }

    /// The next tempered 32-bit output.
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// A float32 uniform in [0, 1): 24 random bits.
    fn uniform_f32(&mut self) -> f32 {
        (self.next_u32() & 0x00ff_ffff) as f32 * (1.0 / 16_777_216.0)
    }

    /// An fp16 uniform in [0, 1): 11 random bits.
    fn uniform_f16(&mut self) -> f16 {
        f16::from_f32((self.next_u32() & 0x7ff) as f32 * (1.0 / 2048.0))
    }

    /// The structure of PyTorch's CPU `randn` (docs/reference/random-stream.md §4.1), for any element type:
    /// `n` uniforms, Box–Muller on each block of 16 (slot j with slot j + 8), and if `n` is not a multiple of
    /// 16 the last 16 slots redrawn and transformed once more.
    fn randn_with<T: Copy>(
        &mut self,
        n: usize,
        uniform: fn(&mut Self) -> T,
        pair: impl Fn(T, T) -> (T, T),
    ) -> Result<Vec<T>, RngError> {
        if n < 16 {
            return Err(RngError::TooSmall(n));
        }
        let mut d: Vec<T> = (0..n).map(|_| uniform(self)).collect();
        let transform = |d: &mut [T], i: usize| {
            for j in 0..8 {
                let (a, b) = pair(d[i + j], d[i + j + 8]);
                d[i + j] = a;
                d[i + j + 8] = b;
            }
        };
        let mut i = 0;
        while i + 16 <= n {
            transform(&mut d, i);
            i += 16;
        }
        if !n.is_multiple_of(16) {
            for slot in d[n - 16..].iter_mut() {
                *slot = uniform(self);
            }
            transform(&mut d, n - 16);
        }
        Ok(d)
    }

    /// `torch.randn(n)` in float32 (n ≥ 16).
    pub fn randn_f32(&mut self, n: usize, path: RandnPath) -> Result<Vec<f32>, RngError> {
        self.randn_with(n, Self::uniform_f32, |u, u2| box_muller_f32(u, u2, path))
    }

    /// `torch.randn(n, dtype=torch.float16)` (n ≥ 16).
    pub fn randn_f16(&mut self, n: usize) -> Result<Vec<f16>, RngError> {
        self.randn_with(n, Self::uniform_f16, box_muller_f16)
    }

    /// `torch.randperm(n)`: Fisher–Yates with one 32-bit word per swap (`n − 1` words).
    pub fn randperm(&mut self, n: usize) -> Vec<i64> {
        let mut r: Vec<i64> = (0..n as i64).collect();
        for i in 0..n.saturating_sub(1) {
            let z = (self.next_u32() as u64 % (n - i) as u64) as usize;
            r.swap(i, i + z);
        }
        r
    }
}

fn h(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

/// One Box–Muller pair from two fp16 uniforms, every step rounded to fp16
/// (docs/reference/random-stream.md §4.4).
fn box_muller_f16(u: f16, u2: f16) -> (f16, f16) {
    let u1 = h(1.0 - u.to_f32());
    let l = h(u1.ln());
    let rho = h(h(-2.0 * l).sqrt());
    let theta = h((std::f64::consts::TAU * u2.to_f32() as f64) as f32);
    (f16::from_f32(rho * h(theta.cos())), f16::from_f32(rho * h(theta.sin())))
}

/// One Box–Muller pair from two float32 uniforms (docs/reference/random-stream.md §4.2 / §4.3).
#[allow(clippy::excessive_precision)]
fn box_muller_f32(u: f32, u2: f32, path: RandnPath) -> (f32, f32) {
    let u1 = 1.0 - u;
    match path {
        RandnPath::Avx2 => {
            let theta = 6.2831854820251465_f32 * u2;
            let rho = (-2.0 * ln32(u1)).sqrt();
            let (s, c) = sincos32(theta);
            (rho * c, rho * s)
        }
        RandnPath::Libm => {
            let theta = (std::f64::consts::TAU * u2 as f64) as f32;
            let rho = (-2.0 * u1.ln()).sqrt();
            (rho * theta.cos(), rho * theta.sin())
        }
    }
}

/// Cephes single-precision log as PyTorch's AVX2 kernel computes it (docs/reference/random-stream.md §4.2,
/// with its fused steps). Constants are the reference kernel's decimal strings, each rounded to f32 by the
/// compiler.
#[allow(clippy::excessive_precision)]
fn ln32(x: f32) -> f32 {
    let x = x.max(f32::from_bits(0x0080_0000));
    let bits = x.to_bits();
    let k = (bits >> 23) as i32 - 127;
    let m = f32::from_bits((bits & !0x7f80_0000) | 0.5f32.to_bits());
    let mut e = k as f32 + 1.0;
    let t = if m < std::f32::consts::FRAC_1_SQRT_2 {
        e -= 1.0;
        (m - 1.0) + m
    } else {
        m - 1.0
    };
    let z = t * t;
    const P: [f32; 9] = [
        7.0376836292e-2,
        -1.1514610310e-1,
        1.1676998740e-1,
        -1.2420140846e-1,
        1.4249322787e-1,
        -1.6668057665e-1,
        2.0000714765e-1,
        -2.4999993993e-1,
        3.3333331174e-1,
    ];
    let mut y = P[0];
    for &p in &P[1..] {
        y = y.mul_add(t, p);
    }
    y *= t;
    y = y.mul_add(z, e * -2.12194440e-4);
    y = z.mul_add(-0.5, y);
    let t = t + y;
    e.mul_add(0.693359375, t)
}

/// Cephes sinf/cosf as PyTorch's AVX2 kernel computes them; returns (sin, cos)
/// (docs/reference/random-stream.md §4.2).
#[allow(clippy::excessive_precision)]
fn sincos32(theta: f32) -> (f32, f32) {
    let a = theta.abs();
    let y = a * 1.27323954473516_f32;
    let mut j = y as i32;
    j = (j + 1) & !1;
    let yj = j as f32;
    let a = yj
        .mul_add(-3.77489497744594108e-8, yj.mul_add(-2.4187564849853515625e-4, yj.mul_add(-0.78515625, a)));
    let z = a * a;
    let mut c = 2.443315711809948e-5_f32;
    c = c.mul_add(z, -1.388731625493765e-3);
    c = c.mul_add(z, 4.166664568298827e-2);
    c *= z;
    c = c.mul_add(z, -(z * 0.5));
    c += 1.0;
    let mut s = -1.9515295891e-4_f32;
    s = s.mul_add(z, 8.3321608736e-3);
    s = s.mul_add(z, -1.6666654611e-1);
    s *= z;
    s = s.mul_add(a, a);
    let (mut sin, mut cos) = if j & 2 == 0 { (s, c) } else { (c, s) };
    if ((j & 4) != 0) ^ (theta < 0.0) {
        sin = -sin;
    }
    if ((j - 2) & 4) == 0 {
        cos = -cos;
    }
    (sin, cos)
}
