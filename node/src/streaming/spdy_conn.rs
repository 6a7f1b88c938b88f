//! A SPDY/3.1 connection served to a client that opens the streams ([`accept`]), as kubectl's
//! port forwarding and its exec/attach fallback do: every stream the client opens is replied to
//! and handed over ([`Stream`]) with its own inbound data, pings are answered, and frames go
//! out through one writer ([`Outbound`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tracing::debug;

use super::spdy::{CANCEL, FLAG_FIN, Frame, FrameReader, FrameWriter, Headers};

/// What arrives on a stream.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inbound {
    Data(Vec<u8>),
    /// The client will send nothing more on it.
    Fin,
    /// The client tore the stream down.
    Reset,
}

/// A stream the client opened.
pub(crate) struct Stream {
    pub id: u32,
    pub headers: Headers,
    /// Ends (`None`) with the connection.
    pub inbound: mpsc::Receiver<Inbound>,
}

impl Stream {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

enum Command {
    Frame(Frame),
    Close,
}

/// Sends on the connection. Cheap to clone; the connection's write side ends with
/// [`Outbound::close`] or once every clone is gone.
#[derive(Clone)]
pub(crate) struct Outbound(mpsc::Sender<Command>);

impl Outbound {
    /// Sends `data` on `stream_id`; false once the connection is gone.
    pub async fn data(&self, stream_id: u32, data: Vec<u8>) -> bool {
        self.send(Frame::Data {
            stream_id,
            flags: 0,
            data,
        })
        .await
    }

    /// Ends this side of `stream_id`.
    pub async fn finish(&self, stream_id: u32) -> bool {
        self.send(Frame::Data {
            stream_id,
            flags: FLAG_FIN,
            data: Vec::new(),
        })
        .await
    }

    pub async fn reset(&self, stream_id: u32) -> bool {
        self.send(Frame::RstStream {
            stream_id,
            status: CANCEL,
        })
        .await
    }

    /// Says goodbye (GOAWAY) and ends the connection's write side.
    pub async fn close(&self) {
        let _ = self.0.send(Command::Close).await;
    }

