//! The Deployment controller: rolls a Deployment's pod template out through ReplicaSets, as
//! Kubernetes' `pkg/controller/deployment` does, so that `kubectl rollout` status, history, undo,
//! pause and restart read and drive it unchanged.
//!
//! - The ReplicaSet whose template equals the Deployment's (ignoring `pod-template-hash`) is the
//!   new one; it is created on demand as `<deployment>-<hash>` with the
//!   `deployment.kubernetes.io/revision` one above every old one's (a rollback moves an old
//!   ReplicaSet to the top and records its former revision in `revision-history`).
//! - RollingUpdate scales the new set up within `replicas + maxSurge` and old ones down while
//!   `replicas - maxUnavailable` pods stay available; Recreate scales old sets to zero and waits
//!   for their pods to be gone first.
//! - A change of `replicas` during a rollout is spread over the sets in proportion to their size.
//! - `Progressing` and `Available` conditions, `ProgressDeadlineExceeded` after
//!   `progressDeadlineSeconds` without progress, old sets pruned to `revisionHistoryLimit`.
//!
//! ReplicaSets are scaled by updates carrying the cached `resourceVersion`: a decision made from
//! a stale cache fails with a conflict and is made again, never applied.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing::warn;

use super::hash::template_hash;
use super::informer::Informer;
use super::ownership::{Selector, claim, controller_of, controller_reference, owners_of};
use super::pods::{self, reason};
use super::recorder::Recorder;
use super::status;

pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Deployment annotations that are the controller's own, not copied to its ReplicaSets.
const NOT_COPIED: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];
/// `progressDeadlineSeconds` of MaxInt32 means no deadline.
const NO_DEADLINE: i32 = i32::MAX;

#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    #[error("API request: {0}")]
    Api(#[from] kube::Error),
    #[error("replica set {0} exists with another template; collision count raised")]
    HashCollision(String),
}

struct Context {
    client: Client,
    replica_sets: Store<ReplicaSet>,
    pods: Store<Pod>,
    recorder: Recorder,
}

/// Runs the controller until its watch ends.
pub async fn run(
    client: Client,
    deployments: Informer<Deployment>,
    replica_sets: Informer<ReplicaSet>,
    pods: Informer<Pod>,
) {
    let controller = deployments.controller();
    let owners = deployments.store();
    let by_pod = owners.clone();
    let rs_store = replica_sets.store();
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), "deployment-controller"),
        client,
        replica_sets: replica_sets.store(),
        pods: pods.store(),
    });
    let controller = controller
        .reconcile_on(
            replica_sets
                .triggers(move |rs: &ReplicaSet| owners_of(&rs.metadata, &owners, selector)),
        )
        // Only Recreate waits on pods (for the old ones to be gone); the ReplicaSet's status
        // reports the rest.
        .reconcile_on(pods.triggers(move |pod: &Pod| {
            let Some(r) = controller_of(&pod.metadata).filter(|r| r.kind == "ReplicaSet") else {
                return Vec::new();
            };
            let namespace = pod.namespace().unwrap_or_default();
            let Some(rs) = rs_store.get(&ObjectRef::new(&r.name).within(&namespace)) else {
                return Vec::new();
            };
            owners_of(&rs.metadata, &by_pod, selector)
                .into_iter()
                .filter(|d| by_pod.get(d).is_some_and(|d| is_recreate(&d)))
                .collect()
        }));
    if !(deployments.synced().await && replica_sets.synced().await && pods.synced().await) {
        return;
    }
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

fn selector(d: &Deployment) -> Selector {
    Selector::new(d.spec.as_ref().map(|s| &s.selector))
}

fn is_recreate(d: &Deployment) -> bool {
    strategy_type(d) == "Recreate"
}

