//! The log server's view of the pods this node runs: where each container's log files are and
//! whether its run has ended. Published by the pod workers after every reconcile, read without
//! waiting for a worker that is busy (pulling an image, say).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use skiff_sandbox::SandboxId;
use tokio::sync::watch;

use super::Context;
use super::sandbox::PodNetworkInfo;
use super::state::PodState;
use crate::logs::{ContainerLocator, ContainerLogs, LocateError, log_path};
use crate::streaming::{ContainerTarget, PodPorts};

#[derive(Debug, Clone)]
struct ContainerEntry {
    restart_count: u32,
    exited: Option<watch::Receiver<bool>>,
    handler: Option<&'static str>,
    waiting: Option<&'static str>,
}

#[derive(Debug, Clone)]
struct PodEntry {
    uid: String,
    containers: HashMap<String, ContainerEntry>,
    /// The pod's sandbox in each runtime it uses, by handler (exec and attach go there).
    sandboxes: HashMap<&'static str, SandboxId>,
    /// Where its ports are (port forwarding).
    network: Option<PodNetworkInfo>,
}

/// `(namespace, name)` → what the log server needs of the pod.
#[derive(Debug, Default)]
pub(super) struct LogIndex(Mutex<HashMap<(String, String), PodEntry>>);

impl LogIndex {
    pub(super) fn publish(&self, namespace: &str, name: &str, state: &PodState) {
        let containers = state
            .containers
            .iter()
            .map(|(n, c)| {
                let entry = ContainerEntry {
                    restart_count: c.restart_count,
                    exited: c.run.as_ref().map(|r| r.exited.clone()),
                    handler: c.handler,
                    waiting: c.waiting.as_ref().map(|w| w.reason),
                };
                (n.clone(), entry)
            })
            .collect();
        let entry = PodEntry {
            uid: state.uid.clone(),
            containers,
            sandboxes: state
                .sandboxes
                .iter()
                .map(|(handler, (_, id))| (*handler, id.clone()))
                .collect(),
            network: state.network.clone(),
        };
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((namespace.to_string(), name.to_string()), entry);
    }

    pub(super) fn remove(&self, uid: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, e| e.uid != uid);
    }

    fn get(&self, namespace: &str, pod: &str) -> Result<PodEntry, LocateError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(namespace.to_string(), pod.to_string()))
            .cloned()
            .ok_or_else(|| LocateError::PodNotFound {
                namespace: namespace.to_string(),
                pod: pod.to_string(),
            })
    }
}

/// The pod workers as the log server's [`ContainerLocator`].
pub struct Locator(pub Arc<Context>);

impl ContainerLocator for Locator {
    fn locate(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<ContainerLogs, LocateError> {
        let entry = self.0.log_index.get(namespace, pod)?;
        let Some(c) = entry.containers.get(container) else {
            return Err(LocateError::ContainerNotFound {
                pod: pod.to_string(),
                container: container.to_string(),
            });
        };
        let Some(exited) = c.exited.clone() else {
            return Err(LocateError::Waiting {
                pod: pod.to_string(),
                container: container.to_string(),
                reason: c.waiting.unwrap_or("ContainerCreating").to_string(),
            });
        };
        let path = |restart| {
            log_path(
                &self.0.logs_dir,
                namespace,
                pod,
                &entry.uid,
                container,
                restart,
            )
        };
        Ok(ContainerLogs {
            current: path(c.restart_count),
            previous: c
                .restart_count
                .checked_sub(1)
                .map(path)
                .filter(|p| p.exists()),
            exited,
            runtime_handler: c.handler.unwrap_or_default().to_string(),
        })
    }

    fn pod_runtime_handlers(&self, namespace: &str, pod: &str) -> Result<Vec<String>, LocateError> {
        let entry = self.0.log_index.get(namespace, pod)?;
        let mut handlers: Vec<String> = entry
            .containers
            .values()
            .filter_map(|c| c.handler.map(str::to_string))
            .collect();
        handlers.sort();
        handlers.dedup();
        Ok(handlers)
    }

    fn container_target(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<ContainerTarget, LocateError> {
        let entry = self.0.log_index.get(namespace, pod)?;
        let Some(c) = entry.containers.get(container) else {
            return Err(LocateError::ContainerNotFound {
                pod: pod.to_string(),
                container: container.to_string(),
            });
        };
        let runtime = c.handler.and_then(|handler| {
            Some((
                self.0.runtime(handler)?,
                entry.sandboxes.get(handler)?.clone(),
            ))
        });
        match (runtime, &c.exited) {
            (Some((runtime, sandbox)), Some(_)) => Ok(ContainerTarget {
                handler: runtime.handler().to_string(),
                runtime: Some((runtime, sandbox)),
            }),
            _ => Err(LocateError::Waiting {
                pod: pod.to_string(),
                container: container.to_string(),
                reason: c.waiting.unwrap_or("ContainerCreating").to_string(),
            }),
        }
    }

    fn pod_ports(&self, namespace: &str, pod: &str) -> Result<PodPorts, LocateError> {
        let entry = self.0.log_index.get(namespace, pod)?;
        Ok(match entry.network {
            Some(PodNetworkInfo {
                netns: Some(path), ..
            }) => PodPorts::Namespace(path),
            Some(PodNetworkInfo { netns: None, .. }) => PodPorts::Host,
            None => PodPorts::None,
        })
    }
}
