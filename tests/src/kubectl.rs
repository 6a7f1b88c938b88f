//! Running the real `kubectl` against a [`crate::Cluster`]: [`Kubectl`] builds one invocation,
//! [`Run`] is its finished result, [`Background`] a still-running one (`get -w`, `wait`) whose
//! output lines are read as they arrive.

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// Where kubectl must be: the tests drive the stock binary, never one found by chance on `PATH`.
pub const KUBECTL: &str = "/usr/bin/kubectl";

/// Upper bound on waiting for any kubectl to print an expected line or to exit. Generous:
/// it bounds a hang, it does not time the server.
const BACKGROUND_BOUND: Duration = Duration::from_secs(120);

/// A finished command: what a user saw.
pub struct Run {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }
}

/// One kubectl invocation being prepared; finish it with [`Kubectl::run`], [`Kubectl::ok`],
/// [`Kubectl::err`] or [`Kubectl::spawn`].
pub struct Kubectl {
    args: Vec<String>,
    kubeconfig: PathBuf,
    cache_dir: PathBuf,
    stdin: Option<String>,
    env: Vec<(String, String)>,
}

impl Kubectl {
    pub(crate) fn new(args: &[&str], kubeconfig: PathBuf, cache_dir: PathBuf) -> Kubectl {
        Kubectl {
            args: args.iter().map(|a| a.to_string()).collect(),
            kubeconfig,
            cache_dir,
            stdin: None,
            env: Vec::new(),
        }
    }

    /// Feeds `text` on standard input (for `-f -`).
    pub fn stdin(mut self, text: &str) -> Kubectl {
        self.stdin = Some(text.to_string());
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<Path>) -> Kubectl {
        let value = value.as_ref().to_string_lossy().into_owned();
        self.env.push((key.to_string(), value));
        self
    }

    /// Uses another kubeconfig than the cluster's current one (an old copy, one without credentials).
    pub fn kubeconfig(mut self, path: impl AsRef<Path>) -> Kubectl {
        self.kubeconfig = path.as_ref().to_path_buf();
        self
    }

    fn command(&self) -> Command {
        assert!(
            Path::new(KUBECTL).exists(),
            "{KUBECTL} is missing: the end-to-end tests need the stock kubectl (scripts/test.sh checks for it)"
        );
        let mut cmd = Command::new(KUBECTL);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache_dir)
            .args(&self.args)
            .env_remove("KUBECONFIG")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    fn display(&self) -> String {
        format!("kubectl {}", self.args.join(" "))
    }

    /// Runs to completion (bounded: a kubectl that hangs is killed and the test fails).
    pub fn run(self) -> Run {
        self.start().finish()
    }

    /// Runs, asserts success, returns stdout.
    pub fn ok(self) -> String {
        let run = self.run();
        assert!(run.success(), "expected success: {run}");
        run.stdout
    }

    /// Runs, asserts failure, returns stderr.
    pub fn err(self) -> String {
        let run = self.run();
        assert!(!run.success(), "expected failure: {run}");
        run.stderr
    }

    /// Starts in the background; the process is killed when the [`Background`] is dropped.
    pub fn spawn(self) -> Background {
        self.start()
    }

    fn start(self) -> Background {
        let mut cmd = self.command();
        let stdin = if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        cmd.stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {KUBECTL}: {e}"));
        if let Some(text) = self.stdin.clone() {
            let mut pipe = child.stdin.take().expect("stdin was piped");
            // kubectl may exit before reading all of it (a parse error); that is its answer, not ours.
            thread::spawn(move || pipe.write_all(text.as_bytes()));
        }
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout was piped");
        let stderr = child.stderr.take().expect("stderr was piped");
        let out_tx = tx.clone();
        thread::spawn(move || forward(stdout, Stream::Stdout, out_tx));
        thread::spawn(move || forward(stderr, Stream::Stderr, tx));
        Background {
            command: self.display(),
            child,
            lines,
            seen: Vec::new(),
        }
    }
}

/// Sends each line with its terminator (the last may have none), so output is kept byte for byte.
fn forward(pipe: impl std::io::Read, stream: Stream, tx: mpsc::Sender<(Stream, String)>) {
    let mut reader = BufReader::new(pipe);
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&line).into_owned();
                if tx.send((stream, line)).is_err() {
                    return;
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// A kubectl still running. Lines are consumed in order by the `expect_*` methods.
pub struct Background {
    command: String,
    child: Child,
    lines: Receiver<(Stream, String)>,
    seen: Vec<(Stream, String)>,
}

impl Background {
    /// Waits for the next stdout line (after those already matched) satisfying `pred`; returns it.
    pub fn expect_stdout(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.expect(Stream::Stdout, what, pred)
    }

    /// As [`Background::expect_stdout`], on stderr (kubectl's `-v=6` request log goes there).
    pub fn expect_stderr(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.expect(Stream::Stderr, what, pred)
    }

    fn expect(&mut self, stream: Stream, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + BACKGROUND_BOUND;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((s, line)) => {
                    self.seen.push((s, line.clone()));
                    let line = line.trim_end_matches('\n');
                    if s == stream && pred(line) {
                        return line.to_string();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let seen = self.transcript();
                    panic!("`{}` never printed {what}; {seen}", self.command)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let exit = self.child.try_wait();
                    let seen = self.transcript();
                    panic!(
                        "`{}` ended ({exit:?}) without printing {what}; {seen}",
                        self.command
                    )
                }
            }
        }
    }

    /// Everything printed so far, both streams, for failure messages.
    pub fn transcript(&mut self) -> String {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        let mut out = String::from("output so far:\n");
        for (stream, line) in &self.seen {
            let tag = if *stream == Stream::Stdout {
                "out"
            } else {
                "err"
            };
            out.push_str(&format!("  [{tag}] {}\n", line.trim_end_matches('\n')));
        }
        out
    }

    /// Waits (bounded) for the process to exit by itself and returns all it printed.
    pub fn finish(mut self) -> Run {
        let deadline = Instant::now() + BACKGROUND_BOUND;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                Ok(None) => {
                    let seen = self.transcript();
                    panic!("`{}` did not exit; {seen}", self.command)
                }
                Err(e) => panic!("waiting for `{}`: {e}", self.command),
            }
        };
        // The reader threads end at EOF, which follows the exit.
        while let Ok(line) = self.lines.recv_timeout(BACKGROUND_BOUND) {
            self.seen.push(line);
        }
        let join = |stream| {
            let mut text = String::new();
            for (s, line) in &self.seen {
                if *s == stream {
                    text.push_str(line);
                }
            }
            text
        };
        Run {
            command: self.command.clone(),
            status,
            stdout: join(Stream::Stdout),
            stderr: join(Stream::Stderr),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
