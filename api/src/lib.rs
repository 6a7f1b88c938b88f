//! Kubernetes API semantics for Skiff: which resources exist ([`registry`]), how failures read
//! ([`status`]), and, without any I/O, how objects are defaulted, validated, selected, patched
//! and printed. The API server in `skiff-control` is the only caller that touches a store.

pub mod registry;
pub mod schema;
pub mod status;

pub use registry::ResourceInfo;
pub use status::{ApiError, FieldError, ObjectRef};
