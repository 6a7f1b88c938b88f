//! One reconcile's view of a Job ([`SyncJob`]): its pods, what they count to, and whether the Job
//! is done ([`Finish`]); [`super::track`] turns it into the status.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::failure_policy::{self, Verdict};
use super::indexes::{self, Indexes};
use super::tracking;
use super::{condition, is_failed, is_indexed, is_suspended, is_terminating, phase};
use crate::controllers::pods;
use crate::controllers::recorder::Recorder;

/// Why a Job is done.
#[derive(Debug, Clone)]
pub struct Finish {
    pub(super) success: bool,
    pub(super) reason: String,
    pub(super) message: String,
    /// The interim condition is already in the status.
    pub(super) recorded: bool,
}

impl Finish {
    pub fn success() -> Finish {
        Finish {
            success: true,
            reason: "CompletionsReached".into(),
            message: "Reached expected number of succeeded pods".into(),
            recorded: false,
        }
    }

    fn failure(reason: &str, message: &str) -> Finish {
        Finish {
            success: false,
            reason: reason.into(),
            message: message.into(),
            recorded: false,
        }
    }

    fn recorded(c: &JobCondition, success: bool) -> Finish {
        Finish {
            success,
            reason: c.reason.clone().unwrap_or_default(),
            message: c.message.clone().unwrap_or_default(),
            recorded: true,
        }
    }

    pub(super) fn interim_type(&self) -> &'static str {
        if self.success {
            "SuccessCriteriaMet"
        } else {
            "FailureTarget"
        }
    }

    pub(super) fn final_type(&self) -> &'static str {
        if self.success { "Complete" } else { "Failed" }
    }
}

/// A Job's pods and counts as one reconcile sees them.
pub struct SyncJob {
    /// Every pod the Job owns, finished ones included.
    pub pods: Vec<Arc<Pod>>,
    /// Pods still running (or about to), less those this reconcile deleted.
    pub active: Vec<Arc<Pod>>,
    /// Pods this reconcile created.
    pub created: i32,
    /// Pods being deleted that have not finished.
    pub terminating: i32,
    pub succeeded: i32,
    pub(super) failed: i32,
    pub succeeded_indexes: Indexes,
    /// `status.completedIndexes` as read.
    pub(super) counted_indexes: Indexes,
    /// Pods whose finalizer removal the cache does not show yet: already counted.
    pub(super) removing: HashSet<String>,
    pub finish: Option<Finish>,
    /// The status being built.
    pub(super) status: JobStatus,
    /// The status changed beyond its counts (start time, Suspended condition).
    pub(super) changed: bool,
}

impl SyncJob {
    pub fn new(
        job: &Job,
        pods: Vec<Arc<Pod>>,
        removing: HashSet<String>,
        now: Timestamp,
    ) -> SyncJob {
        let mut status = job.status.clone().unwrap_or_default();
        let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
        let (uncounted_succeeded, uncounted_failed) = (
            uncounted.succeeded.unwrap_or_default(),
            uncounted.failed.unwrap_or_default(),
        );
        let completions = job.spec.as_ref().and_then(|s| s.completions).unwrap_or(0);
        let policy = job
            .spec
            .as_ref()
            .and_then(|s| s.pod_failure_policy.as_ref());
        // Finished pods not counted yet: they still carry the finalizer.
        let uncounted_pod = |p: &Pod| {
            let uid = p.uid().unwrap_or_default();
            tracking::has_finalizer(p)
                && !removing.contains(&uid)
                && !uncounted_succeeded.contains(&uid)
                && !uncounted_failed.contains(&uid)
                && (!is_indexed(job) || indexes::index_of(p).is_some_and(|i| i < completions))
        };
        let new_succeeded = pods
            .iter()
            .filter(|p| uncounted_pod(p) && phase(p) == "Succeeded")
            .count() as i32;
        let new_failed = pods
            .iter()
            .filter(|p| uncounted_pod(p) && is_failed(p, job))
            .filter(|p| failure_policy::judge(policy, p).counts())
            .count() as i32;
        let counted_indexes = Indexes::parse(
            status.completed_indexes.as_deref().unwrap_or_default(),
            completions,
        );
        let mut succeeded_indexes = counted_indexes.clone();
        for p in &pods {
            if let Some(i) = indexes::index_of(p).filter(|i| *i < completions)
                && phase(p) == "Succeeded"
                && tracking::has_finalizer(p)
            {
                succeeded_indexes.insert(i);
            }
        }
        let succeeded = if is_indexed(job) {
            succeeded_indexes.total()
        } else {
            status.succeeded.unwrap_or(0) + new_succeeded + uncounted_succeeded.len() as i32
        };
        let failed = status.failed.unwrap_or(0) + new_failed + uncounted_failed.len() as i32;
        let mut changed = false;
        if status.start_time.is_none() && !is_suspended(job) {
            status.start_time = Some(Time(now));
            changed = true;
        }
        let active = pods
            .iter()
            .filter(|p| pods::is_active(p))
            .cloned()
            .collect();
        let terminating = pods.iter().filter(|p| is_terminating(p)).count() as i32;
        SyncJob {
            pods,
            active,
            created: 0,
            terminating,
            succeeded,
            failed,
            succeeded_indexes,
            counted_indexes,
            removing,
            finish: None,
            status,
            changed,
        }
    }

