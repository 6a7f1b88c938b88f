//! Lifecycle hooks: `postStart` right after a container starts (a failure kills it, as the
//! kubelet does) and `preStop` before it is stopped (within the grace period, whose rest is
//! left for SIGTERM). exec hooks run in the container, httpGet hooks reach the pod's IP from the
//! node, `sleep` waits.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};
use skiff_sandbox::{PodSandbox, SandboxId};

pub(super) fn post_start(container: &Container) -> Option<&LifecycleHandler> {
    container.lifecycle.as_ref()?.post_start.as_ref()
}

pub(super) fn pre_stop(container: &Container) -> Option<&LifecycleHandler> {
    container.lifecycle.as_ref()?.pre_stop.as_ref()
}

/// Where a hook runs: the container, in its sandbox of `runtime`.
pub(super) struct HookTarget<'a> {
    pub container: &'a Container,
    pub runtime: &'a dyn PodSandbox,
    pub sandbox: &'a SandboxId,
    pub pod_ip: Option<IpAddr>,
}

/// Runs `handler` for the target's container; `Err` is the kubelet's message for the failure.
pub(super) async fn run(handler: &LifecycleHandler, target: HookTarget<'_>) -> Result<(), String> {
    let container = target.container;
    let pod_ip = target.pod_ip;
    if let Some(sleep) = &handler.sleep {
        tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64)).await;
        return Ok(());
    }
    if let Some(http) = &handler.http_get {
        let path = http.path.as_deref().unwrap_or("/");
        return super::probes::http_get_action(http, container, pod_ip)
            .await
            .map_err(|e| {
                format!(
                    "Http lifecycle hook ({path}) for Container {:?} failed - error: {e}",
                    container.name
                )
            });
    }
    if let Some(exec) = &handler.exec {
        let command = exec.command.clone().unwrap_or_default();
        // The hook's own bound is the caller's (the grace period for preStop).
        let (runtime, sandbox) = (target.runtime, target.sandbox);
        return super::probes::run_exec(
            runtime,
            sandbox,
            &container.name,
            &command,
            Duration::from_secs(24 * 3600),
        )
        .await
        .map_err(|e| {
            format!(
                "Exec lifecycle hook ({command:?}) for Container {:?} failed - error: {e}",
                container.name
            )
        });
    }
    Err("the lifecycle hook names no action".into())
}
