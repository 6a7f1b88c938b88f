//! The StatefulSet controller (`pkg/controller/statefulset`): pods with stable names
//! `<set>-<ordinal>`, hostnames under the governing Service and claims of their own
//! ([`identity`]), created, scaled and updated in the order [`plan`] decides (`OrderedReady` or
//! `Parallel`, `RollingUpdate` with a partition or `OnDelete`). Templates are versioned in
//! ControllerRevisions ([`super::history`]); a pod's `controller-revision-hash` label names its
//! revision, and the status reports `currentRevision` (what the pods below the partition run)
//! and `updateRevision` (the set's template). Claims outlive their pods, and scale-down, unless
//! `persistentVolumeClaimRetentionPolicy` says `Delete`: then the set (`whenDeleted`) or the
//! scaled-away pod (`whenScaled`) owns them and the garbage collector deletes them.
//!
//! Events use the StatefulSet controller's words: "create Pod web-0 in StatefulSet web
//! successful", "create Claim data-web-0 Pod web-0 in StatefulSet web success".

mod identity;
mod pass;
mod plan;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use tracing::warn;

use self::identity::{has_claims, ordinal_of, retention, revision_of};
use self::pass::Pass;
use self::plan::{Members, Policy, is_running_and_available, is_running_and_ready};
use super::expectations::{Expectations, owner_key};
use super::history;
use super::informer::Informer;
use super::ownership::{Selector, claim, owners_of};
use super::pods::PodControl;
use super::recorder::Recorder;
use super::status;

const COMPONENT: &str = "statefulset-controller";

#[derive(Debug, thiserror::Error)]
pub enum StatefulSetError {
    #[error("API request: {0}")]
    Api(#[from] kube::Error),
}

struct Context {
    client: Client,
    pods: Store<Pod>,
    revisions: Store<ControllerRevision>,
    recorder: Recorder,
    /// Pods this controller created or deleted that the cache does not show yet: until it does,
    /// a pass would see a pod missing that exists, or healthy that is going.
    expectations: Expectations,
}

/// Runs the controller until its watch ends.
pub async fn run(
    client: Client,
    stateful_sets: Informer<StatefulSet>,
    pods: Informer<Pod>,
    revisions: Informer<ControllerRevision>,
) {
    let controller = stateful_sets.controller();
    let owners = stateful_sets.store();
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client,
        pods: pods.store(),
        revisions: revisions.store(),
        expectations: Expectations::default(),
    });
    let controller = controller
        .reconcile_on(pods.triggers(move |pod: &Pod| owners_of(&pod.metadata, &owners, selector)));
    if !(stateful_sets.synced().await && pods.synced().await && revisions.synced().await) {
        return;
    }
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

fn selector(set: &StatefulSet) -> Selector {
    Selector::new(set.spec.as_ref().map(|s| &s.selector))
}

fn template(set: &StatefulSet) -> PodTemplateSpec {
    set.spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default()
}

fn policy(set: &StatefulSet) -> Policy {
    let spec = set.spec.as_ref();
    let strategy = spec.and_then(|s| s.update_strategy.as_ref());
    let partition = match strategy.and_then(|s| s.type_.as_deref()) {
        Some("OnDelete") => None,
        _ => Some(
            strategy
                .and_then(|s| s.rolling_update.as_ref())
                .and_then(|r| r.partition)
                .unwrap_or(0),
        ),
    };
    Policy {
        monotonic: spec.and_then(|s| s.pod_management_policy.as_deref()) != Some("Parallel"),
        partition,
        min_ready: Duration::from_secs(
            spec.and_then(|s| s.min_ready_seconds).unwrap_or(0).max(0) as u64
        ),
        claims: has_claims(set),
        delete_claims_when_scaled: retention(set).1 == "Delete",
    }
}

