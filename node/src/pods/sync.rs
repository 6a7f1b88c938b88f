//! Bringing a pod's containers to what its spec asks: volumes first, then init containers one at
//! a time, then the app containers; restarts per `restartPolicy` with back-off. Returns when the
//! pod should be looked at again if nothing else happens (a back-off ending).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::{Api, ResourceExt};
use skiff_api::events::EventType;
use skiff_api::quantity::Quantity;
use skiff_sandbox::{
    ArtifactKind, ContainerSpec, ExitStatus, PodSandbox, ResourceLimits, SandboxId, SandboxSpec,
};
use tokio::sync::watch;
use tracing::debug;

use super::state::{ContainerState, PodState, Run, Waiting};
use super::termination::TerminationMessage;
use super::{Context, PodError};
use crate::command::container_argv;
use crate::env::container_env;
use crate::images::{PullPolicy, auths_from_secrets};
use crate::logs::log_path;
use crate::objects::PodFacts;
use crate::volumes::{container_mounts, prepare_volumes};

/// The runtime that serves pods whose image is not Wasm and that name no RuntimeClass.
const CONTAINER_HANDLER: &str = "runc";
const WASM_HANDLER: &str = "wasmtime";

pub(super) fn facts(ctx: &Context, state: &PodState) -> PodFacts {
    PodFacts {
        node_name: ctx.node_name.clone(),
        host_ip: ctx.host_ip.clone(),
        pod_ip: state
            .network
            .as_ref()
            .and_then(|n| n.ips.first())
            .map(|ip| ip.to_string())
            .unwrap_or_default(),
        node_allocatable_cpu_millis: ctx.allocatable_cpu_millis,
        node_allocatable_memory_bytes: ctx.allocatable_memory_bytes,
        ..PodFacts::default()
    }
}

/// How often ConfigMap, Secret, downwardAPI and projected volumes are brought up to date
/// (the kubelet takes up to its sync period, a minute, plus its cache's TTL).
const VOLUME_RESYNC: Duration = Duration::from_secs(10);

/// Whether `pod` has volumes whose content follows API objects.
fn refreshed_volumes(pod: &Pod) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .any(|v| {
            v.config_map.is_some()
                || v.secret.is_some()
                || v.downward_api.is_some()
                || v.projected.is_some()
        })
}

