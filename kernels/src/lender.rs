//! Buffers lent by lifetime inside one recording: a [`Lender`] hands out tensors whose buffers come back to it
//! when the [`Loan`] drops, and keeps every buffer it ever allocated.
//!
//! Dispatches run in recording order inside one compute pass, so a buffer may be lent again as soon as the last
//! dispatch that reads its previous tenant is recorded, and replaying the recording stays correct. Because the
//! lender keeps its buffers (instead of returning them to the global pool), nothing outside the recording can
//! receive them between replays. Used for op scratch ([`crate::Recorder::scratch`]) and for the intermediates of
//! a model graph.
//!
//! A *planned* lender ([`Lender::planned`]) allocates nothing: it lends planned tensors ([`Tensor::planned`])
//! which the recording that binds them places ahead of time at offsets inside a few arenas, from the lifetimes
//! its dispatches show ([`crate::Recorder::finish`], [`crate::arena`]). The recording owns the arenas.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::dtype::DType;
use crate::error::{invalid, Result};
use crate::gpu::Gpu;
use crate::tensor::{numel, Tensor};

#[derive(Default)]
struct State {
    /// Whole buffers without a tenant.
    free: Vec<Tensor>,
    /// Every buffer allocated.
    all: Vec<Tensor>,
    live_bytes: u64,
    peak_live_bytes: u64,
    planned: bool,
}

/// Memory figures of a lender.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LenderStats {
    /// Bytes of all buffers it holds (a planned lender holds none: its recordings hold the arenas).
    pub allocated_bytes: u64,
    /// Largest sum of buffers on loan at one point (for a recording's arenas: the most bytes alive at one
    /// dispatch).
    pub peak_live_bytes: u64,
    /// Number of buffers.
    pub buffers: usize,
}

/// Lends buffers by lifetime (see the module documentation). Clones share one set of buffers.
#[derive(Clone, Default)]
pub struct Lender {
    state: Arc<Mutex<State>>,
}

/// A tensor on loan; its buffer returns to the lender on drop.
pub struct Loan {
    t: Tensor,
    base: Option<Tensor>,
    home: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Lender {
    /// An empty lender of whole buffers, chosen online.
    pub fn new() -> Self {
        Self::default()
    }

    /// A lender of planned tensors (see the module documentation).
    pub fn planned() -> Self {
        Lender { state: Arc::new(Mutex::new(State { planned: true, ..State::default() })) }
    }

    /// A tensor of `shape`: the smallest free buffer of the dtype that fits and is at most four times the
    /// request (larger ones are left for larger tensors; measured on the UNet fixtures, 4× allocates 6–10 % less
    /// than 2× and unlimited more), else a new buffer.
    pub fn lend(&self, gpu: &Gpu, shape: &[usize], dtype: DType) -> Result<Loan> {
        let bytes = (numel(shape) as u64 * dtype.size()).max(4);
        let mut st = lock(&self.state);
        if st.planned {
            let t = Tensor::planned(gpu, shape, dtype)?;
            st.live_bytes += t.capacity_bytes();
            st.peak_live_bytes = st.peak_live_bytes.max(st.live_bytes);
            return Ok(Loan { t, base: None, home: self.state.clone() });
        }
        let pick = st
            .free
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                t.dtype() == dtype && t.capacity_bytes() >= bytes && t.capacity_bytes() <= 4 * bytes
            })
            .min_by_key(|(_, t)| t.capacity_bytes())
            .map(|(i, _)| i);
        let base = match pick {
            Some(i) => st.free.swap_remove(i),
            None => {
                let t = Tensor::empty(gpu, shape, dtype)?;
                st.all.push(t.clone());
                t
            }
        };
        st.live_bytes += base.capacity_bytes();
        st.peak_live_bytes = st.peak_live_bytes.max(st.live_bytes);
        let t = base.fit(shape)?;
        Ok(Loan { t, base: Some(base), home: self.state.clone() })
    }

    /// Current figures.
    pub fn stats(&self) -> LenderStats {
        let st = lock(&self.state);
        LenderStats {
            allocated_bytes: st.all.iter().map(|t| t.capacity_bytes()).sum(),
            peak_live_bytes: st.peak_live_bytes,
            buffers: st.all.len(),
        }
    }
}

impl Loan {
    /// The same buffer under another shape with the same element count.
    pub fn reshaped(mut self, shape: &[usize]) -> Result<Loan> {
        if numel(shape) != self.t.numel() {
            return Err(invalid(
                "reshape",
                format!("{:?} → {shape:?} changes the element count", self.t.shape()),
            ));
        }
        self.t = self.t.reshape(shape)?;
        Ok(self)
    }
}

impl std::ops::Deref for Loan {
    type Target = Tensor;
    fn deref(&self) -> &Tensor {
        &self.t
    }
}

impl Drop for Loan {
    fn drop(&mut self) {
        let mut st = lock(&self.home);
        if let Some(base) = self.base.take() {
            st.live_bytes -= base.capacity_bytes();
            st.free.push(base);
        } else {
            st.live_bytes -= self.t.capacity_bytes();
        }
    }
}
