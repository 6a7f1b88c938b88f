//! The shim: one small process per container (`skiff shim DIR`, the agent's own binary
//! re-executed) that outlives the agent. It creates and starts the container with runc, holds
//! its stdio and writes them to the CRI log, becomes the container's parent (a child subreaper)
//! so that it alone learns the exit status — runc records none — and writes that status to
//! `DIR/exit.json` before it leaves. An agent, this one or a restarted one, learns of the exit by
//! holding a connection to `DIR/shim.sock`, which closes when the shim exits.
//!
//! The agent learns the outcome of the start from the shim's stdout: one line, `started PID` or
//! `failed MESSAGE`.
//!
//! `shim.sock` also serves `kubectl attach` ([`crate::attach`]): the shim keeps the container's
//! stdin open (`stdin: true`) and sends its output to attached clients as well as to the log. A
//! tty container (`tty: true`) gets a pty from runc (`--console-socket`); the shim holds the
//! master, logs the terminal as stdout and resizes it for attached clients.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use skiff_sandbox::cgroups::{Cgroup, Hierarchy};
use skiff_sandbox::cri_log::{LogFile, MAX_FILE_BYTES, Stream};

use crate::attach::{Attachable, STDERR, STDOUT};
use crate::pty::ConsoleSocket;
use crate::runc::{Runc, RuncError, error_message};

pub(crate) const CONFIG: &str = "shim.json";
pub(crate) const EXIT: &str = "exit.json";
pub(crate) const SOCKET: &str = "shim.sock";
const PID_FILE: &str = "init.pid";
const RUNC_LOG: &str = "runc.log";

/// What the agent tells a shim (`DIR/shim.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ShimConfig {
    pub id: String,
    pub runc: Runc,
    pub log_path: PathBuf,
    pub stdin: bool,
    /// The container's stdin closes when the first attach session ends (`stdinOnce`).
    #[serde(default)]
    pub stdin_once: bool,
    /// The container has a terminal (`tty: true`).
    #[serde(default)]
    pub tty: bool,
    /// The container's cgroup below the hierarchy root, where its OOM kills are counted.
    pub cgroup: Option<PathBuf>,
}

/// How a container's run ended (`DIR/exit.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct ExitRecord {
    /// The exit code, or 128 + the signal that killed it.
    pub exit_code: i32,
    pub oom_killed: bool,
    pub finished_at: SystemTime,
}

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Config {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Runc(#[from] RuncError),
    #[error("{0}")]
    Os(&'static str, #[source] std::io::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ShimError + '_ {
    move |source| ShimError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), ShimError> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills both descriptors on success; we own them from then on.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(ShimError::Os("pipe2", std::io::Error::last_os_error()));
    }
    // SAFETY: freshly created descriptors, owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Runs the shim for the container directory `dir`; returns when the container has exited and
/// its exit is recorded. Reports the start's outcome on stdout.
pub fn run(dir: &Path) -> Result<(), ShimError> {
    leave_session();
    let config_path = dir.join(CONFIG);
    let config: ShimConfig = serde_json::from_slice(
        &std::fs::read(&config_path).map_err(io(&config_path))?,
    )
    .map_err(|source| ShimError::Config {
        path: config_path.clone(),
        source,
    })?;
    match start(dir, &config) {
        Ok((init, copiers)) => {
            report(&format!("started {init}"));
            supervise(dir, &config, init, copiers)
        }
        Err(e) => {
            report(&format!("failed {}", e.to_string().replace('\n', " ")));
            Err(e)
        }
    }
}

/// A session of the shim's own keeps it (and so the container) alive when the agent's process
/// group or terminal is signalled. Failing means it leads one already.
fn leave_session() {
    // SAFETY: setsid takes no arguments and only changes this process's session.
    unsafe { libc::setsid() };
}

/// A spare shim (`skiff shim` without a directory): started ahead so that a container's start
/// does not wait for the shim's own exec, it reads its container directory from stdin when the
/// agent has one, then runs as [`run`], logging to `DIR/shim.log`. End of input (the agent
/// went away) ends it.
pub fn run_spare() -> Result<(), ShimError> {
    use std::io::BufRead;
    leave_session();
    use std::os::fd::AsRawFd;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| ShimError::Os("reading the container directory", e))?;
    let dir = PathBuf::from(line.trim_end());
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    // Nothing more comes from the agent, and runc must not inherit our stdin or stderr.
    let redirect = |path: &Path, write: bool, fd: i32| -> Result<(), ShimError> {
        let file = File::options()
            .read(!write)
            .write(write)
            .create(write)
            .append(write)
            .open(path)
            .map_err(io(path))?;
        // SAFETY: dup2 onto one of our own standard descriptors; both are valid.
        unsafe { libc::dup2(file.as_raw_fd(), fd) };
        Ok(())
    };
    redirect(Path::new("/dev/null"), false, 0)?;
    redirect(&dir.join("shim.log"), true, 2)?;
    run(&dir)
}

/// One line to the agent, then stdout is gone: the agent may have exited since.
fn report(line: &str) {
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
    if let Ok(null) = File::options().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto our own stdout; both descriptors are valid.
        unsafe { libc::dup2(null.as_raw_fd(), 1) };
    }
}

