//! [`WasmError`]: what the wasmtime runtime can fail at, and how that crosses the sandbox seam.

use std::path::PathBuf;

use skiff_sandbox::SandboxError;

#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    #[error("configuring the wasmtime engine: {0}")]
    Engine(#[source] wasmtime::Error),
    #[error("starting the epoch ticker thread: {0}")]
    Ticker(#[source] std::io::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{image}: {reason}")]
    Unsupported { image: String, reason: String },
    #[error("{image}: compiling: {source}")]
    Compile {
        image: String,
        #[source]
        source: wasmtime::Error,
    },
    #[error(
        "volume mount {container_path}: {host_path} is not a directory (Wasm containers mount directories only)"
    )]
    MountNotDirectory {
        host_path: PathBuf,
        container_path: String,
    },
    #[error("volume mount {container_path}: opening {host_path}: {source}")]
    Mount {
        host_path: PathBuf,
        container_path: String,
        #[source]
        source: wasmtime::Error,
    },
    #[error("entering the pod's network namespace {path}: {source}")]
    NetworkNamespace {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("container {container:?}: instantiating: {source}")]
    Instantiate {
        container: String,
        #[source]
        source: wasmtime::Error,
    },
}

impl WasmError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> WasmError {
        let path = path.into();
        move |source| WasmError::Io { path, source }
    }
}

impl From<WasmError> for SandboxError {
    fn from(e: WasmError) -> SandboxError {
        match e {
            WasmError::Io { path, source } => SandboxError::Io { path, source },
            WasmError::Unsupported { image, reason } => {
                SandboxError::UnsupportedArtifact { image, reason }
            }
            WasmError::Engine(_) | WasmError::Ticker(_) => SandboxError::Runtime {
                context: "starting wasmtime",
                source: Box::new(e),
            },
            // A binary wasmtime cannot compile is a bad image, not a node fault: no retry helps.
            WasmError::Compile { image, source } => SandboxError::UnsupportedArtifact {
                image,
                reason: format!("compiling: {source}"),
            },
            WasmError::MountNotDirectory { .. } | WasmError::Mount { .. } => {
                SandboxError::Runtime {
                    context: "mounting volumes",
                    source: Box::new(e),
                }
            }
            WasmError::NetworkNamespace { .. } => SandboxError::Runtime {
                context: "joining the pod's network",
                source: Box::new(e),
            },
            WasmError::Instantiate { .. } => SandboxError::Runtime {
                context: "instantiating",
                source: Box::new(e),
            },
        }
    }
}
