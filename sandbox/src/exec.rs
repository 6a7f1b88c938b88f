//! What [`PodSandbox::exec`] and [`PodSandbox::attach`] hand back: the process end of a
//! streaming session ([`ContainerIo`]), which streams a session asks for ([`StreamOptions`]), and
//! [`exec_sync`], exec for callers without a client (exec probes, lifecycle hooks).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::mpsc;

use crate::{PodSandbox, SandboxError, SandboxId};

/// How much output [`exec_sync`] keeps, as the kubelet keeps of an exec probe's output (10 KiB);
/// the rest is read and dropped so the command never blocks on a full pipe.
pub const EXEC_OUTPUT_LIMIT: usize = 10 * 1024;

/// A terminal's size in character cells, as kubectl reports it (`{"Width":w,"Height":h}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    pub width: u16,
    pub height: u16,
}

/// Which of a process's streams a session connects (the `stdin`, `stdout`, `stderr` and `tty`
/// parameters of `pods/exec` and `pods/attach`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// One terminal stream (on `stdout`) instead of separate stdout and stderr, resizable.
    pub tty: bool,
}

/// The outcome of a session: the exit code of the command (exec) or of the container (attach).
pub type ExitFuture = Pin<Box<dyn Future<Output = Result<i32, SandboxError>> + Send>>;

/// The process end of an exec or attach session. Each stream is `Some` when the session asked
/// for it and the process has it. Closing `stdin` (shutdown or drop) is the client closing its
/// stdin; `stdout` and `stderr` end when the process (every holder of them) is done.
pub struct ContainerIo {
    pub stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    pub stdout: Option<Box<dyn AsyncRead + Send + Unpin>>,
    /// `None` with a tty: the terminal is one stream, `stdout`.
    pub stderr: Option<Box<dyn AsyncRead + Send + Unpin>>,
    /// Terminal size changes, with a tty.
    pub resize: Option<mpsc::Sender<TerminalSize>>,
    pub exit: ExitFuture,
}

/// What [`exec_sync`] saw: the exit code and the first [`EXEC_OUTPUT_LIMIT`] bytes of stdout
/// and stderr together, in the order they were read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub output: Vec<u8>,
}