/// The set's pods by ordinal: those in `start..start + replicas`, and the rest, highest first.
fn members(set: &StatefulSet, owned: &[Arc<Pod>]) -> Members {
    let spec = set.spec.as_ref();
    let start = spec
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0);
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1).max(0);
    let mut members = Members {
        start,
        replicas: vec![None; replicas as usize],
        condemned: Vec::new(),
    };
    for pod in owned {
        let Some(ordinal) = ordinal_of(set, pod) else {
            continue;
        };
        match ordinal.checked_sub(start) {
            Some(i) if (0..replicas).contains(&i) => {
                members.replicas[i as usize] = Some(pod.clone())
            }
            _ => members.condemned.push(pod.clone()),
        }
    }
    members
        .condemned
        .sort_by_key(|p| std::cmp::Reverse(ordinal_of(set, p)));
    members
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Context>) -> Result<Action, StatefulSetError> {
    let namespace = set.namespace().unwrap_or_default();
    let key = owner_key(set.as_ref());
    let selector = selector(&set);
    if selector.is_empty() {
        // Validation refuses it; Kubernetes acts on no such set.
        return Ok(Action::await_change());
    }
    let settled = PodControl {
        client: &ctx.client,
        recorder: &ctx.recorder,
        expectations: &ctx.expectations,
        key: key.clone(),
    }
    .settled(&ctx.pods, &namespace);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    // Only pods named after the set are its members (`isMemberOf`).
    let candidates = ctx.pods.state_filter(|p| {
        p.namespace().as_deref() == Some(&namespace) && ordinal_of(&set, p).is_some()
    });
    let owned = claim(&pods_api, set.as_ref(), &selector, candidates).await?;
    let history =
        history::claim_revisions(&ctx.client, &ctx.revisions, set.as_ref(), &selector).await?;
    let status = set.status.clone().unwrap_or_default();
    let (update, collisions) = history::update_revision(
        &ctx.client,
        set.as_ref(),
        &template(&set),
        &history,
        status.collision_count,
    )
    .await?;
    // The revision the pods below the partition stay at; a new set starts at its template.
    let current = history
        .iter()
        .find(|r| Some(r.name_any()) == status.current_revision)
        .map(|r| (**r).clone())
        .unwrap_or_else(|| update.clone());

    let now = Timestamp::now();
    let policy = policy(&set);
    let members = members(&set, &owned);
    let mut wake = None;
    let mut failure = None;
    if settled && set.meta().deletion_timestamp.is_none() {
        let plan = members.plan(
            &policy,
            |p| ordinal_of(&set, p),
            &update.name_any(),
            revision_of,
            now,
        );
        wake = plan.wake;
        let pass = Pass {
            ctx: &ctx,
            set: &set,
            key: &key,
            current: &current,
            update: &update,
        };
        for step in plan.steps {
            if let Err(e) = pass.take(step).await {
                failure = Some(e);
                break;
            }
        }
    }
    let live = |r: &ControllerRevision| {
        let name = r.name_any();
        name == current.name_any()
            || name == update.name_any()
            || owned.iter().any(|p| revision_of(p) == Some(name.as_str()))
    };
    let limit = set
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10);
    history::delete_revisions(&ctx.client, &history::surplus(&history, limit, live)).await?;

    let new_status = calculate_status(&set, &owned, &current, &update, collisions, now);
    if Some(&new_status) != set.status.as_ref() {
        status::write(&ctx.client, set.as_ref(), &new_status).await?;
    }
    if let Some(e) = failure {
        return Err(e.into());
    }
    Ok(match wake {
        Some(after) => Action::requeue(after + Duration::from_millis(10)),
        None => Action::await_change(),
    })
}

/// The status (`computeReplicaStatus`, then `completeRollingUpdate`): counts of the pods that
/// exist, and once every pod is updated and ready under `RollingUpdate`, the update revision
/// becomes the current one.
fn calculate_status(
    set: &StatefulSet,
    owned: &[Arc<Pod>],
    current: &ControllerRevision,
    update: &ControllerRevision,
    collision_count: Option<i32>,
    now: Timestamp,
) -> StatefulSetStatus {
    let min_ready = policy(set).min_ready;
    let members: Vec<&Arc<Pod>> = owned
        .iter()
        .filter(|p| ordinal_of(set, p).is_some())
        .collect();
    let count = |f: &dyn Fn(&Pod) -> bool| members.iter().filter(|p| f(p)).count() as i32;
    let at = |revision: &ControllerRevision| {
        let name = revision.name_any();
        count(&|p| p.metadata.deletion_timestamp.is_none() && revision_of(p) == Some(&name))
    };
    let mut status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        replicas: members.len() as i32,
        ready_replicas: Some(count(&is_running_and_ready)),
        available_replicas: Some(count(&|p| is_running_and_available(p, min_ready, now))),
        current_replicas: Some(at(current)),
        updated_replicas: Some(at(update)),
        current_revision: Some(current.name_any()),
        update_revision: Some(update.name_any()),
        collision_count,
        conditions: set.status.as_ref().and_then(|s| s.conditions.clone()),
    };
    if policy(set).partition.is_some()
        && status.updated_replicas == Some(status.replicas)
        && status.ready_replicas == Some(status.replicas)
    {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }
    status
}

fn error_policy(set: Arc<StatefulSet>, err: &StatefulSetError, _ctx: Arc<Context>) -> Action {
    warn!(statefulset = %set.name_any(), error = %err, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(1))
}

#[cfg(test)]
mod tests;
