//! Port forwarding (`pods/portforward`) over SPDY/3.1, as kubectl speaks it, plain or tunnelled
//! in WebSocket. For each local connection kubectl opens two streams with the same `requestID`
//! and `port` headers: `streamType: error`, which the client only reads, then `streamType:
//! data`. The node connects to `127.0.0.1:port` in the pod's network namespace and copies
//! bytes; a failure is told as text on the error stream. Once the pod side has ended, the data
//! stream and then the error stream are finished: kubectl waits for both before it closes the
//! local connection (and only then finishes its side).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::debug;

use super::PodPorts;
use super::spdy_conn::{self, Inbound, Outbound, Stream};
use crate::network::{NetworkError, netns};

/// The SPDY upgrade's protocol, and the WebSocket subprotocol that tunnels it.
pub(crate) const PROTOCOL: &str = "portforward.k8s.io";
pub(crate) const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The two streams of one forwarded connection, as they arrive.
#[derive(Default)]
struct Pair {
    error: Option<Stream>,
    data: Option<Stream>,
}

/// Serves a port forwarding connection to `pod` until the client closes it.
pub(crate) async fn serve<S>(io: S, pod: String, ports: PodPorts)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (outbound, mut incoming) = spdy_conn::accept(io);
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    while let Some(stream) = incoming.recv().await {
        // Clients before requestID paired streams by port.
        let Some(request) = stream
            .header("requestid")
            .or_else(|| stream.header("port"))
            .map(str::to_string)
        else {
            outbound.reset(stream.id).await;
            continue;
        };
        let pair = pairs.entry(request.clone()).or_default();
        match stream.header("streamtype") {
            Some("error") => pair.error = Some(stream),
            Some("data") => pair.data = Some(stream),
            _ => {
                outbound.reset(stream.id).await;
                continue;
            }
        }
        if pair.error.is_some()
            && pair.data.is_some()
            && let Some(Pair {
                error: Some(error),
                data: Some(data),
            }) = pairs.remove(&request)
        {
            tokio::spawn(forward(
                outbound.clone(),
                pod.clone(),
                ports.clone(),
                error,
                data,
            ));
        }
    }
}

/// One forwarded connection.
async fn forward(out: Outbound, pod: String, ports: PodPorts, error: Stream, data: Stream) {
    let port = data
        .header("port")
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p > 0);
    let connected = match port {
        Some(port) => connect(&ports, port)
            .await
            .map_err(|cause| format!("error forwarding port {port} to pod {pod}: {cause}")),
        None => Err(format!(
            "invalid port {:?} to forward to pod {pod}",
            data.header("port").unwrap_or_default()
        )),
    };
    let tcp = match connected {
        Ok(tcp) => tcp,
        Err(message) => {
            debug!(%pod, %message, "port forwarding failed");
            out.data(error.id, message.into_bytes()).await;
            out.finish(error.id).await;
            out.finish(data.id).await;
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    let (mut from_pod, mut to_pod) = tcp.into_split();
    let mut inbound = data.inbound;
    let data_id = data.id;
    let to_client = async {
        let mut buf = vec![0u8; 32 * 1024];
        while let Ok(n) = from_pod.read(&mut buf).await {
            if n == 0 || !out.data(data_id, buf[..n].to_vec()).await {
                break;
            }
        }
        out.finish(data_id).await;
        out.finish(error.id).await;
    };
    let from_client = async {
        let mut writing = true;
        while let Some(message) = inbound.recv().await {
            match message {
                Inbound::Data(bytes) if writing => {
                    writing = to_pod.write_all(&bytes).await.is_ok();
                }
                Inbound::Data(_) => {}
                Inbound::Fin => {
                    let _ = to_pod.shutdown().await;
                    writing = false;
                }
                Inbound::Reset => break,
            }
        }
    };
    // The client's reset (or the connection's end) ends both directions. The pod's end ends
    // only its own: the client finishes its side and resets the streams when it is done.
    tokio::select! {
        () = async { to_client.await; std::future::pending::<()>().await } => {}
        () = from_client => {}
    }
}

/// Connects to `port` on the pod's loopback; a failure in Go's words, as the kubelet's read
/// (`dial tcp 127.0.0.1:80: connect: connection refused`).
async fn connect(ports: &PodPorts, port: u16) -> Result<TcpStream, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let dial = |e: &std::io::Error| format!("dial tcp {addr}: connect: {}", go_words(e));
    match ports {
        PodPorts::Namespace(netns_path) => {
            let path = netns_path.clone();
            let connected = tokio::task::spawn_blocking(move || {
                netns::tcp_connect_in(&path, addr, CONNECT_TIMEOUT)
            })
            .await
            .map_err(|e| e.to_string())?;
            let std = match connected {
                Ok(std) => std,
                Err(NetworkError::Connect { source, .. }) => return Err(dial(&source)),
                Err(e) => return Err(e.to_string()),
            };
            std.set_nonblocking(true).map_err(|e| e.to_string())?;
            TcpStream::from_std(std).map_err(|e| e.to_string())
        }
        PodPorts::Host => tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("dial tcp {addr}: i/o timeout"))?
            .map_err(|e| dial(&e)),
        PodPorts::None => Err("the pod has no network".to_string()),
    }
}

/// An OS error as Go prints it: `connection refused`, not `Connection refused (os error 111)`.
fn go_words(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or_default();
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_lowercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_read_as_go_prints_them() {
        let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(go_words(&refused), "connection refused");
    }
}
