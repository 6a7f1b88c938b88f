//! [`WasmtimeSandbox`]: the [`PodSandbox`] of Wasm pods. A sandbox is a pod's set of container
//! runs; each run is a task on the caller's tokio runtime, so a sleeping module costs no
//! thread, except that a component that can open sockets, in a pod with a network namespace,
//! runs on a thread inside that namespace ([`crate::executor`]). A run's end is published once
//! on a `watch` channel, for any number of waiters.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use skiff_sandbox::{
    ContainerId, ContainerSpec, ExitStatus, ImageArtifact, PodResources, PodSandbox, SandboxError,
    SandboxId, SandboxSpec,
};
use tokio::sync::{oneshot, watch};

use crate::cache::ArtifactCache;
use crate::cpu::CpuThrottled;
use crate::engine::NodeEngine;
use crate::error::WasmError;
use crate::executor::Executor;
use crate::imports::NetworkImports;
use crate::run::{Network, Outcome, instantiate};
use crate::{WASMTIME_VERSION, WasmtimeConfig};

pub struct WasmtimeSandbox {
    node: NodeEngine,
    cache: ArtifactCache,
    imports: NetworkImports,
    pods: Mutex<HashMap<SandboxId, Pod>>,
}

#[derive(Default)]
struct Pod {
    /// The bind-mounted nsfs file of the pod's network namespace, if the node made one.
    network_namespace: Option<PathBuf>,
    containers: HashMap<String, ContainerRun>,
}

/// The latest run of one container name.
struct ContainerRun {
    exit: watch::Receiver<Option<ExitStatus>>,
    /// Taken by the first stop; dropping it also stops the run.
    stop: Option<oneshot::Sender<()>>,
}

impl ContainerRun {
    fn running(&self) -> bool {
        self.exit.borrow().is_none()
    }

    /// Ends the run (if it has not ended) and waits until its end is published.
    async fn stop(mut self) -> Result<(), SandboxError> {
        if let Some(stop) = self.stop {
            // The run may have ended on its own and dropped the receiver: nothing left to stop.
            let _ = stop.send(());
        }
        self.exit
            .wait_for(|s| s.is_some())
            .await
            .map(|_| ())
            .map_err(|_| lost_run())
    }
}

impl WasmtimeSandbox {
    /// Sets up the node's engine (reserving the instance pool) and its compile cache.
    pub fn new(config: WasmtimeConfig) -> Result<WasmtimeSandbox, WasmError> {
        let node = NodeEngine::new(config.max_instances)?;
        let cache = ArtifactCache::open(&config.cache_dir, &node.engine)?;
        Ok(WasmtimeSandbox {
            node,
            cache,
            imports: NetworkImports::default(),
            pods: Mutex::default(),
        })
    }

    /// How many binaries this sandbox has compiled; a start from the cache adds none.
    pub fn compile_count(&self) -> u64 {
        self.cache.compiles()
    }

    /// How many container runs are in progress across all pods.
    pub fn running(&self) -> usize {
        self.lock()
            .values()
            .flat_map(|p| p.containers.values())
            .filter(|c| c.running())
            .count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SandboxId, Pod>> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A handle on the run of `name`, to stop it.
    fn take_run(&self, id: &SandboxId, name: &str) -> Result<ContainerRun, SandboxError> {
        let mut pods = self.lock();
        let pod = pods
            .get_mut(id)
            .ok_or_else(|| SandboxError::UnknownSandbox(id.clone()))?;
        let run = pod
            .containers
            .get_mut(name)
            .ok_or_else(|| unknown_container(id, name))?;
        Ok(ContainerRun {
            stop: run.stop.take(),
            exit: run.exit.clone(),
        })
    }
}

fn unknown_container(id: &SandboxId, name: &str) -> SandboxError {
    SandboxError::UnknownContainer {
        sandbox: id.clone(),
        container: name.to_string(),
    }
}

/// `wasm://` and 32 random bytes in hex, as containerd's IDs look.
fn new_container_id() -> ContainerId {
    let mut id = String::with_capacity(7 + 64);
    id.push_str("wasm://");
    for b in rand::random::<[u8; 32]>() {
        let _ = write!(id, "{b:02x}");
    }
    ContainerId(id)
}

/// A run's task ended without publishing its status: it panicked, or its runtime shut down.
#[derive(Debug, thiserror::Error)]
#[error("the container's run ended without reporting how it exited")]
struct RunLost;

fn lost_run() -> SandboxError {
    SandboxError::Runtime {
        context: "waiting for a container",
        source: Box::new(RunLost),
    }
}

#[async_trait::async_trait]
impl PodSandbox for WasmtimeSandbox {
    fn handler(&self) -> &'static str {
        "wasmtime"
    }

    fn version(&self) -> String {
        format!("wasmtime://{WASMTIME_VERSION}")
    }

