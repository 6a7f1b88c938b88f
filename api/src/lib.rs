//! Kubernetes API semantics for Skiff: which resources exist ([`registry`]), how failures read
//! ([`status`]), and, without any I/O, how objects are defaulted, validated, selected, patched
//! and printed. The API server in `skiff-control` is the only caller that touches a store.

pub mod cron;
pub mod defaults;
pub mod discovery;
pub mod events;
pub mod join;
pub mod openapi;
pub mod patch;
pub mod printers;
pub mod protobuf;
pub mod quantity;
pub mod registry;
pub mod schema;
pub mod selectors;
pub mod status;
pub mod storage;
pub mod strict;
pub mod validation;

pub use registry::ResourceInfo;
pub use status::{ApiError, FieldError, ObjectRef};
