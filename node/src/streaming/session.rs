//! One exec or attach session, whatever carries it (WebSocket channels or SPDY streams):
//! [`run`] relays a [`ContainerIo`] to and from the client ([`ClientEnd`]) and answers the
//! `Status` kubectl reads the outcome from ([`outcome`]): `Success`, `NonZeroExitCode` with the
//! code, or the error.
//!
//! The channel numbers are Kubernetes' (`k8s.io/apimachinery` remotecommand): 0 stdin, 1 stdout,
//! 2 stderr, 3 error (the Status), 4 resize.

use serde_json::{Value, json};
use skiff_sandbox::{ContainerIo, SandboxError, TerminalSize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub(crate) const STDIN: u8 = 0;
pub(crate) const STDOUT: u8 = 1;
pub(crate) const STDERR: u8 = 2;
pub(crate) const ERROR: u8 = 3;
pub(crate) const RESIZE: u8 = 4;

/// What the session sends the client, in order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Output {
    Data(u8, Vec<u8>),
    /// The channel will carry nothing more.
    End(u8),
}

/// The client as the transport presents it.
pub(crate) struct ClientEnd {
    /// What the client types; closed when it closes its stdin.
    pub stdin: Option<mpsc::Receiver<Vec<u8>>>,
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
    pub out: mpsc::Sender<Output>,
    /// Cancelled when the client has gone away.
    pub gone: CancellationToken,
}

/// Whose outcome the Status reports.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Purpose<'a> {
    /// `kubectl exec` of this command: its exit code is the outcome.
    Exec(&'a [String]),
    /// `kubectl attach`: the container's exit ends the session, successfully.
    Attach,
}

/// Relays until the process's output has ended and it has exited; the Status to send, or
/// `None` when the client went away first (dropping `io` ends the session's process).
pub(crate) async fn run(io: ContainerIo, client: ClientEnd, purpose: Purpose<'_>) -> Option<Value> {
    let ContainerIo {
        stdin,
        stdout,
        stderr,
        resize,
        exit,
    } = io;
    let ClientEnd {
        stdin: typed,
        resize: resizes,
        out,
        gone,
    } = client;
    let input = async {
        let stdin = async {
            let Some(mut typed) = typed else { return };
            let mut stdin = stdin;
            while let Some(chunk) = typed.recv().await {
                if let Some(w) = stdin.as_mut()
                    && (w.write_all(&chunk).await.is_err() || w.flush().await.is_err())
                {
                    stdin = None;
                }
            }
            if let Some(mut w) = stdin {
                let _ = w.shutdown().await;
            }
        };
        let resize = async {
            let (Some(mut resizes), Some(resize)) = (resizes, resize) else {
                return;
            };
            while let Some(size) = resizes.recv().await {
                let _ = resize.send(size).await;
            }
        };
        tokio::join!(stdin, resize);
        // The client being done typing does not end the session.
        std::future::pending::<()>().await
    };
    let copy = |from: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>, channel| {
        let out = out.clone();
        async move {
            let Some(mut from) = from else { return };
            let mut buf = vec![0u8; 32 * 1024];
            while let Ok(n) = from.read(&mut buf).await {
                if n == 0
                    || out
                        .send(Output::Data(channel, buf[..n].to_vec()))
                        .await
                        .is_err()
                {
                    break;
                }
            }
            let _ = out.send(Output::End(channel)).await;
        }
    };
    let done = async {
        let (_, _, exit) = tokio::join!(copy(stdout, STDOUT), copy(stderr, STDERR), exit);
        exit
    };
    tokio::select! {
        exit = done => Some(outcome(purpose, exit)),
        () = input => None,
        () = gone.cancelled() => None,
    }
}

