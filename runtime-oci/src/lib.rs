//! `RuncSandbox`: the [`skiff_sandbox::PodSandbox`] for ordinary container images. A container's
//! root filesystem is an overlay of its image's layers (each unpacked once, [`layers`]) plus its own
//! writable layer ([`rootfs`]); runc runs it from a runtime spec bundle under a small shim process.

mod attach;
mod bundle;
mod exec;
pub mod layers;
mod pty;
pub mod rootfs;
mod runc;
mod sandbox;
mod seccomp;
pub mod shim;
mod user;

pub use runc::RuncError;
pub use sandbox::{RuncConfig, RuncSandbox};
