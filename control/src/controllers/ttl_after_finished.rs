//! The TTL-after-finished controller (`pkg/controller/ttlafterfinished`): deletes a Job
//! `ttlSecondsAfterFinished` seconds after it finished (its `Complete` or `Failed` condition's
//! transition time), in the foreground, so its pods go before it does.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};
use tracing::{info, warn};

use super::informer::Informer;

struct Context {
    client: Client,
}

/// Runs the controller until the Job watch ends.
pub async fn run(client: Client, jobs: Informer<Job>) {
    let controller = jobs.controller();
    if !jobs.synced().await {
        return;
    }
    controller
        .run(reconcile, error_policy, Arc::new(Context { client }))
        .for_each(|_| async {})
        .await;
}

/// When the Job's time is up, if it is finished and has a TTL.
fn expires_at(job: &Job) -> Option<Timestamp> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let finished = job
        .status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")?;
    let at = finished.last_transition_time.as_ref()?.0;
    at.checked_add(Duration::from_secs(ttl.max(0) as u64)).ok()
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(expiry) = expires_at(&job) else {
        return Ok(Action::await_change());
    };
    let left = Duration::try_from(expiry.duration_since(Timestamp::now())).unwrap_or_default();
    if !left.is_zero() {
        return Ok(Action::requeue(left + Duration::from_millis(100)));
    }
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    // The cache may be behind: the TTL is checked again on the Job as it is now, and the delete
    // applies only to that very version.
    let fresh = match api.get(&job.name_any()).await {
        Ok(fresh) => fresh,
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Action::await_change()),
        Err(e) => return Err(e),
    };
    if fresh.uid() != job.uid() || expires_at(&fresh).is_none_or(|at| at > Timestamp::now()) {
        return Ok(Action::await_change());
    }
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(Preconditions {
            uid: fresh.uid(),
            resource_version: fresh.resource_version(),
        }),
        ..DeleteParams::default()
    };
    info!(job = %job.name_any(), namespace = ?job.namespace(), "deleting a finished job whose TTL expired");
    match api.delete(&job.name_any(), &params).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(e),
    }
}

fn error_policy(job: Arc<Job>, err: &kube::Error, _ctx: Arc<Context>) -> Action {
    warn!(job = %job.name_any(), error = %err, "deleting an expired job failed; retrying");
    Action::requeue(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_finished_job_expires_its_ttl_after_its_finish() {
        let job = |ttl: serde_json::Value, conditions: serde_json::Value| -> Job {
            serde_json::from_value(json!({
                "metadata": {"name": "j"},
                "spec": {"ttlSecondsAfterFinished": ttl, "template": {}},
                "status": {"conditions": conditions},
            }))
            .unwrap()
        };
        let done = json!([
            {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"},
            {"type": "Complete", "status": "True", "lastTransitionTime": "2024-01-01T00:00:01Z"},
        ]);
        assert_eq!(
            expires_at(&job(json!(30), done.clone())),
            Some("2024-01-01T00:00:31Z".parse().unwrap())
        );
        assert_eq!(expires_at(&job(json!(null), done)), None);
        let running = json!([{"type": "Suspended", "status": "False"}]);
        assert_eq!(expires_at(&job(json!(30), running)), None);
    }
}
