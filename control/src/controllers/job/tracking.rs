//! Job tracking with finalizers (Kubernetes 1.26+): every pod a Job creates carries
//! `batch.kubernetes.io/job-tracking`, so it cannot vanish before its result is counted. The
//! controller first records a finished pod's uid in `status.uncountedTerminatedPods`, then removes
//! the finalizer, then moves the uid into `succeeded`/`failed`; the Job's status and its pods'
//! finalizers are the whole truth, which is what makes a restart lose no count.
//!
//! [`FinalizerRemovals`] keeps a removal the pod cache has not shown yet from being counted twice;
//! [`run_orphans`] releases pods whose Job is gone or finished.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing::warn;

use super::is_finished;
use crate::controllers::informer::Informer;
use crate::controllers::ownership::controller_of;

pub const FINALIZER: &str = "batch.kubernetes.io/job-tracking";

pub fn has_finalizer(pod: &Pod) -> bool {
    pod.finalizers().iter().any(|f| f == FINALIZER)
}

/// Removes the tracking finalizer from `pod`; a pod already gone counts as done.
pub async fn remove_finalizer(client: &Client, pod: &Pod) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [FINALIZER]}});
    match api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Pods (by uid) whose finalizer a Job removed, per Job, until the cache shows it gone.
#[derive(Default)]
pub struct FinalizerRemovals {
    jobs: Mutex<HashMap<String, HashSet<String>>>,
}

impl FinalizerRemovals {
    pub fn expect(&self, job: &str, uid: String) {
        self.lock().entry(job.to_string()).or_default().insert(uid);
    }

    pub fn forget(&self, job: &str, uid: &str) {
        if let Some(uids) = self.lock().get_mut(job) {
            uids.remove(uid);
        }
    }

    /// The removals `pods` (the Job's pods in the cache) do not show yet.
    pub fn pending(&self, job: &str, pods: &[Arc<Pod>]) -> HashSet<String> {
        let mut jobs = self.lock();
        let Some(uids) = jobs.get_mut(job) else {
            return HashSet::new();
        };
        uids.retain(|uid| {
            pods.iter()
                .any(|p| p.uid().as_deref() == Some(uid) && has_finalizer(p))
        });
        let pending = uids.clone();
        if uids.is_empty() {
            jobs.remove(job);
        }
        pending
    }

    pub fn delete(&self, job: &str) {
        self.lock().remove(job);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<String>>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct OrphanContext {
    client: Client,
    jobs: Store<Job>,
}

/// Removes the tracking finalizer from pods no running Job accounts for: their Job was deleted
/// (the garbage collector deletes its pods, which would otherwise wait forever) or finished, or
/// they lost their controller (`syncOrphanPod`).
pub async fn run_orphans(client: Client, pods: Informer<Pod>, jobs: Informer<Job>) {
    let candidates = |pod: &Pod| has_finalizer(pod).then(|| ObjectRef::from_obj(pod));
    let controller = Controller::for_shared_stream(futures::stream::empty(), pods.store())
        .reconcile_on(pods.triggers(candidates));
    if !(pods.synced().await && jobs.synced().await) {
        return;
    }
    let jobs = jobs.store();
    controller
        .run(
            release_orphan,
            |_, err, _| {
                warn!(error = %err, "releasing a job's pod failed; retrying");
                Action::requeue(Duration::from_secs(1))
            },
            Arc::new(OrphanContext { client, jobs }),
        )
        .for_each(|_| async {})
        .await;
}

async fn release_orphan(pod: Arc<Pod>, ctx: Arc<OrphanContext>) -> Result<Action, kube::Error> {
    if !has_finalizer(&pod) {
        return Ok(Action::await_change());
    }
    let accounted = match controller_of(&pod.metadata) {
        Some(r) if r.kind == "Job" && r.api_version == "batch/v1" => {
            let job = ctx
                .jobs
                .get(&ObjectRef::new(&r.name).within(&pod.namespace().unwrap_or_default()));
            job.is_some_and(|j| j.uid().as_deref() == Some(&r.uid) && !is_finished(&j))
        }
        // Another controller's pod: its finalizer is not ours to judge.
        Some(_) => true,
        None => false,
    };
    if !accounted {
        remove_finalizer(&ctx.client, &pod).await?;
    }
    Ok(Action::await_change())
}
