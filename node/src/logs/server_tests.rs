use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};
use serde_json::Value;
use skiff_sandbox::SandboxId;
use skiff_sandbox::cri_log::{LogFile, Stream};
use tokio::sync::watch;

use super::stream_tests::FakeRuntime;
use super::*;
use crate::logs::{ContainerLogs, LocateError};
use crate::streaming::{ContainerTarget, PodPorts};

struct Pem {
    cert: String,
    key: String,
}

fn ca() -> (Pem, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "test-ca");
    let cert = params.self_signed(&key).unwrap();
    let pem = Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    };
    (pem, Issuer::new(params, key))
}

fn issue(issuer: &Issuer<'_, KeyPair>, cn: &str, org: Option<&str>, server: bool) -> Pem {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    if let Some(o) = org {
        params.distinguished_name.push(DnType::OrganizationName, o);
    }
    if server {
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    } else {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    }
    let cert = params.signed_by(&key, issuer).unwrap();
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// A fake pod worker: `default/p` has a running wasm container `c` (a previous run too), a
/// waiting container `w`, and a runc container `r`; `default/h` is on the host's network.
struct Fake {
    dir: PathBuf,
    exited: watch::Receiver<bool>,
}

impl ContainerLocator for Fake {
    fn locate(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<ContainerLogs, LocateError> {
        if (namespace, pod) != ("default", "p") {
            return Err(LocateError::PodNotFound {
                namespace: namespace.into(),
                pod: pod.into(),
            });
        }
        let logs = |previous: bool, handler: &str| ContainerLogs {
            current: self.dir.join(format!("{container}-1.log")),
            previous: previous.then(|| self.dir.join(format!("{container}-0.log"))),
            exited: self.exited.clone(),
            runtime_handler: handler.into(),
        };
        match container {
            "c" => Ok(logs(true, "wasmtime")),
            "r" | "stopped" => Ok(logs(false, "runc")),
            "w" => Err(LocateError::Waiting {
                pod: pod.into(),
                container: container.into(),
                reason: "ContainerCreating".into(),
            }),
            _ => Err(LocateError::ContainerNotFound {
                pod: pod.into(),
                container: container.into(),
            }),
        }
    }

    fn pod_runtime_handlers(&self, _: &str, _: &str) -> Result<Vec<String>, LocateError> {
        Ok(vec!["wasmtime".into()])
    }

    fn container_target(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<ContainerTarget, LocateError> {
        let logs = self.locate(namespace, pod, container)?;
        let handler = if logs.runtime_handler == "wasmtime" {
            "wasmtime"
        } else {
            "runc"
        };
        Ok(ContainerTarget {
            handler: handler.into(),
            runtime: Some((Arc::new(FakeRuntime(handler)), SandboxId("u".into()))),
        })
    }

    fn pod_ports(&self, namespace: &str, pod: &str) -> Result<PodPorts, LocateError> {
        match (namespace, pod) {
            ("default", "p") => Ok(PodPorts::None),
            ("default", "h") => Ok(PodPorts::Host),
            _ => Err(LocateError::PodNotFound {
                namespace: namespace.into(),
                pod: pod.into(),
            }),
        }
    }
}

pub(super) struct Harness {
    addr: SocketAddr,
    ca: String,
    client: Pem,
    dir: tempfile::TempDir,
    exit: watch::Sender<bool>,
    shutdown: CancellationToken,
    issuer: Issuer<'static, KeyPair>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub(super) async fn start() -> Harness {
    let (ca, issuer) = ca();
    let server = issue(&issuer, "node-1", Some("system:nodes"), true);
    let client = issue(
        &issuer,
        "skiff-apiserver-kubelet-client",
        Some("system:masters"),
        false,
    );
    let dir = tempfile::tempdir().unwrap();
    let (exit, exited) = watch::channel(false);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let tls = NodeTls {
        cert_pem: server.cert,
        key_pem: server.key,
        ca_pem: ca.cert.clone(),
    };
    let locator = Arc::new(Fake {
        dir: dir.path().to_path_buf(),
        exited,
    });
    tokio::spawn(serve(listener, tls, locator, shutdown.clone()));
    Harness {
        addr,
        ca: ca.cert,
        client,
        dir,
        exit,
        shutdown,
        issuer,
    }
}

pub(super) type Resp = hyper::Response<hyper::body::Incoming>;

/// One request over a fresh TLS connection presenting `client` (or no certificate).
async fn request(
    h: &Harness,
    client: Option<&Pem>,
    method: &str,
    path: &str,
) -> Result<Resp, String> {
    request_with(h, client, method, path, &[]).await
}

/// [`request`] with extra headers (an upgrade's).
async fn request_with(
    h: &Harness,
    client: Option<&Pem>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Resp, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(h.ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some(p) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(p.cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(p.key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::IpAddress(h.addr.ip().into());
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn.with_upgrades());
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "node");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Body::empty()).unwrap();
    send.send_request(req).await.map_err(|e| e.to_string())
}

async fn get(h: &Harness, path: &str) -> (u16, String) {
    let resp = request(h, Some(&h.client), "GET", path).await.unwrap();
    let code = resp.status().as_u16();
    let body = body_of(resp).await;
    (code, String::from_utf8_lossy(&body).into_owned())
}

/// A request from the API server (the harness's client) with an upgrade's headers.
pub(super) async fn upgrade(
    h: &Harness,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Resp {
    request_with(h, Some(&h.client), method, path, headers)
        .await
        .unwrap()
}

pub(super) async fn body_of(resp: Resp) -> Bytes {
    axum::body::to_bytes(Body::new(resp.into_body()), usize::MAX)
        .await
        .unwrap()
}

pub(super) fn message(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not a Status: {body}"));
    assert_eq!(v["kind"], "Status", "{body}");
    v["message"].as_str().unwrap().to_string()
}

fn write_lines(path: &std::path::Path, lines: &[&str]) {
    let log = LogFile::open(path, 1 << 20).unwrap();
    let mut out = log.stream(Stream::Stdout);
    for l in lines {
        writeln!(out, "{l}").unwrap();
    }
}

#[tokio::test]
async fn logs_are_served_with_the_query_applied() {
    let h = start().await;
    write_lines(&h.dir.path().join("c-1.log"), &["a", "b", "c"]);
    write_lines(&h.dir.path().join("c-0.log"), &["crashed"]);
    assert_eq!(
        get(&h, "/containerLogs/default/p/c").await,
        (200, "a\nb\nc\n".into())
    );
    assert_eq!(
        get(&h, "/containerLogs/default/p/c?tailLines=2&limitBytes=3").await,
        (200, "b\nc".into())
    );
    assert_eq!(
        get(&h, "/containerLogs/default/p/c?previous=true").await,
        (200, "crashed\n".into())
    );
    let (code, body) = get(&h, "/containerLogs/default/p/c?timestamps=true&tailLines=1").await;
    assert_eq!(code, 200);
    let (ts, line) = body.split_once(' ').unwrap();
    assert!(ts.ends_with('Z') && ts.contains('T'), "{body}");
    assert_eq!(line, "c\n");
}

#[tokio::test]
async fn log_errors_are_statuses_in_the_kubelets_words() {
    let h = start().await;
    let (code, body) = get(&h, "/containerLogs/default/p/w").await;
    assert_eq!(code, 400);
    assert_eq!(
        message(&body),
        "container \"w\" in pod \"p\" is waiting to start: ContainerCreating"
    );
    let (code, body) = get(&h, "/containerLogs/default/p/r?previous=true").await;
    assert_eq!(code, 400);
    assert_eq!(
        message(&body),
        "previous terminated container \"r\" in pod \"p\" not found"
    );
    let (code, body) = get(&h, "/containerLogs/default/gone/c").await;
    assert_eq!(
        (code, message(&body)),
        (404, "pod \"gone\" does not exist".into())
    );
    let (code, body) = get(&h, "/containerLogs/default/p/c?tailLines=x").await;
    assert_eq!(code, 400);
    assert!(message(&body).contains("tailLines"), "{body}");
}

#[tokio::test]
async fn follow_streams_until_the_run_exits() {
    let h = start().await;
    let path = h.dir.path().join("c-1.log");
    let log = LogFile::open(&path, 1 << 20).unwrap();
    let mut out = log.stream(Stream::Stdout);
    writeln!(out, "first").unwrap();
    let resp = request(
        &h,
        Some(&h.client),
        "GET",
        "/containerLogs/default/p/c?follow=true",
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = Body::new(resp.into_body()).into_data_stream();
    let mut got = String::new();
    let mut next = async |got: &mut String| {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("a follow chunk within 10 s");
        match chunk {
            Some(data) => {
                got.push_str(&String::from_utf8_lossy(&data.unwrap()));
                true
            }
            None => false,
        }
    };
    while !got.contains("first\n") {
        assert!(next(&mut got).await, "body ended early: {got:?}");
    }
    writeln!(out, "second").unwrap();
    while !got.contains("second\n") {
        assert!(next(&mut got).await, "body ended early: {got:?}");
    }
    writeln!(out, "last").unwrap();
    drop(out);
    h.exit.send(true).unwrap();
    while next(&mut got).await {}
    assert_eq!(got, "first\nsecond\nlast\n");
}

#[tokio::test]
async fn only_the_control_plane_may_connect() {
    let h = start().await;
    assert!(
        request(&h, None, "GET", "/containerLogs/default/p/c")
            .await
            .is_err(),
        "a client without a certificate was served"
    );
    let node = issue(&h.issuer, "system:node:other", Some("system:nodes"), false);
    let resp = request(&h, Some(&node), "GET", "/containerLogs/default/p/c")
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body = body_of(resp).await;
    assert_eq!(
        message(&String::from_utf8_lossy(&body)),
        "Forbidden (user=system:node:other, verb=get, resource=nodes, subresource=proxy)"
    );
    let (stranger_ca, stranger_issuer) = ca();
    drop(stranger_ca);
    let stranger = issue(&stranger_issuer, "admin", Some("system:masters"), false);
    assert!(
        request(&h, Some(&stranger), "GET", "/containerLogs/default/p/c")
            .await
            .is_err(),
        "a certificate from another CA was accepted"
    );
}
