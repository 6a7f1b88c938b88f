//! Exec and attach over SPDY/3.1 (`X-Stream-Protocol-Version: v4.channel.k8s.io`, or v5 which
//! is the same on SPDY): what kubectl falls back to when its WebSocket upgrade is refused, and
//! what older clients speak. The client opens one stream per channel, named by its
//! `streamType` header (`error`, `stdin`, `stdout`, `stderr`, `resize`); the session starts
//! once every stream the request implies is open. Sizes arrive on `resize` as a stream of JSON
//! objects; the Status goes on `error`, and each stream ends with a FIN.

use std::collections::HashMap;
use std::time::Duration;

use skiff_sandbox::{ContainerIo, StreamOptions, TerminalSize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::session::{self, ClientEnd, Output, Purpose, STDERR, STDOUT};
use super::spdy_conn::{self, Inbound, Stream};

pub(crate) const PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];
/// How long the client has to open its streams (the kubelet's stream creation timeout).
const STREAMS_TIMEOUT: Duration = Duration::from_secs(30);

/// The stream types a session with `options` waits for.
fn expected(options: StreamOptions) -> Vec<&'static str> {
    let mut kinds = vec!["error"];
    if options.stdin {
        kinds.push("stdin");
    }
    if options.stdout {
        kinds.push("stdout");
    }
    if options.stderr && !options.tty {
        kinds.push("stderr");
    }
    if options.tty {
        kinds.push("resize");
    }
    kinds
}

/// Runs an exec (`command` given) or attach session on an upgraded SPDY connection.
pub(crate) async fn serve<S>(
    io: S,
    options: StreamOptions,
    container: ContainerIo,
    command: Option<Vec<String>>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (outbound, mut incoming) = spdy_conn::accept(io);
    let wanted = expected(options);
    let mut streams: HashMap<&'static str, Stream> = HashMap::new();
    let gathered = tokio::time::timeout(STREAMS_TIMEOUT, async {
        while streams.len() < wanted.len() {
            let stream = incoming.recv().await?;
            let kind = stream.header("streamtype").unwrap_or_default().to_string();
            match wanted.iter().find(|w| **w == kind) {
                Some(kind) => {
                    streams.insert(kind, stream);
                }
                None => {
                    outbound.reset(stream.id).await;
                }
            }
        }
        Some(())
    })
    .await;
    if !matches!(gathered, Ok(Some(()))) {
        debug!(
            ?wanted,
            got = streams.len(),
            "the client did not open its streams"
        );
        outbound.close().await;
        return;
    }
    // The connection's end is the client's.
    let gone = CancellationToken::new();
    let watcher = gone.clone();
    tokio::spawn(async move {
        while incoming.recv().await.is_some() {}
        watcher.cancel();
    });

    let stdin = streams.remove("stdin").map(|stream| {
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(relay_inbound(stream.inbound, move |data| {
            let tx = tx.clone();
            async move { tx.send(data).await.is_ok() }
        }));
        rx
    });
    let resize = streams.remove("resize").map(|stream| {
        let (tx, rx) = mpsc::channel::<TerminalSize>(4);
        let mut pending = Vec::new();
        tokio::spawn(relay_inbound(stream.inbound, move |data| {
            pending.extend_from_slice(&data);
            let sizes = take_sizes(&mut pending);
            let tx = tx.clone();
            async move {
                for size in sizes {
                    let _ = tx.send(size).await;
                }
                true
            }
        }));
        rx
    });
    let ids: HashMap<u8, u32> = [(STDOUT, "stdout"), (STDERR, "stderr")]
        .into_iter()
        .filter_map(|(channel, kind)| Some((channel, streams.get(kind)?.id)))
        .collect();
    let error = streams.get("error").map(|s| s.id).unwrap_or_default();
    let (out, mut outputs) = mpsc::channel::<Output>(16);
    let client = ClientEnd {
        stdin,
        resize,
        out,
        gone,
    };
    let purpose = match &command {
        Some(command) => Purpose::Exec(command),
        None => Purpose::Attach,
    };
    let writer = async {
        while let Some(output) = outputs.recv().await {
            let sent = match output {
                Output::Data(channel, data) => match ids.get(&channel) {
                    Some(id) => outbound.data(*id, data).await,
                    None => true,
                },
                Output::End(channel) => match ids.get(&channel) {
                    Some(id) => outbound.finish(*id).await,
                    None => true,
                },
            };
            if !sent {
                break;
            }
        }
    };
    let (status, ()) = tokio::join!(session::run(container, client, purpose), writer);
    if let Some(status) = status {
        outbound.data(error, status.to_string().into_bytes()).await;
        outbound.finish(error).await;
    }
    outbound.close().await;
}

/// Feeds a stream's data to `take` until it ends or `take` says stop.
async fn relay_inbound<F, Fut>(mut inbound: mpsc::Receiver<Inbound>, mut take: F)
where
    F: FnMut(Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    while let Some(Inbound::Data(data)) = inbound.recv().await {
        if !take(data).await {
            break;
        }
    }
}

/// The complete JSON sizes at the front of `pending` (kubectl writes one per line), leaving
/// an incomplete one for later.
fn take_sizes(pending: &mut Vec<u8>) -> Vec<TerminalSize> {
    let mut sizes = Vec::new();
    let mut stream = serde_json::Deserializer::from_slice(pending).into_iter::<serde_json::Value>();
    let mut used = 0;
    while let Some(Ok(value)) = stream.next() {
        used = stream.byte_offset();
        if let Some(size) = session::parse_size(value.to_string().as_bytes()) {
            sizes.push(size);
        }
    }
    pending.drain(..used);
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_streams_a_session_waits_for_follow_its_options() {
        let options = StreamOptions {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: true,
        };
        assert_eq!(expected(options), ["error", "stdin", "stdout", "resize"]);
        let options = StreamOptions {
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        assert_eq!(expected(options), ["error", "stdout", "stderr"]);
    }

    #[test]
    fn sizes_are_taken_whole_from_a_json_stream() {
        let mut pending = b"{\"Width\":80,\"Height\":24}\n{\"Width\":1".to_vec();
        assert_eq!(
            take_sizes(&mut pending),
            [TerminalSize {
                width: 80,
                height: 24
            }]
        );
        pending.extend_from_slice(b"00,\"Height\":30}\n");
        assert_eq!(
            take_sizes(&mut pending),
            [TerminalSize {
                width: 100,
                height: 30
            }]
        );
        assert!(pending.iter().all(u8::is_ascii_whitespace));
    }
}