pub(super) async fn sync(
    pod: &Pod,
    state: &mut PodState,
    ctx: &Context,
) -> Result<Option<Duration>, PodError> {
    if state.start_time.is_none() {
        state.start_time = Some(jiff::Timestamp::now());
    }
    if !state.adopted {
        state.adopted = true;
        adopt(pod, state, ctx).await;
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let refresh = refreshed_volumes(pod);
    let due = refresh
        && state
            .volumes_synced
            .is_none_or(|at| at.elapsed() >= VOLUME_RESYNC);
    if state.volumes.is_some() && due {
        // Republished in place (atomically, through `..data`) when the objects changed; a
        // failure keeps what the containers see now.
        let dir = ctx.pods_dir.join(&state.uid);
        match prepare_volumes(pod, &dir, &ctx.objects, &facts(ctx, state)).await {
            Ok(volumes) => state.volumes = Some(volumes),
            Err(e) => debug!(pod = %pod.name_any(), error = %e, "refreshing volumes failed"),
        }
        state.volumes_synced = Some(Instant::now());
    }
    if state.volumes.is_none() {
        state.volumes_synced = Some(Instant::now());
        let dir = ctx.pods_dir.join(&state.uid);
        std::fs::create_dir_all(&dir).map_err(|source| PodError::Dir {
            path: dir.clone(),
            source,
        })?;
        match prepare_volumes(pod, &dir, &ctx.objects, &facts(ctx, state)).await {
            Ok(volumes) => state.volumes = Some(volumes),
            Err(e) => {
                ctx.events.pod(
                    pod,
                    None,
                    EventType::Warning,
                    "FailedMount",
                    format!("MountVolume.SetUp failed: {e}"),
                );
                return Ok(Some(Duration::from_secs(2)));
            }
        }
    }
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    for init in spec.init_containers.as_deref().unwrap_or(&[]) {
        let cs = state.container(&init.name);
        if cs.succeeded() {
            continue;
        }
        if cs.running() {
            return Ok(None);
        }
        if cs.exit().is_some() && policy == "Never" {
            // The pod has failed; nothing more starts.
            return Ok(None);
        }
        return ensure_running(pod, init, true, state, ctx).await;
    }
    let mut next: Option<Duration> = refresh.then_some(VOLUME_RESYNC);
    for container in &spec.containers {
        let cs = state.container(&container.name);
        if cs.running() {
            continue;
        }
        if let Some(exit) = cs.exit() {
            let restart = match policy {
                "Never" => false,
                "OnFailure" => exit.exit_code != 0,
                _ => true,
            };
            if !restart {
                continue;
            }
        }
        if let Some(wait) = ensure_running(pod, container, false, state, ctx).await? {
            next = Some(next.map_or(wait, |n: Duration| n.min(wait)));
        }
    }
    Ok(next)
}

/// Starts `container` unless a back-off holds it; `Some(wait)` when it must be looked at again.
async fn ensure_running(
    pod: &Pod,
    container: &Container,
    init: bool,
    state: &mut PodState,
    ctx: &Context,
) -> Result<Option<Duration>, PodError> {
    let now = Instant::now();
    let pod_label = format!(
        "{}_{}({})",
        pod.name_any(),
        pod.namespace().unwrap_or_default(),
        state.uid
    );
    let cs = state.container(&container.name);
    if let Some(exit) = cs.exit().cloned() {
        // A run that lasted long resets the back-off, as the kubelet forgets old entries.
        let lasted = exit
            .finished_at
            .duration_since(exit.started_at)
            .unwrap_or_default();
        if lasted > 2 * super::state::MAX_BACKOFF {
            cs.restart_backoff.reset();
        }
        if let Some(wait) = cs.restart_backoff.try_now(now) {
            let message = format!(
                "back-off {}s restarting failed container={} pod={pod_label}",
                cs.restart_backoff.current().as_secs(),
                container.name
            );
            if cs.waiting.as_ref().map(|w| w.reason) != Some("CrashLoopBackOff") {
                ctx.events.pod(
                    pod,
                    Some((&container.name, init)),
                    EventType::Warning,
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {} in pod {pod_label}",
                        container.name
                    ),
                );
            }
            cs.waiting = Some(Waiting {
                reason: "CrashLoopBackOff",
                message: Some(message),
            });
            return Ok(Some(wait));
        }
    }
    // A container that failed to start waits out its back-off as one that crashed does.
    let cs = state.container(&container.name);
    if cs.exit().is_none()
        && cs.waiting.as_ref().map(|w| w.reason) == Some("RunContainerError")
        && let Some(wait) = cs.restart_backoff.remaining(now)
    {
        return Ok(Some(wait));
    }
    match start(pod, container, init, state, ctx).await {
        Ok(()) => Ok(None),
        Err(Hold { waiting, retry }) => {
            let cs = state.container(&container.name);
            cs.waiting = Some(waiting);
            Ok(retry)
        }
    }
}

/// Why a container did not start, and when to try again.
struct Hold {
    waiting: Waiting,
    retry: Option<Duration>,
}

fn hold(reason: &'static str, message: String, retry: Option<Duration>) -> Hold {
    Hold {
        waiting: Waiting {
            reason,
            message: Some(message),
        },
        retry,
    }
}

