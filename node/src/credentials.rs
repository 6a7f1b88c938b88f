//! The node's identity: certificates obtained once with the join token and kept in the node's data
//! directory, and the API client built from them.
//!
//! First start: fetch the CA from `/cacerts` without trusting the connection, accept it only if its
//! hash is the one the token pins, then exchange the token's secret for a client certificate
//! (`system:node:<name>`) and a serving certificate over a connection that trusts that CA.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};
use skiff_api::join::{
    CA_CERTS_PATH, JoinToken, NODE_CREDENTIALS_PATH, NodeCredentials, NodeCredentialsRequest,
};
use tower::limit::ConcurrencyLimitLayer;
use tracing::info;

/// Requests the agent has in flight to the API server at once. kube-rs speaks HTTP/1.1, one
/// request per connection at a time, so without a cap a burst of pod status writes opens a
/// connection, and a TLS session on both ends, per write: thousands for a node starting
/// thousands of pods. The kubelet limits its API client too. A watch holds its slot only until
/// its response starts.
const MAX_REQUESTS_IN_FLIGHT: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("stored credentials {path} are unreadable: {source}")]
    Stored {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("server URL {0:?} is not a valid https URL")]
    ServerUrl(String),
    #[error("contacting the control plane at {server}: {source}")]
    Request {
        server: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "the CA certificate served by {server} does not match the join token's hash: wrong server or wrong token"
    )]
    UntrustedCa { server: String },
    #[error("the control plane's answer is not node credentials: {0}")]
    Answer(#[source] serde_json::Error),
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
}

const FILE: &str = "node-credentials.json";

/// The node's credentials from `dir`, or from the control plane at `server` on first start (and
/// again whenever the token names another CA, i.e. the node joins a new cluster).
pub async fn load_or_join(
    dir: &Path,
    server: &str,
    token: &JoinToken,
    node_name: &str,
    addresses: &[IpAddr],
) -> Result<NodeCredentials, CredentialsError> {
    let path = dir.join(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let creds: NodeCredentials =
                serde_json::from_slice(&bytes).map_err(|source| CredentialsError::Stored {
                    path: path.clone(),
                    source,
                })?;
            if token.trusts(&creds.ca_pem) {
                return Ok(creds);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(CredentialsError::Io { path, source }),
    }
    let creds = join(server, token, node_name, addresses).await?;
    write_private(
        &path,
        &serde_json::to_vec(&creds).map_err(CredentialsError::Answer)?,
    )?;
    info!(node = node_name, server, "joined the cluster");
    Ok(creds)
}

async fn join(
    server: &str,
    token: &JoinToken,
    node_name: &str,
    addresses: &[IpAddr],
) -> Result<NodeCredentials, CredentialsError> {
    let request_err = |source| CredentialsError::Request {
        server: server.to_string(),
        source,
    };
    let url: http::Uri = server
        .parse()
        .map_err(|_| CredentialsError::ServerUrl(server.to_string()))?;
    let mut untrusted = kube::Config::new(url.clone());
    untrusted.accept_invalid_certs = true;
    let client = kube::Client::try_from(untrusted).map_err(request_err)?;
    let ca_pem = client
        .request_text(get(CA_CERTS_PATH))
        .await
        .map_err(request_err)?;
    if !token.trusts(&ca_pem) {
        return Err(CredentialsError::UntrustedCa {
            server: server.to_string(),
        });
    }

    let mut trusted = kube::Config::new(url);
    trusted.root_cert = Some(pem_certificates(&ca_pem));
    trusted.auth_info.token = Some(token.secret.clone().into());
    let client = kube::Client::try_from(trusted).map_err(request_err)?;
    let body = NodeCredentialsRequest {
        node_name: node_name.to_string(),
        addresses: addresses.iter().map(IpAddr::to_string).collect(),
    };
    let request = http::Request::post(NODE_CREDENTIALS_PATH)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&body).map_err(CredentialsError::Answer)?)
        .expect("a static request is well formed");
    let answer = client.request_text(request).await.map_err(request_err)?;
    serde_json::from_str(&answer).map_err(CredentialsError::Answer)
}

fn get(path: &str) -> http::Request<Vec<u8>> {
    http::Request::get(path)
        .body(Vec::new())
        .expect("a static request is well formed")
}

/// The DER certificates in a PEM bundle (anything unreadable is left out).
fn pem_certificates(pem: &str) -> Vec<Vec<u8>> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .map(|der| der.to_vec())
        .collect()
}

/// An API client authenticated as the node.
pub async fn client(
    server: &str,
    creds: &NodeCredentials,
    node_name: &str,
) -> Result<kube::Client, CredentialsError> {
    let user = format!("system:node:{node_name}");
    let text = skiff_api::join::kubeconfig(
        server,
        &creds.ca_pem,
        &creds.client_cert_pem,
        &creds.client_key_pem,
        &user,
    );
    let kubeconfig = Kubeconfig::from_yaml(&text)?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    let builder = kube::client::ClientBuilder::try_from(config).map_err(|source| {
        CredentialsError::Request {
            server: server.to_string(),
            source,
        }
    })?;
    Ok(builder
        .with_layer(&ConcurrencyLimitLayer::new(MAX_REQUESTS_IN_FLIGHT))
        .build())
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), CredentialsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| CredentialsError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(contents).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_bundles_decode_to_der() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAEC\nAw==\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_certificates(pem), vec![vec![0, 1, 2, 3]]);
        assert!(pem_certificates("nothing").is_empty());
    }
}
