//! The status a reconcile writes (`trackJobStatusAndRemoveFinalizers`): finished pods go into
//! `uncountedTerminatedPods`, lose their finalizer, then move into `succeeded`/`failed`; a Job
//! that is done gets its interim condition at once and `Complete`/`Failed` when nothing is left
//! running or uncounted. Every write carries the Job's resourceVersion, so a stale view of the
//! status fails with a conflict instead of losing a count.

use std::collections::HashSet;

use k8s_openapi::api::batch::v1::{Job, JobStatus, UncountedTerminatedPods};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::failure_policy;
use super::indexes;
use super::sync_job::{SyncJob, new_condition};
use super::tracking::{self, FinalizerRemovals};
use super::{is_failed, is_indexed, phase};
use crate::controllers::pods;
use crate::controllers::recorder::Recorder;

/// At most this many uids wait in `uncountedTerminatedPods` (`MaxUncountedPods`), which keeps
/// the status small; the rest are counted in the next reconcile.
const MAX_UNCOUNTED: usize = 500;

impl SyncJob {
    /// Counts finished pods, releases their finalizers and writes the status, marking the Job
    /// finished when it is.
    pub async fn track(
        &mut self,
        job: &Job,
        client: &Client,
        recorder: &Recorder,
        removals: &FinalizerRemovals,
        key: &str,
    ) -> Result<(), kube::Error> {
        let mut status = self.status.clone();
        let mut job = job.clone();
        let completions = job.spec.as_ref().and_then(|s| s.completions).unwrap_or(0);
        let policy = job.spec.as_ref().and_then(|s| s.pod_failure_policy.clone());
        let ready = self.active.iter().filter(|p| pods::is_ready(p)).count() as i32;
        status.active = Some(self.active.len() as i32 + self.created);
        status.ready = Some(ready);
        status.terminating = Some(self.terminating);
        let read = job.status.clone().unwrap_or_default();
        // A zero may be stored as absent.
        let differs = |a: Option<i32>, b: Option<i32>| a.unwrap_or(0) != b.unwrap_or(0);
        let mut flush = self.changed
            || differs(status.active, read.active)
            || differs(status.ready, read.ready)
            || differs(status.terminating, read.terminating);
        let mut uncounted = status.uncounted_terminated_pods.take().unwrap_or_default();
        let mut with_finalizer: HashSet<String> = self
            .pods
            .iter()
            .filter(|p| tracking::has_finalizer(p))
            .filter_map(|p| p.uid())
            .filter(|uid| !self.removing.contains(uid))
            .collect();
        flush |= count_released(&mut status, &mut uncounted, &with_finalizer);
        let failing = self.finish.as_ref().is_some_and(|f| !f.success);
        let mut release = Vec::new();
        let mut full = false;
        for pod in &self.pods {
            let uid = pod.uid().unwrap_or_default();
            if !with_finalizer.contains(&uid) {
                continue;
            }
            let failed = is_failed(pod, &job);
            let can_release = job.metadata.deletion_timestamp.is_some()
                || self.finish.is_some()
                || phase(pod) == "Succeeded"
                || failed;
            if !can_release {
                continue;
            }
            release.push(pod.clone());
            let index = indexes::index_of(pod).filter(|i| *i < completions);
            let (succeeded, failed_list) = (
                uncounted.succeeded.get_or_insert_default(),
                uncounted.failed.get_or_insert_default(),
            );
            if phase(pod) == "Succeeded" && !failed_list.contains(&uid) {
                if is_indexed(&job) {
                    // The index itself records the success.
                    flush |= index.is_some_and(|i| !self.counted_indexes.contains(i));
                } else if !succeeded.contains(&uid) {
                    succeeded.push(uid);
                    flush = true;
                }
            } else if (failed || failing)
                && !failed_list.contains(&uid)
                && (!is_indexed(&job) || index.is_some())
                && failure_policy::judge(policy.as_ref(), pod).counts()
            {
                failed_list.push(uid);
                flush = true;
            }
            let waiting = uncounted.succeeded.as_ref().map_or(0, Vec::len)
                + uncounted.failed.as_ref().map_or(0, Vec::len);
            if waiting >= MAX_UNCOUNTED {
                full = true;
                break;
            }
        }
        if is_indexed(&job) {
            let text = self.succeeded_indexes.to_string();
            flush |= status.completed_indexes.as_deref() != Some(text.as_str());
            status.completed_indexes = Some(text);
            status.succeeded = Some(self.succeeded_indexes.total());
        }
        status.uncounted_terminated_pods = Some(uncounted);
        if let Some(finish) = self.finish.as_ref().filter(|f| !f.recorded) {
            let conditions = status.conditions.get_or_insert_default();
            if !conditions.iter().any(|c| c.type_ == finish.interim_type()) {
                conditions.push(new_condition(
                    finish.interim_type(),
                    "True",
                    &finish.reason,
                    &finish.message,
                    Timestamp::now(),
                ));
                flush = true;
            }
        }
        if flush {
            job = write_status(client, &job, &status).await?;
            status = job.status.clone().unwrap_or_default();
            flush = false;
        }
        let results = futures::future::join_all(release.iter().map(|pod| async move {
            let uid = pod.uid().unwrap_or_default();
            removals.expect(key, uid.clone());
            let result = tracking::remove_finalizer(client, pod).await;
            if result.is_err() {
                removals.forget(key, &uid);
            }
            (uid, result)
        }))
        .await;
        let mut release_error = None;
        for (uid, result) in results {
            match result {
                Ok(()) => {
                    with_finalizer.remove(&uid);
                }
                Err(e) => {
                    release_error.get_or_insert(e);
                }
            }
        }
        let mut uncounted = status.uncounted_terminated_pods.take().unwrap_or_default();
        flush |= count_released(&mut status, &mut uncounted, &with_finalizer);
        let nothing_uncounted = uncounted.succeeded.as_ref().is_none_or(Vec::is_empty)
            && uncounted.failed.as_ref().is_none_or(Vec::is_empty);
        status.uncounted_terminated_pods = Some(uncounted);
        if let Some(e) = release_error {
            if flush {
                write_status(client, &job, &status).await?;
            }
            return Err(e);
        }
        let finished = match &self.finish {
            Some(finish) if !full && nothing_uncounted && self.terminating == 0 => {
                let now = Timestamp::now();
                let conditions = status.conditions.get_or_insert_default();
                let done = new_condition(
                    finish.final_type(),
                    "True",
                    &finish.reason,
                    &finish.message,
                    now,
                );
                match conditions
                    .iter_mut()
                    .find(|c| c.type_ == finish.final_type())
                {
                    Some(c) => *c = done,
                    None => conditions.push(done),
                }
                if finish.success {
                    status.completion_time = Some(Time(now));
                }
                Some(finish)
            }
            _ => None,
        };
        if flush || finished.is_some() {
            write_status(client, &job, &status).await?;
            match finished {
                Some(f) if f.success => recorder.normal(&job, "Completed", "Job completed".into()),
                Some(f) => recorder.warning(&job, &f.reason, f.message.clone()),
                None => {}
            }
        }
        Ok(())
    }
}

/// Moves the uncounted pods that no longer carry the finalizer into the counters; whether any
/// moved (`cleanUncountedPodsWithoutFinalizers`).
fn count_released(
    status: &mut JobStatus,
    uncounted: &mut UncountedTerminatedPods,
    with_finalizer: &HashSet<String>,
) -> bool {
    let mut moved = false;
    for (list, counter) in [
        (&mut uncounted.succeeded, &mut status.succeeded),
        (&mut uncounted.failed, &mut status.failed),
    ] {
        let list = list.get_or_insert_default();
        let before = list.len();
        list.retain(|uid| with_finalizer.contains(uid));
        let released = (before - list.len()) as i32;
        if released > 0 {
            *counter = Some(counter.unwrap_or(0) + released);
            moved = true;
        }
    }
    moved
}

/// Writes the whole status, on the condition that the Job is still the version `job` is.
async fn write_status(client: &Client, job: &Job, status: &JobStatus) -> Result<Job, kube::Error> {
    let api: Api<Job> = Api::namespaced(client.clone(), &job.namespace().unwrap_or_default());
    let patch = json!({
        "metadata": {"resourceVersion": job.resource_version()},
        "status": status,
    });
    api.patch_status(
        &job.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await
}
