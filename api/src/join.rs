//! How a node joins a cluster: the join token `skiff up` prints, and the credentials exchange it
//! authorizes. The wire contract between `control` and `node`, so it lives here, once.
//!
//! The token is `K10<sha256 of the CA certificate PEM, hex>::node:<secret>`, K3s' shape: the hash
//! lets a joining node trust the CA it fetches from the unauthenticated `/cacerts` endpoint, and
//! the secret authorizes `POST /skiff/v1/node-credentials`, which returns the node's client and
//! serving certificates.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where a joining node fetches the CA certificate.
pub const CA_CERTS_PATH: &str = "/cacerts";
/// Where a joining node exchanges the token for its certificates.
pub const NODE_CREDENTIALS_PATH: &str = "/skiff/v1/node-credentials";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Hex SHA-256 of the CA certificate PEM.
    pub ca_hash: String,
    pub secret: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid join token: expected K10<CA hash>::node:<secret>, as `skiff up` prints it")]
pub struct InvalidToken;

impl JoinToken {
    pub fn new(ca_pem: &str, secret: String) -> JoinToken {
        JoinToken {
            ca_hash: ca_hash(ca_pem),
            secret,
        }
    }

    pub fn parse(token: &str) -> Result<JoinToken, InvalidToken> {
        let rest = token.trim().strip_prefix("K10").ok_or(InvalidToken)?;
        let (hash, secret) = rest.split_once("::node:").ok_or(InvalidToken)?;
        let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(hash) || secret.is_empty() {
            return Err(InvalidToken);
        }
        Ok(JoinToken {
            ca_hash: hash.to_ascii_lowercase(),
            secret: secret.to_string(),
        })
    }

    /// Whether `ca_pem` is the CA this token was issued under.
    pub fn trusts(&self, ca_pem: &str) -> bool {
        ca_hash(ca_pem) == self.ca_hash
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "K10{}::node:{}", self.ca_hash, self.secret)
    }
}

fn ca_hash(ca_pem: &str) -> String {
    Sha256::digest(ca_pem.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The body of `POST /skiff/v1/node-credentials` (with `Authorization: Bearer <secret>`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodeCredentialsRequest {
    pub node_name: String,
    /// IP addresses the node's serving certificate must cover.
    pub addresses: Vec<String>,
}

/// The answer: PEM certificates and keys. The client certificate names the node as the kubelet's
/// does (`system:node:<name>` in group `system:nodes`).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodeCredentials {
    pub ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
}

impl fmt::Debug for NodeCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys never reach a log.
        f.debug_struct("NodeCredentials").finish_non_exhaustive()
    }
}

/// A kubeconfig for a client certificate against `server` (`https://host:port`).
pub fn kubeconfig(server: &str, ca_pem: &str, cert_pem: &str, key_pem: &str, user: &str) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: {user}\ncurrent-context: skiff\n",
        ca = b64(ca_pem),
        cert = b64(cert_pem),
        key = b64(key_pem),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips_and_pins_the_ca() {
        let token = JoinToken::new("CA PEM", "s3cret".into());
        let text = token.to_string();
        assert!(
            text.starts_with("K10") && text.ends_with("::node:s3cret"),
            "{text}"
        );
        let parsed = JoinToken::parse(&text).unwrap();
        assert_eq!(parsed, token);
        assert!(parsed.trusts("CA PEM"));
        assert!(!parsed.trusts("another CA"));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in [
            "",
            "s3cret",
            "K10abc::node:x",
            &format!("K10{}::node:", "a".repeat(64)),
        ] {
            assert_eq!(JoinToken::parse(bad), Err(InvalidToken), "{bad}");
        }
    }
}
