//! Proxying to node agents, as the API server reaches kubelets: [`KubeletClient`] speaks HTTPS
//! to a node (its serving certificate verified against the cluster CA, the API server's own
//! client certificate presented), finds the node's address from its Node object, and relays the
//! answer: a success streams through unbuffered (a follow must stream), a refusal becomes the
//! `Status` the node sent.
//!
//! The `exec`, `attach` and `portforward` subresources are forwarded with the headers kubectl
//! sends; when the node upgrades the connection (WebSocket, SPDY), the client is answered with
//! the node's 101 and the two upgraded connections are spliced, byte for byte, both ways.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use serde_json::Value;
use skiff_api::{ApiError, registry};

use super::pod_log::{self, choose_container};
use super::{decode, store_error};
use crate::apiserver::ApiServer;
use crate::apiserver::path::ResourcePath;
use crate::pki::CertifiedKey;
use crate::store::Store;

/// The kubelet port a Node that reports none is reached at.
const DEFAULT_KUBELET_PORT: u16 = 10250;
/// How much of a refusal's body is read to relay it.
const MAX_ERROR_BODY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum KubeletClientError {
    #[error("kubelet client TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("kubelet client PEM: {0}")]
    Pem(#[from] rustls_pki_types::pem::Error),
}

/// The API server's HTTPS client towards node agents.
#[derive(Clone)]
pub struct KubeletClient {
    tls: tokio_rustls::TlsConnector,
}

impl KubeletClient {
    /// Trusts node certificates signed by `ca_pem`; presents `identity`.
    pub fn new(ca_pem: &str, identity: &CertifiedKey) -> Result<Self, KubeletClientError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert?)?;
        }
        let chain = CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())?;
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    /// Sends `req` (its URI a path and query) to `host:port` over a fresh connection. A failure
    /// to reach the node reads as Go's `Get "https://…": cause`, as Kubernetes relays it.
    async fn send(
        &self,
        host: &str,
        port: u16,
        req: hyper::Request<Body>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ApiError> {
        let url = format!("https://{}{}", authority(host, port), req.uri());
        let method = req.method().as_str().to_string();
        let unreachable = |cause: String| ApiError {
            code: 500,
            reason: "",
            message: format!("{} \"{url}\": {cause}", go_method(&method)),
            details: None,
            retry_after_seconds: None,
        };
        let name = match host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(host.to_string())
                .map_err(|e| unreachable(format!("invalid node address: {e}")))?,
        };
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| unreachable(format!("dial tcp {}: {e}", authority(host, port))))?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| unreachable(format!("tls: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(async move {
            // With upgrades: an exec or port-forward connection outlives its HTTP exchange.
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "node connection ended with an error");
            }
        });
        sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(e.to_string()))
    }
}

