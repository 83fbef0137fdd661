//! The host-built index tables of one call: token → grid row, and its inverse CSR map.

use super::{check_tables, reference, Call};
use crate::error::Result;

/// Host-built index tables of one call, for the GPU kernels.
#[derive(Clone, Debug)]
pub struct Tables {
    /// For token `t = m·F + f` of a batch element: its grid row `cell·F + f`, or `u32::MAX` if invisible.
    pub table: Vec<u32>,
    /// CSR offsets over `(f, cell)`: `F·S + 1` entries.
    pub offsets: Vec<u32>,
    /// Sample index `m` of every hit, grouped by `(f, cell)`, increasing `m` inside a group.
    pub hits: Vec<u32>,
    /// Sequence length `L`.
    pub seq_len: usize,
    /// Sampled trajectories `M`.
    pub m: usize,
}

/// Builds the token table and the inverse (CSR) map of a call, deterministically.
pub fn tables(call: &Call) -> Result<Tables> {
    let seq_len = check_tables(call)?;
    let (f, s, m) = (call.f, call.h * call.w, call.idx.len());
    let (cell, valid) = reference::cells(call);
    let mut table = vec![u32::MAX; m * f];
    let mut counts = vec![0u32; f * s + 1];
    for fr in 0..f {
        for mi in 0..m {
            if valid[fr * m + mi] {
                let (yi, xi) = cell[fr * m + mi];
                let p = yi * call.w + xi;
                table[mi * f + fr] = (p * f + fr) as u32;
                counts[fr * s + p + 1] += 1;
            }
        }
    }
    let mut offsets = counts;
    for i in 1..offsets.len() {
        offsets[i] += offsets[i - 1];
    }
    let mut fill = offsets.clone();
    let mut hits = vec![0u32; offsets[f * s] as usize];
    for fr in 0..f {
        for mi in 0..m {
            if valid[fr * m + mi] {
                let (yi, xi) = cell[fr * m + mi];
                let k = fr * s + yi * call.w + xi;
                hits[fill[k] as usize] = mi as u32;
                fill[k] += 1;
            }
        }
    }
    Ok(Tables { table, offsets, hits, seq_len, m })
}
