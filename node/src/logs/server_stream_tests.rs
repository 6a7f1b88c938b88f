//! The streaming endpoints through the real server: upgrades, exec and attach over WebSocket
//! and SPDY, port forwarding plain and tunnelled, and refusals, against fake runtimes.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use skiff_sandbox::{
    ContainerId, ContainerIo, ContainerSpec, ExitStatus, PodSandbox, SandboxError, SandboxId,
    SandboxSpec, StreamOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::tests::{Resp, body_of, message, start, upgrade};
use crate::streaming::spdy::{FLAG_FIN, Frame, FrameReader, FrameWriter};

/// A runtime named `handler`. Exec runs "commands" that print their arguments and exit with
/// their count, or, for `cat`, echo stdin; attach prints `attached` and ends with code 3. A
/// `wasmtime` one keeps the trait's refusals.
pub(super) struct FakeRuntime(pub(super) &'static str);

#[async_trait::async_trait]
impl PodSandbox for FakeRuntime {
    fn handler(&self) -> &'static str {
        self.0
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
        name: &str,
        command: &[String],
        options: StreamOptions,
    ) -> Result<ContainerIo, SandboxError> {
        if self.0 == "wasmtime" {
            return Err(SandboxError::Unsupported {
                handler: "wasmtime",
                operation: "exec",
            });
        }
        if name == "stopped" {
            return Err(SandboxError::NotRunning {
                container: name.into(),
            });
        }
        if command[0] == "cat" {
            let (stdin, stdout) = tokio::io::duplex(1024);
            let (stdout, code) = (Box::new(stdout) as _, 0);
            return Ok(ContainerIo {
                stdin: options.stdin.then(|| Box::new(stdin) as _),
                stdout: Some(stdout),
                stderr: None,
                resize: None,
                exit: Box::pin(async move { Ok(code) }),
            });
        }
        let printed = command.join(" ").into_bytes();
        let code = command.len() as i32;
        Ok(ContainerIo {
            stdin: None,
            stdout: Some(Box::new(std::io::Cursor::new(printed))),
            stderr: options
                .stderr
                .then(|| Box::new(std::io::Cursor::new(b"err".to_vec())) as _),
            resize: None,
            exit: Box::pin(async move { Ok(code) }),
        })
    }
    async fn attach(
        &self,
        _: &SandboxId,
        _: &str,
        _: StreamOptions,
    ) -> Result<ContainerIo, SandboxError> {
        if self.0 == "wasmtime" {
            return Err(SandboxError::Unsupported {
                handler: "wasmtime",
                operation: "attach",
            });
        }
        Ok(ContainerIo {
            stdin: None,
            stdout: Some(Box::new(std::io::Cursor::new(b"attached".to_vec()))),
            stderr: None,
            resize: None,
            exit: Box::pin(async { Ok(3) }),
        })
    }
}

fn ws_headers(protocol: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-protocol", protocol),
    ]
}

fn spdy_headers(protocols: &[&'static str]) -> Vec<(&'static str, &'static str)> {
    let mut headers = vec![("connection", "Upgrade"), ("upgrade", "SPDY/3.1")];
    headers.extend(protocols.iter().map(|p| ("x-stream-protocol-version", *p)));
    headers
}

async fn upgraded(resp: Resp) -> TokioIo<hyper::upgrade::Upgraded> {
    assert_eq!(resp.status(), 101, "{:?}", resp.headers());
    TokioIo::new(hyper::upgrade::on(resp).await.unwrap())
}

async fn websocket(resp: Resp) -> WebSocketStream<TokioIo<hyper::upgrade::Upgraded>> {
    WebSocketStream::from_raw_socket(upgraded(resp).await, Role::Client, None).await
}

/// Every message until the server closes, bounded.
async fn messages<S>(ws: &mut WebSocketStream<S>) -> Vec<Message>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(m))) => got.push(m),
            Ok(_) => return got,
            Err(_) => panic!("no close within 10 s: {got:?}"),
        }
    }
}