/// The Status a session ends with, as the kubelet writes it (kubectl exits with the code of a
/// `NonZeroExitCode`).
pub(crate) fn outcome(purpose: Purpose<'_>, exit: Result<i32, SandboxError>) -> Value {
    match (purpose, exit) {
        (Purpose::Attach, Ok(_)) | (Purpose::Exec(_), Ok(0)) => {
            json!({"metadata": {}, "status": "Success"})
        }
        (Purpose::Exec(command), Ok(code)) => json!({
            "metadata": {},
            "status": "Failure",
            // Go's %v of the command slice.
            "message": format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                command.join(" ")
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        (purpose, Err(e)) => {
            let what = match purpose {
                Purpose::Exec(_) => "error executing command in container",
                Purpose::Attach => "error attaching to container",
            };
            json!({
                "metadata": {},
                "status": "Failure",
                "message": format!("Internal error occurred: {what}: {e}"),
                "reason": "InternalError",
                "details": {"causes": [{"message": format!("{what}: {e}")}]},
                "code": 500,
            })
        }
    }
}

/// A terminal size as kubectl sends it, `{"Width":80,"Height":24}`.
pub(crate) fn parse_size(json: &[u8]) -> Option<TerminalSize> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Size {
        width: u16,
        height: u16,
    }
    let size: Size = serde_json::from_slice(json).ok()?;
    Some(TerminalSize {
        width: size.width,
        height: size.height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_sandbox::ExitFuture;

    #[test]
    fn outcomes_read_as_the_kubelet_writes_them() {
        let command = ["sh".to_string(), "-c".into(), "exit 7".into()];
        assert_eq!(
            outcome(Purpose::Exec(&command), Ok(0)).to_string(),
            r#"{"metadata":{},"status":"Success"}"#
        );
        assert_eq!(
            outcome(Purpose::Exec(&command), Ok(7)).to_string(),
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 7], exit code 7","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"7"}]}}"#
        );
        assert_eq!(
            outcome(Purpose::Attach, Ok(3))["status"],
            "Success",
            "an attach ends well whatever the container's code"
        );
        let failed = outcome(
            Purpose::Exec(&command),
            Err(SandboxError::NotRunning {
                container: "app".into(),
            }),
        );
        assert_eq!(failed["reason"], "InternalError");
        assert_eq!(
            failed["message"],
            "Internal error occurred: error executing command in container: container \"app\" is not running"
        );
    }

    #[test]
    fn sizes_parse_from_kubectls_json() {
        assert_eq!(
            parse_size(br#"{"Width":120,"Height":40}"#),
            Some(TerminalSize {
                width: 120,
                height: 40
            })
        );
        assert_eq!(parse_size(b"{}"), None);
    }

    fn io(
        stdout: &'static [u8],
        exit: ExitFuture,
        stdin: Option<tokio::io::DuplexStream>,
    ) -> ContainerIo {
        ContainerIo {
            stdin: stdin.map(|s| Box::new(s) as _),
            stdout: Some(Box::new(stdout)),
            stderr: Some(Box::new(&b"e"[..])),
            resize: None,
            exit,
        }
    }

    #[tokio::test]
    async fn a_session_relays_output_and_input_and_ends_with_the_exit() {
        let (stdin_ours, mut stdin_theirs) = tokio::io::duplex(64);
        let (typed_tx, typed) = mpsc::channel(4);
        let (out, mut sent) = mpsc::channel(16);
        typed_tx.send(b"typed".to_vec()).await.unwrap();
        drop(typed_tx);
        let command = ["cat".to_string()];
        let client = ClientEnd {
            stdin: Some(typed),
            resize: None,
            out,
            gone: CancellationToken::new(),
        };
        // The process exits once its stdin has closed.
        let exit: ExitFuture = Box::pin(async move {
            let mut got = Vec::new();
            stdin_theirs.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"typed");
            Ok(2)
        });
        let status = run(
            io(b"out", exit, Some(stdin_ours)),
            client,
            Purpose::Exec(&command),
        )
        .await
        .unwrap();
        assert_eq!(status["details"]["causes"][0]["message"], "2");
        let mut outputs = Vec::new();
        while let Ok(o) = sent.try_recv() {
            outputs.push(o);
        }
        assert!(
            outputs.contains(&Output::Data(STDOUT, b"out".to_vec())),
            "{outputs:?}"
        );
        assert!(
            outputs.contains(&Output::Data(STDERR, b"e".to_vec())),
            "{outputs:?}"
        );
        assert!(outputs.contains(&Output::End(STDOUT)) && outputs.contains(&Output::End(STDERR)));
    }

    #[tokio::test]
    async fn a_client_that_goes_away_ends_the_session() {
        let (out, _sent) = mpsc::channel(16);
        let gone = CancellationToken::new();
        gone.cancel();
        let client = ClientEnd {
            stdin: None,
            resize: None,
            out,
            gone,
        };
        let exit: ExitFuture = Box::pin(std::future::pending());
        assert!(
            run(io(b"", exit, None), client, Purpose::Attach)
                .await
                .is_none()
        );
    }
}
