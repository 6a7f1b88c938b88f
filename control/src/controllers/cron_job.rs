//! The CronJob controller (`cronjob_controllerv2.go`): at each time its `schedule` names (read
//! in `timeZone`, by default the control plane's), a CronJob creates the Job
//! `<name>-<minutes since the epoch>`, a name that makes a second attempt at the same time a
//! conflict rather than a duplicate. `concurrencyPolicy` decides what happens while an earlier
//! Job runs (Allow, Forbid, Replace), `startingDeadlineSeconds` how late a missed time may still
//! start, the history limits how many finished Jobs are kept, `suspend` stops new runs. The
//! status lists the active Jobs and the last scheduled and successful times; the controller
//! wakes itself at the next scheduled time ([`schedule`]).

mod jobs;
mod schedule;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::jiff::tz::TimeZone;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use skiff_api::cron::Schedule;
use tracing::warn;

use super::informer::Informer;
use super::job::is_finished;
use super::ownership::{controller_of, is_controlled_by};
use super::pods::reason;
use super::recorder::{Recorder, reference};
use jobs::{clean_up_history, delete_job, job_for, job_name};

/// The annotation with a Job's scheduled time (RFC 3339, in the CronJob's time zone).
const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

#[derive(Debug, thiserror::Error)]
pub enum CronJobError {
    #[error("API request: {0}")]
    Api(#[from] kube::Error),
}

struct Context {
    client: Client,
    jobs: Store<Job>,
    recorder: Recorder,
}

/// Runs the controller until its watch ends.
pub async fn run(client: Client, cron_jobs: Informer<CronJob>, jobs: Informer<Job>) {
    let controller = cron_jobs.controller();
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), "cronjob-controller"),
        client,
        jobs: jobs.store(),
    });
    let controller = controller.reconcile_on(jobs.triggers(cron_job_of));
    if !(cron_jobs.synced().await && jobs.synced().await) {
        return;
    }
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// The CronJob a Job's change concerns.
fn cron_job_of(job: &Job) -> Option<ObjectRef<CronJob>> {
    let r = controller_of(&job.metadata).filter(|r| r.kind == "CronJob")?;
    Some(ObjectRef::new(&r.name).within(&job.namespace().unwrap_or_default()))
}

/// Complete (rather than Failed), for `lastSuccessfulTime`.
fn succeeded(job: &Job) -> bool {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_deref());
    conditions
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Complete" && c.status == "True")
}