/// The Status a session ended with, from its error channel message.
fn status_of(got: &[Message]) -> Value {
    let status = got
        .iter()
        .find_map(|m| match m {
            Message::Binary(data) if data.first() == Some(&3) => Some(data[1..].to_vec()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no status in {got:?}"));
    serde_json::from_slice(&status).unwrap()
}

async fn refusal(
    h: &super::tests::Harness,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let resp = upgrade(h, method, path, headers).await;
    let code = resp.status().as_u16();
    let body = body_of(resp).await;
    (code, message(&String::from_utf8_lossy(&body)))
}

#[tokio::test]
async fn wasm_containers_refuse_exec_and_attach_whichever_protocol_kubectl_tries() {
    let h = start().await;
    // kubectl tries a WebSocket GET, then falls back to a SPDY POST: both are told why.
    let attempts = [
        ("GET", ws_headers("v5.channel.k8s.io")),
        (
            "POST",
            spdy_headers(&["v5.channel.k8s.io", "v4.channel.k8s.io"]),
        ),
    ];
    for (method, headers) in &attempts {
        let (code, text) = refusal(
            &h,
            method,
            "/exec/default/p/c?command=ls&stdout=true",
            headers,
        )
        .await;
        assert_eq!(code, 400);
        assert_eq!(
            text,
            "exec is not supported for container \"c\": it is a WebAssembly module run by wasmtime, which has no shell or processes to run commands in"
        );
        let (code, text) = refusal(&h, method, "/attach/default/p/c?stdout=true", headers).await;
        assert_eq!(code, 400);
        assert!(
            text.starts_with("attach is not supported for container \"c\""),
            "{text}"
        );
    }
    let (code, text) = refusal(
        &h,
        "GET",
        "/portForward/default/p",
        &ws_headers("SPDY/3.1+portforward.k8s.io"),
    )
    .await;
    assert_eq!(code, 400);
    assert!(
        text.starts_with("port forwarding is not supported for pod \"p\": it has no network"),
        "{text}"
    );

    let (code, text) = refusal(
        &h,
        "GET",
        "/exec/default/p/nope?command=ls&stdout=true",
        &ws_headers("v5.channel.k8s.io"),
    )
    .await;
    assert_eq!(
        (code, text.as_str()),
        (404, "container \"nope\" not found in pod \"p\"")
    );
    let (code, text) = refusal(
        &h,
        "GET",
        "/exec/default/p/w?command=ls&stdout=true",
        &ws_headers("v5.channel.k8s.io"),
    )
    .await;
    assert_eq!(
        (code, text.as_str()),
        (
            400,
            "container \"w\" in pod \"p\" is waiting to start: ContainerCreating"
        )
    );
    let (code, text) = refusal(
        &h,
        "GET",
        "/exec/default/p/stopped?command=ls&stdout=true",
        &ws_headers("v5.channel.k8s.io"),
    )
    .await;
    assert_eq!(
        (code, text.as_str()),
        (400, "container \"stopped\" is not running")
    );
    let (code, text) = refusal(&h, "GET", "/exec/default/p/r?command=ls&stdout=true", &[]).await;
    assert_eq!(code, 400);
    assert!(
        text.starts_with("this endpoint needs a connection upgrade"),
        "{text}"
    );
    let (code, text) = refusal(
        &h,
        "GET",
        "/exec/default/p/r?stdout=true",
        &ws_headers("v5.channel.k8s.io"),
    )
    .await;
    assert_eq!(
        (code, text.as_str()),
        (400, "you must specify at least 1 command")
    );
    let (code, _) = refusal(
        &h,
        "GET",
        "/exec/default/p/r?command=ls&stdout=true",
        &ws_headers("base64.channel.k8s.io"),
    )
    .await;
    assert_eq!(code, 400);
}

#[tokio::test]
async fn exec_over_websocket_separates_streams_and_ends_with_the_exit_code() {
    let h = start().await;
    let resp = upgrade(
        &h,
        "GET",
        "/exec/default/p/r?command=echo&command=hi&stdout=true&stderr=true",
        &ws_headers("v5.channel.k8s.io"),
    )
    .await;
    assert_eq!(
        resp.headers()["sec-websocket-protocol"],
        "v5.channel.k8s.io"
    );
    let mut ws = websocket(resp).await;
    let got = messages(&mut ws).await;
    assert!(
        got.contains(&Message::binary(b"\x01echo hi".to_vec())),
        "{got:?}"
    );
    assert!(
        got.contains(&Message::binary(b"\x02err".to_vec())),
        "{got:?}"
    );
    let status = status_of(&got);
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "2");
    assert!(
        matches!(got.last(), Some(Message::Close(Some(f))) if f.code == CloseCode::Normal),
        "{got:?}"
    );
}

#[tokio::test]
async fn exec_stdin_ends_with_v5s_close_message() {
    let h = start().await;
    let resp = upgrade(
        &h,
        "GET",
        "/exec/default/p/r?command=cat&stdin=true&stdout=true",
        &ws_headers("v5.channel.k8s.io"),
    )
    .await;
    let mut ws = websocket(resp).await;
    ws.send(Message::binary(b"\x00hello".to_vec()))
        .await
        .unwrap();
    ws.send(Message::binary(vec![255, 0])).await.unwrap();
    let got = messages(&mut ws).await;
    assert_eq!(got[0], Message::binary(b"\x01hello".to_vec()));
    assert_eq!(status_of(&got)["status"], "Success");
}

#[tokio::test]
async fn attach_over_v4_ends_successfully_with_the_container() {
    let h = start().await;
    let resp = upgrade(
        &h,
        "GET",
        "/attach/default/p/r?stdout=true",
        &ws_headers("v4.channel.k8s.io"),
    )
    .await;
    let mut ws = websocket(resp).await;
    let got = messages(&mut ws).await;
    assert_eq!(got[0], Message::binary(b"\x01attached".to_vec()));
    assert_eq!(
        status_of(&got)["status"],
        "Success",
        "whatever the container's code"
    );
}

/// A SPDY client on an upgraded connection.
async fn spdy(
    resp: Resp,
) -> (
    FrameWriter<tokio::io::WriteHalf<TokioIo<hyper::upgrade::Upgraded>>>,
    FrameReader<tokio::io::ReadHalf<TokioIo<hyper::upgrade::Upgraded>>>,
) {
    let (read, write) = tokio::io::split(upgraded(resp).await);
    (FrameWriter::new(write), FrameReader::new(read))
}

fn syn(stream_id: u32, headers: &[(&str, &str)]) -> Frame {
    Frame::SynStream {
        stream_id,
        flags: 0,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// Frames until the server says goodbye or closes, bounded.
async fn frames<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    until: impl Fn(&[Frame]) -> bool,
) -> Vec<Frame> {
    let mut got = Vec::new();
    while !until(&got) {
        match tokio::time::timeout(Duration::from_secs(10), reader.next()).await {
            Ok(Ok(Some(frame))) => got.push(frame),
            Ok(_) => break,
            Err(_) => panic!("stalled: {got:?}"),
        }
    }
    got
}

fn data_of(got: &[Frame], id: u32) -> Vec<u8> {
    got.iter()
        .filter_map(|f| match f {
            Frame::Data {
                stream_id, data, ..
            } if *stream_id == id => Some(data.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn finished(got: &[Frame], id: u32) -> bool {
    got.iter().any(|f| matches!(f, Frame::Data { stream_id, flags, .. } if *stream_id == id && flags & FLAG_FIN != 0))
}

#[tokio::test]
async fn exec_over_spdy_uses_one_stream_per_channel() {
    let h = start().await;
    let resp = upgrade(
        &h,
        "POST",
        "/exec/default/p/r?command=echo&command=a&command=b&stdout=true",
        &spdy_headers(&["v4.channel.k8s.io"]),
    )
    .await;
    assert_eq!(
        resp.headers()["x-stream-protocol-version"],
        "v4.channel.k8s.io"
    );
    let (mut to, mut from) = spdy(resp).await;
    to.send(&syn(1, &[("streamtype", "error")])).await.unwrap();
    to.send(&syn(3, &[("streamtype", "stdout")])).await.unwrap();
    let got = frames(&mut from, |got| {
        got.iter().any(|f| matches!(f, Frame::GoAway { .. }))
    })
    .await;
    assert!(
        got.contains(&Frame::SynReply {
            stream_id: 3,
            flags: 0,
            headers: Vec::new()
        }),
        "{got:?}"
    );
    assert_eq!(data_of(&got, 3), b"echo a b");
    assert!(finished(&got, 3) && finished(&got, 1), "{got:?}");
    let status: Value = serde_json::from_slice(&data_of(&got, 1)).unwrap();
    assert_eq!(status["details"]["causes"][0]["message"], "3");
}

/// A server on the host's loopback that answers `got:` and what it read, once the client has
/// finished sending.
async fn answering_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).await.unwrap();
        conn.write_all(&[b"got:".to_vec(), got].concat())
            .await
            .unwrap();
    });
    port
}

/// Opens the error and data streams of one forwarded connection to `port`.
async fn open_pair<W: tokio::io::AsyncWrite + Unpin>(to: &mut FrameWriter<W>, port: &str) {
    for (id, kind) in [(1, "error"), (3, "data")] {
        to.send(&syn(
            id,
            &[("streamtype", kind), ("port", port), ("requestid", "0")],
        ))
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn port_forward_over_spdy_reaches_the_pods_port() {
    let h = start().await;
    let port = answering_server().await.to_string();
    let resp = upgrade(
        &h,
        "POST",
        "/portForward/default/h",
        &spdy_headers(&["portforward.k8s.io"]),
    )
    .await;
    assert_eq!(
        resp.headers()["x-stream-protocol-version"],
        "portforward.k8s.io"
    );
    let (mut to, mut from) = spdy(resp).await;
    open_pair(&mut to, &port).await;
    to.send(&Frame::Data {
        stream_id: 3,
        flags: FLAG_FIN,
        data: b"ping".to_vec(),
    })
    .await
    .unwrap();
    let got = frames(&mut from, |got| finished(got, 1)).await;
    assert_eq!(data_of(&got, 3), b"got:ping");
    assert!(finished(&got, 3), "{got:?}");
    assert!(data_of(&got, 1).is_empty(), "no error: {got:?}");
}

#[tokio::test]
async fn port_forward_tunnelled_in_websocket_tells_connection_errors() {
    let h = start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    let resp = upgrade(
        &h,
        "GET",
        "/portForward/default/h",
        &ws_headers("SPDY/3.1+portforward.k8s.io"),
    )
    .await;
    assert_eq!(
        resp.headers()["sec-websocket-protocol"],
        "SPDY/3.1+portforward.k8s.io"
    );
    let tunnel = crate::streaming::websocket::bridge(websocket(resp).await);
    let (read, write) = tokio::io::split(tunnel);
    let (mut to, mut from) = (FrameWriter::new(write), FrameReader::new(read));
    open_pair(&mut to, &port).await;
    let got = frames(&mut from, |got| finished(got, 1) && finished(got, 3)).await;
    let error = String::from_utf8(data_of(&got, 1)).unwrap();
    assert!(
        error
            == format!(
                "error forwarding port {port} to pod h: dial tcp 127.0.0.1:{port}: connect: connection refused"
            ),
        "{error}"
    );
}
