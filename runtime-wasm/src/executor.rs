//! Where a container's run is polled: [`Executor`]. Most runs are tasks on the caller's tokio
//! runtime, so a sleeping module costs no thread. A run whose sockets belong in the pod's
//! network namespace gets an OS thread of its own instead.
//!
//! Why a thread: Linux network namespaces belong to threads (`setns(2)` with `CLONE_NEWNET`
//! moves only the calling thread), a socket stays in the namespace it was created in, and
//! wasmtime-wasi creates every socket synchronously inside the guest's host call, on the thread
//! polling the instance. A thread that enters the pod's namespace and then drives the
//! container on its own current-thread runtime therefore puts all of its sockets there:
//! instantiation too runs there ([`Executor::run`]), since a core module's start function is
//! guest code that may already call the network. The threads of that runtime's blocking pool,
//! where `wasi:sockets/ip-name-lookup` resolves names, enter the namespace as well. Everything
//! else about the run (stop, exit status, limits, epoch yields, logs) is the same future,
//! polled elsewhere.

use std::fs::File;
use std::future::Future;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::error::WasmError;

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where a container is instantiated ([`Executor::run`]) and its run polled ([`Executor::spawn`]).
pub(crate) enum Executor {
    /// A task on the caller's runtime.
    Shared,
    /// A thread that has entered a network namespace and runs the tasks it is sent, one after
    /// the other; it ends once the sender is gone and the last task has finished.
    Namespaced(mpsc::UnboundedSender<Task>),
}

impl Executor {
    /// The caller's runtime without `netns`; with it, a new thread that has entered the
    /// namespace, its runtime ready. Fails if the namespace cannot be entered.
    pub(crate) async fn new(netns: Option<&Path>) -> Result<Executor, WasmError> {
        let Some(netns) = netns else {
            return Ok(Executor::Shared);
        };
        let (ready_tx, ready_rx) = oneshot::channel();
        let (task_tx, mut tasks) = mpsc::unbounded_channel::<Task>();
        let path = netns.to_path_buf();
        let error = |source| WasmError::NetworkNamespace {
            path: netns.to_path_buf(),
            source,
        };
        std::thread::Builder::new()
            .name("wasm-netns".into())
            .spawn(move || {
                let runtime = match namespaced_runtime(&path) {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                if ready_tx.send(Ok(())).is_err() {
                    return;
                }
                runtime.block_on(async move {
                    while let Some(task) = tasks.recv().await {
                        task.await;
                    }
                });
                // The run's end is published; a name lookup still blocking in the pool is not
                // worth waiting for.
                runtime.shutdown_background();
            })
            .map_err(error)?;
        match ready_rx.await {
            Ok(Ok(())) => Ok(Executor::Namespaced(task_tx)),
            Ok(Err(source)) => Err(error(source)),
            Err(_) => Err(error(std::io::Error::other(
                "the namespace thread ended before entering it",
            ))),
        }
    }

    /// Runs `f` where this executor polls and returns its output. A panic in `f` is a panic
    /// here too.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl Future<Output = T> + Send + 'static,
    ) -> T {
        let thread = match self {
            Executor::Shared => return f.await,
            Executor::Namespaced(thread) => thread,
        };
        let (out_tx, out_rx) = oneshot::channel();
        // If the thread is gone, `out_tx` is dropped with the task and the receive fails.
        let _ = thread.send(Box::pin(async move {
            let _ = out_tx.send(f.await);
        }));
        match out_rx.await {
            Ok(out) => out,
            Err(_) => panic!("the network namespace thread ended (panicked) running a task"),
        }
    }

    /// Runs `task` to its end where this executor polls, after anything [`Executor::run`]
    /// started; the executor is done with then.
    pub(crate) fn spawn(self, task: impl Future<Output = ()> + Send + 'static) {
        match self {
            Executor::Shared => {
                tokio::spawn(task);
            }
            Executor::Namespaced(thread) => {
                // The thread ends only once this sender is dropped, or if a task panicked there;
                // then this one is dropped unrun and its waiters learn the run was lost, as
                // when a task on the shared runtime panics.
                let _ = thread.send(Box::pin(task));
            }
        }
    }
}

/// Enters the network namespace bound at `path` on this thread and builds the runtime whose
/// blocking threads enter it as well.
fn namespaced_runtime(path: &Path) -> std::io::Result<tokio::runtime::Runtime> {
    let netns: Arc<OwnedFd> = Arc::new(File::open(path)?.into());
    enter(&netns)?;
    let for_blocking = netns.clone();
    let for_path = PathBuf::from(path);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("wasm-netns-blocking")
        .on_thread_start(move || {
            if let Err(e) = enter(&for_blocking) {
                // Cannot happen for a namespace this process entered before; if it did, a name
                // lookup would go out from the node's namespace.
                tracing::warn!(path = %for_path.display(), error = %e, "a blocking thread cannot enter the pod's network namespace");
            }
        })
        .build()
}

/// `setns(2)` into the network namespace `netns` (an nsfs file) for the calling thread.
fn enter(netns: &OwnedFd) -> std::io::Result<()> {
    // SAFETY: `netns` is an open file descriptor owned for the duration of the call; setns
    // changes only the calling thread's network namespace.
    let rc = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
