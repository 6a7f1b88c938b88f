//! The node's HTTPS server, the kubelet's streaming endpoints the API server proxies to:
//! `GET /containerLogs/{namespace}/{pod}/{container}`, and `/exec`, `/attach`, `/portForward`
//! whose upgraded sessions [`crate::streaming`] serves.
//!
//! Only the control plane talks to nodes: TLS client certificates are required, verified against
//! the cluster CA, and must carry the `system:masters` group. Failures answer a Kubernetes
//! `Status` (the API server relays it to kubectl).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use skiff_api::ApiError;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

use super::ContainerLocator;
use super::read::{LogOptions, LogSink, read_logs};
use crate::streaming;

/// The group whose members may use the node's endpoints (the API server's kubelet client).
const CONTROL_PLANE_GROUP: &str = "system:masters";

/// The node's serving certificate and key, and the cluster CA that client certificates must
/// chain to, all PEM encoded.
#[derive(Clone)]
pub struct NodeTls {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeServerError {
    #[error("node server TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("node server client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("node server PEM: {0}")]
    Pem(#[from] rustls_pki_types::pem::Error),
}

fn tls_config(tls: &NodeTls) -> Result<rustls::ServerConfig, NodeServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(tls.ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let chain =
        CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes())?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    // HTTP/1.1 only: exec, attach and port-forward are connection upgrades.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The client certificate's user and whether it belongs to the control plane.
fn client_of(cert: Option<&CertificateDer<'_>>) -> (String, bool) {
    let Some(Ok((_, parsed))) = cert.map(|c| x509_parser::parse_x509_certificate(c.as_ref()))
    else {
        return (String::new(), false);
    };
    let subject = parsed.subject();
    let user = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let allowed = subject
        .iter_organization()
        .any(|o| o.as_str().ok() == Some(CONTROL_PLANE_GROUP));
    (user, allowed)
}

/// Serves the node's endpoints on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    tls: NodeTls,
    locator: Arc<dyn ContainerLocator>,
    shutdown: CancellationToken,
) -> Result<(), NodeServerError> {
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(&tls)?));
    let router = router(locator);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "node server accept failed");
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    debug!(%peer, error = %e, "node server TLS handshake failed");
                    return;
                }
            };
            let (user, allowed) =
                client_of(tls.get_ref().1.peer_certificates().and_then(|c| c.first()));
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let router = router.clone();
                    let user = user.clone();
                    async move {
                        if !allowed {
                            return Ok(forbidden(&user, req.method()));
                        }
                        router.oneshot(req.map(Body::new)).await
                    }
                });
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        debug!(%peer, error = %e, "node server connection ended with an error");
                    }
                }
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

/// The kubelet's wording for a caller its authorizer refuses.
fn forbidden(user: &str, method: &Method) -> Response {
    let verb = match *method {
        Method::GET | Method::HEAD => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "*",
    };
    status(ApiError {
        code: 403,
        reason: "Forbidden",
        message: format!("Forbidden (user={user}, verb={verb}, resource=nodes, subresource=proxy)"),
        details: None,
        retry_after_seconds: None,
    })
}

fn router(locator: Arc<dyn ContainerLocator>) -> Router {
    Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route("/exec/{namespace}/{pod}/{container}", any(exec))
        .route("/exec/{namespace}/{pod}/{uid}/{container}", any(exec_uid))
        .route("/attach/{namespace}/{pod}/{container}", any(attach))
        .route(
            "/attach/{namespace}/{pod}/{uid}/{container}",
            any(attach_uid),
        )
        .route("/portForward/{namespace}/{pod}", any(port_forward))
        .route(
            "/portForward/{namespace}/{pod}/{uid}",
            any(port_forward_uid),
        )
        .with_state(locator)
}

/// A `Status` response.
fn status(e: ApiError) -> Response {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&e.to_status()).unwrap_or_default();
    let mut resp = (code, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

type Locator = State<Arc<dyn ContainerLocator>>;

async fn container_logs(
    State(locator): Locator,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let opts = match LogOptions::from_params(&params, chrono::Utc::now()) {
        Ok(o) => o,
        Err(e) => return status(ApiError::bad_request(e.to_string())),
    };
    let logs = match locator.locate(&namespace, &pod, &container) {
        Ok(l) => l,
        Err(e) => return status(ApiError::from(&e)),
    };
    let (path, exited) = if opts.previous {
        let Some(previous) = logs.previous else {
            return status(ApiError::bad_request(format!(
                "previous terminated container {container:?} in pod {pod:?} not found"
            )));
        };
        // The previous run is over: a follow of it ends at its end.
        (previous, tokio::sync::watch::channel(true).1)
    } else {
        (logs.current, logs.exited)
    };
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::task::spawn_blocking(move || {
        let mut sink = ChannelSink(tx);
        if let Err(e) = read_logs(&path, &opts, &exited, &mut sink) {
            warn!(%namespace, %pod, %container, error = %e, "reading container logs");
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), rx))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// Hands chunks from the blocking reader to the response body.
struct ChannelSink(mpsc::Sender<Bytes>);

impl LogSink for ChannelSink {
    fn write(&mut self, bytes: &[u8]) -> bool {
        self.0.blocking_send(Bytes::copy_from_slice(bytes)).is_ok()
    }

    fn closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// A streaming endpoint's answer: the 101 it upgrades with, or the `Status` it refuses with.
fn streamed(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(status)
}

async fn exec(
    State(locator): Locator,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    streamed(streaming::exec(&*locator, &namespace, &pod, &container, req).await)
}

async fn exec_uid(
    State(locator): Locator,
    Path((namespace, pod, _uid, container)): Path<(String, String, String, String)>,
    req: Request,
) -> Response {
    streamed(streaming::exec(&*locator, &namespace, &pod, &container, req).await)
}

async fn attach(
    State(locator): Locator,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    streamed(streaming::attach(&*locator, &namespace, &pod, &container, req).await)
}

async fn attach_uid(
    State(locator): Locator,
    Path((namespace, pod, _uid, container)): Path<(String, String, String, String)>,
    req: Request,
) -> Response {
    streamed(streaming::attach(&*locator, &namespace, &pod, &container, req).await)
}

async fn port_forward(
    State(locator): Locator,
    Path((namespace, pod)): Path<(String, String)>,
    req: Request,
) -> Response {
    streamed(streaming::port_forward(&*locator, &namespace, &pod, req).await)
}

async fn port_forward_uid(
    State(locator): Locator,
    Path((namespace, pod, _uid)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    streamed(streaming::port_forward(&*locator, &namespace, &pod, req).await)
}

#[cfg(test)]
#[path = "server_stream_tests.rs"]
mod stream_tests;
#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
