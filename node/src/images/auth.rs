//! Registry credentials from a pod's `imagePullSecrets`: `kubernetes.io/dockerconfigjson`
//! (`{"auths": {KEY: …}}`) and the legacy `kubernetes.io/dockercfg` (`{KEY: …}`), and which of
//! them apply to an image, matched as the kubelet's credential keyring matches (host and port
//! exactly, `*` for one DNS label, the key's path a prefix of the repository).

use std::fmt;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use oci_client::Reference;
use serde::Deserialize;

/// One credential for one registry key. Its `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    /// The key as the secret spelled it, without scheme: `host[:port][/path]`.
    pub registry: String,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct DockerConfigJson {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, DockerConfigEntry>,
}

#[derive(Deserialize)]
struct DockerConfigEntry {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    /// base64 of `username:password`.
    #[serde(default)]
    auth: Option<String>,
}

/// Every credential the secrets hold, in the secrets' order. Secrets of other types and
/// unreadable entries are skipped (logged without their content).
pub fn auths_from_secrets(secrets: &[Secret]) -> Vec<RegistryAuth> {
    let mut auths = Vec::new();
    for secret in secrets {
        let name = secret.metadata.name.as_deref().unwrap_or_default();
        let data = |key: &str| secret.data.as_ref().and_then(|d| d.get(key));
        let entries = match secret.type_.as_deref() {
            Some("kubernetes.io/dockerconfigjson") => data(".dockerconfigjson")
                .and_then(|b| serde_json::from_slice::<DockerConfigJson>(&b.0).ok())
                .map(|c| c.auths),
            Some("kubernetes.io/dockercfg") => {
                data(".dockercfg").and_then(|b| serde_json::from_slice(&b.0).ok())
            }
            _ => continue,
        };
        let Some(entries) = entries else {
            tracing::warn!(
                secret = name,
                "imagePullSecret holds no readable docker config"
            );
            continue;
        };
        for (key, entry) in entries {
            match credentials(&entry) {
                Some((username, password)) => auths.push(RegistryAuth {
                    registry: strip_scheme(&key).to_string(),
                    username,
                    password,
                }),
                None => tracing::warn!(secret = name, registry = key, "no usable credentials"),
            }
        }
    }
    auths
}

fn credentials(entry: &DockerConfigEntry) -> Option<(String, String)> {
    if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
        return Some((u.clone(), p.clone()));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(entry.auth.as_deref()?.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (u, p) = decoded.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn strip_scheme(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.trim_end_matches('/')
}

/// The credentials that apply to `image`, most specific key first.
pub(super) fn matching<'a>(auths: &'a [RegistryAuth], image: &Reference) -> Vec<&'a RegistryAuth> {
    let mut found: Vec<&RegistryAuth> = auths
        .iter()
        .filter(|a| applies(&a.registry, image))
        .collect();
    found.sort_by_key(|a| std::cmp::Reverse(a.registry.len()));
    found
}

fn applies(key: &str, image: &Reference) -> bool {
    let (key_host, key_path) = key.split_once('/').unwrap_or((key, ""));
    let registry = image.registry();
    let host_matches = |candidate: &str| {
        let (a, b) = (split_port(key_host), split_port(candidate));
        a.1 == b.1 && labels_match(a.0, b.0)
    };
    let host_ok = if is_docker_hub(registry) {
        is_docker_hub(split_port(key_host).0)
    } else {
        host_matches(registry)
    };
    // Docker's own v1 path in Hub keys is not a repository prefix.
    let key_path = if is_docker_hub(registry) && key_path == "v1" {
        ""
    } else {
        key_path
    };
    host_ok
        && (key_path.is_empty()
            || image.repository() == key_path
            || image.repository().starts_with(&format!("{key_path}/")))
}

fn is_docker_hub(host: &str) -> bool {
    matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

fn split_port(host: &str) -> (&str, &str) {
    let bare = super::reference::host_of(host);
    (bare, &host[bare.len()..])
}

/// `*.example.com` matches `a.example.com`, not `example.com` nor `a.b.example.com`.
fn labels_match(pattern: &str, host: &str) -> bool {
    let (p, h): (Vec<&str>, Vec<&str>) = (pattern.split('.').collect(), host.split('.').collect());
    p.len() == h.len()
        && p.iter()
            .zip(&h)
            .all(|(p, h)| *p == "*" || p.eq_ignore_ascii_case(h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(type_: &str, key: &str, body: &str) -> Secret {
        Secret {
            type_: Some(type_.to_string()),
            data: Some([(key.to_string(), ByteString(body.as_bytes().to_vec()))].into()),
            ..Default::default()
        }
    }

    #[test]
    fn reads_dockerconfigjson_and_dockercfg() {
        let auth = base64::engine::general_purpose::STANDARD.encode("bob:s3cret");
        let secrets = [
            secret(
                "kubernetes.io/dockerconfigjson",
                ".dockerconfigjson",
                &format!(r#"{{"auths":{{"http://127.0.0.1:5000":{{"auth":"{auth}"}}}}}}"#),
            ),
            secret(
                "kubernetes.io/dockercfg",
                ".dockercfg",
                r#"{"registry.lan/team":{"username":"ann","password":"pw"}}"#,
            ),
            secret("Opaque", "x", "{}"),
        ];
        let auths = auths_from_secrets(&secrets);
        assert_eq!(
            auths,
            [
                RegistryAuth {
                    registry: "127.0.0.1:5000".into(),
                    username: "bob".into(),
                    password: "s3cret".into()
                },
                RegistryAuth {
                    registry: "registry.lan/team".into(),
                    username: "ann".into(),
                    password: "pw".into()
                },
            ]
        );
        assert!(!format!("{auths:?}").contains("s3cret"));
    }

    #[test]
    fn matches_host_port_label_wildcards_and_path_prefixes() {
        let auth = |registry: &str| RegistryAuth {
            registry: registry.into(),
            username: "u".into(),
            password: "p".into(),
        };
        let auths = [
            auth("127.0.0.1:5000"),
            auth("registry.lan/team"),
            auth("*.corp.example"),
            auth("index.docker.io/v1"),
        ];
        let names = |image: &str| -> Vec<String> {
            let r = image.parse::<Reference>().expect("valid");
            matching(&auths, &r)
                .iter()
                .map(|a| a.registry.clone())
                .collect()
        };
        assert_eq!(names("127.0.0.1:5000/x:v1"), ["127.0.0.1:5000"]);
        assert!(names("127.0.0.1:5001/x:v1").is_empty());
        assert_eq!(names("registry.lan/team/app:v1"), ["registry.lan/team"]);
        assert!(names("registry.lan/teamx/app:v1").is_empty());
        assert_eq!(names("r.corp.example/app"), ["*.corp.example"]);
        assert!(names("a.r.corp.example/app").is_empty());
        assert_eq!(names("busybox"), ["index.docker.io/v1"]);
    }
}
