//! The byte layout of each op's uniform `Params` struct as Rust lays it out, so a test can check it against the
//! WGSL struct of the same name (naga's reflection of the expanded shader): same member names, same offsets,
//! same size. A mismatch would make a kernel read the wrong fields without any error.

/// Member names with their byte offsets, in declaration order, and the struct's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamsLayout {
    /// `(name, offset in bytes)` of every field.
    pub fields: &'static [(&'static str, usize)],
    /// `size_of` the struct.
    pub size: usize,
}

/// `params_layout!(Params { a, b, c })`: the [`ParamsLayout`] of a `#[repr(C)]` struct from its field list.
/// Listing a field that does not exist, or leaving one out, fails to compile (an exhaustive pattern checks it).
#[macro_export]
macro_rules! params_layout {
    ($ty:ident { $($field:ident),+ $(,)? }) => {{
        #[allow(dead_code)]
        fn exhaustive(p: $ty) {
            let $ty { $($field: _),+ } = p;
        }
        $crate::params::ParamsLayout {
            fields: &[$((stringify!($field), ::std::mem::offset_of!($ty, $field))),+],
            size: ::std::mem::size_of::<$ty>(),
        }
    }};
}
