//! Pods and pod templates (`ValidatePodSpec`, `ValidatePodTemplateSpec`, `ValidatePodUpdate`):
//! volumes, policies, scheduling fields and tolerations; containers live in `container.rs`.

use serde_json::Value;

use super::container::{self, one_of};
use super::meta::{validate_annotations, validate_labels};
use super::names;
use super::{dns_label_name, get_str, invalid_each, items, required, unique_name};
use crate::status::FieldError;

/// What `pod updates may not change fields other than` lists in v1.33.
const UPDATABLE_POD_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

pub fn validate_pod(obj: &Value, errs: &mut Vec<FieldError>) {
    let empty = Value::Null;
    validate_spec(obj.get("spec").unwrap_or(&empty), "spec", errs);
}

/// `ValidatePodTemplateSpec` at `path` (e.g. `spec.template`), required when absent.
pub fn validate_template(template: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    let Some(t) = template else {
        errs.push(FieldError::required(path));
        return;
    };
    let empty = Value::Null;
    let meta = t.get("metadata").unwrap_or(&empty);
    validate_labels(meta.get("labels"), &format!("{path}.metadata.labels"), errs);
    validate_annotations(
        meta.get("annotations"),
        &format!("{path}.metadata.annotations"),
        errs,
    );
    validate_spec(
        t.get("spec").unwrap_or(&empty),
        &format!("{path}.spec"),
        errs,
    );
}

fn validate_spec(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let volumes = validate_volumes(items(spec, "volumes"), &format!("{path}.volumes"), errs);
    container::validate_all(spec, path, &volumes, errs);
    one_of(
        errs,
        spec,
        "restartPolicy",
        &format!("{path}.restartPolicy"),
        &["Always", "OnFailure", "Never"],
        "",
    );
    one_of(
        errs,
        spec,
        "dnsPolicy",
        &format!("{path}.dnsPolicy"),
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        "",
    );
    validate_labels(
        spec.get("nodeSelector"),
        &format!("{path}.nodeSelector"),
        errs,
    );
    for (key, check) in [
        (
            "serviceAccountName",
            names::dns1123_subdomain as fn(&str) -> Vec<String>,
        ),
        ("nodeName", names::dns1123_subdomain),
        ("hostname", names::dns1123_label),
        ("subdomain", names::dns1123_label),
    ] {
        if let Some(v) = get_str(spec, key).filter(|v| !v.is_empty()) {
            invalid_each(errs, &format!("{path}.{key}"), v, check(v));
        }
    }
    if let Some(n) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64)
        && !(1..=i64::from(i32::MAX)).contains(&n)
    {
        errs.push(FieldError::invalid(
            format!("{path}.activeDeadlineSeconds"),
            &Value::from(n),
            names::inclusive_range_error(1, i64::from(i32::MAX)),
        ));
    }
    validate_tolerations(
        items(spec, "tolerations"),
        &format!("{path}.tolerations"),
        errs,
    );
}

/// Volume source fields: exactly one per volume.
const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

/// Returns the declared volume names, for volume mounts to refer to.
fn validate_volumes<'a>(vols: &'a [Value], path: &str, errs: &mut Vec<FieldError>) -> Vec<&'a str> {
    let mut names_seen: Vec<&str> = Vec::new();
    for (i, vol) in vols.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let sources: Vec<&str> = VOLUME_SOURCES
            .iter()
            .copied()
            .filter(|s| vol.get(*s).is_some())
            .collect();
        match sources.as_slice() {
            [] => errs.push(required(&p, "must specify a volume type")),
            [_, rest @ ..] => {
                for extra in rest {
                    errs.push(FieldError::forbidden(
                        format!("{p}.{extra}"),
                        "may not specify more than 1 volume type",
                    ));
                }
            }
        }
        for (source, key) in [
            ("configMap", "name"),
            ("secret", "secretName"),
            ("hostPath", "path"),
            ("persistentVolumeClaim", "claimName"),
        ] {
            if let Some(src) = vol.get(source)
                && get_str(src, key).unwrap_or_default().is_empty()
            {
                errs.push(FieldError::required(format!("{p}.{source}.{key}")));
            }
        }
        for source in ["configMap", "secret", "downwardAPI", "projected"] {
            if let Some(mode) = vol
                .get(source)
                .and_then(|s| s.get("defaultMode"))
                .and_then(Value::as_i64)
                && !(0..=0o777).contains(&mode)
            {
                errs.push(FieldError::invalid(
                    format!("{p}.{source}.defaultMode"),
                    &Value::from(mode),
                    "must be a number between 0 and 0777 (octal), both inclusive",
                ));
            }
        }
        let name = get_str(vol, "name").unwrap_or_default();
        dns_label_name(errs, &p, name);
        unique_name(errs, &p, name, &mut names_seen);
    }
    names_seen
}