/// Go's `url.Error` spells the method capitalised: `Get`, `Post`.
fn go_method(method: &str) -> String {
    let lower = method.to_ascii_lowercase();
    let mut chars = lower.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The node's address and kubelet port, from its Node object as Kubernetes reads them:
/// `status.addresses` (InternalIP, else Hostname) and `status.daemonEndpoints.kubeletEndpoint`.
pub(crate) fn node_endpoint(node: &Value) -> Result<(String, u16), ApiError> {
    let addresses = node["status"]["addresses"].as_array();
    let of_type = |wanted: &str| {
        addresses.into_iter().flatten().find_map(|a| {
            (a["type"] == wanted)
                .then(|| a["address"].as_str())
                .flatten()
                .filter(|s| !s.is_empty())
        })
    };
    let host = of_type("InternalIP")
        .or_else(|| of_type("Hostname"))
        .ok_or_else(|| {
            let known: Vec<String> = addresses
                .into_iter()
                .flatten()
                .map(|a| {
                    format!(
                        "{{{} {}}}",
                        a["type"].as_str().unwrap_or(""),
                        a["address"].as_str().unwrap_or("")
                    )
                })
                .collect();
            ApiError::internal(format!(
                "no preferred addresses found; known addresses: [{}]",
                known.join(" ")
            ))
        })?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Ok((host.to_string(), port))
}

/// The Node a pod is bound to, and how to reach it.
async fn node_of<S: Store>(api: &ApiServer<S>, node_name: &str) -> Result<(String, u16), ApiError> {
    let nodes =
        registry::find("", "v1", "nodes").ok_or_else(|| ApiError::internal("no nodes resource"))?;
    let kv = api
        .store
        .get(&nodes.key("", node_name))
        .await
        .map_err(|e| store_error(nodes, node_name, e))?
        .ok_or_else(|| ApiError::not_found(&nodes.object_ref(node_name)))?;
    node_endpoint(&decode(&kv)?)
}

fn kubelet(api: &ApiServer<impl Store>) -> Result<&KubeletClient, ApiError> {
    api.kubelet.get().ok_or_else(|| {
        ApiError::service_unavailable("this API server has no client for node agents configured")
    })
}

/// `GET pods/NAME/log`: validated and defaulted here, read by the node.
pub(crate) async fn log<S: Store>(
    api: &ApiServer<S>,
    rp: &ResourcePath,
    name: &str,
    query: &crate::apiserver::codec::Query,
) -> Result<Response, ApiError> {
    let opts = pod_log::PodLogOptions::parse(query, name)?;
    let pod = super::get(api, rp, name).await?;
    let container = choose_container(&pod, opts.container.as_deref())?;
    let Some(node_name) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
        // Kubernetes answers an unscheduled pod's logs with an empty stream.
        return Ok(text_response(Body::empty()));
    };
    let (host, port) = node_of(api, node_name).await?;
    let path = format!(
        "/containerLogs/{}/{name}/{container}{}",
        rp.namespace.as_deref().unwrap_or(""),
        opts.node_query()
    );
    let req = hyper::Request::get(path)
        .header(header::HOST, authority(&host, port))
        .body(Body::empty())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let resp = kubelet(api)?.send(&host, port, req).await?;
    if !resp.status().is_success() {
        return Err(refusal(resp).await);
    }
    Ok(text_response(Body::new(resp.into_body())))
}

