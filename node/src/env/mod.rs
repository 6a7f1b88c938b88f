//! A container's environment, resolved as the kubelet's `makeEnvironmentVariables` does:
//! [`container_env`] takes the image config's env, then `envFrom` sources in order, then `env`
//! in order, later definitions winning; `value`s expand `$(VAR)` against what `envFrom` and
//! earlier `env` entries defined ([`expansion`]); `valueFrom` reads ConfigMaps, Secrets and the
//! downward API ([`downward`]).
//!
//! Failures are [`EnvError`]s worded as the kubelet's: the pod worker shows them as a Waiting
//! `CreateContainerConfigError`. `envFrom` keys that are not valid variable names are skipped
//! and reported in [`ContainerEnv::skipped_keys`] for the Warning event.

pub mod downward;
pub mod expansion;

use std::collections::HashMap;
use std::fmt;

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVarSource, Pod, Secret};
use skiff_sandbox::ImageConfig;

use crate::objects::{ObjectError, ObjectSource, PodFacts};
use downward::DownwardError;

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("configmap \"{name}\" not found")]
    ConfigMapNotFound { name: String },
    #[error("secret \"{name}\" not found")]
    SecretNotFound { name: String },
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKeyNotFound {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKeyNotFound {
        namespace: String,
        name: String,
        key: String,
    },
    #[error(transparent)]
    Downward(#[from] DownwardError),
    #[error(transparent)]
    Fetch(#[from] ObjectError),
}

/// The resolved environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerEnv {
    /// Each name once, at the place it was first defined, with its last value.
    pub vars: Vec<(String, String)>,
    /// One entry per `envFrom` source that had keys skipped.
    pub skipped_keys: Vec<SkippedKeys>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvFromKind {
    ConfigMap,
    Secret,
}

/// `envFrom` keys dropped because they are not valid variable names. Its `Display` is the
/// kubelet's Warning event message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKeys {
    pub kind: EnvFromKind,
    pub namespace: String,
    pub name: String,
    /// Sorted, with the `prefix` applied.
    pub keys: Vec<String>,
}

impl SkippedKeys {
    /// The Warning event's reason.
    pub const REASON: &'static str = "InvalidEnvironmentVariableNames";
}

impl fmt::Display for SkippedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            EnvFromKind::ConfigMap => "configMap",
            EnvFromKind::Secret => "secret",
        };
        write!(
            f,
            "Keys [{}] from the EnvFrom {kind} {}/{} were skipped since they are considered \
             invalid environment variable names.",
            self.keys.join(", "),
            self.namespace,
            self.name
        )
    }
}

/// Resolves `container`'s environment. Each referenced ConfigMap and Secret is read once.
pub async fn container_env(
    pod: &Pod,
    container: &Container,
    image: &ImageConfig,
    objects: &dyn ObjectSource,
    facts: &PodFacts,
) -> Result<ContainerEnv, EnvError> {
    let mut refs = Referenced::new(objects, pod_namespace(pod));
    // What envFrom and env define: the only variables `$(VAR)` sees, as in the kubelet
    // (image env is the runtime's, invisible to it).
    let mut kube = Vars::default();
    let mut skipped_keys = Vec::new();

    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.as_deref().unwrap_or("");
        let (kind, name, entries) = if let Some(r) = &source.config_map_ref {
            let entries = match refs.config_map(&r.name, r.optional).await? {
                Some(cm) => cm
                    .data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                None => continue,
            };
            (EnvFromKind::ConfigMap, &r.name, entries)
        } else if let Some(r) = &source.secret_ref {
            let entries: Vec<_> = match refs.secret(&r.name, r.optional).await? {
                Some(s) => s
                    .data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
                    .collect(),
                None => continue,
            };
            (EnvFromKind::Secret, &r.name, entries)
        } else {
            continue;
        };
        let mut invalid = Vec::new();
        for (key, value) in entries {
            let key = format!("{prefix}{key}");
            if is_env_var_name(&key) {
                kube.set(key, value);
            } else {
                invalid.push(key);
            }
        }
        if !invalid.is_empty() {
            invalid.sort();
            skipped_keys.push(SkippedKeys {
                kind,
                namespace: refs.namespace.to_owned(),
                name: name.clone(),
                keys: invalid,
            });
        }
    }

    for var in container.env.iter().flatten() {
        let value = match (var.value.as_deref(), &var.value_from) {
            (Some(v), _) if !v.is_empty() => {
                expansion::expand(v, |name| kube.get(name).map(str::to_owned))
            }
            (_, Some(from)) => match value_from(from, pod, container, facts, &mut refs).await? {
                Some(v) => v,
                None => continue,
            },
            _ => String::new(),
        };
        kube.set(var.name.clone(), value);
    }

    let mut all = Vars::default();
    for entry in &image.env {
        let (name, value) = entry.split_once('=').unwrap_or((entry, ""));
        all.set(name.to_owned(), value.to_owned());
    }
    for (name, value) in kube.0 {
        all.set(name, value);
    }
    Ok(ContainerEnv {
        vars: all.0,
        skipped_keys,
    })
}