fn validate_tolerations(tols: &[Value], path: &str, errs: &mut Vec<FieldError>) {
    for (i, t) in tols.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let key = get_str(t, "key").unwrap_or_default();
        let operator = get_str(t, "operator").unwrap_or_default();
        let effect = get_str(t, "effect").unwrap_or_default();
        let value = get_str(t, "value").unwrap_or_default();
        if !key.is_empty() {
            invalid_each(errs, &format!("{p}.key"), key, names::qualified_name(key));
        } else if operator != "Exists" {
            invalid_each(
                errs,
                &format!("{p}.operator"),
                operator,
                vec!["operator must be Exists when `key` is empty, which means \"match all values and all keys\"".into()],
            );
        }
        if t.get("tolerationSeconds").is_some_and(|s| !s.is_null()) && effect != "NoExecute" {
            invalid_each(
                errs,
                &format!("{p}.effect"),
                effect,
                vec!["effect must be 'NoExecute' when `tolerationSeconds` is set".into()],
            );
        }
        match operator {
            "Equal" | "" => {
                let msgs = names::label_value(value);
                if !msgs.is_empty() {
                    invalid_each(errs, &format!("{p}.operator"), value, vec![msgs.join(";")]);
                }
            }
            "Exists" if !value.is_empty() => errs.push(super::invalid_rendered(
                format!("{p}.operator"),
                &t.to_string(),
                "value must be empty when `operator` is 'Exists'",
            )),
            "Exists" => {}
            other => errs.push(FieldError::not_supported(
                format!("{p}.operator"),
                &Value::String(other.into()),
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect)
        {
            errs.push(FieldError::not_supported(
                format!("{p}.effect"),
                &Value::String(effect.into()),
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ));
        }
    }
}

/// `ValidatePodUpdate`: only images, a shrinking activeDeadlineSeconds, added tolerations and a
/// negative grace period raised to 1 may change in a pod's spec.
pub fn validate_pod_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    let empty = Value::Null;
    let (ns, os) = (
        new.get("spec").unwrap_or(&empty),
        old.get("spec").unwrap_or(&empty),
    );
    for list in ["containers", "initContainers"] {
        if items(ns, list).len() != items(os, list).len() {
            let what = if list == "containers" {
                "containers"
            } else {
                "init containers"
            };
            errs.push(FieldError::forbidden(
                format!("spec.{list}"),
                format!("pod updates may not add or remove {what}"),
            ));
            return;
        }
    }
    let new_deadline = ns.get("activeDeadlineSeconds").and_then(Value::as_i64);
    let old_deadline = os.get("activeDeadlineSeconds").and_then(Value::as_i64);
    match (new_deadline, old_deadline) {
        (Some(n), _) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            errs.push(FieldError::invalid(
                "spec.activeDeadlineSeconds",
                &Value::from(n),
                names::inclusive_range_error(0, i64::from(i32::MAX)),
            ));
            return;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(FieldError::invalid(
                "spec.activeDeadlineSeconds",
                &Value::from(n),
                "must be less than or equal to previous value",
            ));
            return;
        }
        (None, Some(_)) => errs.push(FieldError::invalid(
            "spec.activeDeadlineSeconds",
            &Value::Null,
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }
    // Copy every allowed change from old into new; whatever still differs is forbidden.
    let mut munged = ns.clone();
    for list in ["containers", "initContainers"] {
        if let Some(cs) = munged.get_mut(list).and_then(Value::as_array_mut) {
            for (c, o) in cs.iter_mut().zip(items(os, list)) {
                if let (Some(c), Some(img)) = (c.as_object_mut(), o.get("image")) {
                    c.insert("image".into(), img.clone());
                }
            }
        }
    }
    let Some(m) = munged.as_object_mut() else {
        return;
    };
    copy_field(m, os, "activeDeadlineSeconds");
    // Tolerations may only be added, scheduling gates only removed.
    let within = |a: &[Value], b: &[Value]| a.iter().all(|x| b.contains(x));
    if within(items(os, "tolerations"), items(ns, "tolerations")) {
        copy_field(m, os, "tolerations");
    }
    let old_grace = os
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64);
    let new_grace = ns
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64);
    if old_grace.is_some_and(|g| g < 0) && new_grace == Some(1) {
        copy_field(m, os, "terminationGracePeriodSeconds");
    }
    if within(items(ns, "schedulingGates"), items(os, "schedulingGates")) {
        copy_field(m, os, "schedulingGates");
    }
    if &munged != os {
        let mut diff = String::new();
        json_diff(os, &munged, "spec", &mut diff);
        errs.push(FieldError::forbidden(
            "spec",
            format!("pod updates may not change fields other than {UPDATABLE_POD_FIELDS}\n{diff}"),
        ));
    }
}

fn copy_field(m: &mut serde_json::Map<String, Value>, from: &Value, key: &str) {
    match from.get(key) {
        Some(v) => m.insert(key.to_string(), v.clone()),
        None => m.remove(key),
    };
}

/// A line per changed leaf (`- path: old` / `+ path: new`): a readable stand-in for the Go
/// struct diff Kubernetes appends.
fn json_diff(old: &Value, new: &Value, path: &str, out: &mut String) {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let keys = o.keys().chain(n.keys().filter(|k| !o.contains_key(*k)));
            for k in keys {
                let (ov, nv) = (
                    o.get(k).unwrap_or(&Value::Null),
                    n.get(k).unwrap_or(&Value::Null),
                );
                json_diff(ov, nv, &format!("{path}.{k}"), out);
            }
        }
        (Value::Array(o), Value::Array(n)) if o.len() == n.len() => {
            for (i, (ov, nv)) in o.iter().zip(n).enumerate() {
                json_diff(ov, nv, &format!("{path}[{i}]"), out);
            }
        }
        (o, n) if o != n => {
            out.push_str(&format!("- {path}: {o}\n+ {path}: {n}\n"));
        }
        _ => {}
    }
}