async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Context>) -> Result<Action, CronJobError> {
    let namespace = cj.namespace().unwrap_or_default();
    let uid = cj.uid().unwrap_or_default();
    let jobs = ctx.jobs.state_filter(|j| {
        j.namespace().as_deref() == Some(&namespace) && is_controlled_by(&j.metadata, &uid)
    });
    let mut status = cj.status.clone().unwrap_or_default();
    let before = status.clone();
    let next = sync(&cj, &jobs, &mut status, &ctx).await;
    if cj.meta().deletion_timestamp.is_none() {
        clean_up_history(&cj, &jobs, &mut status, &ctx).await;
    }
    // Kubernetes leaves an empty list out; so does the comparison.
    if status.active.as_ref().is_some_and(Vec::is_empty) {
        status.active = None;
    }
    if status != before {
        write_status(&ctx.client, &cj, &status).await?;
    }
    Ok(match next? {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// `syncCronJob`: brings `status` up to date with `jobs` and starts the Job due now, if any;
/// returns when to look again.
async fn sync(
    cj: &CronJob,
    jobs: &[Arc<Job>],
    status: &mut CronJobStatus,
    ctx: &Context,
) -> Result<Option<Duration>, CronJobError> {
    let recorder = &ctx.recorder;
    let active = status.active.get_or_insert_default();
    for job in jobs {
        let listed = active.iter().any(|r| r.uid == job.uid());
        if !listed && !is_finished(job) {
            recorder.warning(
                cj,
                "UnexpectedJob",
                format!(
                    "Saw a job that the controller did not create or forgot: {}",
                    job.name_any()
                ),
            );
        } else if listed && is_finished(job) {
            active.retain(|r| r.uid != job.uid());
            let outcome = if succeeded(job) { "Complete" } else { "Failed" };
            recorder.normal(
                cj,
                "SawCompletedJob",
                format!("Saw completed job: {}, status: {outcome}", job.name_any()),
            );
        }
        if succeeded(job)
            && let Some(done) = job.status.as_ref().and_then(|s| s.completion_time.clone())
            && status
                .last_successful_time
                .as_ref()
                .is_none_or(|t| t.0 < done.0)
        {
            status.last_successful_time = Some(done);
        }
    }
    let active = status.active.get_or_insert_default();
    let namespace = cj.namespace().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut gone = Vec::new();
    for r in active
        .iter()
        .filter(|r| !jobs.iter().any(|j| j.uid() == r.uid))
    {
        // The cache may lag behind a Job just created: only the API can say it is gone.
        let name = r.name.clone().unwrap_or_default();
        if api.get_opt(&name).await?.is_none() {
            recorder.normal(cj, "MissingJob", format!("Active job went missing: {name}"));
            gone.push(r.uid.clone());
        }
    }
    active.retain(|r| !gone.contains(&r.uid));
    // A CronJob being deleted only keeps its status.
    let Some(spec) = cj
        .spec
        .as_ref()
        .filter(|_| cj.meta().deletion_timestamp.is_none())
    else {
        return Ok(None);
    };
    let tz = match &spec.time_zone {
        Some(name) => match TimeZone::get(name) {
            Ok(tz) => tz,
            Err(e) => {
                recorder.warning(
                    cj,
                    "UnknownTimeZone",
                    format!("invalid timeZone: {name:?}: {e}"),
                );
                return Ok(None);
            }
        },
        None => TimeZone::system(),
    };
    if spec.suspend == Some(true) {
        return Ok(None);
    }
    let sched = match Schedule::parse(&spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            let message = format!("unparseable schedule: {:?} : {e}", spec.schedule);
            recorder.warning(cj, "UnparseableSchedule", message);
            return Ok(None);
        }
    };
    let now = Timestamp::now();
    let times = schedule::Times {
        sched: &sched,
        tz: &tz,
    };
    let created = cj.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let last = status.last_schedule_time.as_ref().map(|t| t.0);
    let deadline = spec.starting_deadline_seconds;
    let due = match times.most_recent(last.unwrap_or(created), deadline, now) {
        Ok(due) => due,
        Err(e) => {
            let message = format!("invalid schedule: {} : {e}", spec.schedule);
            recorder.warning(cj, "InvalidSchedule", message);
            return Ok(None);
        }
    };
    if due.too_many_missed {
        recorder.warning(
            cj,
            "TooManyMissedTimes",
            "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
        );
    }
    let wake = |status: &CronJobStatus| {
        let last = status.last_schedule_time.as_ref().map(|t| t.0);
        times.until_next(last.unwrap_or(created), now)
    };
    let Some(scheduled) = due.time else {
        return Ok(wake(status));
    };
    if deadline.is_some_and(|d| scheduled + Duration::from_secs(d.max(0) as u64) < now) {
        let when = scheduled.strftime("%a, %d %b %Y %H:%M:%S %z");
        recorder.warning(
            cj,
            "MissSchedule",
            format!("Missed scheduled time to start a job: {when}"),
        );
        return Ok(wake(status));
    }
    let name = job_name(&cj.name_any(), scheduled);
    let active = status.active.get_or_insert_default();
    if active.iter().any(|r| r.name.as_deref() == Some(&name)) || last == Some(scheduled) {
        return Ok(wake(status));
    }
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            recorder.normal(
                cj,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
            );
            return Ok(wake(status));
        }
        Some("Replace") => {
            // One at a time, so that a failure leaves the Jobs not deleted listed.
            while let Some(r) = active.first() {
                let job = r.name.clone().unwrap_or_default();
                if let Err(e) = delete_job(&api, &job).await {
                    recorder.warning(cj, "FailedDelete", format!("Deleted job: {}", reason(&e)));
                    return Err(e.into());
                }
                recorder.normal(cj, "SuccessfulDelete", format!("Deleted job {job}"));
                active.remove(0);
            }
        }
        _ => {}
    }
    let job = match api
        .create(
            &PostParams::default(),
            &job_for(
                cj,
                &name,
                scheduled,
                spec.time_zone.is_some().then_some(&tz),
            ),
        )
        .await
    {
        Ok(job) => {
            recorder.normal(cj, "SuccessfulCreate", format!("Created job {name}"));
            job
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            // Created before, by this controller if it controls it: then only the status
            // update was lost.
            let job = api.get(&name).await?;
            if !is_controlled_by(&job.metadata, &cj.uid().unwrap_or_default()) {
                return Ok(None);
            }
            job
        }
        Err(e) => {
            recorder.warning(
                cj,
                "FailedCreate",
                format!("Error creating job: {}", reason(&e)),
            );
            return Err(e.into());
        }
    };
    let active = status.active.get_or_insert_default();
    if !active.iter().any(|r| r.uid == job.uid()) {
        active.push(reference(&job));
    }
    status.last_schedule_time = Some(Time(scheduled));
    Ok(wake(status))
}

async fn write_status(
    client: &Client,
    cj: &CronJob,
    status: &CronJobStatus,
) -> Result<(), kube::Error> {
    let api: Api<CronJob> = Api::namespaced(client.clone(), &cj.namespace().unwrap_or_default());
    let mut status = serde_json::to_value(status).unwrap_or_default();
    // An empty list is left out, as Kubernetes leaves it; a merge patch must say so.
    if let Some(s) = status.as_object_mut()
        && s.get("active")
            .and_then(|a| a.as_array())
            .is_none_or(Vec::is_empty)
    {
        s.insert("active".into(), serde_json::Value::Null);
    }
    let patch = json!({"metadata": {"resourceVersion": cj.resource_version()}, "status": status});
    match api
        .patch_status(
            &cj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

fn error_policy(cj: Arc<CronJob>, err: &CronJobError, _ctx: Arc<Context>) -> Action {
    warn!(cronjob = %cj.name_any(), error = %err, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(1))
}
