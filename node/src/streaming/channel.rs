//! The remotecommand channel protocol over WebSocket, as kubectl speaks it for exec and attach
//! (`v5.channel.k8s.io`, falling back to `v4.channel.k8s.io`): binary messages whose first byte
//! is the channel ([`super::session`] numbers them). The client sends stdin (0) and terminal
//! sizes (4, `{"Width":w,"Height":h}`); v5 adds 255 `[255, channel]`, closing that channel (the
//! client's stdin). The server sends stdout (1) and stderr (2), then one Status on error (3),
//! then closes the WebSocket normally (kubectl's readers take a normal close as EOF).

use futures::{SinkExt, StreamExt};
use skiff_sandbox::{ContainerIo, TerminalSize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

use super::session::{self, ClientEnd, ERROR, Output, Purpose, RESIZE, STDIN};

pub(crate) const V5: &str = "v5.channel.k8s.io";
pub(crate) const V4: &str = "v4.channel.k8s.io";
/// Preferred first when a client offers several.
pub(crate) const PROTOCOLS: &[&str] = &[V5, V4];
/// v5's channel-close message.
const CLOSE: u8 = 255;

/// A message from the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ClientFrame {
    Stdin(Vec<u8>),
    CloseStdin,
    Resize(TerminalSize),
    /// An empty message, a channel the server does not read, or an unreadable size.
    Ignored,
}

pub(crate) fn decode(v5: bool, message: &[u8]) -> ClientFrame {
    match message {
        [STDIN, data @ ..] => ClientFrame::Stdin(data.to_vec()),
        [RESIZE, json @ ..] => {
            session::parse_size(json).map_or(ClientFrame::Ignored, ClientFrame::Resize)
        }
        [CLOSE, STDIN] if v5 => ClientFrame::CloseStdin,
        _ => ClientFrame::Ignored,
    }
}

pub(crate) fn encode(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(1 + data.len());
    message.push(channel);
    message.extend_from_slice(data);
    message
}

/// Runs an exec (`command` given) or attach session on an upgraded WebSocket.
pub(crate) async fn serve<S>(
    ws: WebSocketStream<S>,
    protocol: &'static str,
    io: ContainerIo,
    command: Option<Vec<String>>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let v5 = protocol == V5;
    let (mut sink, mut messages) = ws.split();
    let (stdin_tx, stdin) = mpsc::channel::<Vec<u8>>(16);
    let (resize_tx, resize) = mpsc::channel::<TerminalSize>(4);
    let (out, mut outputs) = mpsc::channel::<Output>(16);
    let gone = CancellationToken::new();

    let reader_gone = gone.clone();
    let reader = tokio::spawn(async move {
        let mut stdin_tx = Some(stdin_tx);
        while let Some(Ok(message)) = messages.next().await {
            let frame = match message {
                Message::Binary(data) => decode(v5, &data),
                Message::Close(_) => break,
                _ => continue,
            };
            match frame {
                ClientFrame::Stdin(data) => {
                    if let Some(tx) = &stdin_tx
                        && !data.is_empty()
                        && tx.send(data).await.is_err()
                    {
                        stdin_tx = None;
                    }
                }
                ClientFrame::CloseStdin => stdin_tx = None,
                ClientFrame::Resize(size) => {
                    let _ = resize_tx.try_send(size);
                }
                ClientFrame::Ignored => {}
            }
        }
        reader_gone.cancel();
    });

    let client = ClientEnd {
        stdin: Some(stdin),
        resize: Some(resize),
        out,
        gone,
    };
    let purpose = match &command {
        Some(command) => Purpose::Exec(command),
        None => Purpose::Attach,
    };
    let writer = async {
        while let Some(output) = outputs.recv().await {
            // v4 has no way to say a channel ended; v5's close is for the client's stdin.
            if let Output::Data(channel, data) = output
                && sink
                    .send(Message::binary(encode(channel, &data)))
                    .await
                    .is_err()
            {
                break;
            }
        }
    };
    let (status, ()) = tokio::join!(session::run(io, client, purpose), writer);
    reader.abort();
    if let Some(status) = status {
        let _ = sink
            .send(Message::binary(encode(
                ERROR,
                status.to_string().as_bytes(),
            )))
            .await;
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            })))
            .await;
    }
    let _ = sink.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_sandbox::ExitFuture;

    #[test]
    fn client_messages_decode_by_channel() {
        assert_eq!(
            decode(true, b"\x00ls\n"),
            ClientFrame::Stdin(b"ls\n".to_vec())
        );
        assert_eq!(
            decode(true, b"\x04{\"Width\":80,\"Height\":24}"),
            ClientFrame::Resize(TerminalSize {
                width: 80,
                height: 24
            })
        );
        assert_eq!(decode(true, &[255, 0]), ClientFrame::CloseStdin);
        assert_eq!(
            decode(false, &[255, 0]),
            ClientFrame::Ignored,
            "v4 has no close"
        );
        assert_eq!(decode(true, &[]), ClientFrame::Ignored);
        assert_eq!(decode(true, b"\x04not json"), ClientFrame::Ignored);
        assert_eq!(encode(2, b"err"), b"\x02err");
    }

    #[tokio::test]
    async fn an_exec_session_ends_with_output_the_status_and_a_normal_close() {
        use tokio_tungstenite::tungstenite::protocol::Role;
        let (server_io, client_io) = tokio::io::duplex(1 << 16);
        let server = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let (stdin, mut typed) = tokio::io::duplex(64);
        let exit: ExitFuture = Box::pin(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut typed, &mut got)
                .await
                .unwrap();
            Ok(if got == b"hi" { 7 } else { 1 })
        });
        let io = ContainerIo {
            stdin: Some(Box::new(stdin)),
            stdout: Some(Box::new(&b"out"[..])),
            stderr: None,
            resize: None,
            exit,
        };
        let session = tokio::spawn(serve(server, V5, io, Some(vec!["cat".into()])));
        client
            .send(Message::binary(b"\x00hi".to_vec()))
            .await
            .unwrap();
        client.send(Message::binary(vec![255, 0])).await.unwrap();
        let mut got = Vec::new();
        while let Some(Ok(message)) = client.next().await {
            got.push(message);
        }
        session.await.unwrap();
        assert_eq!(got[0], Message::binary(b"\x01out".to_vec()));
        let Message::Binary(status) = &got[1] else {
            panic!("{got:?}")
        };
        assert_eq!(status[0], ERROR);
        let status: serde_json::Value = serde_json::from_slice(&status[1..]).unwrap();
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "7");
        assert!(
            matches!(&got[2], Message::Close(Some(frame)) if frame.code == CloseCode::Normal),
            "{got:?}"
        );
    }
}
