//! The downward API's two selectors, shared by env (`valueFrom`) and `downwardAPI` volumes:
//! `fieldRef` on pod metadata (the kubelet's `fieldpath.ExtractFieldPathAsString`, with
//! labels and annotations in its `key="value"` lines) and `resourceFieldRef` (the kubelet's
//! `ExtractContainerResourceValue`: a value divided by `divisor`, rounded up, an unset limit
//! falling back to the node's allocatable).

use std::collections::BTreeMap;
use std::fmt::Write;

use k8s_openapi::api::core::v1::{Container, Pod, ResourceFieldSelector};
use skiff_api::quantity::{Quantity, QuantityError};

use crate::objects::PodFacts;

#[derive(Debug, thiserror::Error)]
pub enum DownwardError {
    #[error("unsupported fieldPath: {0}")]
    UnsupportedFieldPath(String),
    #[error("fieldPath {0:?} does not support subscript")]
    SubscriptNotSupported(String),
    #[error("unsupported container resource : {0}")]
    UnsupportedResource(String),
    #[error("container {0} not found")]
    ContainerNotFound(String),
    #[error("invalid quantity {value:?} for {field}: {source}")]
    Quantity {
        field: String,
        value: String,
        #[source]
        source: QuantityError,
    },
    #[error("divisor {divisor} for resource {resource} must be positive")]
    InvalidDivisor { divisor: String, resource: String },
}

/// A pod metadata field: `metadata.name`, `.namespace`, `.uid`, `.labels`, `.annotations`, and
/// one label or annotation as `metadata.labels['key']`.
pub fn metadata_field(pod: &Pod, field_path: &str) -> Result<String, DownwardError> {
    let meta = &pod.metadata;
    if let Some((path, key)) = split_subscript(field_path) {
        let map = match path {
            "metadata.labels" => &meta.labels,
            "metadata.annotations" => &meta.annotations,
            _ => return Err(DownwardError::SubscriptNotSupported(field_path.to_owned())),
        };
        return Ok(map
            .as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default());
    }
    let value = match field_path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "metadata.labels" => Some(format_map(meta.labels.as_ref())),
        "metadata.annotations" => Some(format_map(meta.annotations.as_ref())),
        _ => return Err(DownwardError::UnsupportedFieldPath(field_path.to_owned())),
    };
    Ok(value.unwrap_or_default())
}

/// `metadata.labels['app']` → (`metadata.labels`, `app`).
fn split_subscript(field_path: &str) -> Option<(&str, &str)> {
    let inner = field_path.strip_suffix("']")?;
    let (path, key) = inner.split_once("['")?;
    (!path.is_empty()).then_some((path, key))
}

/// Kubernetes' `FormatMap`: sorted `key="value"` lines, values quoted as Go's `%q` does.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    let mut out = String::new();
    for (key, value) in map.into_iter().flatten() {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(key);
        out.push('=');
        go_quote(value, &mut out);
    }
    out
}

/// Go's `strconv.Quote` for the characters label and annotation values hold (non-printable
/// characters other than controls are printed as they are).
fn go_quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The container a volume's `resourceFieldRef.containerName` names, app or init.
pub fn find_container<'a>(pod: &'a Pod, name: &str) -> Result<&'a Container, DownwardError> {
    let spec = pod.spec.as_ref();
    spec.into_iter()
        .flat_map(|s| s.containers.iter())
        .chain(
            spec.into_iter()
                .flat_map(|s| s.init_containers.iter().flatten()),
        )
        .find(|c| c.name == name)
        .ok_or_else(|| DownwardError::ContainerNotFound(name.to_owned()))
}

/// `limits.cpu`, `requests.memory`, ... of `container`, in units of the selector's divisor.
pub fn resource_value(
    selector: &ResourceFieldSelector,
    container: &Container,
    facts: &PodFacts,
) -> Result<String, DownwardError> {
    let resource = selector.resource.as_str();
    let unsupported = || DownwardError::UnsupportedResource(resource.to_owned());
    let (bound, name) = resource.split_once('.').ok_or_else(unsupported)?;
    if !matches!(name, "cpu" | "memory" | "ephemeral-storage") {
        return Err(unsupported());
    }
    let resources = container.resources.as_ref();
    let (declared, allocatable) = match bound {
        "limits" => (
            resources.and_then(|r| r.limits.as_ref()),
            match name {
                "cpu" => facts.node_allocatable_cpu_millis,
                "memory" => facts.node_allocatable_memory_bytes,
                _ => facts.node_allocatable_ephemeral_storage_bytes,
            },
        ),
        // An unset request is zero: only limits default to allocatable.
        "requests" => (resources.and_then(|r| r.requests.as_ref()), 0),
        _ => return Err(unsupported()),
    };
    // CPU counts in thousandths (`MilliValue`), the rest in whole units (`Value`).
    let units = |q: &Quantity| {
        if name == "cpu" {
            q.as_millis()
        } else {
            q.as_bytes()
        }
    };
    let value = match declared.and_then(|m| m.get(name)) {
        Some(q) => units(&parse(resource, &q.0)?),
        None => i128::from(allocatable),
    };
    let divisor = match &selector.divisor {
        Some(d) => Some(parse(&format!("{resource} divisor"), &d.0)?),
        None => None,
    };
    // An unset or zero divisor means 1, as in Kubernetes.
    let divisor = match divisor {
        Some(q) if !q.is_zero() => units(&q),
        _ if name == "cpu" => 1000,
        _ => 1,
    };
    if divisor <= 0 {
        return Err(DownwardError::InvalidDivisor {
            divisor: selector
                .divisor
                .as_ref()
                .map(|d| d.0.clone())
                .unwrap_or_default(),
            resource: resource.to_owned(),
        });
    }
    Ok(ceil_div(value, divisor).to_string())
}

fn parse(field: &str, value: &str) -> Result<Quantity, DownwardError> {
    value.parse().map_err(|source| DownwardError::Quantity {
        field: field.to_owned(),
        value: value.to_owned(),
        source,
    })
}

fn ceil_div(a: i128, b: i128) -> i128 {
    let q = a.div_euclid(b);
    if a.rem_euclid(b) == 0 { q } else { q + 1 }
}
