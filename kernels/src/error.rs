//! Errors of the GPU runtime.

use thiserror::Error;

/// Everything the GPU runtime can refuse or fail at.
#[derive(Debug, Error)]
pub enum KernelError {
    /// An operand has the wrong shape; names both shapes.
    #[error("{op}: {what}: expected shape {expected}, found {found}")]
    Shape { op: &'static str, what: String, expected: String, found: String },
    /// The operation does not support this dtype (or this dtype combination).
    #[error("{op}: dtype {found} is not supported here ({why})")]
    DType { op: &'static str, found: String, why: String },
    /// A required optional adapter feature is missing.
    #[error("{op} needs the adapter feature {feature}, which adapter '{adapter}' does not offer")]
    MissingFeature { op: &'static str, feature: &'static str, adapter: String },
    /// A tensor or binding does not fit the adapter's limits.
    #[error("{what} needs {bytes} bytes, more than the adapter's limit of {limit} bytes ({limit_name})")]
    TooLarge { what: String, bytes: u64, limit: u64, limit_name: &'static str },
    /// A bad argument that is not a shape or dtype problem.
    #[error("{op}: {msg}")]
    Invalid { op: &'static str, msg: String },
    /// No usable adapter was found.
    #[error("{0}")]
    NoAdapter(String),
    /// The device could not be created or was lost.
    #[error("GPU device error: {0}")]
    Device(String),
    /// wgpu reported an error (validation, out of memory) or a map/poll failed.
    #[error("GPU error: {0}")]
    Wgpu(String),
}

/// Result alias of the GPU runtime.
pub type Result<T> = std::result::Result<T, KernelError>;

/// Formats a shape as `[a, b, c]`.
pub fn fmt_shape(s: &[usize]) -> String {
    format!("{s:?}")
}

/// Builds a [`KernelError::Shape`].
pub fn shape_err(
    op: &'static str,
    what: impl Into<String>,
    expected: &[usize],
    found: &[usize],
) -> KernelError {
    KernelError::Shape { op, what: what.into(), expected: fmt_shape(expected), found: fmt_shape(found) }
}

/// Builds a [`KernelError::Invalid`].
pub fn invalid(op: &'static str, msg: impl Into<String>) -> KernelError {
    KernelError::Invalid { op, msg: msg.into() }
}
