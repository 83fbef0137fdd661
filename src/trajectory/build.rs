//! Trajectories that the released code does not make but the paper shows
//! (docs/reference/trajectory-sources.md §10): drags, masks, sparse subsets and synthetic optical flow, each
//! encoded for the same attention. These encodings are our design choices; every one writes the official
//! tracks form `(1, F, N, 2)` + `(1, F, N)`.
//!
//! Drag file (JSON), positions in pixels of a `width × height` frame:
//! ```json
//! { "width": 1024, "height": 576, "frames": 25, "grid_step": 4, "static_background": true,
//!   "drags": [ { "path": [[420, 300], [520, 280], [600, 330]], "radius": 40 } ] }
//! ```
//! Every grid point within `radius` of a drag's first path point moves along the path (uniform speed over the
//! frames, all points translated together) and is visible in every frame. With `static_background`, every other
//! grid point gets an identity trajectory ("keep the rest still"); without it, only the dragged points exist.

use super::folder::Trajectories;
use serde::Deserialize;
use thiserror::Error;

/// Errors of trajectory construction from user input.
#[derive(Debug, Error)]
pub enum BuildError {
    /// The input does not describe valid trajectories.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> BuildError {
    BuildError::Invalid(msg.into())
}

/// One drag: a polyline the dragged region follows, and the region's radius.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drag {
    /// Path key points, start first (at least 2).
    pub path: Vec<[f64; 2]>,
    /// Radius of the dragged disk around the start, in pixels.
    pub radius: f64,
}

/// A drag file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DragSpec {
    /// Frame width in pixels.
    pub width: usize,
    /// Frame height in pixels.
    pub height: usize,
    /// Frames, the first included.
    pub frames: usize,
    /// Spacing of the trajectory grid in pixels (4 gives CoTracker's density at 1024×576).
    #[serde(default = "default_step")]
    pub grid_step: usize,
    /// Give the undragged grid points identity trajectories.
    #[serde(default = "default_true")]
    pub static_background: bool,
    /// The drags.
    pub drags: Vec<Drag>,
}

impl DragSpec {
    /// Parses a drag file's JSON text (`name` only labels errors); the values are checked by [`drags`].
    pub fn from_json(name: &str, text: &str) -> Result<DragSpec, BuildError> {
        serde_json::from_str(text).map_err(|e| invalid(format!("{name}: not a valid drag file: {e}")))
    }
}

/// Most trajectory points × frames a drag file may produce (2²⁵: 512 MiB of coordinates; twice a 1024×576
/// grid with step 1 over 25 frames).
pub const MAX_POINT_FRAMES: usize = 1 << 25;
/// Most grid points × drags tested for membership (bounds the time before anything is built).
pub const MAX_GRID_TESTS: usize = 1 << 28;

fn default_step() -> usize {
    4
}
fn default_true() -> bool {
    true
}

/// Position at fraction `s ∈ [0, 1]` of the polyline's length.
pub fn along(path: &[[f64; 2]], s: f64) -> [f64; 2] {
    let seg: Vec<f64> =
        path.windows(2).map(|p| ((p[1][0] - p[0][0]).powi(2) + (p[1][1] - p[0][1]).powi(2)).sqrt()).collect();
    let total: f64 = seg.iter().sum();
    if total == 0.0 {
        return path[0];
    }
    let mut d = s.clamp(0.0, 1.0) * total;
    for (i, &l) in seg.iter().enumerate() {
        if d <= l || i + 1 == seg.len() {
            let t = if l > 0.0 { (d / l).min(1.0) } else { 0.0 };
            return [
                path[i][0] + t * (path[i + 1][0] - path[i][0]),
                path[i][1] + t * (path[i + 1][1] - path[i][1]),
            ];
        }
        d -= l;
    }
    path[path.len() - 1]
}

