//! Helpers for kernel tests (behind the `testing` feature, so neither they nor `rand` ship in the runtime):
//! seeded random data, f16 rounding, and error norms against float64.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use crate::compare::{rel_err, to_f64};

/// `n` values uniform in [-1, 1) from ChaCha8 seeded with `seed` (never zeros or constants).
pub fn rand_vec(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// `n` values uniform in [lo, hi).
pub fn rand_range(seed: u64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// Rounds every value through f16 (inputs of f16 tests, so the reference sees what the GPU sees).
pub fn round_f16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
}

/// Asserts `rel_err(got, want) <= tol` with a message naming `what`.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    let e = rel_err(got, want);
    assert!(e <= tol, "{what}: normalised error {e:.3e} exceeds {tol:.1e}");
}
