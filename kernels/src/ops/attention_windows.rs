//! Binding windows shared by the attention launchers: the batch entries (flash attention) or sequences (temporal
//! attention) of a call are cut into runs of consecutive entries whose Q, K, V and output windows each fit one
//! binding, one dispatch per run; where one entry's Q or output alone exceeds a binding, flash attention cuts
//! the entry's query rows into blocks instead ([`for_each_query_block`]), each block reading all of the entry's
//! keys.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::tensor::{Tensor, Window};

/// The windows of one run of `count` consecutive entries (or of `count` query rows of one entry).
pub(crate) struct Run {
    /// Entries (or query rows) in the run.
    pub count: usize,
    /// Windows of Q, K, V and the output, in that order.
    pub q: Window,
    pub k: Window,
    pub v: Window,
    pub out: Window,
}

/// Calls `f` for each run of at most `per_run` (at least 1) of the `entries`, with the windows of Q, K, V and
/// the output; `per_entry[i].1` is the number of elements one entry spans in the `i`-th of `tensors` (Q, K, V,
/// output; the names are those of `batches_per_dispatch`).
pub(crate) fn for_each_run(
    gpu: &Gpu,
    entries: usize,
    per_run: usize,
    per_entry: &[(&str, usize); 4],
    tensors: [&Tensor; 4],
    mut f: impl FnMut(Run) -> Result<()>,
) -> Result<()> {
    let per_run = per_run.max(1);
    let mut first = 0;
    while first < entries {
        let count = per_run.min(entries - first);
        let window = |i: usize| tensors[i].window(gpu, first * per_entry[i].1, count * per_entry[i].1);
        f(Run { count, q: window(0)?, k: window(1)?, v: window(2)?, out: window(3)? })?;
        first += count;
    }
    Ok(())
}

/// Rows of one entry of an attention call and the elements between consecutive rows of each operand.
#[derive(Clone, Copy)]
pub(crate) struct EntryRows {
    /// Entries (batches).
    pub entries: usize,
    /// Query rows per entry (rows of Q and of the output).
    pub seq_q: usize,
    /// Key rows per entry (rows of K and V).
    pub seq_kv: usize,
    /// Elements between consecutive rows of Q, K, V and the output.
    pub strides: [usize; 4],
}

/// Calls `f` for each block of at most `rows_per_block` (at least 1) consecutive query rows of each entry: the
/// run's `count` is the block's rows, Q and the output windows cover those rows, K and V the entry's whole keys.
pub(crate) fn for_each_query_block(
    gpu: &Gpu,
    e: EntryRows,
    rows_per_block: usize,
    tensors: [&Tensor; 4],
    mut f: impl FnMut(Run) -> Result<()>,
) -> Result<()> {
    let rows_per_block = rows_per_block.max(1);
    let [qs, ks, vs, os] = e.strides;
    for b in 0..e.entries {
        let (k_first, q_first) = (b * e.seq_kv, b * e.seq_q);
        let mut r0 = 0;
        while r0 < e.seq_q {
            let count = rows_per_block.min(e.seq_q - r0);
            let rows = |i: usize, first: usize, n: usize, stride: usize| {
                tensors[i].window(gpu, first * stride, n * stride)
            };
            f(Run {
                count,
                q: rows(0, q_first + r0, count, qs)?,
                k: rows(1, k_first, e.seq_kv, ks)?,
                v: rows(2, k_first, e.seq_kv, vs)?,
                out: rows(3, q_first + r0, count, os)?,
            })?;
            r0 += count;
        }
    }
    Ok(())
}
