//! Helpers shared by the model tests.
#![allow(dead_code)]

/// Relative error ‖a − b‖ / ‖b‖ in float64; panics on a length mismatch or a non-finite output.
pub fn rel(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length");
    let (mut num, mut den) = (0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        assert!(x.is_finite(), "non-finite output");
        num += (x as f64 - y as f64).powi(2);
        den += (y as f64).powi(2);
    }
    (num / den.max(1e-30)).sqrt()
}

/// The demo's tracks (`tests/fixtures/demo/trajectories`, as `trajattn drag` writes them for
/// `assets/demo/drag.json`) in the UNet's input form, paired as the demo runs them.
pub fn demo_tracks(
    spec: &trajattn::trajectory::build::DragSpec,
    t: &trajattn::trajectory::folder::Trajectories,
) -> trajattn::models::unet::Trajectories {
    trajattn::models::unet::Trajectories {
        coords: t.coords.clone(),
        visible: t.valid.clone(),
        n: t.n,
        origin_w: spec.width,
        origin_h: spec.height,
        grouping: trajattn_kernels::ops::trajectory_attention::Grouping::Pairs,
    }
}
