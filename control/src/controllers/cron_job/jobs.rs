//! What a CronJob does to its Jobs: makes the Job of a scheduled time (`getJobFromTemplate2`),
//! deletes Jobs (Replace, history limits) and keeps only the newest finished ones
//! (`cleanupFinishedJobs`).

use std::sync::Arc;

use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::jiff::tz::TimeZone;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PropagationPolicy};

use super::schedule;
use super::{Context, SCHEDULED_TIMESTAMP, succeeded};
use crate::controllers::job::is_finished;
use crate::controllers::ownership::controller_reference;
use crate::controllers::pods::reason;

/// `<cronjob>-<scheduled time in minutes since the epoch>`.
pub(super) fn job_name(cron_job: &str, scheduled: Timestamp) -> String {
    format!("{cron_job}-{}", scheduled.as_second().div_euclid(60))
}

/// The Job for `scheduled` (`getJobFromTemplate2`): the template's labels, annotations and spec,
/// the scheduled time, and the CronJob as its controller.
pub(super) fn job_for(
    cj: &CronJob,
    name: &str,
    scheduled: Timestamp,
    tz: Option<&TimeZone>,
) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP.into(),
        schedule::rfc3339(scheduled, tz.cloned().unwrap_or(TimeZone::UTC)),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: cj.namespace(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_reference(cj)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Deletes a Job and, in the background, its pods.
pub(super) async fn delete_job(api: &Api<Job>, name: &str) -> Result<(), kube::Error> {
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes the oldest finished Jobs beyond `successfulJobsHistoryLimit` and
/// `failedJobsHistoryLimit` (`cleanupFinishedJobs`).
pub(super) async fn clean_up_history(
    cj: &CronJob,
    jobs: &[Arc<Job>],
    status: &mut CronJobStatus,
    ctx: &Context,
) {
    let Some(spec) = cj.spec.as_ref() else {
        return;
    };
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &cj.namespace().unwrap_or_default());
    for (ok, limit) in [
        (true, spec.successful_jobs_history_limit),
        (false, spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let mut finished: Vec<&Arc<Job>> = jobs
            .iter()
            .filter(|j| is_finished(j) && succeeded(j) == ok)
            .collect();
        let surplus = finished.len().saturating_sub(limit.max(0) as usize);
        // Oldest start first; never-started ones last; names break ties.
        let start = |j: &Job| {
            j.status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0)
        };
        finished.sort_by(|a, b| match (start(a), start(b)) {
            (Some(x), Some(y)) if x != y => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            _ => a.name_any().cmp(&b.name_any()),
        });
        for job in finished.into_iter().take(surplus) {
            match delete_job(&api, &job.name_any()).await {
                Ok(()) => {
                    if let Some(active) = status.active.as_mut() {
                        active.retain(|r| r.uid != job.uid());
                    }
                    ctx.recorder.normal(
                        cj,
                        "SuccessfulDelete",
                        format!("Deleted job {}", job.name_any()),
                    );
                }
                Err(e) => {
                    ctx.recorder
                        .warning(cj, "FailedDelete", format!("Deleted job: {}", reason(&e)))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_named_by_their_scheduled_minute() {
        let t: Timestamp = "2024-09-10T12:00:00Z".parse().unwrap();
        assert_eq!(job_name("hello", t), "hello-28766160");
    }
}
