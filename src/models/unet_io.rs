//! The UNet input/output files of `examples/unet_forward.rs` and the reference fixtures (tests/fixtures/unet/).
//!
//! Inputs (safetensors): `sample` [B, F, C, h, w] f32, `timestep` `[B]` f32 (c_noise), `encoder_hidden_states`
//! [B, 1, D] f32, `added_time_ids` [B, 3] f32; optionally `trajectories` [F, N, 2] f32 (pixels of the origin
//! frame, x then y), `visibility` [F, N] u8 (1 = visible) and `trajectory_indices.<k>` i64 (the sampled subset
//! of the k-th trajectory call in execution order). Metadata (strings): `origin_width`, `origin_height`,
//! `grouping` (`pairs` | `per_trajectory`), optional `seed`. Output: `out` [B, F, C_out, h, w] f32.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use trajattn_kernels::ops::trajectory_attention::Grouping;

use crate::models::unet::Trajectories;

/// Problems reading an inputs file.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("{path}: {msg}")]
    Bad { path: String, msg: String },
}

/// The decoded inputs of one UNet call.
#[derive(Clone, Debug)]
pub struct UNetInputs {
    /// `[B, F, C, h, w]`.
    pub sample_shape: Vec<usize>,
    pub sample: Vec<f32>,
    pub timestep: Vec<f32>,
    /// `[B, D]`.
    pub context: Vec<f32>,
    pub context_dim: usize,
    pub added_time_ids: Vec<f32>,
    pub trajectories: Option<Trajectories>,
    /// Sampled indices per trajectory call, in call order.
    pub indices: Vec<Vec<usize>>,
    pub metadata: HashMap<String, String>,
}

fn bad(path: &Path, msg: impl Into<String>) -> IoError {
    IoError::Bad { path: path.display().to_string(), msg: msg.into() }
}

/// Reads one tensor as f32 (f32, f16, bf16 or f64 on disk), returning its shape.
pub fn tensor_f32(st: &SafeTensors, path: &Path, name: &str) -> Result<(Vec<usize>, Vec<f32>), IoError> {
    let t = st.tensor(name).map_err(|_| bad(path, format!("missing tensor `{name}`")))?;
    let b = t.data();
    let v: Vec<f32> = match t.dtype() {
        Dtype::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => b.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::F64 => {
            b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32).collect()
        }
        d => return Err(bad(path, format!("tensor `{name}` has dtype {d:?}; expected a float type"))),
    };
    Ok((t.shape().to_vec(), v))
}

fn tensor_index(st: &SafeTensors, path: &Path, name: &str) -> Result<(Vec<usize>, Vec<i64>), IoError> {
    let t = st.tensor(name).map_err(|_| bad(path, format!("missing tensor `{name}`")))?;
    let b = t.data();
    let v: Vec<i64> = match t.dtype() {
        Dtype::I64 => b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect(),
        Dtype::I32 => {
            b.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect()
        }
        Dtype::U8 | Dtype::BOOL => b.iter().map(|&x| x as i64).collect(),
        d => return Err(bad(path, format!("tensor `{name}` has dtype {d:?}; expected an integer type"))),
    };
    Ok((t.shape().to_vec(), v))
}

impl UNetInputs {
    /// Reads and checks an inputs file.
    pub fn read(path: &Path) -> Result<UNetInputs, IoError> {
        let bytes = std::fs::read(path).map_err(|e| bad(path, e.to_string()))?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(path, format!("not a safetensors file: {e}")))?;
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(path, e.to_string()))?;
        let metadata = meta.metadata().clone().unwrap_or_default();
        let (sample_shape, sample) = tensor_f32(&st, path, "sample")?;
        if sample_shape.len() != 5 {
            return Err(bad(path, format!("`sample` must be [B, F, C, h, w], found {sample_shape:?}")));
        }
        let (b, f) = (sample_shape[0], sample_shape[1]);
        let (ts, timestep) = tensor_f32(&st, path, "timestep")?;
        if ts != [b] && ts != [1] && !ts.is_empty() {
            return Err(bad(path, format!("`timestep` must be [B] = [{b}], found {ts:?}")));
        }
        let timestep = if timestep.len() == 1 { vec![timestep[0]; b] } else { timestep };
        let (cs, context) = tensor_f32(&st, path, "encoder_hidden_states")?;
        if cs.len() != 3 || cs[0] != b || cs[1] != 1 {
            return Err(bad(
                path,
                format!("`encoder_hidden_states` must be [B, 1, D] with B = {b}, found {cs:?}"),
            ));
        }
        let (ids_s, added_time_ids) = tensor_f32(&st, path, "added_time_ids")?;
        if ids_s != [b, 3] {
            return Err(bad(path, format!("`added_time_ids` must be [{b}, 3], found {ids_s:?}")));
        }
        let mut trajectories = None;
        let mut indices = Vec::new();
        if st.names().contains(&"trajectories") {
            let (tsh, coords) = tensor_f32(&st, path, "trajectories")?;
            if tsh.len() != 3 || tsh[0] != f || tsh[2] != 2 {
                return Err(bad(path, format!("`trajectories` must be [F = {f}, N, 2], found {tsh:?}")));
            }
            let n = tsh[1];
            let (vsh, vis) = tensor_index(&st, path, "visibility")?;
            if vsh != [f, n] {
                return Err(bad(path, format!("`visibility` must be [{f}, {n}], found {vsh:?}")));
            }
            let num = |k: &str| -> Result<usize, IoError> {
                metadata
                    .get(k)
                    .ok_or_else(|| bad(path, format!("metadata `{k}` is required with trajectories")))?
                    .parse()
                    .map_err(|_| bad(path, format!("metadata `{k}` is not a positive integer")))
            };
            let grouping = match metadata.get("grouping").map(String::as_str) {
                None | Some("pairs") => Grouping::Pairs,
                Some("per_trajectory") => Grouping::PerTrajectory,
                Some(g) => {
                    return Err(bad(
                        path,
                        format!("metadata `grouping` is {g:?}; use pairs or per_trajectory"),
                    ))
                }
            };
            trajectories = Some(Trajectories {
                coords: coords.iter().map(|&v| v as f64).collect(),
                visible: vis.iter().map(|&v| v != 0).collect(),
                n,
                origin_w: num("origin_width")?,
                origin_h: num("origin_height")?,
                grouping,
            });
            let mut k = 0;
            while st.names().iter().any(|nm| *nm == format!("trajectory_indices.{k}")) {
                let (_, idx) = tensor_index(&st, path, &format!("trajectory_indices.{k}"))?;
                let idx = idx
                    .iter()
                    .map(|&i| usize::try_from(i).ok().filter(|&i| i < n))
                    .collect::<Option<Vec<usize>>>()
                    .ok_or_else(|| {
                        bad(path, format!("`trajectory_indices.{k}` holds an index outside 0..{n}"))
                    })?;
                indices.push(idx);
                k += 1;
            }
        }
        Ok(UNetInputs {
            sample_shape,
            sample,
            timestep,
            context,
            context_dim: cs[2],
            added_time_ids,
            trajectories,
            indices,
            metadata,
        })
    }
}
