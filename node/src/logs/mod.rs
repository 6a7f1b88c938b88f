//! Container logs on the node: where each run's CRI log file lives ([`log_path`], the kubelet's
//! layout), how the server finds a container's files ([`ContainerLocator`], implemented by the
//! pod workers), reading them as the kubelet does ([`read`]), and the node's HTTPS server that
//! the API server proxies `pods/log`, `exec`, `attach` and `portforward` to ([`server`]).

pub mod read;
pub mod server;

use std::path::{Path, PathBuf};

use skiff_api::ApiError;

pub use read::{LogOptions, ReadError};
pub use server::{NodeServerError, NodeTls, serve};

/// The kubelet's layout: `<root>/<namespace>_<pod>_<uid>/<container>/<restartCount>.log`.
pub fn log_path(
    root: &Path,
    namespace: &str,
    pod: &str,
    uid: &str,
    container: &str,
    restart_count: u32,
) -> PathBuf {
    root.join(format!("{namespace}_{pod}_{uid}"))
        .join(container)
        .join(format!("{restart_count}.log"))
}

/// A container's log files as its pod worker knows them.
#[derive(Debug, Clone)]
pub struct ContainerLogs {
    /// The current (or, once exited, the last) run's file.
    pub current: PathBuf,
    /// The run before it, if it left a file: what `previous=true` reads.
    pub previous: Option<PathBuf>,
    /// Becomes true when the current run exits: a follow ends there.
    pub exited: tokio::sync::watch::Receiver<bool>,
    /// The RuntimeClass handler running the container (`wasmtime`, `runc`).
    pub runtime_handler: String,
}

/// Why a container's logs cannot be located, worded as the kubelet words it (the API server
/// relays these messages to `kubectl logs` verbatim).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocateError {
    #[error("pod {pod:?} does not exist")]
    PodNotFound { namespace: String, pod: String },
    #[error("container {container:?} not found in pod {pod:?}")]
    ContainerNotFound { pod: String, container: String },
    /// The container has no run yet; `reason` is its Waiting reason (`ContainerCreating`, ...).
    #[error(
        "container {container:?} in pod {pod:?} is waiting to start: {}",
        waiting_words(reason)
    )]
    Waiting {
        pod: String,
        container: String,
        reason: String,
    },
    /// The container exited and left no file to read.
    #[error("container {container:?} in pod {pod:?} is terminated")]
    Terminated { pod: String, container: String },
}

/// The kubelet spells out the two image-pull reasons rather than naming them.
fn waiting_words(reason: &str) -> &str {
    match reason {
        "ErrImagePull" => "image can't be pulled",
        "ImagePullBackOff" => "trying and failing to pull image",
        other => other,
    }
}

impl From<&LocateError> for ApiError {
    fn from(e: &LocateError) -> ApiError {
        match e {
            LocateError::PodNotFound { .. } | LocateError::ContainerNotFound { .. } => ApiError {
                code: 404,
                reason: "NotFound",
                message: e.to_string(),
                details: None,
                retry_after_seconds: None,
            },
            LocateError::Waiting { .. } | LocateError::Terminated { .. } => {
                ApiError::bad_request(e.to_string())
            }
        }
    }
}

/// How the node server finds containers. The pod workers implement it; every call is a quick
/// look-up in memory.
pub trait ContainerLocator: Send + Sync {
    fn locate(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<ContainerLogs, LocateError>;

    /// The runtime handlers of the pod's containers (port forwarding addresses a pod, not a
    /// container).
    fn pod_runtime_handlers(&self, namespace: &str, pod: &str) -> Result<Vec<String>, LocateError>;

    /// The runtime and sandbox running `container`, for exec and attach. By default none: the
    /// container is found, and refuses exec and attach (a stand-in that serves logs only).
    fn container_target(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<crate::streaming::ContainerTarget, LocateError> {
        let logs = self.locate(namespace, pod, container)?;
        Ok(crate::streaming::ContainerTarget {
            handler: logs.runtime_handler,
            runtime: None,
        })
    }

    /// Where the pod's ports are, for port forwarding. By default nowhere: the pod has no
    /// network.
    fn pod_ports(
        &self,
        namespace: &str,
        pod: &str,
    ) -> Result<crate::streaming::PodPorts, LocateError> {
        self.pod_runtime_handlers(namespace, pod)
            .map(|_| crate::streaming::PodPorts::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_path_follows_the_kubelet_layout() {
        let p = log_path(
            Path::new("/var/log/pods"),
            "default",
            "web",
            "u-1",
            "app",
            2,
        );
        assert_eq!(p, Path::new("/var/log/pods/default_web_u-1/app/2.log"));
    }

    #[test]
    fn locate_errors_read_as_the_kubelet_writes_them() {
        let waiting = |reason: &str| LocateError::Waiting {
            pod: "p".into(),
            container: "c".into(),
            reason: reason.into(),
        };
        assert_eq!(
            waiting("ContainerCreating").to_string(),
            "container \"c\" in pod \"p\" is waiting to start: ContainerCreating"
        );
        assert_eq!(
            waiting("ImagePullBackOff").to_string(),
            "container \"c\" in pod \"p\" is waiting to start: trying and failing to pull image"
        );
        let status = ApiError::from(&waiting("ErrImagePull")).to_status();
        assert_eq!(status["code"], 400);
        assert_eq!(status["reason"], "BadRequest");
        let missing = LocateError::PodNotFound {
            namespace: "default".into(),
            pod: "p".into(),
        };
        assert_eq!(ApiError::from(&missing).code, 404);
        assert_eq!(missing.to_string(), "pod \"p\" does not exist");
    }
}
