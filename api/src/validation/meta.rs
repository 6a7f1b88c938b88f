//! ObjectMeta rules every kind shares (`ValidateObjectMeta`, `ValidateObjectMetaUpdate`): the
//! name format per kind, namespace, labels, annotations, ownerReferences and finalizers.

use serde_json::Value;

use super::names::{self, NameFn};
use super::{get_str, immutable, invalid_each, items, required};
use crate::registry::ResourceInfo;
use crate::status::FieldError;

/// Annotations may hold at most this many bytes of keys and values together.
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// The name rule of a kind, as each kind's `Validate...Name` picks it.
fn name_fn(info: &ResourceInfo) -> NameFn {
    match (info.group.as_ref(), info.kind.as_ref()) {
        ("", "Namespace") => names::name_is_dns_label,
        ("", "Service") => names::name_is_dns1035_label,
        ("rbac.authorization.k8s.io", _) => names::path_segment_name,
        _ if info.typed.is_none() => names::path_segment_name,
        _ => names::name_is_dns_subdomain,
    }
}

pub fn validate(info: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = Value::Null;
    let meta = obj.get("metadata").unwrap_or(&empty);
    let name_ok = name_fn(info);
    if let Some(gen_name) = get_str(meta, "generateName").filter(|g| !g.is_empty()) {
        invalid_each(
            &mut errs,
            "metadata.generateName",
            gen_name,
            name_ok(gen_name, true),
        );
    }
    match get_str(meta, "name").unwrap_or_default() {
        "" => errs.push(required(
            "metadata.name",
            "name or generateName is required",
        )),
        name => invalid_each(&mut errs, "metadata.name", name, name_ok(name, false)),
    }
    let namespace = get_str(meta, "namespace").unwrap_or_default();
    if info.namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required("metadata.namespace"));
        } else {
            invalid_each(
                &mut errs,
                "metadata.namespace",
                namespace,
                names::name_is_dns_label(namespace, false),
            );
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }
    super::nonnegative(&mut errs, meta, "generation", "metadata.generation");
    validate_labels(meta.get("labels"), "metadata.labels", &mut errs);
    validate_annotations(meta.get("annotations"), "metadata.annotations", &mut errs);
    validate_owner_references(items(meta, "ownerReferences"), &mut errs);
    validate_finalizers(items(meta, "finalizers"), &mut errs);
    errs
}

/// `ValidateLabels`: every key a qualified name, every value a label value.
pub fn validate_labels(labels: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    let Some(labels) = labels.and_then(Value::as_object) else {
        return;
    };
    for (k, v) in labels {
        invalid_each(errs, path, k, names::qualified_name(k));
        let v = v.as_str().unwrap_or_default();
        invalid_each(errs, path, v, names::label_value(v));
    }
}

/// `ValidateAnnotations`: case-insensitive qualified-name keys, 256 KiB in total.
pub fn validate_annotations(annotations: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    let Some(annotations) = annotations.and_then(Value::as_object) else {
        return;
    };
    let mut total = 0;
    for (k, v) in annotations {
        invalid_each(errs, path, k, names::qualified_name(&k.to_lowercase()));
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
}

fn validate_owner_references(refs: &[Value], errs: &mut Vec<FieldError>) {
    const PATH: &str = "metadata.ownerReferences";
    let mut first_controller: Option<String> = None;
    for r in refs {
        let s = |k| get_str(r, k).unwrap_or_default();
        let api_version = s("apiVersion");
        let version = api_version.rsplit('/').next().unwrap_or_default();
        for (key, value, empty_ok, what) in [
            ("apiVersion", api_version, !version.is_empty(), "version"),
            ("kind", s("kind"), !s("kind").is_empty(), "kind"),
            ("name", s("name"), !s("name").is_empty(), "name"),
            ("uid", s("uid"), !s("uid").is_empty(), "uid"),
        ] {
            if !empty_ok {
                errs.push(FieldError::invalid(
                    format!("{PATH}.{key}"),
                    &Value::String(value.to_string()),
                    format!("{what} must not be empty"),
                ));
            }
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            let current = format!("{}/{}", s("kind"), s("name"));
            match &first_controller {
                Some(first) => errs.push(super::invalid_rendered(
                    PATH,
                    &Value::Array(refs.to_vec()).to_string(),
                    &format!("Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}"),
                )),
                None => first_controller = Some(current),
            }
        }
    }
}

fn validate_finalizers(finalizers: &[Value], errs: &mut Vec<FieldError>) {
    const PATH: &str = "metadata.finalizers";
    let names: Vec<&str> = finalizers.iter().filter_map(Value::as_str).collect();
    for f in &names {
        let msgs = names::qualified_name(f);
        if !msgs.is_empty() {
            invalid_each(errs, PATH, f, msgs);
        } else if !f.contains('/') && !["kubernetes", "orphan", "foregroundDeletion"].contains(f) {
            invalid_each(
                errs,
                PATH,
                f,
                vec!["name is neither a standard finalizer name nor is it fully qualified".into()],
            );
        }
    }
    if names.contains(&"orphan") && names.contains(&"foregroundDeletion") {
        errs.push(super::invalid_rendered(
            PATH,
            &go_string_slice(&names),
            "finalizers orphan and foregroundDeletion cannot be both set",
        ));
    }
}

/// A `[]string` as Go's `%#v` prints it.
fn go_string_slice(v: &[&str]) -> String {
    let q: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
    format!("[]string{{{}}}", q.join(", "))
}

/// `ValidateObjectMetaUpdate`: identity fields never change; a deleting object gains no finalizers.
pub fn validate_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = Value::Null;
    let (nm, om) = (
        new.get("metadata").unwrap_or(&empty),
        old.get("metadata").unwrap_or(&empty),
    );
    for key in ["name", "namespace", "uid", "creationTimestamp"] {
        immutable(&mut errs, nm, om, key, &format!("metadata.{key}"));
    }
    if om.get("deletionTimestamp").is_some() {
        let old_f: Vec<&str> = items(om, "finalizers")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let added: Vec<&str> = items(nm, "finalizers")
            .iter()
            .filter_map(Value::as_str)
            .filter(|f| !old_f.contains(f))
            .collect();
        if !added.is_empty() {
            errs.push(FieldError::forbidden(
                "metadata.finalizers",
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers {}",
                    go_string_slice(&added)
                ),
            ));
        }
    }
    errs
}
