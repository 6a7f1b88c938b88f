//! Ending pods: a pod being deleted has its containers stopped within its grace period, its
//! sandboxes and volumes removed, and is then deleted for good (grace 0, UID precondition), as the
//! kubelet finishes a graceful deletion. A finished pod releases its sandboxes but keeps its logs.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Preconditions};
use kube::{Api, ResourceExt};
use skiff_api::events::EventType;
use tracing::{debug, warn};

use super::state::PodState;
use super::{Context, PodError};
use crate::volumes::remove_volumes;

/// Stops what runs, removes the sandboxes, the pod's network and cgroup; the pod's directory
/// stays.
pub(super) async fn release(state: &mut PodState, ctx: &Context) {
    for (runtime, id) in state.sandboxes.values() {
        if let Err(e) = runtime.remove(id).await {
            warn!(sandbox = %id, error = %e, "removing a sandbox failed");
        }
    }
    state.sandboxes.clear();
    if state.network.take().is_some() | state.cgroup.take().is_some() {
        super::sandbox::teardown(&state.uid, ctx).await;
    }
}

async fn stop(pod: Option<&Pod>, state: &mut PodState, grace: Duration, ctx: &Context) {
    for (name, cs) in &state.containers {
        if !cs.running() {
            continue;
        }
        let Some(handler) = cs.handler else { continue };
        let Some((runtime, id)) = state.sandboxes.get(handler) else {
            continue;
        };
        if let Some(pod) = pod {
            let init = pod
                .spec
                .as_ref()
                .and_then(|s| s.init_containers.as_ref())
                .is_some_and(|i| i.iter().any(|c| &c.name == name));
            ctx.events.pod(
                pod,
                Some((name, init)),
                EventType::Normal,
                "Killing",
                format!("Stopping container {name}"),
            );
        }
        let mut grace = grace;
        let spec = pod.and_then(|p| {
            p.spec
                .iter()
                .flat_map(|s| {
                    s.containers
                        .iter()
                        .chain(s.init_containers.iter().flatten())
                })
                .find(|c| &c.name == name)
        });
        if let (Some(pod), Some(spec)) = (pod, spec)
            && !grace.is_zero()
            && let Some(hook) = super::hooks::pre_stop(spec)
        {
            // The hook runs within the grace period; SIGTERM gets what it leaves (at least 2 s,
            // as the kubelet grants).
            let started = std::time::Instant::now();
            let ip = state.network.as_ref().and_then(|n| n.ips.first().copied());
            let target = super::hooks::HookTarget {
                container: spec,
                runtime: &**runtime,
                sandbox: id,
                pod_ip: ip,
            };
            match tokio::time::timeout(grace, super::hooks::run(hook, target)).await {
                Ok(Ok(())) => {}
                Ok(Err(message)) => {
                    ctx.events
                        .pod(pod, Some((name, false)), EventType::Warning, "FailedPreStopHook", message)
                }
                Err(_) => ctx.events.pod(
                    pod,
                    Some((name, false)),
                    EventType::Warning,
                    "FailedPreStopHook",
                    format!("PreStopHook for Container {name:?} did not complete within the grace period"),
                ),
            }
            grace = grace
                .saturating_sub(started.elapsed())
                .max(Duration::from_secs(2));
        }
        if let Err(e) = runtime.stop_container(id, name, grace).await {
            warn!(container = %name, error = %e, "stopping a container failed");
        }
    }
    release(state, ctx).await;
}

fn remove_pod_dir(ctx: &Context, uid: &str) {
    let dir = ctx.pods_dir.join(uid);
    if let Err(e) = remove_volumes(&dir) {
        warn!(dir = %dir.display(), error = %e, "removing pod volumes failed");
    }
    if let Err(e) = std::fs::remove_dir_all(&dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!(dir = %dir.display(), error = %e, "removing the pod directory failed");
    }
}

/// Finishes the graceful deletion of `pod`.
pub(super) async fn delete(pod: &Pod, ctx: &Context) -> Result<(), PodError> {
    let uid = pod.uid().unwrap_or_default();
    let grace = pod
        .metadata
        .deletion_grace_period_seconds
        .unwrap_or(30)
        .max(0) as u64;
    debug!(uid, grace, "finishing the graceful deletion of a pod");
    match ctx.forget(&uid) {
        Some(state) => {
            let mut state = state.lock().await;
            stop(Some(pod), &mut state, Duration::from_secs(grace), ctx).await;
        }
        // Not run by this agent since it started: an earlier one may have left its network.
        None => super::sandbox::teardown(&uid, ctx).await,
    }
    remove_pod_dir(ctx, &uid);
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&pod.name_any(), &params).await {
        Ok(_) => Ok(()),
        // Already gone, or replaced by a new pod of the same name: nothing of ours is left.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(source) => Err(PodError::Delete {
            pod: pod.name_any(),
            source,
        }),
    }
}

/// Tears down a pod that disappeared without a graceful deletion (force-deleted).
pub(super) async fn forget(ctx: &Context, uid: &str) {
    if let Some(state) = ctx.forget(uid) {
        debug!(
            uid,
            "pod removed without a graceful deletion; tearing its sandboxes down"
        );
        let mut state = state.lock().await;
        stop(None, &mut state, Duration::ZERO, ctx).await;
        remove_pod_dir(ctx, uid);
    }
}
