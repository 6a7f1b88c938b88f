//! `kubectl exec` for runc containers: [`exec`] runs `runc exec` in the foreground, so the
//! command runs in the container's namespaces and cgroup, with its process spec (user, env,
//! working directory, capabilities), and runc's exit code is the command's.
//!
//! runc makes a terminal only for a foreground runc whose own stdio is one (it refuses a console
//! socket unless it detaches, and then nothing waits for the command): for a tty session runc's
//! stdio is a pty of ours, raw, whose master is the session's stream; runc relays it to the
//! command's own pty and passes our resizes on (it gets SIGWINCH as the pty's foreground
//! process). A tty command starts once the client has told its size (kubectl does first thing;
//! a second is waited at most), its pty made that size (`process.consoleSize`) and ours too:
//! runc copies our size to the command's only after the start, and `stty size` must not race it.
//!
//! Output is held back until the command has started (runc writes its PID file): a command
//! that cannot start leaves runc's error on runc's stderr, which is the session's, and the
//! session reports that error instead of relaying it as output.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use skiff_sandbox::{ContainerIo, SandboxError, StreamOptions, TerminalSize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::debug;

use crate::pty::AsyncPty;
use crate::runc::{Runc, error_message};
use crate::shim;

/// How often the start of a command is checked for.
const START_POLL: Duration = Duration::from_millis(5);
/// How long a tty command waits for the client's terminal size before it starts anyway.
const FIRST_SIZE_WAIT: Duration = Duration::from_secs(1);

/// Names each session's PID file and runc log apart within a run's directory.
static SESSIONS: AtomicU64 = AtomicU64::new(0);

/// Where a session's command is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    Pending,
    Running(i32),
    /// runc has exited after the command ran.
    Ended,
    /// runc has exited without starting the command.
    Failed,
}

/// A message that is itself the error (runc's own words).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Reported(String);

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Io {
        path: path.to_path_buf(),
        source,
    }
}

type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// Runs `command` in the runc container `id` whose run directory is `dir`.
pub(crate) async fn exec(
    runc: &Runc,
    id: &str,
    dir: &Path,
    container: &str,
    command: &[String],
    options: StreamOptions,
) -> Result<ContainerIo, SandboxError> {
    if shim::read_exit(dir).is_some() {
        return Err(SandboxError::NotRunning {
            container: container.to_string(),
        });
    }
    if command.is_empty() {
        return Err(SandboxError::Runtime {
            context: "exec",
            source: Box::new(Reported("no command given".into())),
        });
    }
    let spec = ProcessSpec::of_bundle(dir, command, options.tty)?;
    let session = SESSIONS.fetch_add(1, Ordering::Relaxed);
    let files = SessionFiles {
        pid: dir.join(format!("exec-{session}.pid")),
        log: dir.join(format!("exec-{session}.log")),
        process: dir.join(format!("exec-{session}.json")),
    };
    // An agent that died mid-session may have left these; a stale PID file would read as a start.
    files.remove();
    let mut cmd =
        tokio::process::Command::from(runc.exec(id, &files.pid, &files.log, &files.process));
    let (start_tx, start) = watch::channel(Start::Pending);
    let (exit_tx, exit_rx) = oneshot::channel();
    let (stdin, stdout, stderr, resize): (Option<Writer>, Option<Reader>, Option<Reader>, _);
    if options.tty {
        let (master, slave) = crate::pty::open().map_err(io_error(dir))?;
        let stdio = |fd: &OwnedFd| fd.try_clone().map(std::process::Stdio::from);
        cmd.stdin(stdio(&slave).map_err(io_error(dir))?)
            .stdout(stdio(&slave).map_err(io_error(dir))?)
            .stderr(std::process::Stdio::from(slave));
        // SAFETY: setsid and ioctl are async-signal-safe. runc leads a session whose
        // controlling terminal is our pty, so it is the foreground process a resize signals.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let pty = AsyncPty::new(master).map_err(io_error(dir))?;
        let (reader, writer) = pty.split();
        let (resize_tx, mut resizes) = mpsc::channel::<TerminalSize>(4);
        tokio::spawn(async move {
            // The command starts at the client's size (kubectl sends it first thing): its pty
            // is made that size, and ours too, so runc's copy of our size after the start
            // changes nothing; a shell that asks at once (`stty size`) must not see 0x0.
            let size = tokio::time::timeout(FIRST_SIZE_WAIT, resizes.recv())
                .await
                .ok()
                .flatten();
            if let Some(size) = size {
                resize_terminal(&pty, size);
            }
            if exit_tx.is_closed() {
                // The session ended before the command started: it never will.
                start_tx.send_replace(Start::Failed);
                return;
            }
            if let Err(e) = spec.write(&files.process, size) {
                start_tx.send_replace(Start::Failed);
                let _ = exit_tx.send(Err(e));
                return;
            }
            let run = async {
                match cmd.spawn() {
                    Ok(child) => supervise(child, files, start_tx, exit_tx).await,
                    Err(e) => {
                        start_tx.send_replace(Start::Failed);
                        let _ = exit_tx.send(Err(spawn_error(e)));
                    }
                }
            };
            let resizing = async {
                while let Some(size) = resizes.recv().await {
                    resize_terminal(&pty, size);
                }
                std::future::pending::<()>().await
            };
            tokio::select! {
                () = run => {}
                () = resizing => {}
            }
        });
        stdin = options.stdin.then(|| Box::new(writer) as Writer);
        stdout = Some(Box::new(reader));
        stderr = None;
        resize = Some(resize_tx);
    } else {
        let piped = |wanted: bool| {
            if wanted {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            }
        };
        cmd.stdin(piped(options.stdin))
            .stdout(piped(options.stdout))
            .stderr(piped(options.stderr));
        spec.write(&files.process, None)?;
        let mut child = cmd.spawn().map_err(spawn_error)?;
        stdin = child.stdin.take().map(|w| Box::new(w) as Writer);
        stdout = child.stdout.take().map(|r| Box::new(r) as Reader);
        stderr = child.stderr.take().map(|r| Box::new(r) as Reader);
        resize = None;
        tokio::spawn(supervise(child, files, start_tx, exit_tx));
    }

    let guard = KillOnDrop {
        start: start.clone(),
        finished: false,
    };
    let exit = Box::pin(async move {
        // The whole guard moves in (not just the field assigned below): it must live as long
        // as this future.
        let mut guard = guard;
        let result = exit_rx.await.unwrap_or_else(|_| {
            Err(SandboxError::Runtime {
                context: "exec",
                source: Box::new(Reported("runc exec was not waited for".into())),
            })
        });
        guard.finished = true;
        result
    });
    Ok(ContainerIo {
        stdin,
        stdout: stdout.map(|r| gated(r, start.clone())),
        stderr: stderr.map(|r| gated(r, start)),
        resize,
        exit,
    })
}