/// Builds drag trajectories; drag points outside the frame are an error (nothing is clamped silently).
pub fn drags(spec: &DragSpec) -> Result<Trajectories, BuildError> {
    let (w, h, f) = (spec.width, spec.height, spec.frames);
    if w == 0 || h == 0 || f < 2 || spec.grid_step == 0 {
        return Err(invalid(format!(
            "need width, height, grid_step > 0 and frames ≥ 2 (got {w}×{h}, {f} frames, step {})",
            spec.grid_step
        )));
    }
    // The generation's own limits (crate::limits): trajectories for a video nothing could generate are refused.
    let lim = |e: crate::limits::LimitError| invalid(e.to_string());
    crate::limits::SIDE.check(w as u64).map_err(lim)?;
    crate::limits::SIDE.check(h as u64).map_err(lim)?;
    crate::limits::FRAMES.check(f as u64).map_err(lim)?;
    if spec.drags.is_empty() {
        return Err(invalid("no drags given"));
    }
    let grid = w.div_ceil(spec.grid_step).saturating_mul(h.div_ceil(spec.grid_step));
    if grid.saturating_mul(f) > MAX_POINT_FRAMES {
        return Err(invalid(format!(
            "a {w}×{h} grid with step {} over {f} frames makes {} point-frames, over the limit of \
             {MAX_POINT_FRAMES}: raise grid_step or lower frames",
            spec.grid_step,
            grid.saturating_mul(f)
        )));
    }
    if grid.saturating_mul(spec.drags.len()) > MAX_GRID_TESTS {
        return Err(invalid(format!(
            "{} drags over {grid} grid points is over the limit of {MAX_GRID_TESTS} tests: raise grid_step \
             or use fewer drags",
            spec.drags.len()
        )));
    }
    for (k, d) in spec.drags.iter().enumerate() {
        if d.path.len() < 2 {
            return Err(invalid(format!("drag {k}: a path needs at least 2 points")));
        }
        if !(d.radius.is_finite() && d.radius > 0.0) {
            return Err(invalid(format!("drag {k}: radius must be a positive number of pixels")));
        }
        for (j, p) in d.path.iter().enumerate() {
            if !(p[0].is_finite()
                && p[1].is_finite()
                && p[0] >= 0.0
                && p[1] >= 0.0
                && p[0] < w as f64
                && p[1] < h as f64)
            {
                return Err(invalid(format!(
                    "drag {k}, point {j} ({}, {}) lies outside the {w}×{h} frame",
                    p[0], p[1]
                )));
            }
        }
    }
    let path_points = spec.drags.iter().map(|d| d.path.len()).fold(0usize, usize::saturating_add);
    if path_points.saturating_mul(f) > MAX_GRID_TESTS {
        return Err(invalid(format!(
            "{path_points} path points over {f} frames is over the limit of {MAX_GRID_TESTS}: use fewer points"
        )));
    }
    let mut starts: Vec<[f64; 2]> = Vec::new();
    let mut owner: Vec<Option<usize>> = Vec::new();
    for y in (0..h).step_by(spec.grid_step) {
        for x in (0..w).step_by(spec.grid_step) {
            let p = [x as f64, y as f64];
            let hit = spec.drags.iter().position(|d| {
                let s = d.path[0];
                (p[0] - s[0]).powi(2) + (p[1] - s[1]).powi(2) <= d.radius * d.radius
            });
            if hit.is_some() || spec.static_background {
                starts.push(p);
                owner.push(hit);
            }
        }
    }
    if !owner.iter().any(Option::is_some) {
        return Err(invalid(
            "no grid point lies inside any drag radius: increase the radius or reduce grid_step",
        ));
    }
    let n = starts.len();
    let mut coords = Vec::with_capacity(f * n * 2);
    let mut shift = vec![[0.0; 2]; spec.drags.len()];
    for fr in 0..f {
        let s = fr as f64 / (f - 1) as f64;
        // Each drag's displacement at this frame, once (a path may have many points).
        for (d, sh) in spec.drags.iter().zip(&mut shift) {
            let a = along(&d.path, s);
            *sh = [a[0] - d.path[0][0], a[1] - d.path[0][1]];
        }
        for (p, o) in starts.iter().zip(&owner) {
            let q = match o {
                Some(k) => [p[0] + shift[*k][0], p[1] + shift[*k][1]],
                None => *p,
            };
            coords.push(q[0]);
            coords.push(q[1]);
        }
    }
    Ok(Trajectories { frames: f, n, coords, valid: vec![true; f * n] })
}

