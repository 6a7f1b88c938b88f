//! The Job controller (`pkg/controller/job`): runs pods until `completions` succeed (or, with no
//! `completions`, until one does), `parallelism` at a time, one per completion index when
//! `completionMode` is `Indexed` ([`indexes`]); replaces failed pods after a back-off
//! ([`backoff`]) until `backoffLimit` is exceeded, `activeDeadlineSeconds` passes or a
//! `podFailurePolicy` rule fails the Job ([`failure_policy`]); deletes its running pods while
//! `suspend` is set. Counting goes through the tracking finalizer ([`tracking`]).
//!
//! As in Kubernetes 1.33, a Job that is done first gets the interim condition `SuccessCriteriaMet`
//! or `FailureTarget`, and `Complete` or `Failed` once no pod of it is left running or uncounted.

mod backoff;
mod failure_policy;
mod indexes;
mod sync_job;
mod track;
mod tracking;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use tracing::warn;

use super::expectations::{Expectations, owner_key};
use super::informer::Informer;
use super::ownership::{Selector, claim, controller_of, controller_reference};
use super::pods::{self, PodControl};
use super::recorder::Recorder;
use sync_job::Finish;
use tracking::FinalizerRemovals;

/// At most this many pods are created or deleted per reconcile (`MaxPodCreateDeletePerSync`).
const MAX_POD_CHANGES: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("API request: {0}")]
    Api(#[from] kube::Error),
}

struct Context {
    client: Client,
    pods: Store<Pod>,
    recorder: Recorder,
    expectations: Expectations,
    removals: FinalizerRemovals,
}

/// Runs the Job controller, and the release of orphaned pods' finalizers, until the watches end.
pub async fn run(client: Client, pods: Informer<Pod>, jobs: Informer<Job>) {
    let orphans = tracking::run_orphans(client.clone(), pods.clone(), jobs.clone());
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), "job-controller"),
        client,
        pods: pods.store(),
        expectations: Expectations::default(),
        removals: FinalizerRemovals::default(),
    });
    let controller = jobs.controller().reconcile_on(pods.triggers(job_of));
    let jobs = async {
        if pods.synced().await && jobs.synced().await {
            controller
                .run(reconcile, error_policy, ctx)
                .for_each(|_| async {})
                .await;
        }
    };
    futures::join!(jobs, orphans);
}

/// The Job a pod's change concerns.
fn job_of(pod: &Pod) -> Option<ObjectRef<Job>> {
    let r = controller_of(&pod.metadata).filter(|r| r.kind == "Job")?;
    Some(ObjectRef::new(&r.name).within(&pod.namespace().unwrap_or_default()))
}

/// Complete or Failed: nothing more to do but let go of its pods.
pub fn is_finished(job: &Job) -> bool {
    condition(job, "Complete")
        .or_else(|| condition(job, "Failed"))
        .is_some()
}

/// The job's condition of `type_` if it is True.
fn condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Whether a pod's run ended in failure. Unless only `Failed` pods are replaced, a pod being
/// deleted before it succeeded counts as failed (`isPodFailed`).
fn is_failed(pod: &Pod, job: &Job) -> bool {
    phase(pod) == "Failed"
        || (!only_replace_failed(job)
            && pod.metadata.deletion_timestamp.is_some()
            && phase(pod) != "Succeeded")
}

/// `podReplacementPolicy: Failed`, implied by a `podFailurePolicy`.
fn only_replace_failed(job: &Job) -> bool {
    let spec = job.spec.as_ref();
    spec.and_then(|s| s.pod_replacement_policy.as_deref()) == Some("Failed")
        || spec.is_some_and(|s| s.pod_failure_policy.is_some())
}

fn is_indexed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

fn is_suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

/// A pod being deleted that has not finished yet.
fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() && !pods::is_terminal(pod)
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, JobError> {
    let managed_by = job.spec.as_ref().and_then(|s| s.managed_by.as_deref());
    if managed_by.is_some_and(|m| m != "kubernetes.io/job-controller") {
        return Ok(Action::await_change());
    }
    let namespace = job.namespace().unwrap_or_default();
    let key = owner_key(job.as_ref());
    if is_finished(&job) {
        // Its pods' results are counted: any finalizer left is released.
        let uid = job.uid().unwrap_or_default();
        let left = ctx.pods.state_filter(|p| {
            p.namespace().as_deref() == Some(&namespace)
                && super::ownership::is_controlled_by(&p.metadata, &uid)
                && tracking::has_finalizer(p)
        });
        for pod in left {
            tracking::remove_finalizer(&ctx.client, &pod).await?;
        }
        ctx.expectations.delete(&key);
        ctx.removals.delete(&key);
        return Ok(Action::await_change());
    }
    let control = PodControl {
        client: &ctx.client,
        recorder: &ctx.recorder,
        expectations: &ctx.expectations,
        key: key.clone(),
    };
    // Checked before the pods are read, so a pod created meanwhile cannot be missed.
    let settled = control.settled(&ctx.pods, &namespace);
    let selector = Selector::new(job.spec.as_ref().and_then(|s| s.selector.as_ref()));
    let pods = if selector.is_empty() {
        Vec::new()
    } else {
        let candidates = ctx
            .pods
            .state_filter(|p| p.namespace().as_deref() == Some(&namespace));
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
        claim(&api, job.as_ref(), &selector, candidates).await?
    };
    let removing = ctx.removals.pending(&key, &pods);
    let now = Timestamp::now();
    let mut sync = sync_job::SyncJob::new(&job, pods, removing, now);
    let mut wake = Vec::new();
    let mut manage_error = None;

    let finish = sync.finish_reason(&job, now, &mut wake);
    if let Some(finish) = finish {
        // A Job that is done stops what still runs; the pods stay counted as failed.
        let active = sync.active.clone();
        if let Some(e) = control.delete(job.as_ref(), &active).await {
            manage_error = Some(e);
        }
        sync.finish = (settled && manage_error.is_none()).then_some(finish);
        sync.terminating += active.len() as i32;
        sync.active.clear();
    } else {
        if settled && job.meta().deletion_timestamp.is_none() {
            match manage(&job, &mut sync, &control, &ctx.client, now).await {
                Ok(Some(after)) => wake.push(after),
                Ok(None) => {}
                Err(e) => manage_error = Some(e),
            }
            sync.update_suspended(&job, &ctx.recorder, now);
        }
        if sync.complete(&job) {
            sync.finish = Some(Finish::success());
        }
    }
    sync.track(&job, &ctx.client, &ctx.recorder, &ctx.removals, &key)
        .await?;
    if let Some(e) = manage_error {
        return Err(e.into());
    }
    Ok(match wake.into_iter().min() {
        Some(after) => Action::requeue(after + Duration::from_millis(100)),
        None => Action::await_change(),
    })
}

