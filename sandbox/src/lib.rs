//! The seam between the node agent and its runtimes: the one [`PodSandbox`] trait that
//! `runtime-wasm` and `runtime-oci` implement, and the plain data it takes.
//!
//! A runtime sees a resolved spec, never a Pod: the node has already pulled the image, resolved
//! env and volumes, chosen the log file and decided restarts. A runtime only knows how to run.

pub mod cgroups;
pub mod cri_log;
mod exec;
pub mod mounts;
mod spec;

use std::time::Duration;

pub use exec::{ContainerIo, ExecOutput, ExitFuture, StreamOptions, TerminalSize, exec_sync};
pub use spec::{
    ArtifactKind, ContainerId, ContainerSpec, ExitReason, ExitStatus, ImageArtifact, ImageConfig,
    Mount, ResourceLimits, SandboxId, SandboxSpec, SeccompProfile, SecurityContext,
};

/// The pod-level resources a container needs ([`PodSandbox::pod_resources`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodResources {
    /// The pod's network namespace (and so its IP).
    pub network: bool,
    /// The pod's cgroup, for containers that run as processes below it.
    pub cgroup: bool,
}

/// What a runtime can fail at. Runtime-specific causes (a wasmtime trap, a runc error) are boxed
/// into [`SandboxError::Runtime`] so no backend type crosses the seam.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("no sandbox {0}")]
    UnknownSandbox(SandboxId),
    #[error("sandbox {sandbox} has no container {container:?}")]
    UnknownContainer {
        sandbox: SandboxId,
        container: String,
    },
    #[error("container {container:?} is already running")]
    AlreadyRunning { container: String },
    #[error("image {image} cannot run here: {reason}")]
    UnsupportedArtifact { image: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The runtime cannot do `operation` at all (a Wasm module has no processes to exec).
    #[error("{handler} does not support {operation}")]
    Unsupported {
        handler: &'static str,
        operation: &'static str,
    },
    #[error("container {container:?} is not running")]
    NotRunning { container: String },
    #[error("command {command:?} did not finish within {timeout:?}")]
    ExecTimedOut {
        command: Vec<String>,
        timeout: Duration,
    },
    #[error("{context}: {source}")]
    Runtime {
        context: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// One runtime. A sandbox is a pod's shared context (its directory, later its network namespace
/// and cgroup); containers run in it one run at a time per name: starting a container whose last
/// run has exited is a restart.
///
/// Guarantees every implementation gives:
/// - `start_container` returns once the container is running (or has failed to start);
///   its stdout and stderr go to `ContainerSpec::log_path` in the CRI log format ([`cri_log`]).
/// - `wait_container` resolves when the current run exits, for any number of waiters, and at
///   once for a run that has already exited.
/// - `stop_container` ends the run within `grace` (forcefully after it); stopping an exited
///   container is not an error.
/// - `remove` stops whatever still runs and releases everything the sandbox holds.
/// - `exec` and `attach` return once the session is connected (or has failed to start): the
///   streams asked for in [`StreamOptions`] are in the [`ContainerIo`], and dropping it ends the
///   session; a command `exec` started that is still running is killed then (a client that went
///   away, an exec probe that timed out). A command that cannot start ends its session with an
///   error from [`ContainerIo::exit`].
#[async_trait::async_trait]
pub trait PodSandbox: Send + Sync {
    /// The RuntimeClass handler this runtime serves (`wasmtime`, `runc`).
    fn handler(&self) -> &'static str;
    /// `nodeInfo.containerRuntimeVersion`, e.g. `wasmtime://48.0.8`.
    fn version(&self) -> String;
    /// What of the pod's own a container of `artifact` uses: the node makes a pod's network
    /// namespace and cgroup only once a container needs them, so pods of programs that cannot
    /// open a socket or run as a process cost neither.
    fn pod_resources(&self, artifact: &ImageArtifact) -> PodResources {
        let _ = artifact;
        PodResources {
            network: true,
            cgroup: true,
        }
    }
    async fn create(&self, pod: &SandboxSpec) -> Result<SandboxId, SandboxError>;
    async fn start_container(
        &self,
        id: &SandboxId,
        container: &ContainerSpec,
    ) -> Result<ContainerId, SandboxError>;
    async fn stop_container(
        &self,
        id: &SandboxId,
        name: &str,
        grace: Duration,
    ) -> Result<(), SandboxError>;
    async fn wait_container(&self, id: &SandboxId, name: &str) -> Result<ExitStatus, SandboxError>;
    async fn remove(&self, id: &SandboxId) -> Result<(), SandboxError>;
    /// The containers of `pod` that outlived an earlier agent, recreating its sandbox if there
    /// are any: a restarted agent adopts them instead of starting them again. Runtimes whose
    /// containers live in the agent's process have none.
    async fn adopt(&self, pod: &SandboxSpec) -> Option<(SandboxId, Vec<AdoptedContainer>)> {
        let _ = pod;
        None
    }
    /// Removes what an earlier agent left for pods that are gone (`keep` says which pod UIDs
    /// still exist).
    async fn remove_orphans(&self, keep: &(dyn for<'a> Fn(&'a str) -> bool + Send + Sync)) {
        let _ = keep;
    }
    /// Runs `command` (`argv[0]` the program) in the running container `name`, in its
    /// namespaces and cgroup (`kubectl exec`, exec probes, lifecycle hooks). The
    /// [`ContainerIo::exit`] of the session is the command's exit code. Runtimes without
    /// processes answer [`SandboxError::Unsupported`].
    async fn exec(
        &self,
        id: &SandboxId,
        name: &str,
        command: &[String],
        options: StreamOptions,
    ) -> Result<ContainerIo, SandboxError> {
        let _ = (id, name, command, options);
        Err(SandboxError::Unsupported {
            handler: self.handler(),
            operation: "exec",
        })
    }
    /// Connects to the running container `name`'s own stdio (`kubectl attach`): its output from
    /// now on, and its stdin when the container has one (`ContainerSpec::stdin`). A tty
    /// container's terminal is one stream, stdout. The session's [`ContainerIo::exit`] resolves
    /// when the container exits, to its exit code. Runtimes without a terminal or stdin answer
    /// [`SandboxError::Unsupported`].
    async fn attach(
        &self,
        id: &SandboxId,
        name: &str,
        options: StreamOptions,
    ) -> Result<ContainerIo, SandboxError> {
        let _ = (id, name, options);
        Err(SandboxError::Unsupported {
            handler: self.handler(),
            operation: "attach",
        })
    }
}

/// A container run found by [`PodSandbox::adopt`].
#[derive(Debug, Clone)]
pub struct AdoptedContainer {
    pub name: String,
    pub id: ContainerId,
    pub attempt: u32,
    /// `sha256:…` of the image's manifest.
    pub image_digest: String,
    pub started_at: std::time::SystemTime,
    /// How it ended, if it has.
    pub exit: Option<ExitStatus>,
}
