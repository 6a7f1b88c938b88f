//! Pod workers: every pod bound to this node is reconciled, level-triggered, on
//! `kube_runtime::Controller` — on each change of the pod and each exit of one of its containers
//! (fed back through `reconcile_on`). A reconcile compares the spec with [`state::PodState`], starts
//! or restarts what should run ([`sync`]), stops what is being deleted ([`terminate`]), and posts
//! the status computed from the state ([`status`]) when it changed.

pub mod cgroup;
mod events;
mod grpc_probe;
mod hooks;
mod locate;
mod probes;
pub mod sandbox;
mod security;
pub mod state;
pub mod status;
mod sync;
mod terminate;
mod termination;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use skiff_sandbox::PodSandbox;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::images::ImageService;
use crate::objects::KubeObjects;
pub use events::EventRecorder;
pub use locate::Locator;
use state::PodState;

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("updating the status of pod {pod}: {source}")]
    Status {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting pod {pod}: {source}")]
    Delete {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("pod directory {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What every pod worker shares.
pub struct Context {
    pub client: kube::Client,
    pub node_name: String,
    pub host_ip: String,
    pub allocatable_cpu_millis: u64,
    pub allocatable_memory_bytes: u64,
    /// `DATA_DIR/pods`: one directory per pod UID (volumes live there).
    pub pods_dir: PathBuf,
    /// `DATA_DIR/logs`: the kubelet's `/var/log/pods` layout.
    pub logs_dir: PathBuf,
    pub runtimes: Vec<Arc<dyn PodSandbox>>,
    pub images: ImageService,
    pub objects: KubeObjects,
    pub events: EventRecorder,
    /// RuntimeClasses, kept current by a watch: resolving a pod's handler costs no request.
    pub runtime_classes: reflector::Store<k8s_openapi::api::node::v1::RuntimeClass>,
    pub cgroups: cgroup::PodCgroups,
    /// Where `Localhost` seccomp profiles are (the kubelet's `<root>/seccomp`).
    pub seccomp_dir: PathBuf,
    network: RwLock<sandbox::NetworkReadiness>,
    pods: Mutex<HashMap<String, Arc<tokio::sync::Mutex<PodState>>>>,
    log_index: locate::LogIndex,
    exits: mpsc::UnboundedSender<ObjectRef<Pod>>,
}

impl Context {
    fn state_of(&self, pod: &Pod) -> Arc<tokio::sync::Mutex<PodState>> {
        let uid = pod.uid().unwrap_or_default();
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(uid.clone())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(PodState::new(uid))))
            .clone()
    }

    /// The state of a pod this node runs, by UID.
    fn state_by_uid(&self, uid: &str) -> Option<Arc<tokio::sync::Mutex<PodState>>> {
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(uid)
            .cloned()
    }

    fn forget(&self, uid: &str) -> Option<Arc<tokio::sync::Mutex<PodState>>> {
        self.log_index.remove(uid);
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uid)
    }

    pub fn runtime(&self, handler: &str) -> Option<Arc<dyn PodSandbox>> {
        self.runtimes
            .iter()
            .find(|r| r.handler() == handler)
            .cloned()
    }

    /// Whether pods can get a network yet.
    pub fn network(&self) -> sandbox::NetworkReadiness {
        self.network
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Set once the node's podCIDR is known and its CNI configuration is written (or failed).
    pub fn set_network(&self, readiness: sandbox::NetworkReadiness) {
        *self.network.write().unwrap_or_else(|p| p.into_inner()) = readiness;
    }

    /// How many pods this node is running (for the bench and the log).
    pub fn pod_count(&self) -> usize {
        self.pods.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Builds the context; [`run`] then drives it.
#[allow(clippy::too_many_arguments)]
pub fn context(
    client: kube::Client,
    node_name: String,
    host_ip: String,
    allocatable: (u64, u64),
    data_dir: &std::path::Path,
    runtimes: Vec<Arc<dyn PodSandbox>>,
    images: ImageService,
    cgroups: cgroup::PodCgroups,
) -> (Arc<Context>, mpsc::UnboundedReceiver<ObjectRef<Pod>>) {
    let (exits, exit_rx) = mpsc::unbounded_channel();
    let (runtime_classes, writer) = reflector::store();
    let classes: Api<k8s_openapi::api::node::v1::RuntimeClass> = Api::all(client.clone());
    tokio::spawn(
        watcher(classes, watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .for_each(|_| async {}),
    );
    let ctx = Arc::new(Context {
        runtime_classes,
        objects: KubeObjects::new(client.clone()),
        events: EventRecorder::new(client.clone(), node_name.clone()),
        client,
        node_name,
        host_ip,
        allocatable_cpu_millis: allocatable.0,
        allocatable_memory_bytes: allocatable.1,
        pods_dir: data_dir.join("pods"),
        seccomp_dir: data_dir.join("seccomp"),
        cgroups,
        network: RwLock::new(sandbox::NetworkReadiness::Waiting),
        logs_dir: data_dir.join("logs"),
        runtimes,
        images,
        pods: Mutex::new(HashMap::new()),
        log_index: locate::LogIndex::default(),
        exits,
    });
    (ctx, exit_rx)
}

/// Runs the pod workers of this node until `shutdown`.
pub async fn run(
    ctx: Arc<Context>,
    exits: mpsc::UnboundedReceiver<ObjectRef<Pod>>,
    shutdown: CancellationToken,
) {
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.node_name));
    let (reader, writer) = reflector::store();
    let (listed, first_list) = tokio::sync::oneshot::channel();
    let mut events = PodEvents {
        ctx: ctx.clone(),
        store: reader.clone(),
        before: Vec::new(),
        listed: Vec::new(),
        first_list: Some(listed),
    };
    let stream = watcher(pods, config)
        .default_backoff()
        .reflect(writer)
        .map_ok(move |event| futures::stream::iter(events.follow(event).into_iter().map(Ok)))
        .try_flatten();
    let exits = tokio_stream::wrappers::UnboundedReceiverStream::new(exits);
    tokio::spawn(remove_orphans(ctx.clone(), reader.clone(), first_list));
    Controller::for_stream(stream, reader)
        .reconcile_on(exits)
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!(error = %e, "pod reconcile");
            }
        })
        .await;
}

