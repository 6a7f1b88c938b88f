//! Attaching to a container's own stdio through its shim: both ends of the protocol on
//! `DIR/shim.sock`.
//!
//! A client's first line says what it is: `attach` streams the container's output from then on
//! and takes its input; anything else (`wait`, or nothing at all) is a waiter, held open until
//! the shim exits, which is how the agent learns of the exit. After `attach` both directions
//! carry frames `[channel u8][length u32 BE][payload]` with Kubernetes' channel numbers: the
//! shim sends 1 (stdout, and a terminal's one stream) and 2 (stderr); the client sends
//! 0 (stdin) and 4 (a terminal size, width and height as u16 BE). The shim closes every
//! connection by exiting, after the container has.
//!
//! [`Attachable`] is the shim's side: the container's stdin (a pipe or the pty master) and the
//! clients its output copiers broadcast to. [`attach`] is the agent's side, a [`ContainerIo`].

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use skiff_sandbox::{ContainerIo, SandboxError, StreamOptions, TerminalSize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::shim;

pub(crate) const STDIN: u8 = 0;
pub(crate) const STDOUT: u8 = 1;
pub(crate) const STDERR: u8 = 2;
pub(crate) const RESIZE: u8 = 4;
/// The first line of an attach client.
const ATTACH: &[u8] = b"attach\n";
/// The longest first line a client sends.
const MAX_LINE: usize = 64;
/// A client that takes longer than this to accept output is dropped: a stuck client must not
/// stall the container on a full pipe.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest frame either side accepts.
const MAX_FRAME: usize = 1 << 20;

fn header(channel: u8, len: usize) -> [u8; 5] {
    let len = u32::try_from(len).expect("frames are small").to_be_bytes();
    [channel, len[0], len[1], len[2], len[3]]
}

fn frame_len(header: &[u8; 5]) -> std::io::Result<usize> {
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("attach frame of {len} bytes"),
        ));
    }
    Ok(len)
}

fn encode_size(size: TerminalSize) -> [u8; 4] {
    let (w, h) = (size.width.to_be_bytes(), size.height.to_be_bytes());
    [w[0], w[1], h[0], h[1]]
}

fn decode_size(payload: &[u8]) -> Option<TerminalSize> {
    let [w0, w1, h0, h1] = payload.try_into().ok()?;
    Some(TerminalSize {
        width: u16::from_be_bytes([w0, w1]),
        height: u16::from_be_bytes([h0, h1]),
    })
}

/// The container's stdio as its shim holds them, shared with attach clients.
pub(crate) struct Attachable {
    clients: Mutex<Vec<UnixStream>>,
    /// Where clients' input goes: the stdin pipe or the pty master (`stdin: true` only);
    /// `None` once closed.
    stdin: Mutex<Option<File>>,
    /// Close stdin when the first attach session ends (`stdinOnce`).
    stdin_once: bool,
    /// The pty master of a tty container, for resizes.
    terminal: Option<OwnedFd>,
}

impl Attachable {
    pub(crate) fn new(
        stdin: Option<OwnedFd>,
        terminal: Option<OwnedFd>,
        stdin_once: bool,
    ) -> Attachable {
        Attachable {
            clients: Mutex::default(),
            stdin: Mutex::new(stdin.map(File::from)),
            stdin_once,
            terminal,
        }
    }

    /// Sends container output to every attached client, dropping those that fail.
    pub(crate) fn broadcast(&self, channel: u8, data: &[u8]) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if clients.is_empty() {
            return;
        }
        let header = header(channel, data.len());
        clients.retain_mut(|client| {
            let sent = client
                .write_all(&header)
                .and_then(|()| client.write_all(data));
            if sent.is_err() {
                let _ = client.shutdown(std::net::Shutdown::Both);
            }
            sent.is_ok()
        });
    }

    /// Serves one connection to `shim.sock` until the client leaves (or the shim exits): an
    /// attach client is subscribed to the output and its input relayed; a waiter is held.
    pub(crate) fn serve(&self, mut stream: UnixStream) {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while line.len() < MAX_LINE && !line.ends_with(b"\n") {
            match stream.read(&mut byte) {
                Ok(1) => line.push(byte[0]),
                // A waiter that says nothing: its connection ends with the shim.
                _ => return,
            }
        }
        if line != ATTACH {
            // Held until the shim exits; what it sends after is ignored.
            let mut sink = [0u8; 64];
            while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
            return;
        }
        match stream.try_clone() {
            Ok(writer) => {
                let _ = writer.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT));
                self.clients
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(writer);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot attach a client");
                return;
            }
        }
        if let Err(e) = self.relay_input(&mut stream) {
            tracing::debug!(error = %e, "attach client input ended");
        }
        if self.stdin_once {
            // The container reads end of file, as the kubelet closes a `stdinOnce` stdin.
            self.stdin.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
    }

    fn relay_input(&self, stream: &mut UnixStream) -> std::io::Result<()> {
        let mut header = [0u8; 5];
        let mut payload = Vec::new();
        loop {
            match stream.read_exact(&mut header) {
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                other => other?,
            }
            payload.resize(frame_len(&header)?, 0);
            stream.read_exact(&mut payload)?;
            match header[0] {
                STDIN => {
                    if let Some(stdin) = self
                        .stdin
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .as_mut()
                    {
                        stdin.write_all(&payload)?;
                    }
                }
                RESIZE => {
                    if let (Some(terminal), Some(size)) = (&self.terminal, decode_size(&payload)) {
                        crate::pty::set_size(terminal.as_fd(), size)?;
                    }
                }
                _ => {}
            }
        }
    }
}

