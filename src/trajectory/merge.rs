//! Video camera control: adding the camera motion to a video's point tracks (the official
//! `merge_trajectory.py`, docs/reference/trajectory-sources.md §7), faithfully or with its mask quirk
//! corrected.

use super::camera::GridTrajectories;
use super::folder::Trajectories;
use thiserror::Error;

/// How the camera visibility is combined with the tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskMode {
    /// As released: track n is ANDed with camera-grid entry n of the 4×-subsampled mask, a different pixel
    /// (the reference's index quirk). Requires N = (H/4)·(W/4) tracks.
    Faithful,
    /// Track n is ANDed with the camera visibility at its own pixel in that frame.
    Corrected,
}

/// Errors of the merge.
#[derive(Debug, Error)]
pub enum MergeError {
    /// Tracks and camera file do not fit together.
    #[error("{0}")]
    Mismatch(String),
}

/// Tracks `(F, N)` after the merge: positions rounded to f32 as the reference stores them, and visibility.
pub fn merge(
    tracks: &Trajectories,
    cam: &GridTrajectories,
    mode: MaskMode,
) -> Result<Trajectories, MergeError> {
    let (f, n, w, h) = (tracks.frames, tracks.n, cam.w, cam.h);
    if cam.frames != f {
        return Err(MergeError::Mismatch(format!("tracks have {f} frames, the camera file {}", cam.frames)));
    }
    let sub_w = w.div_ceil(4);
    let sub_h = h.div_ceil(4);
    if mode == MaskMode::Faithful && n != sub_w * sub_h {
        return Err(MergeError::Mismatch(format!(
            "faithful merging pairs track n with camera-grid entry n of the {sub_w}×{sub_h} subsampled mask, so it \
             needs exactly {} tracks (CoTracker's 36,864 at 1024×576); got {n} — use the corrected mode",
            sub_w * sub_h
        )));
    }
    let cell = |x: f32, y: f32| -> Option<(usize, usize)> {
        let (xi, yi) = (x.trunc() as i64, y.trunc() as i64);
        (xi >= 0 && yi >= 0 && (xi as usize) < w && (yi as usize) < h).then_some((xi as usize, yi as usize))
    };
    let mut coords: Vec<f32> = tracks.coords.iter().map(|&v| v as f32).collect();
    let mut valid = vec![false; f * n];
    let plane = w * h;
    for fr in 0..f {
        for i in 0..n {
            let o = 2 * (fr * n + i);
            let (x0, y0) = (coords[o], coords[o + 1]);
            let src = cell(x0, y0);
            let video_valid = tracks.valid[fr * n + i] && src.is_some();
            let Some((xi, yi)) = src.filter(|_| video_valid) else { continue };
            if fr > 0 {
                let p = yi * w + xi;
                let (cx, cy) = (cam.coords[2 * (fr * plane + p)], cam.coords[2 * (fr * plane + p) + 1]);
                let (bx, by) = (cam.coords[2 * p], cam.coords[2 * p + 1]);
                // float64 addition, one rounding to float32 (as torch does it).
                coords[o] = (x0 as f64 + (cx - bx)) as f32;
                coords[o + 1] = (y0 as f64 + (cy - by)) as f32;
            }
            let cam_valid = match mode {
                MaskMode::Faithful => {
                    let (gx, gy) = (4 * (i % sub_w), 4 * (i / sub_w));
                    cam.valid[fr * plane + gy * w + gx]
                }
                MaskMode::Corrected => cam.valid[fr * plane + yi * w + xi],
            };
            valid[fr * n + i] = cam_valid && cell(coords[o], coords[o + 1]).is_some();
        }
    }
    Ok(Trajectories { frames: f, n, coords: coords.iter().map(|&v| v as f64).collect(), valid })
}
