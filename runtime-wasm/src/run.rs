//! One run of a container: its WASI context built from the resolved [`ContainerSpec`] (argv,
//! env, volume preopens, log streams, the pod's network or none: [`Network`]), its [`Store`]
//! with the memory limiter and epoch yields, instantiation from the cached pre-instance, and
//! the run to an [`Outcome`].
//!
//! Exit codes follow the wasmtime CLI and the kubelet: `proc_exit(n)` is `n`, a trap is 134
//! (SIGABRT's 128 + 6), a run killed for memory or stopped is 137 (SIGKILL's 128 + 9).

use std::future::Future;
use std::pin::Pin;

use skiff_sandbox::cri_log::{LogFile, Stream};
use skiff_sandbox::{ContainerSpec, ExitReason};
use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::cache::Prepared;
use crate::error::WasmError;
use crate::limits::MemoryLimiter;
use crate::stdio::{LogStream, deny_network};

pub(crate) const EXIT_TRAP: i32 = 134;
pub(crate) const EXIT_KILLED: i32 = 137;

/// Store data of a preview 1 module.
pub(crate) struct ModuleState {
    pub(crate) wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
}

/// Store data of a preview 2 component.
pub(crate) struct ComponentState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// How a run ended, before the sandbox stamps its times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) exit_code: i32,
    pub(crate) reason: ExitReason,
    pub(crate) message: Option<String>,
}

impl Outcome {
    fn exited(exit_code: i32, message: Option<String>) -> Outcome {
        Outcome {
            exit_code,
            reason: ExitReason::Exited,
            message,
        }
    }

    fn oom_killed() -> Outcome {
        Outcome {
            exit_code: EXIT_KILLED,
            reason: ExitReason::OomKilled,
            message: None,
        }
    }

    pub(crate) fn stopped() -> Outcome {
        Outcome {
            exit_code: EXIT_KILLED,
            reason: ExitReason::Stopped,
            message: None,
        }
    }
}

/// What the guest's sockets reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Network {
    /// Nothing: every socket address and name lookup is refused, and the log says why.
    Denied,
    /// Whatever the polling thread's network namespace reaches: the run is polled on a thread
    /// inside the pod's namespace ([`crate::executor`]), so this is the pod's network.
    Pod,
}

/// A container instantiated and ready to run; polling it runs the program to its end.
pub(crate) type Run = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// Instantiates `prepared` for `spec`. Fails only where the container cannot start at all
/// (its log, a volume, the instance pool); a program that fails once started is an [`Outcome`].
pub(crate) async fn instantiate(
    engine: &wasmtime::Engine,
    prepared: &Prepared,
    spec: &ContainerSpec,
    network: Network,
) -> Result<Run, WasmError> {
    let log = LogFile::open(&spec.log_path, skiff_sandbox::cri_log::MAX_FILE_BYTES)
        .map_err(WasmError::io(&spec.log_path))?;
    let mut builder = wasi_builder(spec, &log, network)?;
    let limiter = MemoryLimiter::new(spec.resources.memory_limit_bytes);
    let instantiate_error = |source| WasmError::Instantiate {
        container: spec.name.clone(),
        source,
    };
    match prepared {
        Prepared::Module(pre) => {
            let state = ModuleState {
                wasi: builder.build_p1(),
                limiter,
            };
            let mut store = new_store(engine, state, |s| &mut s.limiter);
            let instance = match pre.instantiate_async(&mut store).await {
                Ok(instance) => instance,
                Err(_) if store.data().limiter.exceeded() => {
                    return Ok(ended(Outcome::oom_killed()));
                }
                Err(e) => return Err(instantiate_error(e)),
            };
            let start = instance
                .get_typed_func::<(), ()>(&mut store, "_start")
                .map_err(instantiate_error)?;
            Ok(Box::pin(async move {
                let result = start.call_async(&mut store, ()).await.map(|()| 0);
                outcome(result, store.data().limiter.exceeded(), &log)
            }))
        }
        Prepared::Component(pre) => {
            let state = ComponentState {
                wasi: builder.build(),
                table: ResourceTable::new(),
                limiter,
            };
            let mut store = new_store(engine, state, |s| &mut s.limiter);
            let command = match pre.instantiate_async(&mut store).await {
                Ok(command) => command,
                Err(_) if store.data().limiter.exceeded() => {
                    return Ok(ended(Outcome::oom_killed()));
                }
                Err(e) => return Err(instantiate_error(e)),
            };
            Ok(Box::pin(async move {
                let result = command.wasi_cli_run().call_run(&mut store).await;
                // `run` returning its error variant is how a component says "exit 1".
                let result = result.map(|r| if r.is_ok() { 0 } else { 1 });
                outcome(result, store.data().limiter.exceeded(), &log)
            }))
        }
    }
}