async fn start(
    pod: &Pod,
    container: &Container,
    init: bool,
    state: &mut PodState,
    ctx: &Context,
) -> Result<(), Hold> {
    let at = Some((container.name.as_str(), init));
    let image = container.image.clone().unwrap_or_default();
    let namespace = pod.namespace().unwrap_or_default();

    // The image.
    let cs = state.container(&container.name);
    if let Some(error) = cs.pull_error.clone()
        && let Some(wait) = cs.pull_backoff.try_now(Instant::now())
    {
        if cs.waiting.as_ref().map(|w| w.reason) != Some("ImagePullBackOff") {
            ctx.events.pod(
                pod,
                at,
                EventType::Normal,
                "BackOff",
                format!("Back-off pulling image \"{image}\""),
            );
        }
        return Err(hold(
            "ImagePullBackOff",
            format!("Back-off pulling image \"{image}\": {error}"),
            Some(wait),
        ));
    }
    let policy = PullPolicy::from_container(container);
    let auths = pull_auths(pod, ctx).await;
    let present = ctx.images.is_present(&image);
    let will_pull = policy == PullPolicy::Always || !present;
    if will_pull && policy != PullPolicy::Never {
        ctx.events.pod(
            pod,
            at,
            EventType::Normal,
            "Pulling",
            format!("Pulling image \"{image}\""),
        );
    }
    let waited = Instant::now();
    let pulled = match ctx.images.ensure(&image, policy, &auths).await {
        Ok(p) => p,
        Err(e) => {
            ctx.events
                .pod(pod, at, EventType::Warning, "Failed", e.to_string());
            ctx.events.pod(
                pod,
                at,
                EventType::Warning,
                "Failed",
                format!("Error: {}", e.reason()),
            );
            let cs = state.container(&container.name);
            cs.pull_backoff.try_now(Instant::now());
            cs.pull_error = Some(format!("{}: {e}", e.reason()));
            return Err(hold(
                e.reason(),
                e.to_string(),
                Some(super::state::INITIAL_BACKOFF),
            ));
        }
    };
    match &pulled.pulled {
        Some(report) => ctx.events.pod(
            pod,
            at,
            EventType::Normal,
            "Pulled",
            report.message(&image, waited.elapsed()),
        ),
        None => ctx.events.pod(
            pod,
            at,
            EventType::Normal,
            "Pulled",
            format!("Container image \"{image}\" already present on machine"),
        ),
    }
    let cs = state.container(&container.name);
    cs.pull_backoff.reset();
    cs.pull_error = None;
    let artifact = pulled.artifact;

    // The runtime.
    let handler = match runtime_handler(pod, &artifact.kind, ctx).await {
        Ok(h) => h,
        Err(message) => return Err(hold("CreateContainerConfigError", message, None)),
    };
    let Some(runtime) = ctx.runtime(&handler) else {
        return Err(hold(
            "CreateContainerError",
            format!(
                "no runtime for handler \"{handler}\" is configured on node {}",
                ctx.node_name
            ),
            None,
        ));
    };

    // The pod's own network and cgroup, made for the first container that needs them.
    let needs = runtime.pod_resources(&artifact);
    let runs_as_process = needs.cgroup;
    if needs.network
        && let Err(message) = super::sandbox::ensure_network(pod, state, ctx).await
    {
        return Err(hold(
            "ContainerCreating",
            message,
            Some(Duration::from_secs(5)),
        ));
    }
    if needs.cgroup
        && let Err(message) = super::sandbox::ensure_cgroup(pod, state, ctx)
    {
        return Err(hold(
            "ContainerCreating",
            message,
            Some(Duration::from_secs(5)),
        ));
    }
    let security = if runs_as_process {
        match super::security::effective(
            pod,
            container,
            artifact.config.user.as_deref(),
            &ctx.seccomp_dir,
        ) {
            Ok(security) => security,
            Err(message) => {
                let message = format!(
                    "{message} (pod: \"{}_{}({})\", container: {})",
                    pod.name_any(),
                    namespace,
                    state.uid,
                    container.name
                );
                ctx.events.pod(
                    pod,
                    at,
                    EventType::Warning,
                    "Failed",
                    format!("Error: {message}"),
                );
                return Err(hold(
                    "CreateContainerConfigError",
                    message,
                    Some(Duration::from_secs(10)),
                ));
            }
        }
    } else {
        Default::default()
    };

    // Env, argv, mounts.
    let facts = facts(ctx, state);
    let env = match container_env(pod, container, &artifact.config, &ctx.objects, &facts).await {
        Ok(env) => env,
        Err(e) => {
            ctx.events
                .pod(pod, at, EventType::Warning, "Failed", format!("Error: {e}"));
            return Err(hold(
                "CreateContainerConfigError",
                e.to_string(),
                Some(Duration::from_secs(10)),
            ));
        }
    };
    for skipped in &env.skipped_keys {
        ctx.events.pod(
            pod,
            at,
            EventType::Warning,
            crate::env::SkippedKeys::REASON,
            skipped.to_string(),
        );
    }
    let program = image
        .rsplit('/')
        .next()
        .and_then(|n| n.split([':', '@']).next())
        .map(|n| format!("{n}.wasm"))
        .unwrap_or_else(|| container.name.clone());
    let argv = container_argv(container, &artifact.config, &env.vars, &program);
    let mut mounts = match state
        .volumes
        .as_ref()
        .map(|v| container_mounts(container, v, &env.vars))
    {
        Some(Ok(m)) => m,
        Some(Err(e)) => return Err(hold("CreateContainerConfigError", e.to_string(), None)),
        None => Vec::new(),
    };
    if runs_as_process {
        let own: Vec<String> = mounts.iter().map(|m| m.container_path.clone()).collect();
        mounts.extend(
            super::sandbox::etc_mounts(ctx, &state.uid)
                .into_iter()
                .filter(|m| !own.contains(&m.container_path)),
        );
    }

    // The sandbox.
    let sandbox = match sandbox_for(pod, state, &handler, runtime.clone(), ctx).await {
        Ok(id) => id,
        Err(e) => {
            return Err(hold(
                "CreateContainerError",
                e.to_string(),
                Some(Duration::from_secs(10)),
            ));
        }
    };

    let cs = state.container(&container.name);
    if cs.run.is_some() {
        cs.restart_count += 1;
    }
    let restart_count = cs.restart_count;
    let log = log_path(
        &ctx.logs_dir,
        &namespace,
        &pod.name_any(),
        &state.uid,
        &container.name,
        restart_count,
    );
    if let Some(dir) = log.parent()
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        return Err(hold(
            "CreateContainerError",
            format!("{}: {e}", dir.display()),
            None,
        ));
    }
    let termination = runs_as_process.then(|| {
        TerminationMessage::new(
            &ctx.pods_dir.join(&state.uid),
            container,
            restart_count,
            log.clone(),
        )
    });
    if let Some(termination) = &termination {
        match termination.prepare(container) {
            Ok(mount) => mounts.push(mount),
            Err(e) => {
                return Err(hold(
                    "CreateContainerError",
                    format!("creating the termination message file: {e}"),
                    None,
                ));
            }
        }
    }
    let spec = ContainerSpec {
        name: container.name.clone(),
        image: artifact.clone(),
        argv,
        env: env.vars,
        working_dir: container
            .working_dir
            .clone()
            .or(artifact.config.working_dir.clone()),
        mounts,
        resources: resource_limits(container),
        log_path: log,
        attempt: restart_count,
        security,
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
    };
    ctx.events.pod(
        pod,
        at,
        EventType::Normal,
        "Created",
        format!("Created container: {}", container.name),
    );
    let started_at = SystemTime::now();
    let id = match runtime.start_container(&sandbox, &spec).await {
        Ok(id) => id,
        Err(e) => {
            ctx.events
                .pod(pod, at, EventType::Warning, "Failed", format!("Error: {e}"));
            let cs = state.container(&container.name);
            cs.restart_backoff.try_now(Instant::now());
            return Err(hold(
                "RunContainerError",
                e.to_string(),
                Some(super::state::INITIAL_BACKOFF),
            ));
        }
    };
    ctx.events.pod(
        pod,
        at,
        EventType::Normal,
        "Started",
        format!("Started container {}", container.name),
    );
    super::sandbox::warm_networks(state, ctx);
    let (exited_tx, exited) = watch::channel(false);
    let cs = state.container(&container.name);
    if let Some(previous) = cs.run.take()
        && let Some(exit) = previous.exit
    {
        cs.last_termination = Some((previous.id, exit));
    }
    cs.run = Some(Run {
        id: id.clone(),
        started_at,
        exit: None,
        exited,
        health: super::probes::Health::initial(container),
        probes: Vec::new(),
    });
    cs.waiting = None;
    cs.image_id = Some(artifact.digest.clone());
    cs.handler = Some(runtime.handler());
    start_probes(pod, container, &id, &runtime, &sandbox, state, ctx);
    watch_exit(
        pod,
        container.name.clone(),
        id,
        (runtime.clone(), sandbox.clone()),
        termination,
        exited_tx,
        ctx,
    );
    if let Some(hook) = super::hooks::post_start(container) {
        let ip = state.network.as_ref().and_then(|n| n.ips.first().copied());
        let target = super::hooks::HookTarget {
            container,
            runtime: &*runtime,
            sandbox: &sandbox,
            pod_ip: ip,
        };
        if let Err(message) = super::hooks::run(hook, target).await {
            ctx.events
                .pod(pod, at, EventType::Warning, "FailedPostStartHook", message);
            let grace = pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30)
                .max(0) as u64;
            if let Err(e) = runtime
                .stop_container(&sandbox, &container.name, Duration::from_secs(grace))
                .await
            {
                debug!(container = %container.name, error = %e, "killing after a failed postStart hook");
            }
        }
    }
    Ok(())
}

