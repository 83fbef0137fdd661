//! Camera paths given as files: one pose per frame, either a 4×4 world→camera matrix or a position with a
//! look-at target (and optional up vector), in the same camera convention as the official paths
//! (x right, y down in the image, z forward).
//!
//! ```json
//! { "frames": [
//!     { "position": [0, 0, 200], "look_at": [0, 0, 0] },
//!     { "position": [3.5, 0, 199.97], "look_at": [0, 0, 0], "up": [0, 1, 0] },
//!     { "world_to_camera": [[-1,0,0,0],[0,1,0,0],[0,0,-1,200],[0,0,0,1]] }
//! ] }
//! ```

use super::camera::{look_at_up, Mat4};
use serde::Deserialize;
use std::path::Path;
use thiserror::Error;

/// Errors reading a pose file.
#[derive(Debug, Error)]
pub enum PoseError {
    /// The file could not be read.
    #[error("cannot read pose file {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The JSON does not have the documented form.
    #[error("{path}: {msg}")]
    Format { path: String, msg: String },
}

#[derive(Deserialize)]
struct File {
    frames: Vec<Pose>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Pose {
    world_to_camera: Option<[[f64; 4]; 4]>,
    position: Option<[f64; 3]>,
    look_at: Option<[f64; 3]>,
    up: Option<[f64; 3]>,
}

fn rigid_check(m: &Mat4) -> Result<(), String> {
    if m.iter().flatten().any(|v| !v.is_finite()) {
        return Err("has a non-finite entry".into());
    }
    if m[3] != [0.0, 0.0, 0.0, 1.0] {
        return Err(format!("last row is {:?}, expected [0, 0, 0, 1]", m[3]));
    }
    for i in 0..3 {
        for j in 0..3 {
            let d: f64 = (0..3).map(|k| m[i][k] * m[j][k]).sum();
            let want = if i == j { 1.0 } else { 0.0 };
            if (d - want).abs() > 1e-6 {
                return Err("rotation part is not orthonormal (scale or shear): poses must be rigid".into());
            }
        }
    }
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    if det < 0.0 {
        return Err("rotation part is a reflection (determinant −1)".into());
    }
    Ok(())
}

/// Reads a pose file into world→camera matrices, one per frame; every pose is checked to be rigid.
pub fn read(path: &Path) -> Result<Vec<Mat4>, PoseError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| PoseError::Io { path: p.clone(), source: e })?;
    parse(path, &text)
}

/// Parses the text of a pose file (`path` only names it in errors); see [`read`].
pub fn parse(path: &Path, text: &str) -> Result<Vec<Mat4>, PoseError> {
    let p = path.display().to_string();
    let f: File =
        serde_json::from_str(text).map_err(|e| PoseError::Format { path: p.clone(), msg: e.to_string() })?;
    if f.frames.is_empty() {
        return Err(PoseError::Format { path: p, msg: "no frames".into() });
    }
    let mut out = Vec::with_capacity(f.frames.len());
    for (i, pose) in f.frames.iter().enumerate() {
        let err = |msg: String| PoseError::Format { path: p.clone(), msg: format!("frame {i}: {msg}") };
        let m = match (&pose.world_to_camera, &pose.position, &pose.look_at) {
            (Some(m), None, None) => *m,
            (None, Some(c), Some(t)) => {
                let up = pose.up.unwrap_or([0.0, 1.0, 0.0]);
                let fwd = [t[0] - c[0], t[1] - c[1], t[2] - c[2]];
                if fwd.iter().all(|v| *v == 0.0) {
                    return Err(err("position and look_at coincide".into()));
                }
                let cr = [
                    up[1] * fwd[2] - up[2] * fwd[1],
                    up[2] * fwd[0] - up[0] * fwd[2],
                    up[0] * fwd[1] - up[1] * fwd[0],
                ];
                if cr.iter().map(|v| v * v).sum::<f64>() < 1e-18 {
                    return Err(err("up vector is parallel to the viewing direction".into()));
                }
                look_at_up(*c, *t, up)
            }
            _ => {
                return Err(err(
                    "give either world_to_camera, or position and look_at (with optional up)".into()
                ))
            }
        };
        rigid_check(&m).map_err(err)?;
        out.push(m);
    }
    Ok(out)
}
