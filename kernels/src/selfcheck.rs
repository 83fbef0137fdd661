//! Quick self-checks: each kernel once on small random odd-shaped data against its float64 reference.
//! Used by `trajattn demo`; the thorough tests live in `kernels/tests/`.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::ops::elementwise::{self, Binary};
use crate::testing::{rand_vec, rel_err, to_f64};
use crate::{DType, Tensor};

/// One check: a name, its error bound, and the function returning the normalised error.
pub struct Check {
    /// What is checked.
    pub name: &'static str,
    /// Normalised error bound.
    pub tol: f64,
    /// Runs the check and returns the normalised error vs the float64 reference.
    pub run: fn(&Gpu) -> Result<f64>,
}

fn add_check(gpu: &Gpu) -> Result<f64> {
    let shape = [3, 37, 129];
    let n = 3 * 37 * 129;
    let (a, b) = (rand_vec(1, n), rand_vec(2, n));
    let ta = Tensor::from_f32(gpu, &a, &shape, DType::F32)?;
    let tb = Tensor::from_f32(gpu, &b, &shape, DType::F32)?;
    let y = elementwise::binary(gpu, Binary::Add, &ta, &tb)?;
    let want = elementwise::reference::binary(Binary::Add, &to_f64(&a), &to_f64(&b));
    Ok(rel_err(&y.to_f32(gpu)?, &want))
}

/// Every self-check.
pub fn checks() -> Vec<Check> {
    vec![Check { name: "elementwise add [3,37,129] f32", tol: 1e-5, run: add_check }]
}
