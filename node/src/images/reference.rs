//! Image references and pull policy: parsing a pod's `image` (default tag `latest`, short
//! names under `docker.io` as `oci-client` normalises them), `imagePullPolicy` with the API's
//! default, and which registries may be reached over plain HTTP.

use std::net::IpAddr;
use std::str::FromStr;

use oci_client::Reference;
use oci_client::client::{ClientConfig, ClientProtocol};

use super::error::ImageError;

/// `imagePullPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// The container's policy, or the API's default when it names none: `Always` for the tag
    /// `latest` or no tag, `IfNotPresent` otherwise (a digest counts as a tag).
    pub fn from_container(container: &k8s_openapi::api::core::v1::Container) -> PullPolicy {
        let image = container.image.as_deref().unwrap_or_default();
        container
            .image_pull_policy
            .as_deref()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| PullPolicy::default_for(image))
    }

    /// The API's default for `image`.
    pub fn default_for(image: &str) -> PullPolicy {
        let name = image.rsplit('/').next().unwrap_or(image);
        if image.contains('@') {
            return PullPolicy::IfNotPresent;
        }
        match name.split_once(':') {
            Some((_, tag)) if tag != "latest" => PullPolicy::IfNotPresent,
            _ => PullPolicy::Always,
        }
    }
}

/// An `imagePullPolicy` value that is none of Kubernetes' three.
#[derive(Debug, thiserror::Error)]
#[error("unknown imagePullPolicy {0:?}")]
pub struct UnknownPullPolicy(String);

impl FromStr for PullPolicy {
    type Err = UnknownPullPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Always" => Ok(PullPolicy::Always),
            "IfNotPresent" => Ok(PullPolicy::IfNotPresent),
            "Never" => Ok(PullPolicy::Never),
            other => Err(UnknownPullPolicy(other.to_string())),
        }
    }
}

pub(super) fn parse(image: &str) -> Result<Reference, ImageError> {
    Reference::from_str(image).map_err(|e| ImageError::InvalidImageName {
        image: image.to_string(),
        reason: e.to_string(),
    })
}

/// A registry client for `registry`: plain HTTP for loopback registries and those listed
/// (as `host` or `host:port`) in `insecure`, HTTPS otherwise.
pub(super) fn client_config(registry: &str, insecure: &[String]) -> ClientConfig {
    // The registry client's TLS (reqwest with rustls) takes the process-wide crypto provider;
    // Skiff uses ring everywhere, so it is installed here before any client exists. An already
    // installed provider stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let protocol = if plain_http_allowed(registry, insecure) {
        ClientProtocol::HttpsExcept(vec![registry.to_string()])
    } else {
        ClientProtocol::Https
    };
    ClientConfig {
        protocol,
        connect_timeout: Some(std::time::Duration::from_secs(10)),
        read_timeout: Some(std::time::Duration::from_secs(60)),
        // Indexes are resolved here (super::pull) so Wasm platforms can be chosen.
        platform_resolver: None,
        ..ClientConfig::default()
    }
}

fn plain_http_allowed(registry: &str, insecure: &[String]) -> bool {
    let host = host_of(registry);
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    loopback
        || insecure
            .iter()
            .any(|allowed| allowed == registry || (allowed.as_str() == host && !allowed.is_empty()))
}

/// `registry` without its port (`[::1]:5000` → `[::1]`, `example.com:5000` → `example.com`).
pub(super) fn host_of(registry: &str) -> &str {
    match registry.rfind(':') {
        Some(i) if !registry[i..].contains(']') => &registry[..i],
        _ => registry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_get_the_default_tag_and_registry() {
        let r = parse("127.0.0.1:5000/hello").expect("parses");
        assert_eq!(r.whole(), "127.0.0.1:5000/hello:latest");
        assert_eq!(
            parse("busybox").expect("parses").whole(),
            "docker.io/library/busybox:latest"
        );
        let err = parse("Bad Name").expect_err("invalid");
        assert_eq!(err.reason(), "InvalidImageName");
        assert!(
            err.to_string()
                .starts_with(r#"Failed to apply default image tag "Bad Name""#),
            "{err}"
        );
    }

    #[test]
    fn pull_policy_defaults_as_the_api_does() {
        assert_eq!(PullPolicy::default_for("x"), PullPolicy::Always);
        assert_eq!(PullPolicy::default_for("x:latest"), PullPolicy::Always);
        assert_eq!(
            PullPolicy::default_for("127.0.0.1:5000/x"),
            PullPolicy::Always
        );
        assert_eq!(
            PullPolicy::default_for("127.0.0.1:5000/x:v1"),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            PullPolicy::default_for(&format!("x@sha256:{}", "0".repeat(64))),
            PullPolicy::IfNotPresent
        );
        let container = k8s_openapi::api::core::v1::Container {
            image: Some("x:v1".to_string()),
            image_pull_policy: Some("Never".to_string()),
            ..Default::default()
        };
        assert_eq!(PullPolicy::from_container(&container), PullPolicy::Never);
        assert!("Sometimes".parse::<PullPolicy>().is_err());
    }

    #[test]
    fn plain_http_only_for_loopback_and_listed_registries() {
        let insecure = vec!["registry.lan".to_string(), "10.0.0.5:5000".to_string()];
        for (registry, plain) in [
            ("127.0.0.1:5000", true),
            ("localhost:5000", true),
            ("[::1]:5000", true),
            ("registry.lan:443", true),
            ("registry.lan", true),
            ("10.0.0.5:5000", true),
            ("10.0.0.5:6000", false),
            ("docker.io", false),
            ("index.docker.io", false),
        ] {
            assert_eq!(plain_http_allowed(registry, &insecure), plain, "{registry}");
        }
    }
}