/// Keeps a session's connection open while any part of its [`ContainerIo`] is held: the
/// tasks that serve it end once every holder is gone.
#[derive(Clone)]
struct Alive {
    _token: mpsc::Sender<()>,
}

/// A stream that keeps its session [`Alive`].
struct Held<T> {
    inner: T,
    _alive: Alive,
}

impl<T: AsyncRead + Unpin> AsyncRead for Held<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Held<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Attaches to the container whose shim serves `dir` (the agent's side). The session's exit is
/// the container's exit code, read from its exit record once the shim has closed the
/// connection.
pub(crate) async fn attach(
    dir: &Path,
    container: &str,
    options: StreamOptions,
) -> Result<ContainerIo, SandboxError> {
    let not_running = || SandboxError::NotRunning {
        container: container.to_string(),
    };
    if shim::read_exit(dir).is_some() {
        return Err(not_running());
    }
    let socket = dir.join(shim::SOCKET);
    let io_error = |source| SandboxError::Io {
        path: socket.clone(),
        source,
    };
    let (_handle, path) = shim::socket_path(dir).map_err(io_error)?;
    let mut stream = tokio::net::UnixStream::connect(&path)
        .await
        .map_err(|e| match e.kind() {
            // The shim is gone (and its socket file with it, or nobody listens on it).
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => not_running(),
            _ => io_error(e),
        })?;
    stream.write_all(ATTACH).await.map_err(io_error)?;
    let (mut from_shim, mut to_shim) = stream.into_split();
    let (token, mut gone) = mpsc::channel::<()>(1);
    let alive = Alive { _token: token };
    let (ended_tx, ended) = tokio::sync::oneshot::channel::<()>();

    let pipe = || tokio::io::duplex(64 * 1024);
    let (stdout, mut stdout_tx) = pipe();
    let (stderr, mut stderr_tx) = pipe();
    let (stdin_tx, mut stdin) = pipe();
    let (resize_tx, mut resizes) = mpsc::channel::<TerminalSize>(4);

    // Shim to client: output until the shim closes (the container exited) or the session is
    // dropped.
    tokio::spawn(async move {
        let demux = async {
            let mut header = [0u8; 5];
            let mut payload = Vec::new();
            while from_shim.read_exact(&mut header).await.is_ok() {
                let Ok(len) = frame_len(&header) else { break };
                payload.resize(len, 0);
                if from_shim.read_exact(&mut payload).await.is_err() {
                    break;
                }
                // A reader the session dropped does not stop the other stream.
                let _ = match header[0] {
                    STDOUT => stdout_tx.write_all(&payload).await,
                    STDERR => stderr_tx.write_all(&payload).await,
                    _ => Ok(()),
                };
            }
        };
        tokio::select! {
            () = demux => {}
            _ = gone.recv() => {}
        }
        let _ = ended_tx.send(());
    });
    // Client to shim: stdin and terminal sizes, until the demux ends.
    let want_stdin = options.stdin;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        let mut stdin_open = want_stdin;
        loop {
            let frame = tokio::select! {
                read = stdin.read(&mut buf), if stdin_open => match read {
                    Ok(n) if n > 0 => (STDIN, buf[..n].to_vec()),
                    // The client closed its stdin; the container's stays open for others.
                    _ => { stdin_open = false; continue }
                },
                Some(size) = resizes.recv() => (RESIZE, encode_size(size).to_vec()),
                else => break,
            };
            let header = header(frame.0, frame.1.len());
            if to_shim.write_all(&header).await.is_err()
                || to_shim.write_all(&frame.1).await.is_err()
            {
                break;
            }
        }
    });

    let dir: PathBuf = dir.to_path_buf();
    let exit_alive = alive.clone();
    let exit = Box::pin(async move {
        let _alive = exit_alive;
        let _ = ended.await;
        shim::read_exit(&dir)
            .map(|record| record.exit_code)
            .ok_or_else(|| SandboxError::Runtime {
                context: "attaching",
                source: "the container's shim exited without recording how it ended".into(),
            })
    });
    let held = |inner| Held {
        inner,
        _alive: alive.clone(),
    };
    Ok(ContainerIo {
        stdin: options
            .stdin
            .then(|| Box::new(held(stdin_tx)) as Box<dyn AsyncWrite + Send + Unpin>),
        stdout: options
            .stdout
            .then(|| Box::new(held(stdout)) as Box<dyn AsyncRead + Send + Unpin>),
        stderr: (options.stderr && !options.tty)
            .then(|| Box::new(held(stderr)) as Box<dyn AsyncRead + Send + Unpin>),
        resize: options.tty.then_some(resize_tx),
        exit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_channel_and_length() {
        assert_eq!(header(STDERR, 258), [2, 0, 0, 1, 2]);
        assert_eq!(frame_len(&[1, 0, 0, 1, 2]).unwrap(), 258);
        assert!(frame_len(&[1, 0xff, 0, 0, 0]).is_err());
        let size = TerminalSize {
            width: 300,
            height: 40,
        };
        assert_eq!(decode_size(&encode_size(size)), Some(size));
        assert_eq!(decode_size(&[0, 1]), None);
    }
}
