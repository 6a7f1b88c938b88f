//! What image pulls and pushes fail at. [`ImageError`] is worded as the kubelet words the
//! Waiting state and its Events; the causes below it keep the reason the registry gave.

use std::path::PathBuf;
use std::sync::Arc;

use oci_client::errors::OciDistributionError;

/// One image operation failed. Cheap to clone, so one shared pull can fail every caller
/// waiting on it with the same error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ImageError {
    /// The reference does not parse (the kubelet's `InvalidImageName`).
    #[error(
        "Failed to apply default image tag {image:?}: couldn't parse image name {image:?}: {reason}"
    )]
    InvalidImageName { image: String, reason: String },
    #[error("Container image {image:?} is not present with pull policy of Never")]
    NeverPull { image: String },
    #[error("Failed to pull image {image:?}: {cause}")]
    Pull {
        image: String,
        #[source]
        cause: Arc<PullError>,
    },
    #[error("Failed to push {file} to {reference:?}: {cause}")]
    Push {
        file: PathBuf,
        reference: String,
        #[source]
        cause: Arc<PushError>,
    },
    #[error("image store {path}: {source}")]
    Store {
        path: PathBuf,
        #[source]
        source: Arc<StoreError>,
    },
}

impl ImageError {
    /// The Waiting reason a container shows for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            ImageError::InvalidImageName { .. } => "InvalidImageName",
            ImageError::NeverPull { .. } => "ErrImageNeverPull",
            ImageError::Pull { .. } | ImageError::Push { .. } | ImageError::Store { .. } => {
                "ErrImagePull"
            }
        }
    }

    pub(super) fn pull(image: &str, cause: impl Into<PullError>) -> ImageError {
        ImageError::Pull {
            image: image.to_string(),
            cause: Arc::new(cause.into()),
        }
    }
}

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("manifest {digest} is not valid: {source}")]
    Manifest {
        digest: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("image config {digest} is not valid: {source}")]
    Config {
        digest: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("no matching manifest for {wanted} in the manifest list entries")]
    NoPlatform { wanted: String },
    #[error("Wasm artifact {digest} has no layer of type application/wasm")]
    NoWasmLayer { digest: String },
    #[error("layer {digest}: {source}")]
    Layer {
        digest: String,
        #[source]
        source: std::io::Error,
    },
    #[error("layer {digest} is compressed with {compression}, which is not supported")]
    LayerCompression {
        digest: String,
        compression: &'static str,
    },
}

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("reading the module: {0}")]
    Read(#[source] std::io::Error),
    #[error("not a WebAssembly module or component (no \\0asm header)")]
    NotWasm,
    #[error("invalid reference: {0}")]
    InvalidReference(#[source] oci_client::ParseError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// What a registry answered, or why it could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry refused with error codes of the distribution spec; `message` is theirs
    /// (`manifest unknown`, `repository name not known to registry`).
    #[error("{message}")]
    Rejected { message: String, url: String },
    #[error("unauthorized: authentication required")]
    Unauthorized { url: String },
    #[error("authentication failed: {reason}")]
    AuthenticationFailed { reason: String },
    #[error("{code} {message}")]
    Server {
        code: u16,
        message: String,
        url: String,
    },
    /// Connecting, sending or receiving failed; the message is the whole cause chain
    /// (`... tcp connect error: Connection refused (os error 111)`).
    #[error("{chain}")]
    Request { chain: String },
    #[error("content digest mismatch: {0}")]
    Digest(#[source] oci_client::errors::DigestError),
    #[error("{0}")]
    Client(#[source] OciDistributionError),
}

impl RegistryError {
    /// Whether other credentials might succeed where these failed.
    pub(super) fn is_auth(&self) -> bool {
        matches!(
            self,
            RegistryError::Unauthorized { .. } | RegistryError::AuthenticationFailed { .. }
        ) || matches!(self, RegistryError::Rejected { message, .. } if message.contains("denied"))
    }
}

impl From<OciDistributionError> for RegistryError {
    fn from(err: OciDistributionError) -> Self {
        match err {
            OciDistributionError::RegistryError { envelope, url } => {
                let messages: Vec<String> = envelope
                    .errors
                    .iter()
                    .map(|e| {
                        if e.message.is_empty() {
                            format!("{:?}", e.code).to_lowercase()
                        } else {
                            e.message.clone()
                        }
                    })
                    .collect();
                RegistryError::Rejected {
                    message: messages.join("; "),
                    url,
                }
            }
            OciDistributionError::UnauthorizedError { url } => RegistryError::Unauthorized { url },
            OciDistributionError::AuthenticationFailure(reason) => {
                RegistryError::AuthenticationFailed { reason }
            }
            OciDistributionError::ServerError { code, url, message } => RegistryError::Server {
                code,
                message: message.trim().to_string(),
                url,
            },
            OciDistributionError::RequestError(e) => RegistryError::Request {
                chain: error_chain(&e),
            },
            OciDistributionError::IoError(e) => RegistryError::Request {
                chain: error_chain(&e),
            },
            OciDistributionError::DigestError(e) => RegistryError::Digest(e),
            other => RegistryError::Client(other),
        }
    }
}

/// `outer: inner: innermost`, as Go's wrapped errors print, without repeating a cause that
/// its wrapper already quoted.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !chain.contains(&text) {
            chain.push_str(": ");
            chain.push_str(&text);
        }
        source = cause.source();
    }
    chain
}

/// The content store failed to keep or read something.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{digest:?} is not a sha256 digest")]
    BadDigest { digest: String },
    #[error("content digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("index {path}: {source}")]
    Index {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl StoreError {
    pub(super) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_the_kubelets() {
        let never = ImageError::NeverPull {
            image: "x".to_string(),
        };
        assert_eq!(
            never.to_string(),
            r#"Container image "x" is not present with pull policy of Never"#
        );
        assert_eq!(never.reason(), "ErrImageNeverPull");
        let pull = ImageError::pull(
            "127.0.0.1:5000/x:v1",
            RegistryError::Rejected {
                message: "manifest unknown".to_string(),
                url: "http://127.0.0.1:5000/v2/x/manifests/v1".to_string(),
            },
        );
        assert_eq!(
            pull.to_string(),
            r#"Failed to pull image "127.0.0.1:5000/x:v1": manifest unknown"#
        );
        assert_eq!(pull.reason(), "ErrImagePull");
    }

    #[test]
    fn registry_envelopes_keep_the_registrys_words() {
        let envelope: oci_client::errors::OciEnvelope = serde_json::from_str(
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"v9"}}]}"#,
        )
        .expect("a valid envelope");
        let err = RegistryError::from(OciDistributionError::RegistryError {
            envelope,
            url: "u".to_string(),
        });
        assert_eq!(err.to_string(), "manifest unknown");
        assert!(!err.is_auth());
        let denied = RegistryError::from(OciDistributionError::UnauthorizedError {
            url: "u".to_string(),
        });
        assert!(denied.is_auth());
    }
}
