//! The official trajectory folder: `trans_coordinates.npy` + `trans_valid.npy`
//! (docs/reference/trajectory-sources.md §2).

use super::camera::GridTrajectories;
use super::npy::{self, NpyData, NpyError};
use std::path::Path;
use thiserror::Error;

/// File name of the positions.
pub const COORDS: &str = "trans_coordinates.npy";
/// File name of the visibility flags.
pub const VALID: &str = "trans_valid.npy";

/// Errors reading a trajectory folder.
#[derive(Debug, Error)]
pub enum FolderError {
    /// A file is missing or unreadable.
    #[error(transparent)]
    Npy(#[from] NpyError),
    /// The arrays do not describe trajectories.
    #[error("{0}")]
    Layout(String),
    /// Creating the folder failed.
    #[error("cannot create folder {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Trajectories as the attention consumes them: `(F, N, 2)` positions and `(F, N)` visibility.
#[derive(Clone, Debug)]
pub struct Trajectories {
    /// Frames.
    pub frames: usize,
    /// Trajectories per frame.
    pub n: usize,
    /// `(F, N, 2)` x, y in pixels.
    pub coords: Vec<f64>,
    /// `(F, N)` visibility.
    pub valid: Vec<bool>,
}

/// Writes a grid in the official camera-file form: `(F, H, W, 2)` float64 and `(F, H, W)` bool.
pub fn write_grid(dir: &Path, g: &GridTrajectories) -> Result<(), FolderError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| FolderError::Io { path: dir.display().to_string(), source: e })?;
    npy::write_f64(&dir.join(COORDS), &[g.frames, g.h, g.w, 2], &g.coords)?;
    npy::write_bool(&dir.join(VALID), &[g.frames, g.h, g.w], &g.valid)?;
    Ok(())
}

/// Writes trajectories in the official tracks form: `(1, F, N, 2)` float32 and `(1, F, N)` bool.
pub fn write_tracks(dir: &Path, t: &Trajectories) -> Result<(), FolderError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| FolderError::Io { path: dir.display().to_string(), source: e })?;
    let c: Vec<f32> = t.coords.iter().map(|&v| v as f32).collect();
    npy::write_f32(&dir.join(COORDS), &[1, t.frames, t.n, 2], &c)?;
    npy::write_bool(&dir.join(VALID), &[1, t.frames, t.n], &t.valid)?;
    Ok(())
}

/// Reads a trajectory folder in either official form (grid `(F, H, W, 2)` or tracks `(1, F, N, 2)`) and reshapes
/// it to `(frames, N, 2)` / `(frames, N)` as `generate` does; positions must be finite.
pub fn read(dir: &Path, frames: usize) -> Result<Trajectories, FolderError> {
    read_in(dir, frames).map_err(|e| match e {
        FolderError::Layout(m) => FolderError::Layout(format!("{}: {m}", dir.display())),
        other => other,
    })
}

fn read_in(dir: &Path, frames: usize) -> Result<Trajectories, FolderError> {
    let c = npy::read(&dir.join(COORDS))?;
    let v = npy::read(&dir.join(VALID))?;
    let coords = c.to_f64().ok_or_else(|| FolderError::Layout(format!("{COORDS} must hold floats")))?;
    let valid = match v.data {
        NpyData::Bool(b) => b,
        _ => return Err(FolderError::Layout(format!("{VALID} must hold booleans (|b1)"))),
    };
    if c.shape.last() != Some(&2) || frames == 0 || coords.len() % (2 * frames) != 0 {
        return Err(FolderError::Layout(format!(
            "{COORDS} has shape {:?}; expected (F, H, W, 2) or (1, F, N, 2) with F = {frames} frames",
            c.shape
        )));
    }
    let n = coords.len() / 2 / frames;
    // The frame axis: 1 in the tracks form (1, F, N, 2), 0 in the grid form (F, H, W, 2).
    let frame_axis = usize::from(c.shape.len() == 4 && c.shape[0] == 1);
    if c.shape.get(frame_axis) != Some(&frames) {
        return Err(FolderError::Layout(format!(
            "{COORDS} has shape {:?}: made for {} frames (axis {frame_axis}), but {frames} frames were asked for",
            c.shape,
            c.shape.get(frame_axis).copied().unwrap_or(0)
        )));
    }
    if valid.len() != frames * n {
        return Err(FolderError::Layout(format!(
            "{VALID} has {} flags ({:?}) but {COORDS} describes {frames} frames × {n} trajectories",
            valid.len(),
            v.shape
        )));
    }
    if let Some(i) = coords.iter().position(|x| !x.is_finite()) {
        return Err(FolderError::Layout(format!(
            "{COORDS}: frame {}, trajectory {} has a non-finite coordinate",
            i / 2 / n.max(1),
            i / 2 % n.max(1)
        )));
    }
    Ok(Trajectories { frames, n, coords, valid })
}