fn text_response(body: Body) -> Response {
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// What a node's non-success answer means to the client: the Status it sent, or its text
/// classified by code as Kubernetes' `GenericHttpResponseChecker` does.
async fn refusal(resp: hyper::Response<hyper::body::Incoming>) -> ApiError {
    let code = resp.status().as_u16();
    let body = axum::body::to_bytes(Body::new(resp.into_body()), MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    if let Ok(status) = serde_json::from_slice::<Value>(&body)
        && status["kind"] == "Status"
        && let Some(message) = status["message"].as_str()
    {
        return ApiError {
            code,
            reason: known_reason(status["reason"].as_str().unwrap_or("")),
            message: message.to_string(),
            details: None,
            retry_after_seconds: None,
        };
    }
    let text = String::from_utf8_lossy(&body).trim().to_string();
    match code {
        400 => ApiError::bad_request(text),
        500 => ApiError::internal(text),
        _ => ApiError {
            code,
            reason: "",
            message: text,
            details: None,
            retry_after_seconds: None,
        },
    }
}

/// A relayed reason as one of the `StatusReason`s the API server speaks.
fn known_reason(reason: &str) -> &'static str {
    const REASONS: &[&str] = &[
        "BadRequest",
        "NotFound",
        "Forbidden",
        "Unauthorized",
        "NotImplemented",
        "InternalError",
        "ServiceUnavailable",
        "Timeout",
        "MethodNotAllowed",
    ];
    REASONS
        .iter()
        .find(|r| **r == reason)
        .copied()
        .unwrap_or("")
}

/// `pods/NAME/exec`, `attach` and `portforward` (GET or POST): forwarded to the node with the
/// client's upgrade headers; its answer is relayed, an upgrade by splicing the connections.
pub(crate) async fn stream<S: Store>(
    api: &ApiServer<S>,
    rp: &ResourcePath,
    name: &str,
    subresource: &str,
    query: &crate::apiserver::codec::Query,
    req: Request,
) -> Result<Response, ApiError> {
    if !matches!(*req.method(), Method::GET | Method::POST) {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    let pod = super::get(api, rp, name).await?;
    let namespace = rp.namespace.as_deref().unwrap_or("");
    let node_path = match subresource {
        "portforward" => format!("/portForward/{namespace}/{name}"),
        verb => {
            let container =
                choose_container(&pod, query.get("container").filter(|c| !c.is_empty()))?;
            format!("/{verb}/{namespace}/{name}/{container}")
        }
    };
    let Some(node_name) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    };
    let (host, port) = node_of(api, node_name).await?;
    let raw_query = without_param(req.uri().query().unwrap_or(""), "container");
    let uri = if raw_query.is_empty() {
        node_path
    } else {
        format!("{node_path}?{raw_query}")
    };
    let (mut parts, body) = req.into_parts();
    let client_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let mut forward = hyper::Request::builder().method(parts.method).uri(uri);
    for (key, value) in &parts.headers {
        // The node authenticates the API server, not the user; Host names the node.
        if key != header::HOST && key != header::AUTHORIZATION {
            forward = forward.header(key, value);
        }
    }
    let forward = forward
        .header(header::HOST, authority(&host, port))
        .body(body)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let resp = kubelet(api)?.send(&host, port, forward).await?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        // Only an HTTP/1.1 client connection can be upgraded; kubectl's streaming ones are.
        let client_upgrade = client_upgrade.ok_or_else(|| {
            ApiError::bad_request(format!(
                "{subresource} needs an HTTP/1.1 connection that can be upgraded"
            ))
        })?;
        return Ok(splice(client_upgrade, resp, name, subresource));
    }
    if !resp.status().is_success() {
        return Err(refusal(resp).await);
    }
    let (parts, body) = resp.into_parts();
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// Answers the client with the node's 101 (its upgrade headers: the WebSocket accept key and
/// subprotocol, or SPDY's stream protocol) and, once both connections are upgraded, copies
/// between them until both directions end.
fn splice(
    client: hyper::upgrade::OnUpgrade,
    mut node: hyper::Response<hyper::body::Incoming>,
    pod: &str,
    subresource: &str,
) -> Response {
    let mut answer = Response::new(Body::empty());
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *answer.headers_mut() = std::mem::take(node.headers_mut());
    let node = hyper::upgrade::on(node);
    let span = tracing::debug_span!("stream", pod = %pod, subresource = %subresource);
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            let (client, node) = match tokio::try_join!(client, node) {
                Ok(both) => both,
                Err(e) => {
                    tracing::debug!(error = %e, "a streaming connection was not upgraded");
                    return;
                }
            };
            let (mut client, mut node) = (TokioIo::new(client), TokioIo::new(node));
            match tokio::io::copy_bidirectional(&mut client, &mut node).await {
                Ok((up, down)) => tracing::debug!(up, down, "streaming connection ended"),
                Err(e) => tracing::debug!(error = %e, "streaming connection ended with an error"),
            }
        },
        span,
    ));
    answer
}

/// `raw` without the `name=` pairs.
fn without_param(raw: &str, name: &str) -> String {
    raw.split('&')
        .filter(|pair| !pair.is_empty() && pair.split('=').next() != Some(name))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_endpoint_prefers_internal_ip_and_the_reported_port() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "edge-1"}, {"type": "InternalIP", "address": "10.0.0.7"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10350}},
        }});
        assert_eq!(node_endpoint(&node).unwrap(), ("10.0.0.7".into(), 10350));
        let node = json!({"status": {"addresses": [{"type": "Hostname", "address": "edge-1"}]}});
        assert_eq!(node_endpoint(&node).unwrap(), ("edge-1".into(), 10250));
        let e = node_endpoint(
            &json!({"status": {"addresses": [{"type": "ExternalIP", "address": "1.2.3.4"}]}}),
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "Internal error occurred: no preferred addresses found; known addresses: [{ExternalIP 1.2.3.4}]"
        );
    }

    #[test]
    fn forwarded_queries_drop_the_container_parameter() {
        assert_eq!(
            without_param("command=ls&container=app&stdout=true", "container"),
            "command=ls&stdout=true"
        );
        assert_eq!(go_method("GET"), "Get");
        assert_eq!(authority("::1", 10250), "[::1]:10250");
    }
}