use kube::runtime::watcher::watcher;

/// The pod watch, after the store has taken each event: which pods to reconcile, and which are
/// gone. A re-list's pods are reconciled once the store holds them all (`kube_runtime` would
/// look each up as it arrived, finding a stale pod or, for a new one, none). A pod deleted, or
/// missing from a re-list, has its sandbox torn down here: a force-deleted pod leaves no deletion
/// for the controller to reconcile.
struct PodEvents {
    ctx: Arc<Context>,
    store: reflector::Store<Pod>,
    /// What the store held when the list in progress began.
    before: Vec<Arc<Pod>>,
    /// The pods of the list in progress.
    listed: Vec<Pod>,
    /// Told when the first list is in (not `Store::wait_until_ready`: the controller's runner
    /// waits on that, and it wakes only one of its waiters).
    first_list: Option<tokio::sync::oneshot::Sender<()>>,
}

impl PodEvents {
    fn follow(&mut self, event: Event<Pod>) -> Vec<Pod> {
        match event {
            Event::Apply(pod) => vec![pod],
            Event::Delete(pod) => {
                self.forget(&pod);
                Vec::new()
            }
            Event::Init => {
                self.before = self.store.state();
                self.listed.clear();
                Vec::new()
            }
            Event::InitApply(pod) => {
                self.listed.push(pod);
                Vec::new()
            }
            Event::InitDone => {
                let listed: std::collections::HashSet<String> =
                    self.listed.iter().filter_map(|p| p.uid()).collect();
                for gone in std::mem::take(&mut self.before) {
                    if gone.uid().is_some_and(|uid| !listed.contains(&uid)) {
                        self.forget(&gone);
                    }
                }
                if let Some(first_list) = self.first_list.take() {
                    let _ = first_list.send(());
                }
                std::mem::take(&mut self.listed)
            }
        }
    }

    fn forget(&self, pod: &Pod) {
        if let Some(uid) = pod.uid() {
            let ctx = self.ctx.clone();
            tokio::spawn(async move { terminate::forget(&ctx, &uid).await });
        }
    }
}

/// Once the first list of this node's pods is in, removes what an earlier agent left for pods
/// that no longer exist (deleted while no agent ran).
async fn remove_orphans(
    ctx: Arc<Context>,
    pods: reflector::Store<Pod>,
    first_list: tokio::sync::oneshot::Receiver<()>,
) {
    if first_list.await.is_err() {
        return;
    }
    // Finished pods and pods being deleted are not synced again, so they never adopt.
    let uids: std::collections::HashSet<String> = pods
        .state()
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .filter_map(|p| p.uid())
        .collect();
    let keep = |uid: &str| uids.contains(uid);
    for runtime in &ctx.runtimes {
        runtime.remove_orphans(&keep).await;
    }
}

async fn reconcile(pod: Arc<Pod>, ctx: Arc<Context>) -> Result<Action, PodError> {
    if pod.metadata.deletion_timestamp.is_some() {
        terminate::delete(&pod, &ctx).await?;
        return Ok(Action::await_change());
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        // Finished pods never run again, not even after this agent restarts.
        return Ok(Action::await_change());
    }
    let state = ctx.state_of(&pod);
    let mut state = state.lock().await;
    let next = sync::sync(&pod, &mut state, &ctx).await;
    ctx.log_index.publish(
        &pod.namespace().unwrap_or_default(),
        &pod.name_any(),
        &state,
    );
    let next = next?;
    let status = status::compute(&pod, &state, &ctx.host_ip);
    let terminal = matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"));
    if pod.status.as_ref() != Some(&status) {
        let api: Api<Pod> =
            Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
        let patch = serde_json::json!({"status": status});
        api.patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|source| PodError::Status {
            pod: pod.name_any(),
            source,
        })?;
    }
    if terminal {
        // A finished pod keeps its logs and status but releases its sandboxes.
        terminate::release(&mut state, &ctx).await;
        return Ok(Action::await_change());
    }
    Ok(next.map_or_else(Action::await_change, Action::requeue))
}

fn error_policy(pod: Arc<Pod>, error: &PodError, _ctx: Arc<Context>) -> Action {
    warn!(pod = %pod.name_any(), error = %error, "pod sync failed; retrying");
    Action::requeue(Duration::from_secs(1))
}