    async fn send(&self, frame: Frame) -> bool {
        self.0.send(Command::Frame(frame)).await.is_ok()
    }
}

/// Serves a SPDY connection on `io`. The streams the client opens arrive on the receiver, which
/// ends when the connection does.
pub(crate) fn accept<S>(io: S) -> (Outbound, mpsc::Receiver<Stream>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(io);
    let (commands, mut queued) = mpsc::channel::<Command>(64);
    let last_stream = Arc::new(AtomicU32::new(0));
    let last_good = last_stream.clone();
    tokio::spawn(async move {
        let mut writer = FrameWriter::new(write);
        while let Some(command) = queued.recv().await {
            let frame = match command {
                Command::Frame(frame) => frame,
                Command::Close => {
                    let goaway = Frame::GoAway {
                        last_good_stream_id: last_good.load(Ordering::Relaxed),
                        status: 0,
                    };
                    let _ = writer.send(&goaway).await;
                    break;
                }
            };
            if let Err(e) = writer.send(&frame).await {
                debug!(error = %e, "SPDY connection write failed");
                break;
            }
        }
        let _ = writer.shutdown().await;
    });

    let outbound = Outbound(commands);
    let (streams_tx, streams_rx) = mpsc::channel(16);
    let replies = outbound.clone();
    tokio::spawn(async move {
        let mut reader = FrameReader::new(read);
        let mut open: HashMap<u32, mpsc::Sender<Inbound>> = HashMap::new();
        loop {
            let frame = match reader.next().await {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    debug!(error = %e, "SPDY connection read failed");
                    break;
                }
            };
            match frame {
                Frame::SynStream {
                    stream_id,
                    flags,
                    headers,
                } => {
                    last_stream.fetch_max(stream_id, Ordering::Relaxed);
                    replies
                        .send(Frame::SynReply {
                            stream_id,
                            flags: 0,
                            headers: Vec::new(),
                        })
                        .await;
                    let (tx, inbound) = mpsc::channel(16);
                    if flags & FLAG_FIN != 0 {
                        let _ = tx.send(Inbound::Fin).await;
                    } else {
                        open.insert(stream_id, tx);
                    }
                    let stream = Stream {
                        id: stream_id,
                        headers,
                        inbound,
                    };
                    if streams_tx.send(stream).await.is_err() {
                        // Nobody takes streams any more: the session is over.
                        replies.reset(stream_id).await;
                    }
                }
                Frame::Data {
                    stream_id,
                    flags,
                    data,
                } => {
                    let Some(tx) = open.get(&stream_id) else {
                        continue;
                    };
                    // A finished stream stays known until reset, so its taker hears of that;
                    // a taker that dropped its stream hears of nothing more.
                    let mut delivered =
                        data.is_empty() || tx.send(Inbound::Data(data)).await.is_ok();
                    if flags & FLAG_FIN != 0 {
                        delivered &= tx.send(Inbound::Fin).await.is_ok();
                    }
                    if !delivered {
                        open.remove(&stream_id);
                    }
                }
                Frame::RstStream { stream_id, .. } => {
                    if let Some(tx) = open.remove(&stream_id) {
                        let _ = tx.send(Inbound::Reset).await;
                    }
                }
                // Client pings carry odd IDs and are echoed; even ones would answer ours.
                Frame::Ping { id } if id % 2 == 1 => {
                    replies.send(Frame::Ping { id }).await;
                }
                Frame::GoAway { .. } => break,
                Frame::Ping { .. } | Frame::SynReply { .. } | Frame::Other { .. } => {}
            }
        }
        // Dropping `open` and `streams_tx` tells every stream's taker the connection is gone.
    });
    (outbound, streams_rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client end: frames written to and read from the server's connection.
    async fn client() -> (
        FrameWriter<tokio::io::WriteHalf<tokio::io::DuplexStream>>,
        FrameReader<tokio::io::ReadHalf<tokio::io::DuplexStream>>,
        Outbound,
        mpsc::Receiver<Stream>,
    ) {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let (outbound, streams) = accept(theirs);
        let (read, write) = tokio::io::split(ours);
        (
            FrameWriter::new(write),
            FrameReader::new(read),
            outbound,
            streams,
        )
    }

    #[tokio::test]
    async fn streams_are_replied_to_and_their_data_routed() {
        let (mut to, mut from, outbound, mut streams) = client().await;
        to.send(&Frame::SynStream {
            stream_id: 1,
            flags: 0,
            headers: vec![("streamtype".into(), "data".into())],
        })
        .await
        .unwrap();
        assert_eq!(
            from.next().await.unwrap(),
            Some(Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: Vec::new()
            })
        );
        let mut stream = streams.recv().await.unwrap();
        assert_eq!(stream.header("streamType"), Some("data"));
        to.send(&Frame::Data {
            stream_id: 1,
            flags: FLAG_FIN,
            data: b"in".to_vec(),
        })
        .await
        .unwrap();
        assert_eq!(
            stream.inbound.recv().await,
            Some(Inbound::Data(b"in".to_vec()))
        );
        assert_eq!(stream.inbound.recv().await, Some(Inbound::Fin));

        to.send(&Frame::Ping { id: 3 }).await.unwrap();
        assert_eq!(from.next().await.unwrap(), Some(Frame::Ping { id: 3 }));
        assert!(outbound.data(1, b"out".to_vec()).await);
        assert!(outbound.finish(1).await);
        assert_eq!(
            from.next().await.unwrap(),
            Some(Frame::Data {
                stream_id: 1,
                flags: 0,
                data: b"out".to_vec()
            })
        );
        assert_eq!(
            from.next().await.unwrap(),
            Some(Frame::Data {
                stream_id: 1,
                flags: FLAG_FIN,
                data: Vec::new()
            })
        );
        outbound.close().await;
        assert!(matches!(
            from.next().await.unwrap(),
            Some(Frame::GoAway {
                last_good_stream_id: 1,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn resets_reach_the_stream_and_a_closed_connection_ends_them() {
        let (mut to, _from, _outbound, mut streams) = client().await;
        for stream_id in [1, 3] {
            to.send(&Frame::SynStream {
                stream_id,
                flags: 0,
                headers: Vec::new(),
            })
            .await
            .unwrap();
        }
        let mut first = streams.recv().await.unwrap();
        let mut second = streams.recv().await.unwrap();
        to.send(&Frame::RstStream {
            stream_id: 1,
            status: CANCEL,
        })
        .await
        .unwrap();
        assert_eq!(first.inbound.recv().await, Some(Inbound::Reset));
        to.shutdown().await.unwrap();
        assert_eq!(second.inbound.recv().await, None);
        assert!(streams.recv().await.is_none());
    }
}