fn ended(outcome: Outcome) -> Run {
    Box::pin(async move { outcome })
}

fn new_store<T: 'static>(
    engine: &wasmtime::Engine,
    state: T,
    limiter: fn(&mut T) -> &mut MemoryLimiter,
) -> Store<T> {
    let mut store = Store::new(engine, state);
    store.limiter(move |s| limiter(s) as &mut dyn wasmtime::ResourceLimiter);
    // Yield to the executor at every epoch tick: busy code shares its thread, the CPU throttle
    // gets to account, and a stop lands within a tick.
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
    store
}

/// Everything the container may see: argv, env, its volumes, its log, and the pod's network
/// when it has one. Nothing else is inherited.
fn wasi_builder(
    spec: &ContainerSpec,
    log: &LogFile,
    network: Network,
) -> Result<WasiCtxBuilder, WasmError> {
    let mut builder = WasiCtxBuilder::new();
    builder
        .args(&spec.argv)
        .envs(&effective_env(&spec.env))
        .stdin(tokio::io::empty())
        .stdout(LogStream::new(log, Stream::Stdout))
        .stderr(LogStream::new(log, Stream::Stderr));
    if let Some(dir) = &spec.working_dir {
        builder.initial_cwd(dir);
    }
    for mount in &spec.mounts {
        if !mount.host_path.is_dir() {
            return Err(WasmError::MountNotDirectory {
                host_path: mount.host_path.clone(),
                container_path: mount.container_path.clone(),
            });
        }
        let perms = if mount.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        builder
            .preopened_dir(&mount.host_path, &mount.container_path, perms)
            .map_err(|source| WasmError::Mount {
                host_path: mount.host_path.clone(),
                container_path: mount.container_path.clone(),
                source,
            })?;
    }
    match network {
        Network::Denied => deny_network(&mut builder, log),
        Network::Pod => {
            builder
                .inherit_network()
                .allow_ip_name_lookup(true)
                .allow_tcp(true)
                .allow_udp(true);
        }
    }
    Ok(builder)
}

/// One value per name, the last one winning, in the order names first appear (the kubelet
/// resolves `envFrom` then `env` the same way).
fn effective_env(env: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(env.len());
    for (name, value) in env {
        match out.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1.clone_from(value),
            None => out.push((name.clone(), value.clone())),
        }
    }
    out
}

/// Turns a finished call into an outcome; a trap or host failure is also told in the stderr log,
/// as the wasmtime CLI prints it.
fn outcome(result: wasmtime::Result<i32>, oom_killed: bool, log: &LogFile) -> Outcome {
    let err = match result {
        Ok(code) => return Outcome::exited(code, None),
        Err(_) if oom_killed => return Outcome::oom_killed(),
        Err(e) => e,
    };
    if let Some(exit) = err.downcast_ref::<I32Exit>() {
        return Outcome::exited(exit.0, None);
    }
    let mut stderr = log.stream(Stream::Stderr);
    // Best effort: the outcome is reported either way.
    let _ = std::io::Write::write_all(&mut stderr, format!("Error: {err:?}\n").as_bytes());
    match err.downcast_ref::<Trap>() {
        Some(trap) => Outcome::exited(EXIT_TRAP, Some(trap.to_string())),
        None => Outcome::exited(1, Some(err.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn later_env_entries_win_in_first_seen_order() {
        let env = pairs(&[("A", "1"), ("B", "2"), ("A", "3")]);
        assert_eq!(effective_env(&env), pairs(&[("A", "3"), ("B", "2")]));
    }
}