/// Starts the probes of a run that has just started (or was adopted).
fn start_probes(
    pod: &Pod,
    container: &Container,
    id: &skiff_sandbox::ContainerId,
    runtime: &Arc<dyn PodSandbox>,
    sandbox: &SandboxId,
    state: &mut PodState,
    ctx: &Context,
) {
    let Some(shared) = ctx.state_by_uid(&state.uid) else {
        return;
    };
    let handles = super::probes::start(
        super::probes::Target {
            pod: Arc::new(pod.clone()),
            container: container.clone(),
            run: id.clone(),
            runtime: runtime.clone(),
            sandbox: sandbox.clone(),
            state: shared,
        },
        ctx,
    );
    if let Some(run) = state.container(&container.name).run.as_mut() {
        run.probes = handles;
    }
}

/// Waits for the run to end, records its exit in the pod's state and wakes the pod's worker.
fn watch_exit(
    pod: &Pod,
    container: String,
    id: skiff_sandbox::ContainerId,
    (runtime, sandbox): (Arc<dyn PodSandbox>, SandboxId),
    termination: Option<TerminationMessage>,
    exited_tx: watch::Sender<bool>,
    ctx: &Context,
) {
    let Some(state) = ctx.state_by_uid(&pod.uid().unwrap_or_default()) else {
        return;
    };
    let reference = kube::runtime::reflector::ObjectRef::from_obj(pod);
    let exits = ctx.exits.clone();
    tokio::spawn(async move {
        let mut exit = match runtime.wait_container(&sandbox, &container).await {
            Ok(exit) => exit,
            Err(e) => {
                debug!(container, error = %e, "waiting for a container failed");
                ExitStatus {
                    exit_code: 128,
                    reason: skiff_sandbox::ExitReason::Exited,
                    message: Some(e.to_string()),
                    started_at: SystemTime::now(),
                    finished_at: SystemTime::now(),
                }
            }
        };
        if exit.message.is_none() {
            exit.message = termination.and_then(|t| t.read(exit.exit_code));
        }
        {
            let mut state = state.lock().await;
            let cs: &mut ContainerState = state.container(&container);
            if let Some(run) = cs.run.as_mut().filter(|r| r.id == id) {
                run.exit = Some(exit);
                run.probes.drain(..).for_each(|p| p.abort());
            }
        }
        let _ = exited_tx.send(true);
        let _ = exits.send(reference);
    });
}

