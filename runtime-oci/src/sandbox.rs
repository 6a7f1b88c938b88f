//! [`RuncSandbox`]: runs a pod's ordinary containers with runc, each under its own shim.
//!
//! Layout under the runtime's directory: `layers/` (each image layer unpacked once),
//! `containers/<id>/` (one run of a container: `config.json`, its rootfs and writable layer, the
//! shim's socket, log and exit record, and `meta.json` naming its pod and container), `runc/`
//! (runc's own state). What a run needs after an agent restart is on disk, not in memory.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use skiff_sandbox::{
    AdoptedContainer, ArtifactKind, ContainerId, ContainerIo, ContainerSpec, ExitReason,
    ExitStatus, PodSandbox, SandboxError, SandboxId, SandboxSpec, StreamOptions,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tracing::{debug, warn};

use crate::bundle::{Bundle, runtime_spec};
use crate::layers::LayerStore;
use crate::rootfs::{Rootfs, RootfsMode, remove_rootfs};
use crate::runc::Runc;
use crate::shim::{self, ExitRecord, ShimConfig};

const META: &str = "meta.json";

/// How to run containers on this node.
#[derive(Debug, Clone)]
pub struct RuncConfig {
    /// The runtime's own directory (`DATA/oci`).
    pub root: PathBuf,
    /// The runc binary.
    pub runc: PathBuf,
    /// The shim command before its directory argument: the agent's own binary and `shim`.
    pub shim: Vec<OsString>,
}

/// Who a container run belongs to (`containers/<id>/meta.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunMeta {
    sandbox: String,
    name: String,
    attempt: u32,
    image_digest: String,
    started_at: SystemTime,
}

#[derive(Debug)]
struct ContainerRun {
    id: String,
    dir: PathBuf,
    started_at: SystemTime,
    /// Set once `stop_container` or `remove` ended it.
    stopped: std::sync::atomic::AtomicBool,
}

/// A run an earlier agent started, as found on disk.
type Orphan = (RunMeta, Arc<ContainerRun>);

struct Pod {
    spec: SandboxSpec,
    runs: Mutex<HashMap<String, Arc<ContainerRun>>>,
}

pub struct RuncSandbox {
    config: RuncConfig,
    runc: Runc,
    version: String,
    layers: Arc<LayerStore>,
    rootfs_mode: RootfsMode,
    pods: Mutex<HashMap<SandboxId, Arc<Pod>>>,
    /// Runs an earlier agent left, by pod UID, until the pod is adopted or found gone.
    orphans: Mutex<HashMap<String, Vec<Orphan>>>,
    /// A shim started ahead, waiting on its stdin for the next container's directory.
    spare: Mutex<Option<tokio::process::Child>>,
}

fn runtime_error(
    context: &'static str,
    source: impl std::error::Error + Send + Sync + 'static,
) -> SandboxError {
    SandboxError::Runtime {
        context,
        source: Box::new(source),
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A message that is itself the error (runc's or the shim's own words).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Reported(String);

impl RuncSandbox {
    /// Opens the runtime's directory and checks that runc runs.
    pub fn new(config: RuncConfig) -> Result<RuncSandbox, SandboxError> {
        let output = std::process::Command::new(&config.runc)
            .arg("--version")
            .output()
            .map_err(|e| {
                runtime_error(
                    "running runc --version (install the runc package)",
                    Reported(format!("{}: {e}", config.runc.display())),
                )
            })?;
        let version = String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("runc version "))
            .unwrap_or("unknown")
            .to_string();
        for dir in ["containers", "runc"] {
            let dir = config.root.join(dir);
            std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        }
        let layers = LayerStore::open(&config.root.join("layers"))
            .map_err(|e| runtime_error("opening the layer store", e))?;
        let orphans = find_runs(&config.root.join("containers"));
        Ok(RuncSandbox {
            runc: Runc {
                binary: config.runc.clone(),
                root: config.root.join("runc"),
            },
            version,
            layers: Arc::new(layers),
            rootfs_mode: RootfsMode::detect(),
            pods: Mutex::default(),
            orphans: Mutex::new(orphans),
            spare: Mutex::default(),
            config,
        })
    }

    fn pod(&self, id: &SandboxId) -> Result<Arc<Pod>, SandboxError> {
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| SandboxError::UnknownSandbox(id.clone()))
    }

    fn run_of(&self, id: &SandboxId, name: &str) -> Result<Arc<ContainerRun>, SandboxError> {
        self.pod(id)?
            .runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| SandboxError::UnknownContainer {
                sandbox: id.clone(),
                container: name.to_string(),
            })
    }
}

