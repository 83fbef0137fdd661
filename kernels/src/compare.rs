//! Error norms against float64 references, shared by the self-checks (`trajattn demo`) and the tests.

/// Widens to f64.
pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Normalised max error `max|got − want| / max|want|` (inf if lengths differ or any value is not finite
/// where the reference is finite, so an unwritten, NaN-poisoned element always fails).
pub fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs())).max(1e-30);
    let mut worst = 0.0f64;
    for (&g, &w) in got.iter().zip(want) {
        if !g.is_finite() && w.is_finite() {
            return f64::INFINITY;
        }
        worst = worst.max((g as f64 - w).abs());
    }
    worst / scale
}