/// Keeps only trajectories whose first-frame position lies inside the mask (`mask[y·w + x]`): the others are
/// marked invisible in every frame, so the region outside receives no motion control.
pub fn apply_mask(t: &Trajectories, mask: &[bool], w: usize, h: usize) -> Result<Trajectories, BuildError> {
    if mask.len() != w * h {
        return Err(invalid(format!("mask has {} pixels, expected {w}×{h}", mask.len())));
    }
    let mut out = t.clone();
    for i in 0..t.n {
        let (x, y) = (t.coords[2 * i].trunc(), t.coords[2 * i + 1].trunc());
        let inside =
            x >= 0.0 && y >= 0.0 && (x as usize) < w && (y as usize) < h && mask[y as usize * w + x as usize];
        if !inside {
            for f in 0..t.frames {
                out.valid[f * t.n + i] = false;
            }
        }
    }
    Ok(out)
}

/// Keeps the trajectories whose first-frame position lies on a `step`-pixel grid (density 1/step²).
pub fn sparse(t: &Trajectories, step: usize) -> Result<Trajectories, BuildError> {
    if step == 0 {
        return Err(invalid("sparse step must be ≥ 1"));
    }
    let keep: Vec<usize> = (0..t.n)
        .filter(|&i| {
            let (x, y) = (t.coords[2 * i].round(), t.coords[2 * i + 1].round());
            x >= 0.0 && y >= 0.0 && (x as usize).is_multiple_of(step) && (y as usize).is_multiple_of(step)
        })
        .collect();
    if keep.is_empty() {
        return Err(invalid(format!("no trajectory starts on a {step}-pixel grid")));
    }
    let n = keep.len();
    let mut coords = Vec::with_capacity(t.frames * n * 2);
    let mut valid = Vec::with_capacity(t.frames * n);
    for f in 0..t.frames {
        for &i in &keep {
            coords.push(t.coords[2 * (f * t.n + i)]);
            coords.push(t.coords[2 * (f * t.n + i) + 1]);
            valid.push(t.valid[f * t.n + i]);
        }
    }
    Ok(Trajectories { frames: t.frames, n, coords, valid })
}

/// Trajectories from optical flow: `flow (F, H, W, 2)` holds the displacement from frame 0 to frame f of every
/// pixel (frame 0 zero); grid points every `step` pixels follow `p + flow_f(p)`. Without a backward flow there is
/// no occlusion check: a point is invisible where it leaves the frame.
pub fn from_flow(
    flow: &[f64],
    frames: usize,
    w: usize,
    h: usize,
    step: usize,
) -> Result<Trajectories, BuildError> {
    if flow.len() != frames * w * h * 2 || frames == 0 {
        return Err(invalid(format!("flow has {} values, expected {frames}×{h}×{w}×2", flow.len())));
    }
    if step == 0 {
        return Err(invalid("grid step must be ≥ 1"));
    }
    if let Some(i) = flow.iter().position(|v| !v.is_finite()) {
        return Err(invalid(format!("flow value {i} is not finite")));
    }
    let pts: Vec<(usize, usize)> =
        (0..h).step_by(step).flat_map(|y| (0..w).step_by(step).map(move |x| (x, y))).collect();
    let n = pts.len();
    let mut coords = Vec::with_capacity(frames * n * 2);
    let mut valid = Vec::with_capacity(frames * n);
    for f in 0..frames {
        for &(x, y) in &pts {
            let o = 2 * ((f * h + y) * w + x);
            let q = [x as f64 + flow[o], y as f64 + flow[o + 1]];
            coords.push(q[0]);
            coords.push(q[1]);
            valid.push(q[0] >= 0.0 && q[1] >= 0.0 && q[0] < w as f64 && q[1] < h as f64);
        }
    }
    Ok(Trajectories { frames, n, coords, valid })
}
