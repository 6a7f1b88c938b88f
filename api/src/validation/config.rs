//! ConfigMaps and Secrets (`ValidateConfigMap`, `ValidateSecret` and their updates): key format,
//! the 1 MiB size limit, per-type required keys, and `immutable: true`.

use base64::Engine;
use serde_json::{Map, Value};

use super::{get_str, immutable, invalid_each, names, object};
use crate::status::FieldError;

/// `core.MaxSecretSize`, shared by ConfigMaps.
const MAX_SIZE: usize = 1024 * 1024;

const IMMUTABLE_MSG: &str = "field is immutable when `immutable` is set";

fn keys(map: Option<&Map<String, Value>>, path: &str, errs: &mut Vec<FieldError>) {
    for key in map.into_iter().flat_map(Map::keys) {
        invalid_each(
            errs,
            &format!("{path}[{key}]"),
            key,
            names::config_map_key(key),
        );
    }
}

pub fn validate_config_map(obj: &Value, errs: &mut Vec<FieldError>) {
    let data = object(obj, "data");
    let binary = object(obj, "binaryData");
    keys(data, "data", errs);
    let mut total = 0;
    for (key, value) in data.into_iter().flatten() {
        if binary.is_some_and(|b| b.contains_key(key)) {
            invalid_each(
                errs,
                &format!("data[{key}]"),
                key,
                vec!["duplicate of key present in binaryData".into()],
            );
        }
        total += value.as_str().map_or(0, str::len);
    }
    keys(binary, "binaryData", errs);
    for (key, value) in binary.into_iter().flatten() {
        if data.is_some_and(|d| d.contains_key(key)) {
            invalid_each(
                errs,
                &format!("binaryData[{key}]"),
                key,
                vec!["duplicate of key present in data".into()],
            );
        }
        total += decoded_len(value);
    }
    if total > MAX_SIZE {
        errs.push(FieldError::too_long("", MAX_SIZE));
    }
}

fn decoded_len(v: &Value) -> usize {
    let s = v.as_str().unwrap_or_default();
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_or(s.len(), |b| b.len())
}

pub fn validate_secret(obj: &Value, errs: &mut Vec<FieldError>) {
    let data = object(obj, "data");
    keys(data, "data", errs);
    for (key, value) in data.into_iter().flatten() {
        let s = value.as_str().unwrap_or_default();
        if let Err(e) = base64::engine::general_purpose::STANDARD.decode(s) {
            invalid_each(
                errs,
                &format!("data[{key}]"),
                "<secret contents redacted>",
                vec![e.to_string()],
            );
        }
    }
    let total: usize = data
        .into_iter()
        .flatten()
        .map(|(_, v)| decoded_len(v))
        .sum();
    if total > MAX_SIZE {
        errs.push(FieldError::too_long("data", MAX_SIZE));
    }
    let has = |k: &str| data.is_some_and(|d| d.contains_key(k));
    let required = |k: &str| FieldError::required(format!("data[{k}]"));
    match get_str(obj, "type").unwrap_or_default() {
        "kubernetes.io/service-account-token" => {
            let key = "kubernetes.io/service-account.name";
            let name = obj
                .pointer("/metadata/annotations")
                .and_then(|a| get_str(a, key));
            if name.unwrap_or_default().is_empty() {
                errs.push(FieldError::required(format!("metadata.annotations[{key}]")));
            }
        }
        t @ ("kubernetes.io/dockercfg" | "kubernetes.io/dockerconfigjson") => {
            let key = if t.ends_with("json") {
                ".dockerconfigjson"
            } else {
                ".dockercfg"
            };
            if !has(key) {
                errs.push(required(key));
            }
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(required("username"));
            errs.push(required("password"));
        }
        "kubernetes.io/ssh-auth"
            if decoded_len(
                &data
                    .and_then(|d| d.get("ssh-privatekey"))
                    .cloned()
                    .unwrap_or_default(),
            ) == 0 =>
        {
            errs.push(required("ssh-privatekey"));
        }
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if !has(key) {
                    errs.push(required(key));
                }
            }
        }
        _ => {}
    }
}

fn immutable_contents(new: &Value, old: &Value, fields: &[&str], errs: &mut Vec<FieldError>) {
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(FieldError::forbidden("immutable", IMMUTABLE_MSG));
    }
    for f in fields {
        if new.get(*f) != old.get(*f) {
            errs.push(FieldError::forbidden(*f, IMMUTABLE_MSG));
        }
    }
}

pub fn validate_config_map_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    immutable_contents(new, old, &["data", "binaryData"], errs);
}

pub fn validate_secret_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    immutable(errs, new, old, "type", "type");
    immutable_contents(new, old, &["data"], errs);
}