type Copiers = Vec<std::thread::JoinHandle<()>>;

/// The shim's ends of the container's stdio.
enum ContainerStdio {
    /// A tty container's pty master, once runc sends it.
    Terminal(ConsoleSocket),
    /// The read ends of stdout and stderr, and the write end of stdin (`stdin: true`).
    Pipes {
        stdout: OwnedFd,
        stderr: OwnedFd,
        stdin: Option<OwnedFd>,
    },
}

fn start(dir: &Path, config: &ShimConfig) -> Result<(i32, Copiers), ShimError> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(ShimError::Os(
            "becoming a child subreaper",
            std::io::Error::last_os_error(),
        ));
    }
    let log = LogFile::open(&config.log_path, MAX_FILE_BYTES).map_err(io(&config.log_path))?;
    let pid_file = dir.join(PID_FILE);
    let runc_log = dir.join(RUNC_LOG);
    let console = config
        .tty
        .then(|| ConsoleSocket::listen(dir))
        .transpose()
        .map_err(io(dir))?;
    let mut run = config.runc.run_detached(
        &config.id,
        dir,
        &pid_file,
        &runc_log,
        console.as_ref().map(ConsoleSocket::path),
    );
    let stdio = match console {
        // A tty container's stdio is its terminal; runc's own are unused then.
        Some(console) => {
            run.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            ContainerStdio::Terminal(console)
        }
        None => {
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            let (stdin_r, stdin_w) = if config.stdin {
                let (r, w) = pipe()?;
                (Stdio::from(r), Some(w))
            } else {
                (Stdio::null(), None)
            };
            run.stdin(stdin_r)
                .stdout(Stdio::from(out_w))
                .stderr(Stdio::from(err_w));
            ContainerStdio::Pipes {
                stdout: out_r,
                stderr: err_r,
                stdin: stdin_w,
            }
        }
    };
    let status = run.status().map_err(|source| RuncError::Spawn {
        binary: config.runc.binary.clone(),
        source,
    })?;
    // Our copies of the write ends go with the command; the container holds its own.
    drop(run);
    if !status.success() {
        let text = std::fs::read_to_string(&runc_log).unwrap_or_default();
        return Err(RuncError::Failed {
            verb: "run",
            id: config.id.clone(),
            message: error_message(&text),
        }
        .into());
    }
    let started = (|| {
        let init: i32 = std::fs::read_to_string(&pid_file)
            .map_err(io(&pid_file))?
            .trim()
            .parse()
            .map_err(|_| ShimError::Io {
                path: pid_file.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not a pid"),
            })?;
        let copiers = match stdio {
            ContainerStdio::Terminal(console) => {
                let master = console
                    .receive()
                    .map_err(|e| ShimError::Os("receiving the container's terminal", e))?;
                let dup = |fd: &OwnedFd| fd.try_clone().map_err(io(dir));
                let input = if config.stdin {
                    Some(dup(&master)?)
                } else {
                    None
                };
                let attachable = Arc::new(Attachable::new(
                    input,
                    Some(dup(&master)?),
                    config.stdin_once,
                ));
                listen(dir, attachable.clone())?;
                vec![copy_to_log(master, log, Stream::Stdout, attachable, STDOUT)]
            }
            ContainerStdio::Pipes {
                stdout,
                stderr,
                stdin,
            } => {
                let attachable = Arc::new(Attachable::new(stdin, None, config.stdin_once));
                listen(dir, attachable.clone())?;
                vec![
                    copy_to_log(
                        stdout,
                        log.clone(),
                        Stream::Stdout,
                        attachable.clone(),
                        STDOUT,
                    ),
                    copy_to_log(stderr, log, Stream::Stderr, attachable, STDERR),
                ]
            }
        };
        Ok((init, copiers))
    })();
    match started {
        Ok(started) => Ok(started),
        Err(e) => {
            // A container the shim cannot supervise must not linger in runc's state.
            let _ = config
                .runc
                .run("delete", &config.id, config.runc.delete(&config.id));
            Err(e)
        }
    }
}

