//! Validation of objects on create and update, as the Kubernetes v1.33 API server validates them
//! (`pkg/apis/*/validation`). Every rule answers with Kubernetes' field path and wording, because
//! kubectl prints them verbatim in `The Pod "x" is invalid: ...`.
//!
//! Objects are the wire JSON after defaulting ([`crate::defaults::apply`]) and after the server's
//! typed round-trip, so values have the right JSON types; a value of the wrong type is skipped
//! here rather than reported twice.
//!
//! Values in messages are rendered like Go's `%v`/`%q` for scalars, maps and label selectors;
//! larger structs (a whole pod template) are rendered as compact JSON where Go prints `%#v`.

mod apps;
mod batch;
mod cluster;
mod config;
mod container;
mod meta;
pub mod names;
mod pod;
mod service;
mod storage;

use serde_json::{Map, Value};

use crate::registry::ResourceInfo;
use crate::selectors::LabelSelector;
use crate::status::{CauseType, FieldError};

/// Every error in a new object, metadata first, as the create strategies validate.
pub fn validate_create(info: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
    let mut errs = meta::validate(info, obj);
    match (info.group.as_ref(), info.kind.as_ref()) {
        ("", "Pod") => pod::validate_pod(obj, &mut errs),
        ("", "ReplicationController") => apps::validate_rc(obj, &mut errs),
        ("", "Service") => service::validate(obj, &mut errs),
        ("", "ConfigMap") => config::validate_config_map(obj, &mut errs),
        ("", "Secret") => config::validate_secret(obj, &mut errs),
        ("", "Namespace") => cluster::validate_namespace(obj, &mut errs),
        ("", "Node") => cluster::validate_node(obj, &mut errs),
        ("apps", "Deployment") => apps::validate_deployment(obj, &mut errs),
        ("apps", "ReplicaSet") => apps::validate_replica_set(obj, &mut errs),
        ("apps", "DaemonSet") => apps::validate_daemon_set(obj, &mut errs),
        ("apps", "StatefulSet") => apps::validate_stateful_set(obj, &mut errs),
        ("batch", "Job") => batch::validate_job(obj, &mut errs),
        ("batch", "CronJob") => batch::validate_cron_job(obj, &mut errs),
        ("storage.k8s.io", "StorageClass") => storage::validate_storage_class(obj, &mut errs),
        _ => {}
    }
    errs
}

/// Every error in an update: the new object's own validity, then what may not change.
pub fn validate_update(info: &ResourceInfo, new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = meta::validate_update(new, old);
    errs.extend(validate_create(info, new));
    match (info.group.as_ref(), info.kind.as_ref()) {
        ("", "Pod") => pod::validate_pod_update(new, old, &mut errs),
        ("", "Service") => service::validate_update(new, old, &mut errs),
        ("", "ConfigMap") => config::validate_config_map_update(new, old, &mut errs),
        ("", "Secret") => config::validate_secret_update(new, old, &mut errs),
        ("", "Node") => cluster::validate_node_update(new, old, &mut errs),
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") => {
            apps::validate_selector_update(new, old, &mut errs)
        }
        ("apps", "StatefulSet") => apps::validate_stateful_set_update(new, old, &mut errs),
        ("batch", "Job") => batch::validate_job_update(new, old, &mut errs),
        ("storage.k8s.io", "StorageClass") => {
            storage::validate_storage_class_update(new, old, &mut errs)
        }
        _ => {}
    }
    errs
}

pub(crate) fn get_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// The array at `key`, empty when absent.
pub(crate) fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

pub(crate) fn object<'a>(v: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    v.get(key).and_then(Value::as_object)
}

/// `Required value: <detail>`.
pub(crate) fn required(path: impl Into<String>, detail: &str) -> FieldError {
    if detail.is_empty() {
        return FieldError::required(path);
    }
    FieldError::new(
        CauseType::FieldValueRequired,
        path,
        format!("Required value: {detail}"),
    )
}

/// `Not found: "x"` (Kubernetes' `FieldValueNotFound`; reported with the Invalid cause type
/// because `CauseType` has no NotFound variant yet).
pub(crate) fn not_found(path: impl Into<String>, value: &str) -> FieldError {
    FieldError::new(
        CauseType::FieldValueInvalid,
        path,
        format!("Not found: \"{value}\""),
    )
}