fn strategy_type(d: &Deployment) -> &str {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action, DeploymentError> {
    let namespace = d.namespace().unwrap_or_default();
    let selector = selector(&d);
    let mut rollout = Rollout {
        ctx: &ctx,
        rs_api: Api::namespaced(ctx.client.clone(), &namespace),
        d: (*d).clone(),
        status_before: d.status.clone().unwrap_or_default(),
        now: Timestamp::now(),
    };
    if selector.is_empty() {
        ctx.recorder.warning(
            &rollout.d,
            "SelectingAll",
            "This deployment is selecting all pods. A non-empty selector is required.".into(),
        );
        let mut status = rollout.status_before.clone();
        status.observed_generation = d.metadata.generation;
        rollout.write_status(status).await?;
        return Ok(Action::await_change());
    }
    let candidates = ctx
        .replica_sets
        .state_filter(|rs| rs.namespace().as_deref() == Some(&namespace));
    let replica_sets: Vec<ReplicaSet> = claim(&rollout.rs_api, d.as_ref(), &selector, candidates)
        .await?
        .into_iter()
        .map(|rs| (*rs).clone())
        .collect();
    if d.metadata.deletion_timestamp.is_some() {
        let (new, old) = rollout.split(replica_sets);
        rollout.sync_status(new.as_ref(), &old).await?;
        return Ok(Action::await_change());
    }
    rollout.check_paused_condition();
    if rollout.paused() || rollout.is_scaling_event(&replica_sets) {
        rollout.sync(replica_sets).await?;
        return Ok(Action::await_change());
    }
    let wake = if is_recreate(&d) {
        rollout.recreate(replica_sets).await?
    } else {
        rollout.rolling_update(replica_sets).await?
    };
    Ok(wake.map_or_else(Action::await_change, Action::requeue))
}

fn error_policy(d: Arc<Deployment>, err: &DeploymentError, _ctx: Arc<Context>) -> Action {
    match err {
        // A stale cache: the watch brings the fresh state at once.
        DeploymentError::Api(kube::Error::Api(e)) if e.code == 409 => {
            Action::requeue(Duration::from_millis(50))
        }
        DeploymentError::HashCollision(_) => Action::requeue(Duration::from_millis(50)),
        _ => {
            warn!(deployment = %d.name_any(), error = %err, "reconcile failed; retrying");
            Action::requeue(Duration::from_secs(1))
        }
    }
}

/// `intstr.GetScaledValueFromIntOrPercent`: a count, or a percentage of `total` rounded up or
/// down. Validation refuses anything else, which counts as zero.
pub fn scaled_value(value: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match value {
        None => 0,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let Some(percent) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return 0;
            };
            let scaled = percent * i64::from(total);
            let value = if round_up {
                (scaled + 99).div_euclid(100)
            } else {
                scaled.div_euclid(100)
            };
            value as i32
        }
    }
}

fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `(maxSurge, maxUnavailable)` resolved against `replicas` (`ResolveFenceposts`): surge
/// rounds up, unavailability down, and both zero becomes one unavailable so a rollout can move.
fn fenceposts(d: &Deployment) -> (i32, i32) {
    if is_recreate(d) {
        return (0, 0);
    }
    let rolling = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let default = IntOrString::String("25%".into());
    let surge = rolling.map_or(Some(&default), |r| r.max_surge.as_ref());
    let unavailable = rolling.map_or(Some(&default), |r| r.max_unavailable.as_ref());
    let desired = replicas(d);
    let surge = scaled_value(surge, desired, true);
    let unavailable = scaled_value(unavailable, desired, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

fn max_surge(d: &Deployment) -> i32 {
    fenceposts(d).0
}

/// At most `replicas` (`deploymentutil.MaxUnavailable`).
fn max_unavailable(d: &Deployment) -> i32 {
    if is_recreate(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas(d))
}

/// `getProportion`: a set's share of `to_add` (of which `added` is handed out), from its size
/// against the Deployment's size when the set was last scaled (its max-replicas annotation, or
/// else `status_replicas`).
fn proportion(
    d: &Deployment,
    status_replicas: i32,
    rs: &ReplicaSet,
    to_add: i32,
    added: i32,
) -> i32 {
    let size = spec_replicas(rs);
    if size == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let desired = replicas(d);
    let fraction = if desired == 0 {
        -size
    } else {
        let total = desired + max_surge(d);
        let annotated = annotation(&rs.metadata, MAX_REPLICAS)
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or(status_replicas);
        if annotated == 0 {
            0
        } else {
            (f64::from(size) * f64::from(total) / f64::from(annotated)).round() as i32 - size
        }
    };
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// The new set's size under RollingUpdate (`NewRSNewReplicas`): up within
/// `replicas + maxSurge` counting every set, never past `replicas`.
fn new_replica_set_size(d: &Deployment, new: &ReplicaSet, old: &[ReplicaSet]) -> i32 {
    let desired = replicas(d);
    let current = spec_replicas(new);
    if current >= desired {
        return desired;
    }
    let max_total = desired + max_surge(d);
    let total: i32 = current + old.iter().map(spec_replicas).sum::<i32>();
    if total >= max_total {
        return current;
    }
    current + (max_total - total).min(desired - current)
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn status_of(rs: &ReplicaSet) -> (i32, i32, i32) {
    rs.status.as_ref().map_or((0, 0, 0), |s| {
        (
            s.replicas,
            s.ready_replicas.unwrap_or(0),
            s.available_replicas.unwrap_or(0),
        )
    })
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn revision(rs: &ReplicaSet) -> i64 {
    annotation(&rs.metadata, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn created(rs: &ReplicaSet) -> Option<Timestamp> {
    rs.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// The template without its `pod-template-hash` label (`EqualIgnoreHash` compares those).
fn without_hash(template: Option<&PodTemplateSpec>) -> PodTemplateSpec {
    let mut t = template.cloned().unwrap_or_default();
    let meta = t.metadata.get_or_insert_default();
    if let Some(labels) = meta.labels.as_mut() {
        labels.remove(POD_TEMPLATE_HASH);
        if labels.is_empty() {
            meta.labels = None;
        }
    }
    t
}

fn condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// Sets a condition as `SetDeploymentCondition` does: unchanged if status and reason are the
/// same; the transition time kept while the status stays.
fn set_condition(
    status: &mut DeploymentStatus,
    type_: &str,
    value: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) {
    let conditions = status.conditions.get_or_insert_default();
    let existing = conditions.iter().position(|c| c.type_ == type_);
    let mut transition = Some(Time(now));
    if let Some(i) = existing {
        let current = &conditions[i];
        if current.status == value && current.reason.as_deref() == Some(reason) {
            return;
        }
        if current.status == value {
            transition = current.last_transition_time.clone();
        }
        conditions.remove(i);
    }
    conditions.push(DeploymentCondition {
        type_: type_.into(),
        status: value.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: transition,
    });
}

fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(c) = status.conditions.as_mut() {
        c.retain(|c| c.type_ != type_);
    }
}

/// One reconcile of one Deployment: the Deployment as this pass changes it and what it needs.
struct Rollout<'a> {
    ctx: &'a Context,
    rs_api: Api<ReplicaSet>,
    d: Deployment,
    status_before: DeploymentStatus,
    now: Timestamp,
}

impl Rollout<'_> {
    fn paused(&self) -> bool {
        self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
    }

    fn has_deadline(&self) -> bool {
        self.deadline_seconds() != NO_DEADLINE
    }

    fn deadline_seconds(&self) -> i32 {
        self.d
            .spec
            .as_ref()
            .and_then(|s| s.progress_deadline_seconds)
            .unwrap_or(600)
    }

    /// The new ReplicaSet (the oldest whose template is the Deployment's) and the old ones.
    fn split(&self, mut all: Vec<ReplicaSet>) -> (Option<ReplicaSet>, Vec<ReplicaSet>) {
        all.sort_by_key(|rs| (created(rs), rs.name_any()));
        let wanted = without_hash(self.d.spec.as_ref().map(|s| &s.template));
        let new = all
            .iter()
            .position(|rs| {
                without_hash(rs.spec.as_ref().and_then(|s| s.template.as_ref())) == wanted
            })
            .map(|i| all.remove(i));
        (new, all)
    }

    /// `Progressing` Unknown while paused, and once resumed, as `kubectl rollout status` expects.
    fn check_paused_condition(&mut self) {
        if !self.has_deadline() {
            return;
        }
        let status = self.d.status.get_or_insert_default();
        let reason = condition(status, "Progressing").and_then(|c| c.reason.clone());
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        if paused && reason.as_deref() != Some("DeploymentPaused") {
            set_condition(
                status,
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused".into(),
                self.now,
            );
        } else if !paused && reason.as_deref() == Some("DeploymentPaused") {
            set_condition(
                status,
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed".into(),
                self.now,
            );
        }
    }

    /// Whether `replicas` changed since the active sets were last sized for it.
    fn is_scaling_event(&self, all: &[ReplicaSet]) -> bool {
        let wanted = replicas(&self.d).to_string();
        all.iter()
            .filter(|rs| spec_replicas(rs) > 0)
            .any(|rs| annotation(&rs.metadata, DESIRED_REPLICAS).is_some_and(|v| v != wanted))
    }

    /// Paused or rescaled: sizes the sets without rolling out, keeps the status.
    async fn sync(&mut self, all: Vec<ReplicaSet>) -> Result<(), DeploymentError> {
        let (new, old) = self.new_and_old(all, false).await?;
        let (new, old) = self.scale(new, old).await?;
        if self.paused() {
            self.cleanup(&old).await?;
        }
        self.sync_status(new.as_ref(), &old).await
    }

    async fn rolling_update(
        &mut self,
        all: Vec<ReplicaSet>,
    ) -> Result<Option<Duration>, DeploymentError> {
        let (new, mut old) = self.new_and_old(all, true).await?;
        let Some(mut new) = new else {
            return self.sync_rollout_status(None, &old).await;
        };
        let wanted = new_replica_set_size(&self.d, &new, &old);
        if wanted != spec_replicas(&new) {
            new = self.scale_replica_set(new, wanted).await?;
            return self.sync_rollout_status(Some(&new), &old).await;
        }
        if self.scale_down_old(&new, &mut old).await? {
            return self.sync_rollout_status(Some(&new), &old).await;
        }
        if self.complete(&self.status_before) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(Some(&new), &old).await
    }

    async fn recreate(
        &mut self,
        all: Vec<ReplicaSet>,
    ) -> Result<Option<Duration>, DeploymentError> {
        let (new, mut old) = self.new_and_old(all, false).await?;
        let mut scaled_down = false;
        for rs in old.iter_mut().filter(|rs| spec_replicas(rs) > 0) {
            *rs = self.scale_replica_set(rs.clone(), 0).await?;
            scaled_down = true;
        }
        if scaled_down || self.old_pods_running(&old) {
            return self.sync_rollout_status(new.as_ref(), &old).await;
        }
        let (new, old) = match new {
            Some(new) => (new, old),
            None => {
                let all = old.into_iter().collect();
                match self.new_and_old(all, true).await? {
                    (Some(new), old) => (new, old),
                    (None, old) => return self.sync_rollout_status(None, &old).await,
                }
            }
        };
        let new = self.scale_replica_set(new, replicas(&self.d)).await?;
        if self.complete(&self.status_before) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(Some(&new), &old).await
    }

    /// Any pod of an old set not yet finished, or a set still reporting pods.
    fn old_pods_running(&self, old: &[ReplicaSet]) -> bool {
        if old.iter().any(|rs| status_of(rs).0 > 0) {
            return true;
        }
        let uids: Vec<String> = old.iter().filter_map(|rs| rs.uid()).collect();
        let namespace = self.d.namespace();
        !self
            .ctx
            .pods
            .state_filter(|p| {
                p.namespace() == namespace
                    && controller_of(&p.metadata).is_some_and(|r| uids.contains(&r.uid))
                    && !pods::is_terminal(p)
            })
            .is_empty()
    }

    /// Scales old sets down as far as availability allows, unhealthy pods first
    /// (`reconcileOldReplicaSets`). Whether anything was scaled.
    async fn scale_down_old(
        &mut self,
        new: &ReplicaSet,
        old: &mut [ReplicaSet],
    ) -> Result<bool, DeploymentError> {
        let old_count: i32 = old.iter().map(spec_replicas).sum();
        if old_count == 0 {
            return Ok(false);
        }
        let all_count = old_count + spec_replicas(new);
        let min_available = replicas(&self.d) - max_unavailable(&self.d);
        let new_unavailable = spec_replicas(new) - status_of(new).2;
        let max_scaled_down = all_count - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        old.sort_by_key(|rs| (created(rs), rs.name_any()));
        // First the pods that are not available anyway.
        let mut scaled = 0;
        for rs in old.iter_mut() {
            if scaled >= max_scaled_down {
                break;
            }
            let (size, available) = (spec_replicas(rs), status_of(rs).2);
            if size == 0 || size <= available {
                continue;
            }
            let down = (max_scaled_down - scaled).min(size - available);
            *rs = self.scale_replica_set(rs.clone(), size - down).await?;
            scaled += down;
        }
        // Then available ones, as far as `replicas - maxUnavailable` allows.
        let available: i32 = status_of(new).2 + old.iter().map(|rs| status_of(rs).2).sum::<i32>();
        let allowed = (available - min_available).min(max_scaled_down - scaled);
        let mut taken = 0;
        for rs in old.iter_mut() {
            if taken >= allowed {
                break;
            }
            let size = spec_replicas(rs);
            if size == 0 {
                continue;
            }
            let down = size.min(allowed - taken);
            *rs = self.scale_replica_set(rs.clone(), size - down).await?;
            taken += down;
        }
        Ok(scaled + taken > 0)
    }

    /// Spreads a change of `replicas` over the active sets in proportion to their size
    /// (`dc.scale`).
    async fn scale(
        &mut self,
        new: Option<ReplicaSet>,
        old: Vec<ReplicaSet>,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), DeploymentError> {
        let has_new = new.is_some();
        // The new set, if any, first.
        let mut all: Vec<ReplicaSet> = new.into_iter().chain(old).collect();
        let desired = replicas(&self.d);
        let active: Vec<usize> = (0..all.len())
            .filter(|&i| spec_replicas(&all[i]) > 0)
            .collect();
        // One active set (or none: the new one, else the newest) simply takes every replica.
        let sole = match active.as_slice() {
            [] if has_new => Some(0),
            [] => (0..all.len()).max_by_key(|&i| (created(&all[i]), all[i].name_any())),
            [one] => Some(*one),
            _ => None,
        };
        if let Some(i) = sole {
            all[i] = self.scale_replica_set(all[i].clone(), desired).await?;
        } else if has_new && self.saturated(&all[0]) {
            for i in active.into_iter().filter(|&i| i > 0) {
                all[i] = self.scale_replica_set(all[i].clone(), 0).await?;
            }
        } else if !is_recreate(&self.d) {
            let current: i32 = active.iter().map(|&i| spec_replicas(&all[i])).sum();
            let allowed = if desired > 0 {
                desired + max_surge(&self.d)
            } else {
                0
            };
            let to_add = allowed - current;
            let mut order = active;
            if to_add > 0 {
                // Larger first, newer first among equals.
                order
                    .sort_by_key(|&i| (Reverse(spec_replicas(&all[i])), Reverse(created(&all[i]))));
            } else {
                order.sort_by_key(|&i| (Reverse(spec_replicas(&all[i])), created(&all[i])));
            }
            let mut added = 0;
            let mut sizes = Vec::with_capacity(order.len());
            for &i in &order {
                let share = proportion(
                    &self.d,
                    self.status_before.replicas.unwrap_or(0),
                    &all[i],
                    to_add,
                    added,
                );
                sizes.push(spec_replicas(&all[i]) + share);
                added += share;
            }
            // What rounding left over goes to the first (largest) set.
            if let Some(first) = sizes.first_mut() {
                *first = (*first + to_add - added).max(0);
            }
            for (&i, size) in order.iter().zip(sizes) {
                all[i] = self.scale_replica_set(all[i].clone(), size).await?;
            }
        }
        if has_new {
            let new = all.remove(0);
            Ok((Some(new), all))
        } else {
            Ok((None, all))
        }
    }

    fn saturated(&self, rs: &ReplicaSet) -> bool {
        let desired = replicas(&self.d);
        annotation(&rs.metadata, DESIRED_REPLICAS) == Some(desired.to_string().as_str())
            && spec_replicas(rs) == desired
            && status_of(rs).2 == desired
    }

    /// Finds (or, with `create`, makes) the new set, and brings revisions up to date
    /// (`getAllReplicaSetsAndSyncRevision`).
    async fn new_and_old(
        &mut self,
        all: Vec<ReplicaSet>,
        create: bool,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), DeploymentError> {
        let (new, old) = self.split(all);
        let max_old = old.iter().map(revision).max().unwrap_or(0);
        let next = (max_old + 1).to_string();
        let new = match new {
            Some(rs) => Some(self.update_new_replica_set(rs, &next).await?),
            None if create => Some(self.create_new_replica_set(&old, &next).await?),
            None => None,
        };
        if let Some(rs) = &new {
            let rs_revision = annotation(&rs.metadata, REVISION)
                .unwrap_or_default()
                .to_string();
            self.set_revision(&rs_revision).await?;
            if self.has_deadline() {
                let status = self.d.status.get_or_insert_default();
                if condition(status, "Progressing").is_none() {
                    let msg = format!("Found new replica set \"{}\"", rs.name_any());
                    set_condition(
                        status,
                        "Progressing",
                        "True",
                        "FoundNewReplicaSet",
                        msg,
                        self.now,
                    );
                }
            }
        }
        Ok((new, old))
    }

    /// The Deployment's own revision annotation follows its new set's.
    async fn set_revision(&mut self, revision: &str) -> Result<(), DeploymentError> {
        if revision.is_empty() || annotation(&self.d.metadata, REVISION) == Some(revision) {
            return Ok(());
        }
        let patch = json!({"metadata": {"annotations": {REVISION: revision}}});
        let api: Api<Deployment> = Api::namespaced(
            self.ctx.client.clone(),
            &self.d.namespace().unwrap_or_default(),
        );
        let patched = api
            .patch(
                &self.d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await?;
        self.d.metadata.annotations = patched.metadata.annotations;
        Ok(())
    }

    /// The annotations a set of this Deployment carries: the Deployment's own (so
    /// `kubernetes.io/change-cause` reaches `rollout history`), its revision, and the sizes it
    /// was scaled for.
    fn replica_set_annotations(
        &self,
        rs: &ReplicaSet,
        next_revision: &str,
    ) -> BTreeMap<String, String> {
        let mut annotations = rs.metadata.annotations.clone().unwrap_or_default();
        for (k, v) in self.d.metadata.annotations.iter().flatten() {
            if !NOT_COPIED.contains(&k.as_str()) {
                annotations.insert(k.clone(), v.clone());
            }
        }
        let current = annotations.get(REVISION).cloned().unwrap_or_default();
        let (old, new) = (
            current.parse::<i64>().unwrap_or(0),
            next_revision.parse::<i64>().unwrap_or(0),
        );
        if old < new {
            annotations.insert(REVISION.into(), next_revision.into());
            if !current.is_empty() {
                let history = match annotations.get(REVISION_HISTORY) {
                    Some(h) if !h.is_empty() => format!("{h},{current}"),
                    _ => current,
                };
                annotations.insert(REVISION_HISTORY.into(), history);
            }
        }
        annotations
            .entry(DESIRED_REPLICAS.into())
            .or_insert_with(|| replicas(&self.d).to_string());
        annotations
            .entry(MAX_REPLICAS.into())
            .or_insert_with(|| (replicas(&self.d) + max_surge(&self.d)).to_string());
        annotations
    }

    async fn update_new_replica_set(
        &self,
        rs: ReplicaSet,
        next_revision: &str,
    ) -> Result<ReplicaSet, DeploymentError> {
        let annotations = self.replica_set_annotations(&rs, next_revision);
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        let rs_min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if rs.metadata.annotations.as_ref() == Some(&annotations)
            && min_ready.unwrap_or(0) == rs_min_ready.unwrap_or(0)
        {
            return Ok(rs);
        }
        let mut updated = rs;
        updated.metadata.annotations = Some(annotations);
        if let Some(spec) = updated.spec.as_mut() {
            spec.min_ready_seconds = min_ready;
        }
        Ok(self
            .rs_api
            .replace(&updated.name_any(), &PostParams::default(), &updated)
            .await?)
    }

    async fn create_new_replica_set(
        &mut self,
        old: &[ReplicaSet],
        next_revision: &str,
    ) -> Result<ReplicaSet, DeploymentError> {
        let spec = self.d.spec.clone().unwrap_or_default();
        let collisions = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = template_hash(&without_hash(Some(&spec.template)), collisions);
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_default()
            .labels
            .get_or_insert_default()
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector: LabelSelector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_default()
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let name = format!("{}-{hash}", self.d.name_any());
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.d.namespace(),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                owner_references: Some(vec![controller_reference(&self.d)]),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        rs.metadata.annotations = Some(self.replica_set_annotations(&rs, next_revision));
        let size = if is_recreate(&self.d) {
            replicas(&self.d)
        } else {
            new_replica_set_size(&self.d, &rs, old)
        };
        if let Some(s) = rs.spec.as_mut() {
            s.replicas = Some(size);
        }
        let created = match self.rs_api.create(&PostParams::default(), &rs).await {
            Ok(created) => created,
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let existing = self.rs_api.get(&name).await?;
                let ours = controller_of(&existing.metadata)
                    .is_some_and(|r| Some(&r.uid) == self.d.uid().as_ref());
                let same = without_hash(existing.spec.as_ref().and_then(|s| s.template.as_ref()))
                    == without_hash(Some(&spec.template));
                if ours && same {
                    return Ok(existing);
                }
                // Another template took this name: hash again with a higher collision count.
                let mut status = self.d.status.clone().unwrap_or_default();
                status.collision_count = Some(collisions.unwrap_or(0) + 1);
                self.write_status(status).await?;
                return Err(DeploymentError::HashCollision(name));
            }
            Err(e) => {
                if self.has_deadline() {
                    let status = self.d.status.get_or_insert_default();
                    let msg = format!(
                        "Failed to create new replica set \"{name}\": {}",
                        reason(&e)
                    );
                    set_condition(
                        status,
                        "ReplicaFailure",
                        "True",
                        "FailedCreate",
                        msg.clone(),
                        self.now,
                    );
                    set_condition(
                        status,
                        "Progressing",
                        "False",
                        "ReplicaSetCreateError",
                        msg,
                        self.now,
                    );
                    let status = status.clone();
                    self.write_status(status).await?;
                }
                return Err(e.into());
            }
        };
        if size > 0 {
            self.ctx.recorder.normal(
                &self.d,
                "ScalingReplicaSet",
                format!("Scaled up replica set {name} from 0 to {size}"),
            );
        }
        if self.has_deadline() {
            let status = self.d.status.get_or_insert_default();
            let msg = format!("Created new replica set \"{name}\"");
            set_condition(
                status,
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                msg,
                self.now,
            );
        }
        Ok(created)
    }

    /// Sets a set's size (and the sizes it was scaled for), with an event when it changed.
    async fn scale_replica_set(
        &self,
        rs: ReplicaSet,
        size: i32,
    ) -> Result<ReplicaSet, DeploymentError> {
        let from = spec_replicas(&rs);
        let desired = replicas(&self.d).to_string();
        let max = (replicas(&self.d) + max_surge(&self.d)).to_string();
        let annotations_stale = annotation(&rs.metadata, DESIRED_REPLICAS)
            != Some(desired.as_str())
            || annotation(&rs.metadata, MAX_REPLICAS) != Some(max.as_str());
        if from == size && !annotations_stale {
            return Ok(rs);
        }
        let mut updated = rs;
        if let Some(spec) = updated.spec.as_mut() {
            spec.replicas = Some(size);
        }
        let annotations = updated.metadata.annotations.get_or_insert_default();
        annotations.insert(DESIRED_REPLICAS.into(), desired);
        annotations.insert(MAX_REPLICAS.into(), max);
        let updated = self
            .rs_api
            .replace(&updated.name_any(), &PostParams::default(), &updated)
            .await?;
        if from != size {
            let direction = if size > from { "up" } else { "down" };
            self.ctx.recorder.normal(
                &self.d,
                "ScalingReplicaSet",
                format!(
                    "Scaled {direction} replica set {} from {from} to {size}",
                    updated.name_any()
                ),
            );
        }
        Ok(updated)
    }

    /// Deletes the oldest scaled-down sets beyond `revisionHistoryLimit`.
    async fn cleanup(&self, old: &[ReplicaSet]) -> Result<(), DeploymentError> {
        let limit = self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10)
            .max(0) as usize;
        let mut alive: Vec<&ReplicaSet> = old
            .iter()
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        if alive.len() <= limit {
            return Ok(());
        }
        alive.sort_by_key(|rs| (revision(rs), created(rs)));
        let surplus = alive.len() - limit;
        for rs in alive.into_iter().take(surplus) {
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            if status_of(rs).0 != 0
                || spec_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            match self
                .rs_api
                .delete(&rs.name_any(), &DeleteParams::background())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The status the sets add up to (`calculateStatus`), with `Available`.
    fn calculate_status(&self, new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> DeploymentStatus {
        let (mut total, mut ready, mut available) = (0, 0, 0);
        for rs in new.into_iter().chain(old) {
            let (t, r, a) = status_of(rs);
            total += t;
            ready += r;
            available += a;
        }
        let mut status = self.d.status.clone().unwrap_or_default();
        status.observed_generation = self.d.metadata.generation;
        status.replicas = Some(total);
        status.updated_replicas = Some(new.map_or(0, |rs| status_of(rs).0));
        status.ready_replicas = Some(ready);
        status.available_replicas = Some(available);
        // Against the sets' sizes, not the pods they have yet.
        let sized: i32 = new.into_iter().chain(old).map(spec_replicas).sum();
        status.unavailable_replicas = Some((sized - available).max(0));
        if available >= replicas(&self.d) - max_unavailable(&self.d) {
            set_condition(
                &mut status,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
                self.now,
            );
        } else {
            set_condition(
                &mut status,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
                self.now,
            );
        }
        status
    }

    /// `DeploymentComplete`: every replica updated and available, nothing old left.
    fn complete(&self, status: &DeploymentStatus) -> bool {
        let desired = replicas(&self.d);
        status.updated_replicas == Some(desired)
            && status.replicas == Some(desired)
            && status.available_replicas == Some(desired)
            && status.observed_generation >= self.d.metadata.generation
    }

    async fn sync_status(
        &mut self,
        new: Option<&ReplicaSet>,
        old: &[ReplicaSet],
    ) -> Result<(), DeploymentError> {
        let status = self.calculate_status(new, old);
        self.write_status(status).await
    }

    /// Updates `Progressing` from what the rollout achieved since the last status, and
    /// returns when to look again for the progress deadline (`syncRolloutStatus`).
    async fn sync_rollout_status(
        &mut self,
        new: Option<&ReplicaSet>,
        old: &[ReplicaSet],
    ) -> Result<Option<Duration>, DeploymentError> {
        let mut status = self.calculate_status(new, old);
        let deadline = self.has_deadline();
        if !deadline {
            remove_condition(&mut status, "Progressing");
        }
        let done = status.replicas == status.updated_replicas
            && condition(&status, "Progressing").and_then(|c| c.reason.as_deref())
                == Some("NewReplicaSetAvailable");
        let name = new.map(|rs| rs.name_any()).unwrap_or_default();
        let mut wake = None;
        if deadline && !done && !self.paused() {
            if self.complete(&status) {
                let msg = format!("ReplicaSet \"{name}\" has successfully progressed.");
                set_condition(
                    &mut status,
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    msg,
                    self.now,
                );
            } else if self.progressing(&status) {
                let msg = format!("ReplicaSet \"{name}\" is progressing.");
                // Progress renews the deadline: the update time moves even if nothing else does.
                renew_progressing(&mut status);
                set_condition(
                    &mut status,
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    msg,
                    self.now,
                );
                wake = Some(Duration::from_secs(self.deadline_seconds() as u64));
            } else if let Some(left) = self.deadline_left(&status) {
                wake = Some(left);
            } else {
                let msg = format!("ReplicaSet \"{name}\" has timed out progressing.");
                set_condition(
                    &mut status,
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    msg,
                    self.now,
                );
            }
        }
        let failures: Vec<_> = new
            .into_iter()
            .chain(old)
            .filter_map(|rs| {
                rs.status
                    .as_ref()?
                    .conditions
                    .as_deref()?
                    .iter()
                    .find(|c| c.type_ == "ReplicaFailure")
                    .cloned()
            })
            .collect();
        match failures.first() {
            Some(f) => set_condition(
                &mut status,
                "ReplicaFailure",
                &f.status,
                f.reason.as_deref().unwrap_or_default(),
                f.message.clone().unwrap_or_default(),
                self.now,
            ),
            None => remove_condition(&mut status, "ReplicaFailure"),
        }
        self.write_status(status).await?;
        Ok(wake.map(|w| w + Duration::from_millis(100)))
    }

    /// `DeploymentProgressing`: more updated, fewer old, more ready or available than before.
    fn progressing(&self, status: &DeploymentStatus) -> bool {
        let before = &self.status_before;
        let old = |s: &DeploymentStatus| s.replicas.unwrap_or(0) - s.updated_replicas.unwrap_or(0);
        status.updated_replicas.unwrap_or(0) > before.updated_replicas.unwrap_or(0)
            || old(status) < old(before)
            || status.ready_replicas.unwrap_or(0) > before.ready_replicas.unwrap_or(0)
            || status.available_replicas.unwrap_or(0) > before.available_replicas.unwrap_or(0)
    }

    /// How long until the progress deadline passes, or `None` once it has.
    fn deadline_left(&self, status: &DeploymentStatus) -> Option<Duration> {
        let Some(c) = condition(status, "Progressing") else {
            return Some(Duration::from_secs(self.deadline_seconds() as u64));
        };
        if c.reason.as_deref() == Some("ProgressDeadlineExceeded") {
            return None;
        }
        let from = c.last_update_time.as_ref().map_or(self.now, |t| t.0);
        let end = from
            .checked_add(SignedDuration::from_secs(i64::from(
                self.deadline_seconds(),
            )))
            .ok()?;
        let left = end.duration_since(self.now);
        Duration::try_from(left).ok().filter(|d| !d.is_zero())
    }

    async fn write_status(&mut self, status: DeploymentStatus) -> Result<(), DeploymentError> {
        if status == self.status_before {
            return Ok(());
        }
        status::write(&self.ctx.client, &self.d, &status).await?;
        self.status_before = status.clone();
        self.d.status = Some(status);
        Ok(())
    }
}

/// Makes the next [`set_condition`] of a True `Progressing` replace it (so its update time
/// moves) while keeping its transition time, as `syncRolloutStatus` does on progress.
fn renew_progressing(status: &mut DeploymentStatus) {
    let Some(conditions) = status.conditions.as_mut() else {
        return;
    };
    if let Some(i) = conditions
        .iter()
        .position(|c| c.type_ == "Progressing" && c.status == "True")
    {
        conditions[i].reason = None;
    }
}

#[cfg(test)]
mod tests;