    /// Whether, and why, the Job is done failing (or already found done); `wake` gets the time
    /// until its active deadline.
    pub fn finish_reason(
        &self,
        job: &Job,
        now: Timestamp,
        wake: &mut Vec<Duration>,
    ) -> Option<Finish> {
        if let Some(c) = condition(job, "SuccessCriteriaMet") {
            return Some(Finish::recorded(c, true));
        }
        if let Some(c) = condition(job, "FailureTarget") {
            return Some(Finish::recorded(c, false));
        }
        let spec = job.spec.as_ref()?;
        let policy = spec.pod_failure_policy.as_ref();
        let fail_job =
            self.pods.iter().filter(|p| is_failed(p, job)).find_map(
                |p| match failure_policy::judge(policy, p) {
                    Verdict::FailJob(message) => Some(message),
                    _ => None,
                },
            );
        if let Some(message) = fail_job {
            return Some(Finish::failure("PodFailurePolicy", &message));
        }
        let backoff_limit = spec.backoff_limit.unwrap_or(6);
        if self.failed > backoff_limit || self.past_backoff_limit_on_failure(job, backoff_limit) {
            return Some(Finish::failure(
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ));
        }
        let (Some(deadline), Some(start)) = (spec.active_deadline_seconds, &self.status.start_time)
        else {
            return None;
        };
        if is_suspended(job) {
            return None;
        }
        let allowed = Duration::from_secs(deadline.max(0) as u64);
        let elapsed = Duration::try_from(now.duration_since(start.0)).unwrap_or_default();
        if elapsed >= allowed {
            return Some(Finish::failure(
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ));
        }
        wake.push(allowed - elapsed);
        None
    }

    /// With `restartPolicy: OnFailure`, container restarts in running pods count as failures.
    fn past_backoff_limit_on_failure(&self, job: &Job, limit: i32) -> bool {
        let policy = job
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|s| s.restart_policy.as_deref());
        if policy != Some("OnFailure") {
            return false;
        }
        let restarts: i32 = self
            .pods
            .iter()
            .filter(|p| matches!(phase(p), "Running" | "Pending"))
            .filter_map(|p| p.status.as_ref())
            .flat_map(|s| {
                let init = s.init_container_statuses.iter().flatten();
                init.chain(s.container_statuses.iter().flatten())
            })
            .map(|c| c.restart_count)
            .sum();
        if limit == 0 {
            restarts > 0
        } else {
            restarts >= limit
        }
    }

    /// Whether every completion is done and nothing runs.
    pub fn complete(&self, job: &Job) -> bool {
        let active = self.active.len() as i32 + self.created;
        match job.spec.as_ref().and_then(|s| s.completions) {
            None => self.succeeded > 0 && active == 0,
            Some(c) => self.succeeded >= c && active == 0,
        }
    }

    /// The Suspended condition follows `spec.suspend`; resuming restarts the active deadline.
    pub fn update_suspended(&mut self, job: &Job, recorder: &Recorder, now: Timestamp) {
        let conditions = self.status.conditions.get_or_insert_default();
        let existing = conditions.iter_mut().find(|c| c.type_ == "Suspended");
        let (status, reason, message, event) = if is_suspended(job) {
            ("True", "JobSuspended", "Job suspended", "Suspended")
        } else {
            ("False", "JobResumed", "Job resumed", "Resumed")
        };
        let condition = new_condition("Suspended", status, reason, message, now);
        match existing {
            Some(c)
                if c.status == status
                    && c.reason.as_deref() == Some(reason)
                    && c.message.as_deref() == Some(message) =>
            {
                return;
            }
            Some(c) => *c = condition,
            // From nothing to False says nothing.
            None if status == "False" => return,
            None => conditions.push(condition),
        }
        self.changed = true;
        recorder.normal(job, event, message.into());
        if !is_suspended(job) {
            self.status.start_time = Some(Time(now));
        }
    }
}

pub(super) fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}