/// One `Invalid value` per message, all about the same string value.
pub(crate) fn invalid_each(errs: &mut Vec<FieldError>, path: &str, value: &str, msgs: Vec<String>) {
    let v = Value::String(value.to_string());
    errs.extend(msgs.into_iter().map(|m| FieldError::invalid(path, &v, m)));
}

/// A list entry's required `name` at `{path}.name`, a DNS-1123 label (containers, volumes).
pub(crate) fn dns_label_name(errs: &mut Vec<FieldError>, path: &str, name: &str) {
    let field = format!("{path}.name");
    if name.is_empty() {
        errs.push(FieldError::required(field));
    } else {
        invalid_each(errs, &field, name, names::dns1123_label(name));
    }
}

/// A list entry's `name` at `{path}.name`: remembered in `seen`, or `Duplicate value` when a
/// previous entry had it.
pub(crate) fn unique_name<'a>(
    errs: &mut Vec<FieldError>,
    path: &str,
    name: &'a str,
    seen: &mut Vec<&'a str>,
) {
    if seen.contains(&name) {
        errs.push(FieldError::duplicate(
            format!("{path}.name"),
            &Value::String(name.into()),
        ));
    } else {
        seen.push(name);
    }
}

/// Kubernetes' `ValidateNonnegativeField` for an optional integer at `key`.
pub(crate) fn nonnegative(errs: &mut Vec<FieldError>, v: &Value, key: &str, path: &str) {
    if let Some(n) = v.get(key).and_then(Value::as_i64)
        && n < 0
    {
        errs.push(FieldError::invalid(
            path,
            &Value::from(n),
            "must be greater than or equal to 0",
        ));
    }
}

/// A `map[string]string` as Go's `%#v` prints it: keys sorted.
pub(crate) fn go_string_map(m: Option<&Value>) -> String {
    let Some(m) = m.and_then(Value::as_object) else {
        return "map[string]string(nil)".to_string();
    };
    let mut pairs: Vec<(&String, &Value)> = m.iter().collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let body: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k:?}:{:?}", v.as_str().unwrap_or_default()))
        .collect();
    format!("map[string]string{{{}}}", body.join(", "))
}

/// A `metav1.LabelSelector` as Go's `%#v` prints it in "field is immutable" errors.
pub(crate) fn go_label_selector(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return "(*v1.LabelSelector)(nil)".to_string();
    };
    let exprs = match sel.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(list) => {
            let body: Vec<String> = list
                .iter()
                .map(|e| {
                    let values = match e.get("values").and_then(Value::as_array) {
                        None => "[]string(nil)".to_string(),
                        Some(vs) => {
                            let q: Vec<String> = vs
                                .iter()
                                .map(|v| format!("{:?}", v.as_str().unwrap_or_default()))
                                .collect();
                            format!("[]string{{{}}}", q.join(", "))
                        }
                    };
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{:?}, Operator:{:?}, Values:{values}}}",
                        get_str(e, "key").unwrap_or_default(),
                        get_str(e, "operator").unwrap_or_default()
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", body.join(", "))
        }
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{exprs}}}",
        go_string_map(sel.get("matchLabels"))
    )
}

/// An `Invalid value` whose value is already rendered (Go `%#v` of a struct or map).
pub(crate) fn invalid_rendered(
    path: impl Into<String>,
    rendered: &str,
    detail: &str,
) -> FieldError {
    FieldError::new(
        CauseType::FieldValueInvalid,
        path,
        format!("Invalid value: {rendered}: {detail}"),
    )
}

/// Parses a label selector, adding its errors; `None` when absent or invalid.
pub(crate) fn label_selector(
    errs: &mut Vec<FieldError>,
    sel: Option<&Value>,
    path: &str,
) -> Option<LabelSelector> {
    match LabelSelector::from_object(sel?, path) {
        Ok(s) => Some(s),
        Err(e) => {
            errs.extend(e);
            None
        }
    }
}

/// `field is immutable` when the value at `key` differs between new and old objects.
pub(crate) fn immutable(
    errs: &mut Vec<FieldError>,
    new: &Value,
    old: &Value,
    key: &str,
    path: &str,
) {
    let (n, o) = (new.get(key), old.get(key));
    if n != o {
        errs.push(FieldError::immutable(path, n.unwrap_or(&Value::Null)));
    }
}

#[cfg(test)]
mod tests;