/// What building a bundle needs, cheap to move onto a blocking thread.
#[derive(Clone)]
struct Preparer {
    layers: Arc<LayerStore>,
    runc: Runc,
    rootfs_mode: RootfsMode,
}

impl Preparer {
    /// Builds the bundle of a new run in `dir`: rootfs, `config.json`, the shim's config.
    fn prepare(
        &self,
        pod: &SandboxSpec,
        container: &ContainerSpec,
        id: &str,
        dir: &Path,
    ) -> Result<(), SandboxError> {
        let ArtifactKind::Oci { layers } = &container.image.kind else {
            return Err(SandboxError::UnsupportedArtifact {
                image: container.image.reference.clone(),
                reason: "runc runs container images, not Wasm modules".into(),
            });
        };
        let unpacked = layers
            .iter()
            .map(|blob| self.layers.unpacked(blob))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| runtime_error("unpacking the image", e))?;
        let rootfs = Rootfs::create(&unpacked, dir, self.rootfs_mode)
            .map_err(|e| runtime_error("assembling the root filesystem", e))?;
        let identity = crate::user::resolve(
            rootfs.path(),
            container.image.config.user.as_deref(),
            &container.security,
        )
        .map_err(|e| runtime_error("resolving the container's user", e))?;
        let cgroup = pod.cgroup_parent.as_ref().map(|parent| parent.join(id));
        let spec = runtime_spec(&Bundle {
            pod,
            container,
            rootfs: rootfs.path(),
            cgroups_path: cgroup.as_ref().map(|c| Path::new("/").join(c)),
            identity: &identity,
        })
        .map_err(|e| runtime_error("building the runtime spec", e))?;
        let write = |name: &str, bytes: Vec<u8>| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(io_error(&path))
        };
        write(
            "config.json",
            serde_json::to_vec(&spec).expect("spec serializes"),
        )?;
        let shim = ShimConfig {
            id: id.to_string(),
            runc: self.runc.clone(),
            log_path: container.log_path.clone(),
            stdin: container.stdin,
            stdin_once: container.stdin_once,
            tty: container.tty,
            cgroup,
        };
        write(
            shim::CONFIG,
            serde_json::to_vec(&shim).expect("config serializes"),
        )
    }
}

impl RuncSandbox {
    /// A shim process, started with `dir` or (`None`) as a spare that waits for one.
    fn shim_process(&self, dir: Option<&Path>) -> Result<tokio::process::Child, SandboxError> {
        let Some((program, args)) = self.config.shim.split_first() else {
            return Err(runtime_error(
                "starting the shim",
                Reported("no shim command configured".into()),
            ));
        };
        let mut command = tokio::process::Command::new(program);
        command.args(args).stdout(std::process::Stdio::piped());
        match dir {
            Some(dir) => {
                let log = dir.join("shim.log");
                let stderr = std::fs::File::create(&log).map_err(io_error(&log))?;
                command
                    .arg(dir)
                    .stdin(std::process::Stdio::null())
                    .stderr(stderr);
            }
            None => {
                command
                    .stdin(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::null());
            }
        }
        // No pre_exec hook (the shim leaves the agent's session itself): without one the
        // process is spawned without copying the agent's address space.
        command
            .spawn()
            .map_err(|e| runtime_error("starting the shim", e))
    }