/// Takes over what an earlier agent started for `pod`: its network, and the containers the
/// runtimes still run (or that ended while no agent watched), with their restart counts.
async fn adopt(pod: &Pod, state: &mut PodState, ctx: &Context) {
    if let super::sandbox::NetworkReadiness::Ready(network) = ctx.network()
        && let Some(status) = network.status(&state.uid)
    {
        state.network = Some(super::sandbox::PodNetworkInfo {
            netns: Some(status.netns),
            ips: status.ips,
        });
    }
    let spec = sandbox_spec(pod, state, ctx);
    for runtime in ctx.runtimes.clone() {
        let Some((sandbox, containers)) = runtime.adopt(&spec).await else {
            continue;
        };
        if let Err(message) = super::sandbox::ensure_cgroup(pod, state, ctx) {
            debug!(pod = %pod.name_any(), message, "pod cgroup");
        }
        state
            .sandboxes
            .insert(runtime.handler(), (runtime.clone(), sandbox.clone()));
        for adopted in containers {
            let (exited_tx, exited) = watch::channel(adopted.exit.is_some());
            let cs = state.container(&adopted.name);
            cs.restart_count = adopted.attempt;
            cs.image_id = Some(adopted.image_digest.clone());
            cs.handler = Some(runtime.handler());
            let running = adopted.exit.is_none();
            let spec = pod
                .spec
                .iter()
                .flat_map(|s| {
                    s.containers
                        .iter()
                        .chain(s.init_containers.iter().flatten())
                })
                .find(|c| c.name == adopted.name)
                .cloned()
                .unwrap_or_default();
            cs.run = Some(Run {
                id: adopted.id.clone(),
                started_at: adopted.started_at,
                exit: adopted.exit,
                exited,
                health: super::probes::Health::initial(&spec),
                probes: Vec::new(),
            });
            if running {
                start_probes(pod, &spec, &adopted.id, &runtime, &sandbox, state, ctx);
                let log = log_path(
                    &ctx.logs_dir,
                    &pod.namespace().unwrap_or_default(),
                    &pod.name_any(),
                    &state.uid,
                    &adopted.name,
                    adopted.attempt,
                );
                let termination = TerminationMessage::new(
                    &ctx.pods_dir.join(&state.uid),
                    &spec,
                    adopted.attempt,
                    log,
                );
                watch_exit(
                    pod,
                    adopted.name,
                    adopted.id,
                    (runtime.clone(), sandbox.clone()),
                    Some(termination),
                    exited_tx,
                    ctx,
                );
            }
        }
    }
}

