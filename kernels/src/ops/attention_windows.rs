//! Binding windows shared by the attention launchers: the batch entries (flash attention) or sequences (temporal
//! attention) of a call are cut into runs of consecutive entries whose Q, K, V and output windows each fit one
//! binding, one dispatch per run.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::tensor::{Tensor, Window};

/// The windows of one run of `count` consecutive entries.
pub(crate) struct Run {
    /// Entries in the run.
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