    /// Starts the shim for the run in `dir` and waits for its report of the start: the spare
    /// started ahead if there is one (a container start then does not wait for the shim's
    /// exec), and a new spare for the next start.
    async fn spawn_shim(&self, dir: &Path) -> Result<(), SandboxError> {
        let spare = self.spare.lock().unwrap_or_else(|p| p.into_inner()).take();
        let mut child =
            match spare.and_then(|mut s| s.try_wait().ok().flatten().is_none().then_some(s)) {
                Some(mut spare) => {
                    let stdin = spare.stdin.take();
                    let told = match stdin {
                        Some(mut stdin) => {
                            use tokio::io::AsyncWriteExt;
                            let line = format!("{}\n", dir.display());
                            stdin.write_all(line.as_bytes()).await.is_ok()
                        }
                        None => false,
                    };
                    if told {
                        spare
                    } else {
                        self.shim_process(Some(dir))?
                    }
                }
                _ => self.shim_process(Some(dir))?,
            };
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            let _ = tokio::io::BufReader::new(stdout).read_line(&mut line).await;
        }
        // The shim lives on; reap it whenever it exits.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        if let Ok(spare) = self.shim_process(None) {
            *self.spare.lock().unwrap_or_else(|p| p.into_inner()) = Some(spare);
        }
        shim::parse_report(&line)
            .map(|_| ())
            .map_err(|message| runtime_error("starting the container", Reported(message)))
    }

    /// Waits until the run's shim is gone, then reads how the run ended.
    async fn exit_of(&self, run: &ContainerRun) -> ExitStatus {
        if let Ok((_handle, path)) = shim::socket_path(&run.dir)
            && let Ok(mut stream) = tokio::net::UnixStream::connect(&path).await
        {
            let mut sink = Vec::new();
            let _ = stream.read_to_end(&mut sink).await;
        }
        let record = shim::read_exit(&run.dir);
        let stopped = run.stopped.load(std::sync::atomic::Ordering::SeqCst);
        match record {
            Some(ExitRecord {
                exit_code,
                oom_killed,
                finished_at,
            }) => ExitStatus {
                exit_code,
                reason: if oom_killed {
                    ExitReason::OomKilled
                } else if stopped {
                    ExitReason::Stopped
                } else {
                    ExitReason::Exited
                },
                message: None,
                started_at: run.started_at,
                finished_at,
            },
            None => ExitStatus {
                exit_code: 255,
                reason: ExitReason::Exited,
                message: Some("the container's shim exited without recording how it ended".into()),
                started_at: run.started_at,
                finished_at: SystemTime::now(),
            },
        }
    }

    async fn kill(&self, run: &ContainerRun, signal: &str) {
        let all = signal == "KILL";
        if let Err(e) = self
            .runc
            .run_async("kill", &run.id, self.runc.kill(&run.id, signal, all))
            .await
            && !e.is_gone()
        {
            warn!(id = %run.id, signal, error = %e, "signalling a container failed");
        }
    }

    async fn stop_run(&self, run: &ContainerRun, grace: Duration) {
        if shim::read_exit(&run.dir).is_some() {
            return;
        }
        run.stopped.store(true, std::sync::atomic::Ordering::SeqCst);
        debug!(id = %run.id, ?grace, "stopping a container");
        if !grace.is_zero() {
            self.kill(run, "TERM").await;
            if tokio::time::timeout(grace, self.exit_of(run)).await.is_ok() {
                return;
            }
        }
        self.kill(run, "KILL").await;
        if tokio::time::timeout(Duration::from_secs(10), self.exit_of(run))
            .await
            .is_err()
        {
            warn!(id = %run.id, "container still running 10 s after SIGKILL");
        }
    }

    /// Removes a run from runc (if a failed start left it there), then its directory and
    /// everything mounted in it.
    async fn discard(&self, run: &ContainerRun) {
        if let Err(e) = self
            .runc
            .run_async("delete", &run.id, self.runc.delete(&run.id))
            .await
            && !e.is_gone()
        {
            warn!(id = %run.id, error = %e, "deleting a container from runc failed");
        }
        let dir = run.dir.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<(), String> {
            // Unmounted first: deleting through a mounted overlay would reach the image layers.
            remove_rootfs(&dir).map_err(|e| e.to_string())?;
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(format!("{}: {e}", dir.display()))
                }
                _ => Ok(()),
            }
        })
        .await;
        if let Ok(Err(error)) = result {
            warn!(id = %run.id, %error, "removing a container's directory failed");
        }
    }
}