/// Runs `command` in container `name` with no stdin and waits for it, at most `timeout` (the
/// kubelet's `ExecSync`, for exec probes and lifecycle hooks). On timeout the session is
/// dropped, which ends the command, and the answer is [`SandboxError::ExecTimedOut`].
pub async fn exec_sync(
    sandbox: &dyn PodSandbox,
    id: &SandboxId,
    name: &str,
    command: &[String],
    timeout: Duration,
) -> Result<ExecOutput, SandboxError> {
    let run = async {
        let options = StreamOptions {
            stdin: false,
            stdout: true,
            stderr: true,
            tty: false,
        };
        let io = sandbox.exec(id, name, command, options).await?;
        let output = Arc::new(Mutex::new(Vec::new()));
        let (_, _, exit) = tokio::join!(
            collect(io.stdout, output.clone()),
            collect(io.stderr, output.clone()),
            io.exit
        );
        let output = std::mem::take(&mut *output.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(ExecOutput {
            exit_code: exit?,
            output,
        })
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| SandboxError::ExecTimedOut {
            command: command.to_vec(),
            timeout,
        })?
}

/// Reads `from` to its end, keeping what fits under [`EXEC_OUTPUT_LIMIT`] in `into`.
async fn collect(from: Option<Box<dyn AsyncRead + Send + Unpin>>, into: Arc<Mutex<Vec<u8>>>) {
    let Some(mut from) = from else { return };
    let mut buf = vec![0u8; 4096];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let mut kept = into.lock().unwrap_or_else(|p| p.into_inner());
        let room = EXEC_OUTPUT_LIMIT.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ContainerId, ContainerSpec, ExitStatus, SandboxSpec};

    /// Execs `sh -c SCRIPT`-like commands by answering from a table: output, code, and
    /// whether it never ends.
    struct Scripted;

    #[async_trait::async_trait]
    impl PodSandbox for Scripted {
        fn handler(&self) -> &'static str {
            "scripted"
        }
        fn version(&self) -> String {
            String::new()
        }
        async fn create(&self, _: &SandboxSpec) -> Result<SandboxId, SandboxError> {
            unreachable!()
        }
        async fn start_container(
            &self,
            _: &SandboxId,
            _: &ContainerSpec,
        ) -> Result<ContainerId, SandboxError> {
            unreachable!()
        }
        async fn stop_container(
            &self,
            _: &SandboxId,
            _: &str,
            _: Duration,
        ) -> Result<(), SandboxError> {
            unreachable!()
        }
        async fn wait_container(&self, _: &SandboxId, _: &str) -> Result<ExitStatus, SandboxError> {
            unreachable!()
        }
        async fn remove(&self, _: &SandboxId) -> Result<(), SandboxError> {
            unreachable!()
        }
        async fn exec(
            &self,
            _: &SandboxId,
            _: &str,
            command: &[String],
            options: StreamOptions,
        ) -> Result<ContainerIo, SandboxError> {
            assert!(!options.stdin && options.stdout && options.stderr && !options.tty);
            let reader = |text: Vec<u8>| -> Option<Box<dyn AsyncRead + Send + Unpin>> {
                Some(Box::new(std::io::Cursor::new(text)))
            };
            let exit: ExitFuture = match command[0].as_str() {
                "hang" => Box::pin(std::future::pending()),
                _ => Box::pin(async { Ok(3) }),
            };
            Ok(ContainerIo {
                stdin: None,
                stdout: reader(vec![b'o'; 3 * EXEC_OUTPUT_LIMIT]),
                stderr: reader(b"err".to_vec()),
                resize: None,
                exit,
            })
        }
    }

    #[tokio::test]
    async fn exec_sync_collects_capped_output_and_the_exit_code() {
        let id = SandboxId("p".into());
        let out = exec_sync(&Scripted, &id, "c", &["run".into()], Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(out.exit_code, 3);
        assert_eq!(out.output.len(), EXEC_OUTPUT_LIMIT);
    }

    #[tokio::test]
    async fn exec_sync_times_out() {
        let id = SandboxId("p".into());
        let err = exec_sync(
            &Scripted,
            &id,
            "c",
            &["hang".into()],
            Duration::from_millis(50),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, SandboxError::ExecTimedOut { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "command [\"hang\"] did not finish within 50ms"
        );
    }

    #[tokio::test]
    async fn runtimes_without_processes_refuse_exec() {
        struct Bare;
        #[async_trait::async_trait]
        impl PodSandbox for Bare {
            fn handler(&self) -> &'static str {
                "bare"
            }
            fn version(&self) -> String {
                String::new()
            }
            async fn create(&self, _: &SandboxSpec) -> Result<SandboxId, SandboxError> {
                unreachable!()
            }
            async fn start_container(
                &self,
                _: &SandboxId,
                _: &ContainerSpec,
            ) -> Result<ContainerId, SandboxError> {
                unreachable!()
            }
            async fn stop_container(
                &self,
                _: &SandboxId,
                _: &str,
                _: Duration,
            ) -> Result<(), SandboxError> {
                unreachable!()
            }
            async fn wait_container(
                &self,
                _: &SandboxId,
                _: &str,
            ) -> Result<ExitStatus, SandboxError> {
                unreachable!()
            }
            async fn remove(&self, _: &SandboxId) -> Result<(), SandboxError> {
                unreachable!()
            }
        }
        let id = SandboxId("p".into());
        let err = exec_sync(&Bare, &id, "c", &["ls".into()], Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "bare does not support exec");
        let Err(err) = Bare.attach(&id, "c", StreamOptions::default()).await else {
            panic!("attach to a bare runtime succeeded");
        };
        assert_eq!(err.to_string(), "bare does not support attach");
    }
}