/// Creates or deletes pods towards the wanted number of active ones (`manageJob`); the time to
/// wait out a back-off before creating, if any.
async fn manage(
    job: &Job,
    sync: &mut sync_job::SyncJob,
    control: &PodControl<'_>,
    client: &Client,
    now: Timestamp,
) -> Result<Option<Duration>, kube::Error> {
    let spec = job.spec.as_ref();
    let active = sync.active.len() as i32;
    if is_suspended(job) {
        let all = sync.active.clone();
        remove_pods(job, &all, sync, control, client).await?;
        return Ok(None);
    }
    let parallelism = spec.and_then(|s| s.parallelism).unwrap_or(1).max(0);
    let wanted = match spec.and_then(|s| s.completions) {
        // With no completions, once a pod succeeded whatever runs is left to finish.
        None if sync.succeeded > 0 => active,
        None => parallelism,
        Some(c) => (c - sync.succeeded).clamp(0, parallelism),
    };
    let completions = spec.and_then(|s| s.completions).unwrap_or(0);
    let mut surplus = if is_indexed(job) {
        indexes::duplicates(&sync.active, completions)
    } else {
        Vec::new()
    };
    let more = (active - wanted).max(0) as usize;
    if surplus.len() < more {
        let rest: Vec<Arc<Pod>> = sync
            .active
            .iter()
            .filter(|p| !surplus.iter().any(|s| Arc::ptr_eq(s, p)))
            .cloned()
            .collect();
        surplus.extend(pods::pick_for_deletion(&rest, more - surplus.len()));
    }
    if !surplus.is_empty() {
        surplus.truncate(MAX_POD_CHANGES);
        remove_pods(job, &surplus, sync, control, client).await?;
        return Ok(None);
    }
    let terminating = if only_replace_failed(job) {
        sync.terminating
    } else {
        0
    };
    let missing = wanted - terminating - active;
    if missing <= 0 {
        return Ok(None);
    }
    let wait = backoff::remaining(&sync.pods, now);
    if !wait.is_zero() {
        return Ok(Some(wait));
    }
    let mut count = (missing as usize).min(MAX_POD_CHANGES);
    let indexes = if is_indexed(job) {
        let pending =
            indexes::first_pending(count, completions, &sync.succeeded_indexes, &sync.active);
        count = pending.len();
        Some(pending)
    } else {
        None
    };
    let Some(template) = spec.map(|s| &s.template) else {
        return Ok(None);
    };
    let reference = controller_reference(job);
    let name = job.name_any();
    let (created, error) = control
        .create(job, count, |i| {
            let mut pod = pods::from_template(template, reference.clone(), format!("{name}-"));
            let finalizers = pod.metadata.finalizers.get_or_insert_default();
            if !finalizers.iter().any(|f| f == tracking::FINALIZER) {
                finalizers.push(tracking::FINALIZER.into());
            }
            if let Some(indexes) = &indexes {
                indexes::assign(&mut pod, &name, indexes[i]);
            }
            pod
        })
        .await;
    sync.created += created as i32;
    error.map_or(Ok(None), Err)
}

/// Deletes pods the Job no longer wants (suspended, or too many): their finalizer goes first, so
/// they are not counted as failures.
async fn remove_pods(
    job: &Job,
    victims: &[Arc<Pod>],
    sync: &mut sync_job::SyncJob,
    control: &PodControl<'_>,
    client: &Client,
) -> Result<(), kube::Error> {
    for pod in victims {
        tracking::remove_finalizer(client, pod).await?;
    }
    let error = control.delete(job, victims).await;
    sync.active
        .retain(|p| !victims.iter().any(|v| Arc::ptr_eq(v, p)));
    sync.terminating += victims.len() as i32;
    error.map_or(Ok(()), Err)
}

fn error_policy(job: Arc<Job>, err: &JobError, _ctx: Arc<Context>) -> Action {
    warn!(job = %job.name_any(), error = %err, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(1))
}
