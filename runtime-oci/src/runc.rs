//! The runc command line, for the shim (which blocks) and the sandbox (which awaits): one place
//! that knows runc's arguments and how it reports errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[derive(Debug, thiserror::Error)]
pub enum RuncError {
    #[error("running {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("runc {verb} {id}: {message}")]
    Failed {
        verb: &'static str,
        id: String,
        message: String,
    },
}

impl RuncError {
    /// runc's answer for a container it no longer knows, or one that has stopped already:
    /// for kill and delete, the work is done.
    pub fn is_gone(&self) -> bool {
        matches!(self, RuncError::Failed { message, .. }
            if message.contains("does not exist") || message.contains("not running")
                || message.contains("container not running"))
    }
}

/// runc, with its state kept under `root` (one per node data dir, so two agents on one host
/// never see each other's containers).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Runc {
    pub binary: PathBuf,
    pub root: PathBuf,
}

impl Runc {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(&self.root);
        cmd
    }

    /// `runc run --detach`: creates and starts the container in one runc process (one fewer
    /// than `create` then `start`); the container's stdio are the command's own, and runc exits
    /// once the process runs, leaving it to the caller (a child subreaper) to reap.
    pub fn run_detached(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        log: &Path,
        console_socket: Option<&Path>,
    ) -> Command {
        let mut cmd = self.command();
        cmd.arg("--log")
            .arg(log)
            .arg("--log-format")
            .arg("json")
            .arg("run")
            .arg("--detach")
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(pid_file);
        if let Some(socket) = console_socket {
            cmd.arg("--console-socket").arg(socket);
        }
        cmd.arg(id);
        cmd
    }

    /// `runc exec` in the foreground of the process spec in `process` (the container's own,
    /// with the command's args): runc waits for the process and exits with its exit code. A
    /// process with a terminal gets a new pty that runc relays to its own stdio, which must then
    /// be a terminal too (runc refuses a console socket unless it detaches). The process's host
    /// PID goes to `pid_file` once it has started, so a missing file after runc exits means it
    /// never started; runc's own error is then the last line of `log`.
    pub fn exec(&self, id: &str, pid_file: &Path, log: &Path, process: &Path) -> Command {
        let mut cmd = self.command();
        cmd.arg("--log")
            .arg(log)
            .arg("--log-format")
            .arg("json")
            .arg("exec")
            .arg("--pid-file")
            .arg(pid_file)
            .arg("--process")
            .arg(process)
            .arg(id);
        cmd
    }

    /// Signals the container's init; with `all`, every process in it.
    pub fn kill(&self, id: &str, signal: &str, all: bool) -> Command {
        let mut cmd = self.command();
        cmd.arg("kill");
        if all {
            cmd.arg("--all");
        }
        cmd.arg(id).arg(signal);
        cmd
    }

    pub fn delete(&self, id: &str) -> Command {
        let mut cmd = self.command();
        cmd.arg("delete").arg("--force").arg(id);
        cmd
    }

    /// Runs `cmd` to completion (blocking), turning a failure into runc's own message.
    pub fn run(&self, verb: &'static str, id: &str, mut cmd: Command) -> Result<Output, RuncError> {
        let output = cmd.output().map_err(|source| RuncError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        check(verb, id, output)
    }

    /// Runs `cmd` to completion without blocking the async threads.
    pub async fn run_async(
        &self,
        verb: &'static str,
        id: &str,
        cmd: Command,
    ) -> Result<Output, RuncError> {
        let output = tokio::process::Command::from(cmd)
            .output()
            .await
            .map_err(|source| RuncError::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        check(verb, id, output)
    }
}

fn check(verb: &'static str, id: &str, output: Output) -> Result<Output, RuncError> {
    if output.status.success() {
        return Ok(output);
    }
    Err(RuncError::Failed {
        verb,
        id: id.to_string(),
        message: error_message(&String::from_utf8_lossy(&output.stderr)),
    })
}

/// The message of runc's last error line (logrus text `level=error msg="…"` or JSON `"msg":"…"`),
/// else the whole text.
pub fn error_message(text: &str) -> String {
    for line in text.lines().rev() {
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(line)
            && json["level"] == "error"
            && let Some(msg) = json["msg"].as_str()
        {
            return msg.to_string();
        }
        if let Some(start) = line.find("msg=\"") {
            let rest = &line[start + 5..];
            let mut msg = String::new();
            let mut chars = rest.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => msg.extend(chars.next()),
                    '"' => break,
                    c => msg.push(c),
                }
            }
            return msg;
        }
    }
    text.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_errors_are_read_from_either_log_format() {
        let text = "time=\"2026-11-24T10:00:00Z\" level=error msg=\"container \\\"x\\\" does not exist\"\n";
        assert_eq!(error_message(text), "container \"x\" does not exist");
        let json = "{\"level\":\"warning\",\"msg\":\"w\"}\n{\"level\":\"error\",\"msg\":\"exec: \\\"nope\\\": executable file not found in $PATH\",\"time\":\"t\"}\n";
        assert_eq!(
            error_message(json),
            "exec: \"nope\": executable file not found in $PATH"
        );
        assert_eq!(error_message("plain failure\n"), "plain failure");
        let gone = RuncError::Failed {
            verb: "kill",
            id: "x".into(),
            message: error_message(text),
        };
        assert!(gone.is_gone());
    }
}
