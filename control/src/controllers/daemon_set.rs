//! The DaemonSet controller (`pkg/controller/daemon`): one pod on every eligible node. A node is
//! eligible when the template's nodeSelector and required node affinity match it and its
//! NoSchedule/NoExecute taints are tolerated, counting the tolerations Kubernetes gives every
//! daemon pod ([`DAEMON_TOLERATIONS`]). Each pod targets its node through the node affinity term
//! `matchFields metadata.name In [node]` and the scheduler binds it, as Kubernetes does. Failed
//! pods are replaced (with a back-off per node), pods on nodes that no longer want them are
//! deleted, and so are pods on nodes that are gone, forcibly: Skiff has no pod garbage collector
//! to do it, and no agent is left to finish a graceful deletion.
//!
//! Templates are versioned in ControllerRevisions ([`super::history`]); pods carry the current
//! one's `controller-revision-hash`, and [`update`] replaces old pods under `RollingUpdate`
//! (`OnDelete` waits for the user to delete them). The status holds the counts `kubectl get ds`
//! and `kubectl rollout status` read.

mod daemon;
mod manage;
mod update;

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use tracing::warn;

use self::daemon::{Daemon, by_node, place_on};
use super::expectations::{Expectations, owner_key};
use super::history::{self, REVISION_HASH_LABEL};
use super::informer::Informer;
use super::ownership::{Selector, claim, controller_reference, owners_of};
use super::pods::{self, PodControl};
use super::recorder::Recorder;
use super::status;
use crate::scheduler::cache::NodeInfo;

const COMPONENT: &str = "daemonset-controller";

/// The first failed pod on a node is deleted at once; while more keep failing (the node may
/// reject every one), each waits twice as long as the last, up to the maximum.
const FAILED_POD_BACKOFF: Duration = Duration::from_secs(1);
const MAX_FAILED_POD_BACKOFF: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, thiserror::Error)]
pub enum DaemonSetError {
    #[error("API request: {0}")]
    Api(#[from] kube::Error),
}

struct Context {
    client: Client,
    pods: Store<Pod>,
    nodes: Store<Node>,
    revisions: Store<ControllerRevision>,
    recorder: Recorder,
    expectations: Expectations,
    failed_pods: FailedPodBackoff,
}

/// Per `<daemon set key>/<node>`: when a failed pod was last deleted there, and the wait before
/// the next may be.
#[derive(Default)]
struct FailedPodBackoff(Mutex<HashMap<String, (Instant, Duration)>>);

/// Runs the controller until its watch ends. Every node change wakes every DaemonSet: each
/// decides for itself whether the node concerns it.
pub async fn run(
    client: Client,
    daemon_sets: Informer<DaemonSet>,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    revisions: Informer<ControllerRevision>,
) {
    let controller = daemon_sets.controller();
    let owners = daemon_sets.store();
    let all = daemon_sets.store();
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client,
        pods: pods.store(),
        nodes: nodes.store(),
        revisions: revisions.store(),
        expectations: Expectations::default(),
        failed_pods: FailedPodBackoff::default(),
    });
    let controller = controller
        .reconcile_on(pods.triggers(move |pod: &Pod| owners_of(&pod.metadata, &owners, selector)))
        .reconcile_on(nodes.triggers(move |_: &Node| {
            all.state()
                .iter()
                .map(|ds| ObjectRef::from_obj(ds.as_ref()))
                .collect::<Vec<_>>()
        }));
    let synced = daemon_sets.synced().await
        && pods.synced().await
        && nodes.synced().await
        && revisions.synced().await;
    if !synced {
        return;
    }
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

fn selector(ds: &DaemonSet) -> Selector {
    Selector::new(ds.spec.as_ref().map(|s| &s.selector))
}

