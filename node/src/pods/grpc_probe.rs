//! The gRPC probe: `grpc.health.v1.Health/Check` over plain HTTP/2, as the kubelet sends it
//! (no TLS), with the request and the response's `status` field coded by hand: two protobuf
//! fields do not justify a code generator.

use std::net::IpAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// `HealthCheckResponse.ServingStatus` names, by number.
const STATUS_NAMES: [&str; 4] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

/// A length-prefixed gRPC message holding `HealthCheckRequest { service }`.
fn request(service: &str) -> Vec<u8> {
    let mut message = Vec::new();
    if !service.is_empty() {
        message.push(0x0a); // field 1, length-delimited
        message.push(service.len() as u8);
        message.extend_from_slice(service.as_bytes());
    }
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    framed
}

/// `HealthCheckResponse.status` from a length-prefixed gRPC message (0 when absent).
fn status(framed: &[u8]) -> Option<u64> {
    let message = framed.get(5..)?;
    let mut i = 0;
    while i < message.len() {
        let key = message[i];
        i += 1;
        let mut value = 0u64;
        let mut shift = 0;
        if key & 0x07 != 0 {
            return None;
        }
        loop {
            let byte = *message.get(i)?;
            i += 1;
            value |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        if key >> 3 == 1 {
            return Some(value);
        }
    }
    Some(0)
}

pub(super) async fn check(ip: IpAddr, port: u16, service: &str) -> Result<(), String> {
    let target = std::net::SocketAddr::new(ip, port);
    let stream = TcpStream::connect(target)
        .await
        .map_err(|e| format!("failed to connect service \"{target}\": {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| format!("failed to connect service \"{target}\": {e}"))?;
    tokio::spawn(connection);
    let request = hyper::Request::post(format!("http://{target}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", "kube-probe/1.33")
        .body(Full::new(Bytes::from(request(service))))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("health rpc failed: {e}"))?;
    let collected = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("health rpc failed: {e}"))?;
    let grpc_status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("0")
        .to_string();
    if grpc_status != "0" {
        return Err(format!("health rpc failed with grpc-status {grpc_status}"));
    }
    match status(&collected.to_bytes()) {
        Some(1) => Ok(()),
        Some(other) => Err(format!(
            "service unhealthy (responded with \"{}\")",
            STATUS_NAMES.get(other as usize).unwrap_or(&"UNKNOWN")
        )),
        None => Err("health rpc returned a malformed response".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gRPC health server on loopback answering `status` (and `grpc-status` in trailers).
    async fn health_server(status: u8, grpc_status: &'static str) -> u16 {
        use http_body_util::StreamBody;
        use hyper::body::Frame;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| async move {
                        assert_eq!(req.uri().path(), "/grpc.health.v1.Health/Check");
                        let mut trailers = hyper::HeaderMap::new();
                        trailers.insert("grpc-status", grpc_status.parse().expect("header"));
                        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
                            Ok(Frame::data(Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status]))),
                            Ok(Frame::trailers(trailers)),
                        ];
                        let body = StreamBody::new(futures::stream::iter(frames));
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/grpc")
                                .body(body)
                                .expect("response"),
                        )
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        port
    }

    #[tokio::test]
    async fn a_serving_service_passes_and_others_fail_with_the_kubelets_words() {
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let serving = health_server(1, "0").await;
        assert_eq!(check(ip, serving, "").await, Ok(()));
        let not_serving = health_server(2, "0").await;
        assert_eq!(
            check(ip, not_serving, "db").await,
            Err("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
        let unimplemented = health_server(0, "12").await;
        assert_eq!(
            check(ip, unimplemented, "").await,
            Err("health rpc failed with grpc-status 12".into())
        );
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        assert!(check(ip, closed, "").await.is_err());
    }

    #[test]
    fn health_messages_are_coded_as_grpc_codes_them() {
        assert_eq!(request(""), [0, 0, 0, 0, 0]);
        assert_eq!(request("db"), [0, 0, 0, 0, 4, 0x0a, 2, b'd', b'b']);
        assert_eq!(status(&[0, 0, 0, 0, 2, 0x08, 1]), Some(1));
        assert_eq!(status(&[0, 0, 0, 0, 2, 0x08, 2]), Some(2));
        assert_eq!(
            status(&[0, 0, 0, 0, 0]),
            Some(0),
            "an absent status is UNKNOWN"
        );
    }
}