/// The runs in `containers/` by pod UID. A directory without a readable `meta.json` is a start
/// that never finished; it is listed under the empty UID so that it is removed.
fn find_runs(dir: &Path) -> HashMap<String, Vec<Orphan>> {
    let mut runs: HashMap<String, Vec<_>> = HashMap::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let dir = entry.path();
        let id = entry.file_name().to_string_lossy().into_owned();
        let meta: Option<RunMeta> = std::fs::read(dir.join(META))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let meta = meta.unwrap_or(RunMeta {
            sandbox: String::new(),
            name: String::new(),
            attempt: 0,
            image_digest: String::new(),
            started_at: SystemTime::UNIX_EPOCH,
        });
        let run = Arc::new(ContainerRun {
            id,
            dir,
            started_at: meta.started_at,
            stopped: Default::default(),
        });
        runs.entry(meta.sandbox.clone())
            .or_default()
            .push((meta, run));
    }
    runs
}

/// 256 random bits in hex: a container ID as containerd makes them.
fn new_container_id() -> String {
    let mut bytes = [0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[async_trait::async_trait]
impl PodSandbox for RuncSandbox {
    fn handler(&self) -> &'static str {
        "runc"
    }

    fn version(&self) -> String {
        format!("runc://{}", self.version)
    }

    async fn create(&self, pod: &SandboxSpec) -> Result<SandboxId, SandboxError> {
        let id = SandboxId(pod.uid.clone());
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.clone())
            .or_insert_with(|| {
                Arc::new(Pod {
                    spec: pod.clone(),
                    runs: Mutex::default(),
                })
            });
        Ok(id)
    }

    async fn start_container(
        &self,
        id: &SandboxId,
        container: &ContainerSpec,
    ) -> Result<ContainerId, SandboxError> {
        let pod = self.pod(id)?;
        let previous = pod
            .runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&container.name)
            .cloned();
        if let Some(previous) = previous {
            if shim::read_exit(&previous.dir).is_none() {
                return Err(SandboxError::AlreadyRunning {
                    container: container.name.clone(),
                });
            }
            self.discard(&previous).await;
        }
        let run_id = new_container_id();
        let dir = self.config.root.join("containers").join(&run_id);
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let started_at = SystemTime::now();
        let meta = RunMeta {
            sandbox: pod.spec.uid.clone(),
            name: container.name.clone(),
            attempt: container.attempt,
            image_digest: container.image.digest.clone(),
            started_at,
        };
        let meta_path = dir.join(META);
        std::fs::write(
            &meta_path,
            serde_json::to_vec(&meta).expect("meta serializes"),
        )
        .map_err(io_error(&meta_path))?;
        let run = Arc::new(ContainerRun {
            id: run_id.clone(),
            dir: dir.clone(),
            started_at,
            stopped: Default::default(),
        });
        let prepared = {
            let (this_pod, this_container, this_id, this_dir) = (
                pod.spec.clone(),
                container.clone(),
                run_id.clone(),
                dir.clone(),
            );
            let preparer = Preparer {
                layers: self.layers.clone(),
                runc: self.runc.clone(),
                rootfs_mode: self.rootfs_mode,
            };
            tokio::task::spawn_blocking(move || {
                preparer.prepare(&this_pod, &this_container, &this_id, &this_dir)
            })
            .await
            .unwrap_or_else(|e| Err(runtime_error("preparing the container", e)))
        };
        let started = match prepared {
            Ok(()) => self.spawn_shim(&dir).await,
            Err(e) => Err(e),
        };
        if let Err(e) = started {
            self.discard(&run).await;
            return Err(e);
        }
        debug!(container = %container.name, id = %run_id, "container started");
        pod.runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(container.name.clone(), run);
        Ok(ContainerId(format!("runc://{run_id}")))
    }

    async fn stop_container(
        &self,
        id: &SandboxId,
        name: &str,
        grace: Duration,
    ) -> Result<(), SandboxError> {
        let run = self.run_of(id, name)?;
        self.stop_run(&run, grace).await;
        Ok(())
    }

    async fn wait_container(&self, id: &SandboxId, name: &str) -> Result<ExitStatus, SandboxError> {
        let run = self.run_of(id, name)?;
        Ok(self.exit_of(&run).await)
    }

    async fn remove(&self, id: &SandboxId) -> Result<(), SandboxError> {
        let Some(pod) = self
            .pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
        else {
            return Ok(());
        };
        let runs: Vec<Arc<ContainerRun>> = pod
            .runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, run)| run)
            .collect();
        for run in runs {
            self.stop_run(&run, Duration::ZERO).await;
            self.discard(&run).await;
        }
        Ok(())
    }

    async fn adopt(&self, spec: &SandboxSpec) -> Option<(SandboxId, Vec<AdoptedContainer>)> {
        let runs = self
            .orphans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&spec.uid)?;
        // The newest run of each container is the current one; older ones only wait removal.
        let mut newest: HashMap<String, (RunMeta, Arc<ContainerRun>)> = HashMap::new();
        let mut stale = Vec::new();
        for (meta, run) in runs {
            match newest.get(&meta.name) {
                Some((kept, _)) if kept.attempt >= meta.attempt => stale.push(run),
                _ => {
                    if let Some((_, older)) = newest.insert(meta.name.clone(), (meta, run)) {
                        stale.push(older);
                    }
                }
            }
        }
        for run in stale {
            self.stop_run(&run, Duration::ZERO).await;
            self.discard(&run).await;
        }
        let id = SandboxId(spec.uid.clone());
        let pod = Arc::new(Pod {
            spec: spec.clone(),
            runs: Mutex::default(),
        });
        let mut adopted = Vec::new();
        for (name, (meta, run)) in newest {
            let exit = match shim::read_exit(&run.dir) {
                Some(_) => Some(self.exit_of(&run).await),
                None => None,
            };
            adopted.push(AdoptedContainer {
                name: name.clone(),
                id: ContainerId(format!("runc://{}", run.id)),
                attempt: meta.attempt,
                image_digest: meta.image_digest,
                started_at: meta.started_at,
                exit,
            });
            pod.runs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name, run);
        }
        debug!(pod = %spec.name, containers = adopted.len(), "adopted running containers");
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), pod);
        Some((id, adopted))
    }

    async fn exec(
        &self,
        id: &SandboxId,
        name: &str,
        command: &[String],
        options: StreamOptions,
    ) -> Result<ContainerIo, SandboxError> {
        let run = self.run_of(id, name)?;
        crate::exec::exec(&self.runc, &run.id, &run.dir, name, command, options).await
    }

    async fn attach(
        &self,
        id: &SandboxId,
        name: &str,
        options: StreamOptions,
    ) -> Result<ContainerIo, SandboxError> {
        let run = self.run_of(id, name)?;
        crate::attach::attach(&run.dir, name, options).await
    }

    async fn remove_orphans(&self, keep: &(dyn for<'a> Fn(&'a str) -> bool + Send + Sync)) {
        let gone: Vec<Orphan> = {
            let mut orphans = self.orphans.lock().unwrap_or_else(|p| p.into_inner());
            let uids: Vec<String> = orphans
                .keys()
                .filter(|uid| uid.is_empty() || !keep(uid))
                .cloned()
                .collect();
            uids.iter()
                .filter_map(|uid| orphans.remove(uid))
                .flatten()
                .collect()
        };
        for (meta, run) in gone {
            debug!(pod.uid = %meta.sandbox, id = %run.id, "removing a container of a pod that is gone");
            self.stop_run(&run, Duration::ZERO).await;
            self.discard(&run).await;
        }
    }
}
