//! A container's standard streams: stdout and stderr become entries of its CRI log file
//! ([`LogStream`]); stdin is empty. Also the one place that tells a module, in its own stderr
//! log, why the network it reached for is not there ([`deny_network`]).

use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use skiff_sandbox::cri_log::{LogFile, Stream, StreamWriter};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// The line a module's stderr log gets the first time it tries the network.
pub const NETWORK_DENIED: &str = "skiff: network access denied: Wasm containers get no sockets until pod networking is available";

/// Largest write a guest is invited to make at once (the guest splits bigger ones).
const MAX_WRITE: usize = 64 * 1024;

/// One stream of a container's log, shared by every handle the guest opens to it.
#[derive(Clone)]
pub(crate) struct LogStream {
    writer: Arc<Mutex<StreamWriter>>,
}

impl LogStream {
    pub(crate) fn new(log: &LogFile, stream: Stream) -> LogStream {
        LogStream {
            writer: Arc::new(Mutex::new(log.stream(stream))),
        }
    }

    fn write_all(&self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_all(bytes)
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for LogStream {
    /// A log file always takes more: writes go straight to the page cache.
    async fn ready(&mut self) {}
}

impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_all(&bytes)
            .map_err(|e| StreamError::LastOperationFailed(e.into()))
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_WRITE)
    }
}

impl tokio::io::AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.write_all(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Refuses every socket address (bind, connect, listen, send) and name lookups. TCP and UDP are
/// "allowed" only so that each attempt reaches the address check, which notes the refusal
/// in the stderr log once per run; the guest sees `access-denied` either way.
pub(crate) fn deny_network(builder: &mut WasiCtxBuilder, log: &LogFile) {
    let log = log.clone();
    let told = Arc::new(AtomicBool::new(false));
    builder
        .allow_ip_name_lookup(false)
        .allow_tcp(true)
        .allow_udp(true)
        .socket_addr_check(move |addr, used_for| {
            if !told.swap(true, Ordering::Relaxed) {
                tracing::debug!(%addr, ?used_for, "Wasm container denied a socket");
                // Best effort: a log that cannot be written has nowhere to report to.
                let _ = writeln!(log.stream(Stream::Stderr), "{NETWORK_DENIED}");
            }
            Box::pin(async { false })
        });
}
