//! Defaults of the pod controllers: Deployment, ReplicaSet, DaemonSet, StatefulSet
//! (`apps/v1/defaults.go`), ReplicationController, Job (with the selector the Job strategy
//! generates) and CronJob (`batch/v1/defaults.go`).

use serde_json::{Value, json};

use super::{child, default, pod};

const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
const LEGACY_CONTROLLER_UID: &str = "controller-uid";
const JOB_NAME: &str = "batch.kubernetes.io/job-name";
const LEGACY_JOB_NAME: &str = "job-name";

fn template(spec: &mut Value) {
    if spec.get("template").is_some_and(Value::is_object) {
        pod::template(child(spec, "template"));
    }
}

pub fn deployment(obj: &mut Value) {
    let spec = child(obj, "spec");
    default(spec, "replicas", json!(1));
    let strategy = child(spec, "strategy");
    default(strategy, "type", json!("RollingUpdate"));
    if strategy["type"] == "RollingUpdate" {
        let ru = child(strategy, "rollingUpdate");
        default(ru, "maxUnavailable", json!("25%"));
        default(ru, "maxSurge", json!("25%"));
    }
    default(spec, "revisionHistoryLimit", json!(10));
    default(spec, "progressDeadlineSeconds", json!(600));
    template(spec);
}

pub fn replica_set(obj: &mut Value) {
    let spec = child(obj, "spec");
    default(spec, "replicas", json!(1));
    template(spec);
}

pub fn daemon_set(obj: &mut Value) {
    let spec = child(obj, "spec");
    let strategy = child(spec, "updateStrategy");
    default(strategy, "type", json!("RollingUpdate"));
    if strategy["type"] == "RollingUpdate" {
        let ru = child(strategy, "rollingUpdate");
        default(ru, "maxUnavailable", json!(1));
        default(ru, "maxSurge", json!(0));
    }
    default(spec, "revisionHistoryLimit", json!(10));
    template(spec);
}

pub fn stateful_set(obj: &mut Value) {
    let spec = child(obj, "spec");
    default(spec, "podManagementPolicy", json!("OrderedReady"));
    let strategy = child(spec, "updateStrategy");
    if strategy
        .get("type")
        .is_none_or(|t| t.as_str().is_none_or(str::is_empty))
    {
        default(strategy, "type", json!("RollingUpdate"));
        child(strategy, "rollingUpdate");
    }
    if strategy["type"] == "RollingUpdate"
        && let Some(ru) = strategy.get_mut("rollingUpdate").filter(|r| r.is_object())
    {
        default(ru, "partition", json!(0));
    }
    let retention = child(spec, "persistentVolumeClaimRetentionPolicy");
    default(retention, "whenDeleted", json!("Retain"));
    default(retention, "whenScaled", json!("Retain"));
    default(spec, "replicas", json!(1));
    default(spec, "revisionHistoryLimit", json!(10));
    if let Some(claims) = spec
        .get_mut("volumeClaimTemplates")
        .and_then(Value::as_array_mut)
    {
        for claim in claims.iter_mut().filter(|c| c.is_object()) {
            default(child(claim, "spec"), "volumeMode", json!("Filesystem"));
            default(child(claim, "status"), "phase", json!("Pending"));
        }
    }
    template(spec);
}

/// A missing or empty map at `key`.
fn is_empty_map(v: &Value, key: &str) -> bool {
    v.get(key)
        .and_then(Value::as_object)
        .is_none_or(|m| m.is_empty())
}

pub fn replication_controller(obj: &mut Value) {
    let labels = obj.pointer("/spec/template/metadata/labels").cloned();
    if let Some(labels) = labels.filter(Value::is_object) {
        let spec = child(obj, "spec");
        if is_empty_map(spec, "selector") {
            spec["selector"] = labels.clone();
        }
        let meta = child(obj, "metadata");
        if is_empty_map(meta, "labels") {
            meta["labels"] = labels;
        }
    }
    let spec = child(obj, "spec");
    default(spec, "replicas", json!(1));
    template(spec);
}

pub fn job(obj: &mut Value) {
    let str_at = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (uid, name) = (str_at("/metadata/uid"), str_at("/metadata/name"));
    let spec = child(obj, "spec");
    let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
    if !manual {
        // The Job strategy's generateSelector: pods are selected by the Job's own uid.
        let labels = child(child(child(spec, "template"), "metadata"), "labels");
        for (key, value) in [
            (LEGACY_CONTROLLER_UID, &uid),
            (CONTROLLER_UID, &uid),
            (LEGACY_JOB_NAME, &name),
            (JOB_NAME, &name),
        ] {
            default(labels, key, json!(value));
        }
        let match_labels = child(child(spec, "selector"), "matchLabels");
        default(match_labels, CONTROLLER_UID, json!(uid));
    }
    if spec.get("completions").is_none_or(Value::is_null)
        && spec.get("parallelism").is_none_or(Value::is_null)
    {
        default(spec, "completions", json!(1));
    }
    default(spec, "parallelism", json!(1));
    let per_index = spec
        .get("backoffLimitPerIndex")
        .is_some_and(|v| !v.is_null());
    default(
        spec,
        "backoffLimit",
        json!(if per_index { i32::MAX } else { 6 }),
    );
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    let has_failure_policy = spec.get("podFailurePolicy").is_some_and(|v| !v.is_null());
    let replacement = if has_failure_policy {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    default(spec, "podReplacementPolicy", json!(replacement));
    default(spec, "manualSelector", json!(false));
    template(spec);
    // Defaulting runs again when Kubernetes reads a Job back, so the labels it shows are
    // the template's after selector generation.
    let labels = obj.pointer("/spec/template/metadata/labels").cloned();
    let meta = child(obj, "metadata");
    if let Some(labels) = labels.filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        && is_empty_map(meta, "labels")
    {
        meta["labels"] = labels;
    }
}

pub fn cron_job(obj: &mut Value) {
    let spec = child(obj, "spec");
    default(spec, "concurrencyPolicy", json!("Allow"));
    default(spec, "suspend", json!(false));
    default(spec, "successfulJobsHistoryLimit", json!(3));
    default(spec, "failedJobsHistoryLimit", json!(1));
    if let Some(job_spec) = spec
        .pointer_mut("/jobTemplate/spec")
        .filter(|s| s.is_object())
    {
        template(job_spec);
    }
}
