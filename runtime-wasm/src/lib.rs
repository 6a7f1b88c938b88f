//! `WasmtimeSandbox`: runs WASI preview 1 modules and preview 2 `wasi:cli/command` components
//! in-process under wasmtime, behind the [`skiff_sandbox::PodSandbox`] trait.
//!
//! - [`engine`]: the node's one `Engine` (pooling allocator, epoch ticker) and WASI linkers.
//! - [`cache`]: compiled code on disk by digest, `InstancePre` in memory.
//! - [`run`]: a container's WASI context, store and the run to its [`Outcome`](run::Outcome).
//! - [`limits`], [`cpu`]: `limits.memory` and `limits.cpu`.
//! - [`stdio`]: stdout/stderr into the CRI log.
//! - [`imports`]: which components import sockets, and so need the pod's network namespace.
//! - [`executor`]: where a run is polled: the caller's runtime, or a thread inside the pod's
//!   network namespace.
//! - [`sandbox`]: [`WasmtimeSandbox`], the lifecycle of runs.

mod cache;
mod cpu;
mod engine;
mod error;
mod executor;
mod imports;
mod limits;
mod run;
mod sandbox;
mod stdio;

use std::path::PathBuf;

pub use error::WasmError;
pub use sandbox::WasmtimeSandbox;
pub use stdio::NETWORK_DENIED;

/// The wasmtime this crate links, as `nodeInfo.containerRuntimeVersion` reports it. A unit test
/// holds it to `Cargo.lock`, so an upgrade cannot leave it stale.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// How a node's [`WasmtimeSandbox`] is set up.
#[derive(Debug, Clone)]
pub struct WasmtimeConfig {
    /// Where compiled modules are kept across agent restarts (created if missing).
    pub cache_dir: PathBuf,
    /// How many containers may run at once: the pooling allocator reserves room for this many.
    pub max_instances: u32,
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_reported_wasmtime_version_is_the_linked_one() {
        let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"))
            .expect("the workspace Cargo.lock");
        let linked = lock
            .split("[[package]]")
            .find(|p| p.contains("\nname = \"wasmtime\"\n"))
            .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
            .map(|v| v.trim_matches('"'))
            .expect("wasmtime in Cargo.lock");
        assert_eq!(super::WASMTIME_VERSION, linked);
    }
}