    /// Modules run in-process, limited by the engine itself: they never need a cgroup. Only a
    /// component that imports `wasi:sockets/*` (or `wasi:http/outgoing-handler`) needs the
    /// pod's network namespace; preview 1 modules and other components cannot open a socket.
    /// The answer is read from the binary's imports once per digest.
    fn pod_resources(&self, artifact: &ImageArtifact) -> PodResources {
        PodResources {
            network: self.imports.needs_network(artifact),
            cgroup: false,
        }
    }

    /// Idempotent: creating a sandbox that exists returns it. A create that names a network
    /// namespace gives it to the sandbox's containers started from then on.
    async fn create(&self, pod: &SandboxSpec) -> Result<SandboxId, SandboxError> {
        let id = SandboxId(pod.uid.clone());
        let mut pods = self.lock();
        let sandbox = pods.entry(id.clone()).or_default();
        if pod.network_namespace.is_some() {
            sandbox.network_namespace.clone_from(&pod.network_namespace);
        }
        Ok(id)
    }

    async fn start_container(
        &self,
        id: &SandboxId,
        container: &ContainerSpec,
    ) -> Result<ContainerId, SandboxError> {
        let already_running = || SandboxError::AlreadyRunning {
            container: container.name.clone(),
        };
        let check = |pods: &HashMap<SandboxId, Pod>| match pods.get(id) {
            None => Err(SandboxError::UnknownSandbox(id.clone())),
            Some(pod)
                if pod
                    .containers
                    .get(&container.name)
                    .is_some_and(|c| c.running()) =>
            {
                Err(already_running())
            }
            Some(pod) => Ok(pod.network_namespace.clone()),
        };
        // Sockets are real only where they land in the pod's namespace: for a container that
        // can open them, in a pod that has one.
        let pod_netns = check(&self.lock())?;
        let netns = pod_netns.filter(|_| self.imports.needs_network(&container.image));
        let network = match netns {
            Some(_) => Network::Pod,
            None => Network::Denied,
        };
        let prepared = self.cache.prepare(&self.node, &container.image).await?;
        let executor = Executor::new(netns.as_deref()).await?;
        // Instantiating runs guest code (start functions): it belongs where the run is polled.
        let (engine, spec) = (self.node.engine.clone(), container.clone());
        let run = executor
            .run(async move { instantiate(&engine, &prepared, &spec, network).await })
            .await?;

        let (exit_tx, exit_rx) = watch::channel(None);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let run_id = new_container_id();
        {
            let mut pods = self.lock();
            // Checked again: the pod may have been removed, or the name started, meanwhile.
            // The instance is dropped unstarted then.
            check(&pods)?;
            let pod = pods
                .get_mut(id)
                .ok_or_else(|| SandboxError::UnknownSandbox(id.clone()))?;
            pod.containers.insert(
                container.name.clone(),
                ContainerRun {
                    exit: exit_rx,
                    stop: Some(stop_tx),
                },
            );
        }
        let span = tracing::info_span!("wasm_container", sandbox = %id, container = %container.name, id = %run_id);
        let cpu_limit = container.resources.cpu_limit_millis;
        executor.spawn(async move {
            let started_at = SystemTime::now();
            let run = CpuThrottled::new(run, cpu_limit);
            let outcome = tokio::select! {
                biased;
                _ = stop_rx => Outcome::stopped(),
                outcome = run => outcome,
            };
            let _enter = span.enter();
            tracing::debug!(exit_code = outcome.exit_code, reason = ?outcome.reason, "container exited");
            exit_tx.send_replace(Some(ExitStatus {
                exit_code: outcome.exit_code,
                reason: outcome.reason,
                message: outcome.message,
                started_at,
                finished_at: SystemTime::now(),
            }));
        });
        Ok(run_id)
    }

    /// A Wasm module has no signal handlers to run, so there is nothing to wait `grace` for:
    /// the run ends at once, as `SIGKILL` would end a process.
    async fn stop_container(
        &self,
        id: &SandboxId,
        name: &str,
        _grace: Duration,
    ) -> Result<(), SandboxError> {
        self.take_run(id, name)?.stop().await
    }

    async fn wait_container(&self, id: &SandboxId, name: &str) -> Result<ExitStatus, SandboxError> {
        let mut exit = {
            let pods = self.lock();
            let pod = pods
                .get(id)
                .ok_or_else(|| SandboxError::UnknownSandbox(id.clone()))?;
            pod.containers
                .get(name)
                .ok_or_else(|| unknown_container(id, name))?
                .exit
                .clone()
        };
        let status = exit
            .wait_for(|s| s.is_some())
            .await
            .map_err(|_| lost_run())?;
        status.clone().ok_or_else(lost_run)
    }

    async fn remove(&self, id: &SandboxId) -> Result<(), SandboxError> {
        let pod = self
            .lock()
            .remove(id)
            .ok_or_else(|| SandboxError::UnknownSandbox(id.clone()))?;
        for run in pod.containers.into_values() {
            run.stop().await?;
        }
        Ok(())
    }
}