/// Copies one of the container's outputs to the log and to attached clients until it ends (a
/// pty master reports the end as EIO).
fn copy_to_log(
    from: OwnedFd,
    log: LogFile,
    stream: Stream,
    clients: Arc<Attachable>,
    channel: u8,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut from = File::from(from);
        let mut to = log.stream(stream);
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    // A full disk must not stall the container on a full pipe: keep reading.
                    let _ = to.write_all(&buf[..n]);
                    clients.broadcast(channel, &buf[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    })
}

/// `DIR/shim.sock` by a path that fits a socket address (108 bytes, which a data dir can
/// exceed): through the directory's descriptor, which the returned file keeps open.
pub(crate) fn socket_path(dir: &Path) -> std::io::Result<(File, PathBuf)> {
    short_path(dir, SOCKET)
}

/// `DIR/NAME` through the directory's descriptor (see [`socket_path`]).
pub(crate) fn short_path(dir: &Path, name: &str) -> std::io::Result<(File, PathBuf)> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let handle = File::options()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(dir)?;
    let path = PathBuf::from(format!("/proc/self/fd/{}/{name}", handle.as_raw_fd()));
    Ok((handle, path))
}

/// Serves `DIR/shim.sock`, one thread per connection: attach clients, and waiters held open
/// until the shim exits.
fn listen(dir: &Path, attachable: Arc<Attachable>) -> Result<(), ShimError> {
    let _ = std::fs::remove_file(dir.join(SOCKET));
    let (_handle, path) = socket_path(dir).map_err(io(dir))?;
    let listener = UnixListener::bind(&path).map_err(io(&dir.join(SOCKET)))?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let attachable = attachable.clone();
            std::thread::spawn(move || attachable.serve(stream));
        }
    });
    Ok(())
}

/// Waits for the container's init to exit (reaping whatever else is reparented to us), records
/// the exit, and removes the container from runc.
fn supervise(
    dir: &Path,
    config: &ShimConfig,
    init: i32,
    copiers: Copiers,
) -> Result<(), ShimError> {
    let exit_code = loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            // No children left without seeing init exit: it was never ours.
            break 255;
        }
        if pid == init {
            break if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            };
        }
    };
    let finished_at = SystemTime::now();
    let oom_killed = config
        .cgroup
        .as_ref()
        .and_then(|path| Some(Cgroup::new(Hierarchy::detect().ok()?, path.clone())))
        .and_then(|cgroup| cgroup.oom_kills().ok())
        .is_some_and(|kills| kills > 0);
    // The container's processes die with its pid namespace, so the pipes reach EOF; give the
    // copiers a moment for what is still buffered.
    let deadline = Instant::now() + Duration::from_secs(2);
    for copier in copiers {
        while !copier.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    if let Err(e) = config
        .runc
        .run("delete", &config.id, config.runc.delete(&config.id))
        && !e.is_gone()
    {
        tracing::warn!(id = %config.id, error = %e, "runc delete failed");
    }
    let record = ExitRecord {
        exit_code,
        oom_killed,
        finished_at,
    };
    write_exit(dir, &record)
}

pub(crate) fn write_exit(dir: &Path, record: &ExitRecord) -> Result<(), ShimError> {
    let path = dir.join(EXIT);
    let tmp = dir.join(".exit.json.tmp");
    let bytes = serde_json::to_vec(record).expect("an exit record serializes");
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))
}

pub(crate) fn read_exit(dir: &Path) -> Option<ExitRecord> {
    serde_json::from_slice(&std::fs::read(dir.join(EXIT)).ok()?).ok()
}

/// Reads the shim's one-line report of the start.
pub(crate) fn parse_report(line: &str) -> Result<i32, String> {
    let line = line.trim_end();
    if let Some(pid) = line.strip_prefix("started ") {
        return pid.parse().map_err(|_| format!("shim reported {line:?}"));
    }
    Err(line
        .strip_prefix("failed ")
        .map(String::from)
        .unwrap_or_else(|| {
            if line.is_empty() {
                "the shim exited before starting the container".to_string()
            } else {
                format!("shim reported {line:?}")
            }
        }))
}