/// One `valueFrom`; `None` when an optional reference is missing and the variable is unset.
async fn value_from(
    from: &EnvVarSource,
    pod: &Pod,
    container: &Container,
    facts: &PodFacts,
    refs: &mut Referenced<'_>,
) -> Result<Option<String>, EnvError> {
    if let Some(sel) = &from.config_map_key_ref {
        let Some(cm) = refs.config_map(&sel.name, sel.optional).await? else {
            return Ok(None);
        };
        return match cm.data.as_ref().and_then(|d| d.get(&sel.key)) {
            Some(v) => Ok(Some(v.clone())),
            None if sel.optional == Some(true) => Ok(None),
            None => Err(EnvError::ConfigMapKeyNotFound {
                namespace: refs.namespace.to_owned(),
                name: sel.name.clone(),
                key: sel.key.clone(),
            }),
        };
    }
    if let Some(sel) = &from.secret_key_ref {
        let Some(secret) = refs.secret(&sel.name, sel.optional).await? else {
            return Ok(None);
        };
        return match secret.data.as_ref().and_then(|d| d.get(&sel.key)) {
            Some(v) => Ok(Some(String::from_utf8_lossy(&v.0).into_owned())),
            None if sel.optional == Some(true) => Ok(None),
            None => Err(EnvError::SecretKeyNotFound {
                namespace: refs.namespace.to_owned(),
                name: sel.name.clone(),
                key: sel.key.clone(),
            }),
        };
    }
    if let Some(sel) = &from.field_ref {
        return Ok(Some(pod_field(pod, &sel.field_path, facts)?));
    }
    if let Some(sel) = &from.resource_field_ref {
        let target = match sel.container_name.as_deref() {
            Some(name) if !name.is_empty() => downward::find_container(pod, name)?,
            _ => container,
        };
        return Ok(Some(downward::resource_value(sel, target, facts)?));
    }
    Ok(Some(String::new()))
}

/// The kubelet's `podFieldSelectorRuntimeValue`: spec and status fields it knows itself, then
/// metadata.
fn pod_field(pod: &Pod, field_path: &str, facts: &PodFacts) -> Result<String, DownwardError> {
    let spec = pod.spec.as_ref();
    Ok(match field_path {
        "spec.nodeName" => spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| facts.node_name.clone()),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.clone(),
        "status.podIP" | "status.podIPs" => facts.pod_ip.clone(),
        _ => downward::metadata_field(pod, field_path)?,
    })
}

pub(crate) fn pod_namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

/// Kubernetes' `IsEnvVarName`: `[-._a-zA-Z][-._a-zA-Z0-9]*`, and not `.`, `..` or `..x`.
fn is_env_var_name(name: &str) -> bool {
    let ok = |b: u8, first: bool| {
        matches!(b, b'-' | b'.' | b'_') || b.is_ascii_alphabetic() || (!first && b.is_ascii_digit())
    };
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && ok(bytes[0], true)
        && bytes[1..].iter().all(|&b| ok(b, false))
        && name != "."
        && !name.starts_with("..")
}

/// Name/value pairs, each name once at its first position.
#[derive(Default)]
struct Vars(Vec<(String, String)>);

impl Vars {
    fn set(&mut self, name: String, value: String) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The ConfigMaps and Secrets one resolution has read, so each is fetched once and every
/// reference sees the same version.
struct Referenced<'a> {
    objects: &'a dyn ObjectSource,
    namespace: &'a str,
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl<'a> Referenced<'a> {
    fn new(objects: &'a dyn ObjectSource, namespace: &'a str) -> Self {
        Self {
            objects,
            namespace,
            config_maps: HashMap::new(),
            secrets: HashMap::new(),
        }
    }

    /// The ConfigMap, `None` if it is missing and `optional`; missing otherwise is an error.
    async fn config_map(
        &mut self,
        name: &str,
        optional: Option<bool>,
    ) -> Result<Option<&ConfigMap>, EnvError> {
        if !self.config_maps.contains_key(name) {
            let fetched = self.objects.config_map(self.namespace, name).await?;
            self.config_maps.insert(name.to_owned(), fetched);
        }
        match self.config_maps.get(name).and_then(Option::as_ref) {
            Some(cm) => Ok(Some(cm)),
            None if optional == Some(true) => Ok(None),
            None => Err(EnvError::ConfigMapNotFound {
                name: name.to_owned(),
            }),
        }
    }

    async fn secret(
        &mut self,
        name: &str,
        optional: Option<bool>,
    ) -> Result<Option<&Secret>, EnvError> {
        if !self.secrets.contains_key(name) {
            let fetched = self.objects.secret(self.namespace, name).await?;
            self.secrets.insert(name.to_owned(), fetched);
        }
        match self.secrets.get(name).and_then(Option::as_ref) {
            Some(s) => Ok(Some(s)),
            None if optional == Some(true) => Ok(None),
            None => Err(EnvError::SecretNotFound {
                name: name.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests;