fn template(ds: &DaemonSet) -> PodTemplateSpec {
    ds.spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default()
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Context>) -> Result<Action, DaemonSetError> {
    let namespace = ds.namespace().unwrap_or_default();
    let control = PodControl {
        client: &ctx.client,
        recorder: &ctx.recorder,
        expectations: &ctx.expectations,
        key: owner_key(ds.as_ref()),
    };
    if ds.meta().deletion_timestamp.is_some() {
        // The garbage collector deletes the pods.
        ctx.expectations.delete(&control.key);
        return Ok(Action::await_change());
    }
    let selector = selector(&ds);
    if selector.is_empty() {
        ctx.recorder.warning(
            ds.as_ref(),
            "SelectingAll",
            "This daemon set is selecting all pods. A non-empty selector is required.".into(),
        );
        return Ok(Action::await_change());
    }
    let settled = control.settled(&ctx.pods, &namespace);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let candidates = ctx
        .pods
        .state_filter(|p| p.namespace().as_deref() == Some(&namespace));
    let owned = claim(&pods_api, ds.as_ref(), &selector, candidates).await?;
    let history =
        history::claim_revisions(&ctx.client, &ctx.revisions, ds.as_ref(), &selector).await?;
    let collisions = ds.status.as_ref().and_then(|s| s.collision_count);
    let (current, collisions) = history::update_revision(
        &ctx.client,
        ds.as_ref(),
        &template(&ds),
        &history,
        collisions,
    )
    .await?;
    let hash = current
        .labels()
        .get(REVISION_HASH_LABEL)
        .cloned()
        .unwrap_or_default();

    let daemon = Daemon::new(&ds, hash);
    let nodes: Vec<NodeInfo> = ctx
        .nodes
        .state()
        .iter()
        .map(|n| NodeInfo::from_node(n))
        .collect();
    let by_node = by_node(&owned);
    let now = Timestamp::now();
    let mut wake = None;
    let mut failure = None;
    if settled {
        let mut plan = daemon.manage(&nodes, &by_node);
        let (admitted, wait) = ctx.failed_pods.admit(&control.key, &plan.failed);
        wake = wait;
        for (pod, node) in &admitted {
            ctx.recorder.warning(
                ds.as_ref(),
                "FailedDaemonPod",
                format!(
                    "Found failed daemon pod {namespace}/{} on node {node}, will try to kill it",
                    pod.name_any()
                ),
            );
        }
        plan.delete.extend(admitted.into_iter().map(|(pod, _)| pod));
        failure = sync_nodes(&control, &ds, &daemon, &plan.create, &plan.delete).await;
        if failure.is_none() && !plan.gone.is_empty() {
            let force = DeleteParams::default().grace_period(0);
            failure = control.delete_with(ds.as_ref(), &plan.gone, &force).await;
        }
        // What the core loop just created or deleted must show before an update counts pods.
        if failure.is_none() && daemon.rolling.is_some() && control.settled(&ctx.pods, &namespace) {
            let plan = daemon.rolling_update(&nodes, by_node.clone(), now);
            failure = sync_nodes(&control, &ds, &daemon, &plan.create, &plan.delete).await;
        }
        prune_history(&ctx.client, &ds, &history, &current, &owned).await?;
    }

    let status = daemon.status(&ds, &nodes, &by_node, settled, collisions, now);
    if Some(&status) != ds.status.as_ref() {
        status::write(&ctx.client, ds.as_ref(), &status).await?;
    }
    if let Some(e) = failure {
        return Err(e.into());
    }
    // A ready pod becomes available after minReadySeconds without any event to say so.
    let available_in = owned
        .iter()
        .filter_map(|p| pods::until_available(p, daemon.min_ready, now))
        .min();
    Ok(match wake.into_iter().chain(available_in).min() {
        Some(after) => Action::requeue(after + Duration::from_millis(10)),
        None => Action::await_change(),
    })
}

impl FailedPodBackoff {
    /// The failed pods (with their nodes) of the daemon set `key` whose node is out of
    /// back-off, which starts a new one; and how long until the first back-off still waited
    /// on ends.
    fn admit(
        &self,
        key: &str,
        failed: &[(Arc<Pod>, String)],
    ) -> (Vec<(Arc<Pod>, String)>, Option<Duration>) {
        let mut backoff = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        // Entries idle for twice the longest back-off are forgotten, as client-go's are.
        backoff.retain(|_, (last, _)| now.duration_since(*last) < 2 * MAX_FAILED_POD_BACKOFF);
        let mut admitted = Vec::new();
        let mut wait: Option<Duration> = None;
        for (pod, node) in failed {
            match backoff.entry(format!("{key}/{node}")) {
                Entry::Occupied(mut e) => {
                    let (last, delay) = *e.get();
                    let elapsed = now.duration_since(last);
                    if elapsed < delay {
                        let left = delay - elapsed;
                        wait = Some(wait.map_or(left, |w| w.min(left)));
                        continue;
                    }
                    e.insert((now, (delay * 2).min(MAX_FAILED_POD_BACKOFF)));
                }
                Entry::Vacant(e) => {
                    e.insert((now, FAILED_POD_BACKOFF));
                }
            }
            admitted.push((pod.clone(), node.clone()));
        }
        (admitted, wait)
    }
}

/// Deletes the oldest revisions beyond `revisionHistoryLimit` that no pod runs.
async fn prune_history(
    client: &Client,
    ds: &DaemonSet,
    history: &[Arc<ControllerRevision>],
    current: &ControllerRevision,
    owned: &[Arc<Pod>],
) -> Result<(), kube::Error> {
    let live: HashSet<&str> = owned
        .iter()
        .filter_map(|p| p.labels().get(REVISION_HASH_LABEL).map(String::as_str))
        .collect();
    let limit = ds
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10);
    let surplus = history::surplus(history, limit, |r| {
        r.name_any() == current.name_any()
            || r.labels()
                .get(REVISION_HASH_LABEL)
                .is_some_and(|h| live.contains(h.as_str()))
    });
    history::delete_revisions(client, &surplus).await
}

/// Deletes `delete` and creates a daemon pod on each of `nodes`; the first API error.
async fn sync_nodes(
    control: &PodControl<'_>,
    ds: &DaemonSet,
    daemon: &Daemon,
    nodes: &[String],
    delete: &[Arc<Pod>],
) -> Option<kube::Error> {
    let deleted = if delete.is_empty() {
        None
    } else {
        control.delete(ds, delete).await
    };
    if nodes.is_empty() {
        return deleted;
    }
    let template = daemon.pod_template(ds);
    let reference = controller_reference(ds);
    let prefix = format!("{}-", ds.name_any());
    let (_, created) = control
        .create(ds, nodes.len(), |i| {
            let mut pod = pods::from_template(&template, reference.clone(), prefix.clone());
            if let Some(spec) = pod.spec.as_mut() {
                place_on(spec, &nodes[i]);
            }
            pod
        })
        .await;
    deleted.or(created)
}

fn error_policy(ds: Arc<DaemonSet>, err: &DaemonSetError, _ctx: Arc<Context>) -> Action {
    warn!(daemonset = %ds.name_any(), error = %err, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(1))
}

#[cfg(test)]
mod tests;
