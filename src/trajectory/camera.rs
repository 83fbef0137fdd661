//! Camera-path trajectories from one image's depth map, as the official `cameractrl` does it
//! (docs/reference/trajectory-sources.md §4): a look-at camera path, pinhole intrinsics, depth from relative
//! inverse depth, per-pixel projection into every frame, and the reference's coarse z-buffer visibility test.

use thiserror::Error;

/// Errors of trajectory construction.
#[derive(Debug, Error)]
pub enum CameraError {
    /// The depth map does not match the requested size.
    #[error("depth map has {found} values, expected {expected} ({w}×{h})")]
    DepthSize { found: usize, expected: usize, w: usize, h: usize },
    /// The depth map holds NaN, infinite or negative values.
    #[error("depth map value at (x {x}, y {y}) is {v}: depth must be finite and non-negative")]
    DepthValue { x: usize, y: usize, v: f32 },
    /// A parameter is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// The four camera motions of the official script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CameraMode {
    /// Orbit around the vertical axis through the point `minor_radius` in front of the first camera.
    Horizontal,
    /// Orbit around the horizontal axis.
    Vertical,
    /// Move forward along the optical axis (`r·cos a`).
    ZoomIn,
    /// Move backward along the optical axis (`r·(1 + sin a)`).
    ZoomOut,
}

impl std::str::FromStr for CameraMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "horizontal" => Ok(Self::Horizontal),
            "vertical" => Ok(Self::Vertical),
            "zoomin" | "zoom-in" => Ok(Self::ZoomIn),
            "zoomout" | "zoom-out" => Ok(Self::ZoomOut),
            _ => Err(format!("unknown camera mode '{s}' (expected horizontal, vertical, zoomin or zoomout)")),
        }
    }
}

/// A camera path of the official script.
#[derive(Clone, Copy, Debug)]
pub struct CameraPath {
    /// Motion.
    pub mode: CameraMode,
    /// Rotation (orbit) or phase (zoom) per frame, degrees.
    pub degrees_per_frame: f64,
    /// Frames, including the first (unmoved) one.
    pub frames: usize,
    /// `R` of the orbit (`--major_radius`, default 200).
    pub major_radius: f64,
    /// `r`, fixed to 200 in the official code: the orbit centre's distance from the first camera.
    pub minor_radius: f64,
}

impl CameraPath {
    /// The official defaults for a mode: 25 frames, R = r = 200.
    pub fn new(mode: CameraMode, degrees_per_frame: f64) -> Self {
        CameraPath { mode, degrees_per_frame, frames: 25, major_radius: 200.0, minor_radius: 200.0 }
    }

    /// Camera centres `c_i` (docs/reference/trajectory-sources.md §4.2).
    pub fn centers(&self) -> Vec<[f64; 3]> {
        let (big, r) = (self.major_radius, self.minor_radius);
        (0..self.frames)
            .map(|i| {
                let a = (i as f64 * self.degrees_per_frame).to_radians();
                match self.mode {
                    CameraMode::Horizontal => [big * a.sin(), 0.0, r * a.cos()],
                    CameraMode::Vertical => [0.0, big * a.sin(), r * a.cos()],
                    CameraMode::ZoomIn => [0.0, 0.0, r * a.cos()],
                    CameraMode::ZoomOut => [0.0, 0.0, r * (1.0 + a.sin())],
                }
            })
            .collect()
    }

    /// `T_i = V_i · V_0⁻¹`, the transform from camera-0 coordinates to camera-i coordinates.
    pub fn relative_transforms(&self) -> Vec<Mat4> {
        let cs = self.centers();
        let v0_inv = match cs.first() {
            Some(c) => look_at_inverse(*c),
            None => return Vec::new(),
        };
        cs.iter().map(|&c| mul(&look_at(c), &v0_inv)).collect()
    }
}

/// Row-major 4×4 matrix.
pub type Mat4 = [[f64; 4]; 4];

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}
fn normalize(a: [f64; 3]) -> [f64; 3] {
    let n = dot(a, a).sqrt();
    if n == 0.0 {
        a
    } else {
        [a[0] / n, a[1] / n, a[2] / n]
    }
}

fn basis_to(c: [f64; 3], target: [f64; 3], up: [f64; 3]) -> ([f64; 3], [f64; 3], [f64; 3]) {
    let fwd = normalize(sub(target, c));
    let right = normalize(cross(up, fwd));
    let up = cross(fwd, right);
    (right, up, fwd)
}

fn basis(c: [f64; 3]) -> ([f64; 3], [f64; 3], [f64; 3]) {
    basis_to(c, [0.0; 3], [0.0, 1.0, 0.0])
}

