//! WebSocket upgrades on the node's streaming endpoints: whether a request asks for one and
//! which subprotocol it gets ([`is_websocket`], [`choose`]), the 101 answer ([`accept`]), the
//! server end once upgraded ([`server`]), and [`bridge`], a byte stream carried in binary
//! messages (how kubectl tunnels SPDY for port forwarding, `SPDY/3.1+portforward.k8s.io`).

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use skiff_api::ApiError;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// Whether the request asks to upgrade to WebSocket.
pub(crate) fn is_websocket(headers: &HeaderMap) -> bool {
    headers.get_all(header::UPGRADE).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
        })
    })
}

/// The first of the client's subprotocols, in its order, that is `supported`.
pub(crate) fn choose(headers: &HeaderMap, supported: &[&'static str]) -> Option<&'static str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|p| supported.iter().find(|s| **s == p).copied())
}

/// What the client asked for, for refusals.
pub(crate) fn requested(headers: &HeaderMap) -> String {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The answer that completes the handshake, with `protocol` chosen.
pub(crate) fn accept(headers: &HeaderMap, protocol: &'static str) -> Result<Response, ApiError> {
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or_else(|| ApiError::bad_request("WebSocket upgrade without a Sec-WebSocket-Key"))?;
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(
            header::SEC_WEBSOCKET_ACCEPT,
            derive_accept_key(key.as_bytes()),
        )
        .header(header::SEC_WEBSOCKET_PROTOCOL, protocol)
        .body(Body::empty())
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// The server end of a connection the 101 upgraded.
pub(crate) async fn server(upgraded: Upgraded) -> WebSocketStream<TokioIo<Upgraded>> {
    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await
}

/// A byte stream over `ws`: what is written to it goes out as binary messages, the payloads of
/// binary messages that arrive are read from it. It reads EOF when the peer closes; shutting it
/// down closes the WebSocket.
pub(crate) fn bridge<S>(ws: WebSocketStream<S>) -> DuplexStream
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (mut from_bridge, mut into_bridge) = tokio::io::split(ours);
    let (mut sink, mut messages) = ws.split();
    tokio::spawn(async move {
        while let Some(Ok(message)) = messages.next().await {
            match message {
                Message::Binary(data) if into_bridge.write_all(&data).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = into_bridge.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        while let Ok(n) = from_bridge.read(&mut buf).await {
            if n == 0 || sink.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    theirs
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn subprotocols_are_chosen_in_the_clients_order() {
        let mut headers = HeaderMap::new();
        headers.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        headers.append(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("base64.channel.k8s.io, v4.channel.k8s.io"),
        );
        headers.append(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("v5.channel.k8s.io"),
        );
        assert!(is_websocket(&headers));
        let supported = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
        assert_eq!(choose(&headers, &supported), Some("v4.channel.k8s.io"));
        assert_eq!(choose(&headers, &["SPDY/3.1+portforward.k8s.io"]), None);
        assert!(accept(&headers, "v4.channel.k8s.io").is_err(), "no key");
        // RFC 6455's own example key and answer.
        headers.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        let resp = accept(&headers, "v4.channel.k8s.io").unwrap();
        assert_eq!(resp.status(), 101);
        assert_eq!(
            resp.headers()[header::SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(
            resp.headers()[header::SEC_WEBSOCKET_PROTOCOL],
            "v4.channel.k8s.io"
        );
    }

    #[tokio::test]
    async fn a_bridge_carries_bytes_both_ways() {
        let (server_io, client_io) = tokio::io::duplex(1 << 16);
        let server = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let mut bytes = bridge(server);
        client.send(Message::binary(b"ab".to_vec())).await.unwrap();
        client.send(Message::binary(b"cd".to_vec())).await.unwrap();
        let mut got = [0u8; 4];
        bytes.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"abcd", "message boundaries do not matter");
        bytes.write_all(b"back").await.unwrap();
        assert_eq!(
            client.next().await.unwrap().unwrap(),
            Message::binary(b"back".to_vec())
        );
        client.close(None).await.unwrap();
        let mut rest = Vec::new();
        bytes.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }
}
