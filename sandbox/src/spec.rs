//! The resolved specs a runtime is handed, and what it reports back.

use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

/// A pod's sandbox, named by the pod's UID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SandboxId(pub String);

impl fmt::Display for SandboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One run of a container, as `containerStatuses[].containerID` shows it (`wasm://…`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerId(pub String);

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The pod-level context a sandbox is created from.
#[derive(Debug, Clone, Default)]
pub struct SandboxSpec {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// The pod's own directory on the node; the node has created it.
    pub dir: PathBuf,
    /// The pod's network namespace (a bind-mounted nsfs file) that every container joins;
    /// `None` shares the node's (`hostNetwork: true`).
    pub network_namespace: Option<PathBuf>,
    /// The pod's cgroup below the hierarchy root (`skiff/burstable/pod<uid>`), which the node
    /// has created and limited; each container's cgroup goes below it.
    pub cgroup_parent: Option<PathBuf>,
    /// The hostname every container of the pod sees.
    pub hostname: String,
}

/// A pulled image, as the node's content store holds it.
#[derive(Debug, Clone)]
pub struct ImageArtifact {
    /// The reference the pod named (`127.0.0.1:5000/hello:v1`).
    pub reference: String,
    /// `sha256:…` of the manifest: `containerStatuses[].imageID` and the compile-cache key.
    pub digest: String,
    pub kind: ArtifactKind,
    pub config: ImageConfig,
}

/// The parts of an image's config that shape how its containers run (empty for a Wasm
/// artifact, whose config carries none of them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value`, as the image config spells them.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

#[derive(Debug, Clone)]
pub enum ArtifactKind {
    /// A WebAssembly module or component, stored as one file.
    Wasm { module: PathBuf },
    /// An ordinary container image: its layer blobs (tar, gzip or zstd), base first, as the
    /// registry served them; the OCI runtime unpacks them.
    Oci { layers: Vec<PathBuf> },
}

/// A host directory or file that appears inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub host_path: PathBuf,
    pub container_path: String,
    pub read_only: bool,
}

/// `resources` of a container, in the units runtimes enforce.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceLimits {
    /// `limits.cpu` in millicores.
    pub cpu_limit_millis: Option<u64>,
    /// `limits.memory` in bytes.
    pub memory_limit_bytes: Option<u64>,
    /// `requests.cpu` in millicores (shares/weight; 0 when unset).
    pub cpu_request_millis: u64,
}

/// One container, fully resolved by the node.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub name: String,
    pub image: ImageArtifact,
    /// `command` + `args` after the image's defaults; `argv[0]` is the program name.
    pub argv: Vec<String>,
    /// In order, later entries winning, as Kubernetes resolves `envFrom` then `env`.
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub mounts: Vec<Mount>,
    pub resources: ResourceLimits,
    /// The CRI log file of this run; its directory exists.
    pub log_path: PathBuf,
    /// How many runs of this container came before this one (CRI's `attempt`): a runtime whose
    /// containers outlive the agent reports it back when the agent adopts them.
    pub attempt: u32,
    pub security: SecurityContext,
    /// `stdin: true`: the container's stdin stays open for `kubectl attach`.
    pub stdin: bool,
    /// `stdinOnce: true`: stdin closes when the first attached client leaves.
    pub stdin_once: bool,
    /// `tty: true`: stdout and stderr are one terminal stream.
    pub tty: bool,
}

/// A container's `securityContext`, merged over the pod's: what a runtime enforces. A Wasm
/// runtime, whose modules get no host privileges at all, has nothing here to relax.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityContext {
    /// `runAsUser`; `None` runs as the image's `User` (root when it names none).
    pub run_as_user: Option<u32>,
    /// `runAsGroup`; `None` takes the user's primary group.
    pub run_as_group: Option<u32>,
    /// `supplementalGroups` and `fsGroup`, beyond the user's own groups.
    pub supplemental_groups: Vec<u32>,
    pub privileged: bool,
    /// Capability names as Kubernetes spells them (`NET_ADMIN`, or `ALL` to drop every one).
    pub capabilities_add: Vec<String>,
    pub capabilities_drop: Vec<String>,
    pub read_only_root_filesystem: bool,
    /// `allowPrivilegeEscalation: false`.
    pub no_new_privileges: bool,
    pub seccomp: SeccompProfile,
    /// `procMount: Unmasked`: /proc without the masked and read-only paths.
    pub unmasked_proc: bool,
}

/// `seccompProfile`: the kubelet's default is Unconfined.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SeccompProfile {
    #[default]
    Unconfined,
    RuntimeDefault,
    /// A profile file on the node, already resolved against the node's seccomp directory.
    Localhost(PathBuf),
}

/// Why a run ended, beyond its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// The program exited (or trapped) by itself.
    Exited,
    /// It exceeded `limits.memory`.
    OomKilled,
    /// `stop_container` or `remove` ended it.
    Stopped,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitStatus {
    pub exit_code: i32,
    pub reason: ExitReason,
    /// A short human explanation (a trap's message), shown as the terminated state's `message`.
    pub message: Option<String>,
    pub started_at: SystemTime,
    pub finished_at: SystemTime,
}