/// World→camera matrix of a camera at `c` looking at `target` with the given up vector.
pub fn look_at_up(c: [f64; 3], target: [f64; 3], up: [f64; 3]) -> Mat4 {
    let (r, u, f) = basis_to(c, target, up);
    [
        [r[0], r[1], r[2], -dot(r, c)],
        [u[0], u[1], u[2], -dot(u, c)],
        [f[0], f[1], f[2], -dot(f, c)],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

/// Inverse of a rigid world→camera matrix `[R | t]`: `[Rᵀ | −Rᵀt]`.
pub fn invert_rigid(v: &Mat4) -> Mat4 {
    let mut m = [[0.0; 4]; 4];
    for i in 0..3 {
        for j in 0..3 {
            m[i][j] = v[j][i];
        }
        m[i][3] = -(0..3).map(|k| v[k][i] * v[k][3]).sum::<f64>();
    }
    m[3][3] = 1.0;
    m
}

/// `T_i = V_i · V_0⁻¹` for arbitrary rigid world→camera matrices (a pose file).
pub fn relative_to_first(views: &[Mat4]) -> Vec<Mat4> {
    match views.first() {
        Some(v0) => {
            let inv = invert_rigid(v0);
            views.iter().map(|v| mul(v, &inv)).collect()
        }
        None => Vec::new(),
    }
}

/// World→camera matrix of a camera at `c` looking at the origin with up (0, 1, 0).
pub fn look_at(c: [f64; 3]) -> Mat4 {
    let (r, u, f) = basis(c);
    [
        [r[0], r[1], r[2], -dot(r, c)],
        [u[0], u[1], u[2], -dot(u, c)],
        [f[0], f[1], f[2], -dot(f, c)],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

fn look_at_inverse(c: [f64; 3]) -> Mat4 {
    let (r, u, f) = basis(c);
    [[r[0], u[0], f[0], c[0]], [r[1], u[1], f[1], c[1]], [r[2], u[2], f[2], c[2]], [0.0, 0.0, 0.0, 1.0]]
}

fn mul(a: &Mat4, b: &Mat4) -> Mat4 {
    let mut m = [[0.0; 4]; 4];
    for (i, row) in m.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..4).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    m
}

/// Pinhole intrinsics: focal length and principal point, in pixels.
#[derive(Clone, Copy, Debug)]
pub struct Intrinsics {
    /// Focal length (260 in the official code).
    pub focal: f64,
    /// Principal point x (image centre).
    pub cx: f64,
    /// Principal point y.
    pub cy: f64,
}

impl Intrinsics {
    /// The official K for an image of `w × h`: focal 260, principal point at the centre.
    pub fn official(w: usize, h: usize) -> Self {
        Intrinsics { focal: 260.0, cx: w as f64 / 2.0, cy: h as f64 / 2.0 }
    }

    /// Projects pixel `(x, y)` at camera-0 depth `z` through `t`: returns (coordinates, depth in camera t).
    pub fn reproject(&self, x: f64, y: f64, z: f64, t: &Mat4) -> ([f64; 2], f64) {
        let p = [z * (x - self.cx) / self.focal, z * (y - self.cy) / self.focal, z];
        let q = [
            t[0][0] * p[0] + t[0][1] * p[1] + t[0][2] * p[2] + t[0][3],
            t[1][0] * p[0] + t[1][1] * p[1] + t[1][2] * p[2] + t[1][3],
            t[2][0] * p[0] + t[2][1] * p[1] + t[2][2] * p[2] + t[2][3],
        ];
        let u = self.focal * q[0] + self.cx * q[2];
        let v = self.focal * q[1] + self.cy * q[2];
        ([u / q[2], v / q[2]], q[2])
    }
}

/// Depth from the official relative inverse depth: `z = clip(10000 / max(d, 1e-5), 1e-4, 1e4)`, in f32 (§4.4).
pub fn depth_from_inverse(d: &[f32]) -> Vec<f32> {
    d.iter().map(|&v| (10000.0f32 / if v < 1e-5 { 1e-5 } else { v }).clamp(1e-4, 1e4)).collect()
}

/// Trajectories of every pixel in the official grid form.
#[derive(Clone, Debug)]
pub struct GridTrajectories {
    /// Frames.
    pub frames: usize,
    /// Image height.
    pub h: usize,
    /// Image width.
    pub w: usize,
    /// `(F, H, W, 2)` positions (x, y) in pixels; 100000 behind the camera.
    pub coords: Vec<f64>,
    /// `(F, H, W)` visibility.
    pub valid: Vec<bool>,
}

/// Placeholder position of points behind the camera (the reference's value).
pub const BEHIND: f64 = 100000.0;

/// Builds the camera-path trajectories of an image (image mode: the same depth for every frame).
/// `inv_depth` is the `(H, W)` relative inverse depth (larger = nearer) of Depth-Anything.
pub fn camera_trajectories(
    inv_depth: &[f32],
    w: usize,
    h: usize,
    path: &CameraPath,
    k: &Intrinsics,
) -> Result<GridTrajectories, CameraError> {
    if !path.degrees_per_frame.is_finite() || !path.major_radius.is_finite() || !path.minor_radius.is_finite()
    {
        return Err(CameraError::Invalid("camera path parameters must be finite".into()));
    }
    trajectories_for_transforms(inv_depth, w, h, &path.relative_transforms(), k)
}

/// Like [`camera_trajectories`] for any camera-0 → camera-t transforms (`ts[0]` should be the identity).
pub fn trajectories_for_transforms(
    inv_depth: &[f32],
    w: usize,
    h: usize,
    ts: &[Mat4],
    k: &Intrinsics,
) -> Result<GridTrajectories, CameraError> {
    trajectories_per_frame_depth(&[inv_depth], w, h, ts, k)
}

/// Video mode (docs/reference/trajectory-sources.md §4.1): frame t's pixels, at frame t's depth, seen by
/// camera t. `inv_depths` holds one map per frame, or a single map used for every frame (image mode).
pub fn trajectories_per_frame_depth(
    inv_depths: &[&[f32]],
    w: usize,
    h: usize,
    ts: &[Mat4],
    k: &Intrinsics,
) -> Result<GridTrajectories, CameraError> {
    if ts.is_empty() || w < 2 || h < 2 {
        return Err(CameraError::Invalid(format!(
            "need ≥ 1 frame and an image of at least 2×2, got {} frames, {w}×{h}",
            ts.len()
        )));
    }
    if inv_depths.len() != 1 && inv_depths.len() != ts.len() {
        return Err(CameraError::Invalid(format!(
            "{} depth maps for {} frames: give one per frame, or one for all",
            inv_depths.len(),
            ts.len()
        )));
    }
    for inv_depth in inv_depths {
        if inv_depth.len() != w * h {
            return Err(CameraError::DepthSize { found: inv_depth.len(), expected: w * h, w, h });
        }
        if let Some(i) = inv_depth.iter().position(|v| !v.is_finite() || *v < 0.0) {
            return Err(CameraError::DepthValue { x: i % w, y: i / w, v: inv_depth[i] });
        }
    }
    let zs: Vec<Vec<f32>> = inv_depths.iter().map(|d| depth_from_inverse(d)).collect();
    let n = w * h;
    let mut coords = Vec::with_capacity(ts.len() * n * 2);
    let mut valid = Vec::with_capacity(ts.len() * n);
    for y in 0..h {
        for x in 0..w {
            coords.push(x as f64);
            coords.push(y as f64);
        }
    }
    valid.extend(std::iter::repeat_n(true, n));
    let mut pos = vec![[0.0f64; 2]; n];
    let mut depth = vec![0.0f64; n];
    for (fi, t) in ts.iter().enumerate().skip(1) {
        let z = &zs[fi.min(zs.len() - 1)];
        project_frame(z, w, h, t, k, &mut pos, &mut depth);
        let mut vis: Vec<bool> = depth.iter().map(|&d| d > 0.0).collect();
        occlusion(&mut vis, z, &depth, &pos, w, h);
        for p in &pos {
            coords.push(p[0]);
            coords.push(p[1]);
        }
        valid.extend(vis);
    }
    Ok(GridTrajectories { frames: ts.len(), h, w, coords, valid })
}

/// Where every pixel of camera 0 (depth `z`, f32 as the reference converts it) lands in the camera of `t`:
/// positions (`BEHIND` for points behind the camera) and depths in that camera.
pub fn project_frame(
    z: &[f32],
    w: usize,
    h: usize,
    t: &Mat4,
    k: &Intrinsics,
    pos: &mut [[f64; 2]],
    depth: &mut [f64],
) {
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let (c, d) = k.reproject(x as f64, y as f64, z[i] as f64, t);
            depth[i] = d;
            pos[i] = if d < 0.0 { [BEHIND, BEHIND] } else { c };
        }
    }
}

/// The reference's coarse z-buffer (docs/reference/trajectory-sources.md §4.6): `d` = camera-0 depth (f32),
/// `zt` = depth in frame t, `pos` = landing positions. Marks `valid` false where a landing cell is covered by
/// something > 0.6 nearer.
fn occlusion(valid: &mut [bool], d: &[f32], zt: &[f64], pos: &[[f64; 2]], w: usize, h: usize) {
    let cell = |p: [f64; 2]| (p[0].trunc() as i64, p[1].trunc() as i64);
    let inside = |(x, y): (i64, i64)| x >= 0 && y >= 0 && x < w as i64 && y < h as i64;
    let mut znew = vec![10086.0f64; w * h];
    for hh in 1..h {
        for ww in 1..w {
            let (i, j) = (hh * w + ww, (hh - 1) * w + ww - 1);
            let (a, b) = (cell(pos[j]), cell(pos[i]));
            if !(inside(a) && inside(b)) {
                continue;
            }
            if ((d[i] - d[j]) / d[i] / d[j]).abs() >= 0.1 {
                continue;
            }
            let (y0, y1) = (a.1.min(b.1) as usize, a.1.max(b.1) as usize);
            let (x0, x1) = (a.0.min(b.0) as usize, a.0.max(b.0) as usize);
            for yy in y0..y1 {
                for v in &mut znew[yy * w + x0..yy * w + x1] {
                    *v = v.min(zt[i]);
                }
            }
        }
    }
    for hh in 1..h {
        for ww in 1..w {
            let i = hh * w + ww;
            let c = cell(pos[i]);
            if inside(c) && zt[i] - znew[c.1 as usize * w + c.0 as usize] > 0.6 {
                valid[i] = false;
            }
        }
    }
}