/// A session's PID file, runc log and process spec, in the run's directory.
struct SessionFiles {
    pid: PathBuf,
    log: PathBuf,
    process: PathBuf,
}

impl SessionFiles {
    fn remove(&self) {
        for file in [&self.pid, &self.log, &self.process] {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// The process a session runs: the container's own process spec (user, environment, working
/// directory, capabilities: what `runc exec` would inherit) with the command's args, a
/// terminal or not, and the terminal's first size.
struct ProcessSpec(serde_json::Value);

impl ProcessSpec {
    fn of_bundle(dir: &Path, command: &[String], tty: bool) -> Result<ProcessSpec, SandboxError> {
        let path = dir.join("config.json");
        let bytes = std::fs::read(&path).map_err(io_error(&path))?;
        let config: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| SandboxError::Runtime {
                context: "reading the container's runtime spec",
                source: Box::new(e),
            })?;
        let mut process = config["process"].clone();
        process["args"] = serde_json::json!(command);
        process["terminal"] = serde_json::json!(tty);
        Ok(ProcessSpec(process))
    }

    fn write(&self, path: &Path, size: Option<TerminalSize>) -> Result<(), SandboxError> {
        let mut process = self.0.clone();
        if let Some(size) = size {
            process["consoleSize"] =
                serde_json::json!({"height": size.height, "width": size.width});
        }
        std::fs::write(path, process.to_string()).map_err(io_error(path))
    }
}

fn spawn_error(source: std::io::Error) -> SandboxError {
    SandboxError::Runtime {
        context: "running runc exec",
        source: Box::new(source),
    }
}

fn resize_terminal(pty: &AsyncPty, size: TerminalSize) {
    if let Err(e) = crate::pty::set_size(pty.as_fd(), size) {
        debug!(error = %e, "resizing an exec terminal");
    }
}

/// Waits for runc, telling the command's start (its PID file) and then its exit code, or
/// runc's error when the command never started.
async fn supervise(
    mut child: tokio::process::Child,
    files: SessionFiles,
    start: watch::Sender<Start>,
    exit: oneshot::Sender<Result<i32, SandboxError>>,
) {
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            () = tokio::time::sleep(START_POLL), if *start.borrow() == Start::Pending => {
                if let Some(pid) = read_pid(&files.pid) {
                    start.send_replace(Start::Running(pid));
                    if exit.is_closed() {
                        // The session ended while the command was starting.
                        kill(pid);
                    }
                }
            }
        }
    };
    let started = *start.borrow() != Start::Pending || read_pid(&files.pid).is_some();
    start.send_replace(if started { Start::Ended } else { Start::Failed });
    let result = match status {
        Ok(status) if started => Ok(exit_code(status)),
        Ok(_) => {
            let text = std::fs::read_to_string(&files.log).unwrap_or_default();
            Err(SandboxError::Runtime {
                context: "starting the command",
                source: Box::new(Reported(error_message(&text))),
            })
        }
        Err(e) => Err(SandboxError::Runtime {
            context: "waiting for runc exec",
            source: Box::new(e),
        }),
    };
    files.remove();
    let _ = exit.send(result);
}

/// The command's host PID, once runc has written it.
fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// runc's exit code, or 128 + the signal that ended runc.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// `from`, relayed only once the command has started: output that arrives while it has not is
/// runc's error, reported by the session's exit instead.
fn gated(mut from: Reader, mut start: watch::Receiver<Start>) -> Reader {
    let (reader, mut writer) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let started = match start.wait_for(|s| *s != Start::Pending).await {
            Ok(state) => *state != Start::Failed,
            Err(_) => false,
        };
        if started {
            let _ = tokio::io::copy(&mut from, &mut writer).await;
        }
    });
    Box::new(reader)
}

/// Ends the command when its session is dropped before the command ended (a client that went
/// away, an exec probe that timed out).
struct KillOnDrop {
    start: watch::Receiver<Start>,
    finished: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // runc has not exited (the state would have moved on), so the command has not been
        // reaped and its PID is still its own.
        if let Start::Running(pid) = *self.start.borrow() {
            kill(pid);
        }
    }
}

fn kill(pid: i32) {
    debug!(pid, "killing an exec'd command whose session ended");
    // SAFETY: kill with a PID and a signal.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}
