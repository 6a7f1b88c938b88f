//! Nodes joining the cluster: the join token kept in `DATA_DIR/token` (created at first start),
//! and the two endpoints a joining node calls before it has credentials of its own
//! ([`skiff_api::join`] describes the exchange).

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use rand::Rng;
use skiff_api::ApiError;
use skiff_api::join::{
    CA_CERTS_PATH, JoinToken, NODE_CREDENTIALS_PATH, NodeCredentials, NodeCredentialsRequest,
};
use tracing::info;

use crate::apiserver::codec::ErrorResponse;
use crate::pki::{self, CertifiedKey, PkiError};

/// Reads the cluster's join token, or creates it (owner-only) on first start.
pub fn load_or_create_token(path: &Path, ca: &CertifiedKey) -> Result<JoinToken, PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            if let Ok(token) = JoinToken::parse(&text)
                && token.trusts(&ca.cert_pem)
            {
                return Ok(token);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let secret: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    let token = JoinToken::new(&ca.cert_pem, secret);
    pki::write_private(path, &format!("{token}\n"))?;
    Ok(token)
}

struct Join {
    token: JoinToken,
    ca: CertifiedKey,
}

/// `GET /cacerts` and `POST /skiff/v1/node-credentials`.
pub fn router(token: JoinToken, ca: CertifiedKey) -> Router {
    let join = Arc::new(Join { token, ca });
    let ca_pem = join.ca.cert_pem.clone();
    Router::new()
        .route(CA_CERTS_PATH, get(move || async move { ca_pem }))
        .route(
            NODE_CREDENTIALS_PATH,
            post(move |headers: HeaderMap, body: Bytes| async move {
                match join.credentials(&headers, &body) {
                    Ok(creds) => axum::Json(creds).into_response(),
                    Err(e) => ErrorResponse(e).into_response(),
                }
            }),
        )
}

impl Join {
    fn credentials(&self, headers: &HeaderMap, body: &[u8]) -> Result<NodeCredentials, ApiError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !presented.is_some_and(|p| constant_time_eq(p.as_bytes(), self.token.secret.as_bytes()))
        {
            return Err(ApiError::unauthorized());
        }
        let request: NodeCredentialsRequest = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("node credentials request: {e}")))?;
        let problems = skiff_api::validation::names::dns1123_subdomain(&request.node_name);
        if !problems.is_empty() {
            return Err(ApiError::bad_request(format!(
                "invalid node name {:?}: {}",
                request.node_name,
                problems.join("; ")
            )));
        }
        let mut ips = Vec::new();
        for address in &request.addresses {
            let ip: IpAddr = address
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid node address {address:?}")))?;
            ips.push(ip);
        }
        let issued = self.issue(&request.node_name, ips).map_err(|e| {
            ApiError::internal(format!(
                "issuing certificates for node {}: {e}",
                request.node_name
            ))
        })?;
        info!(node = %request.node_name, "issued node credentials");
        Ok(issued)
    }

    fn issue(&self, node: &str, ips: Vec<IpAddr>) -> Result<NodeCredentials, PkiError> {
        let issuer = self.ca.issuer()?;
        let user = format!("system:node:{node}");
        let client = pki::issue_client(&issuer, &user, Some("system:nodes"))?;
        let serving = pki::issue_node_serving(&self.ca, node, &ips)?;
        Ok(NodeCredentials {
            ca_pem: self.ca.cert_pem.clone(),
            client_cert_pem: client.cert_pem,
            client_key_pem: client.key_pem,
            serving_cert_pem: serving.cert_pem,
            serving_key_pem: serving.key_pem,
        })
    }
}

/// Comparing secrets in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