fn sandbox_spec(pod: &Pod, state: &PodState, ctx: &Context) -> SandboxSpec {
    SandboxSpec {
        uid: state.uid.clone(),
        namespace: pod.namespace().unwrap_or_default(),
        name: pod.name_any(),
        dir: ctx.pods_dir.join(&state.uid),
        network_namespace: state.network.as_ref().and_then(|n| n.netns.clone()),
        cgroup_parent: state.cgroup.clone().flatten(),
        hostname: super::sandbox::hostname(pod),
    }
}

async fn sandbox_for(
    pod: &Pod,
    state: &mut PodState,
    handler: &str,
    runtime: Arc<dyn PodSandbox>,
    ctx: &Context,
) -> Result<SandboxId, skiff_sandbox::SandboxError> {
    if let Some((_, id)) = state.sandboxes.get(runtime.handler()) {
        let id = id.clone();
        if state.network.is_some() {
            // The sandbox may predate the pod's network (a first container that needed none):
            // creating it again tells the runtime about the namespace.
            runtime.create(&sandbox_spec(pod, state, ctx)).await?;
        }
        return Ok(id);
    }
    let id = runtime.create(&sandbox_spec(pod, state, ctx)).await?;
    debug!(pod = %pod.name_any(), handler, "sandbox created");
    state
        .sandboxes
        .insert(runtime.handler(), (runtime, id.clone()));
    Ok(id)
}

/// The pod's RuntimeClass handler, else the one the artifact calls for.
async fn runtime_handler(pod: &Pod, kind: &ArtifactKind, ctx: &Context) -> Result<String, String> {
    let named = pod.spec.as_ref().and_then(|s| s.runtime_class_name.clone());
    let Some(class) = named else {
        return Ok(match kind {
            ArtifactKind::Wasm { .. } => WASM_HANDLER,
            _ => CONTAINER_HANDLER,
        }
        .to_string());
    };
    if let Some(rc) = ctx
        .runtime_classes
        .get(&kube::runtime::reflector::ObjectRef::new(&class))
    {
        return Ok(rc.handler.clone());
    }
    // Not seen yet (the watch is still starting, or the class is brand new): ask.
    let classes: Api<RuntimeClass> = Api::all(ctx.client.clone());
    match classes.get_opt(&class).await {
        Ok(Some(rc)) => Ok(rc.handler),
        Ok(None) => Err(format!("RuntimeClass \"{class}\" not found")),
        Err(e) => Err(format!("looking up RuntimeClass \"{class}\": {e}")),
    }
}

async fn pull_auths(pod: &Pod, ctx: &Context) -> Vec<crate::images::RegistryAuth> {
    let names = pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.clone())
        .unwrap_or_default();
    if names.is_empty() {
        return Vec::new();
    }
    let namespace = pod.namespace().unwrap_or_default();
    let mut secrets: Vec<Secret> = Vec::new();
    for reference in names {
        // A missing pull secret is not an error: the kubelet tries without it.
        if let Ok(Some(secret)) =
            crate::objects::ObjectSource::secret(&ctx.objects, &namespace, &reference.name).await
        {
            secrets.push(secret);
        }
    }
    auths_from_secrets(&secrets)
}

pub(super) fn resource_limits(container: &Container) -> ResourceLimits {
    let resources = container.resources.as_ref();
    let get = |which: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
               name: &str| {
        which
            .and_then(|m| m.get(name))
            .and_then(|q| q.0.parse::<Quantity>().ok())
    };
    let limits = resources.and_then(|r| r.limits.as_ref());
    let requests = resources.and_then(|r| r.requests.as_ref());
    ResourceLimits {
        cpu_limit_millis: get(limits, "cpu").map(|q| q.as_millis().max(1) as u64),
        memory_limit_bytes: get(limits, "memory").map(|q| q.as_bytes().max(0) as u64),
        cpu_request_millis: get(requests, "cpu").map_or(0, |q| q.as_millis().max(0) as u64),
    }
}
