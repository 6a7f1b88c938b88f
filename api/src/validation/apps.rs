//! Controllers of pods: Deployment, ReplicaSet, DaemonSet, StatefulSet (`pkg/apis/apps/validation`)
//! and ReplicationController: replicas, selectors that match their template, rollout strategies,
//! and what may not change on update.

use serde_json::{Map, Value, json};

use super::pod::validate_template;
use super::{
    get_str, go_label_selector, go_string_map, invalid_rendered, label_selector, names, nonnegative,
};
use crate::status::FieldError;

/// Where a workload's `spec.template` rules differ between kinds.
struct Rules {
    /// The detail for an empty selector (`empty selector is invalid for ...`).
    empty_selector: &'static str,
    active_deadline: &'static str,
}

/// Deployments validate their template as a ReplicaSet's, messages included.
const REPLICA_SET_RULES: Rules = Rules {
    empty_selector: "empty selector is invalid for deployment",
    active_deadline: "activeDeadlineSeconds in ReplicaSet is not Supported",
};

pub fn validate_deployment(obj: &Value, errs: &mut Vec<FieldError>) {
    let spec = spec(obj);
    validate_workload_template(spec, &REPLICA_SET_RULES, errs);
    nonnegative_spec(
        errs,
        spec,
        &[
            "replicas",
            "minReadySeconds",
            "revisionHistoryLimit",
            "progressDeadlineSeconds",
        ],
    );
    let int = |k| spec.get(k).and_then(Value::as_i64);
    if let (Some(pd), Some(mr)) = (int("progressDeadlineSeconds"), int("minReadySeconds"))
        && pd <= mr
    {
        errs.push(FieldError::invalid(
            "spec.progressDeadlineSeconds",
            &Value::from(pd),
            "must be greater than minReadySeconds",
        ));
    }
    let (strategy, ty) = strategy(spec, "strategy");
    match ty {
        "Recreate" => {
            if strategy.get("rollingUpdate").is_some_and(|r| !r.is_null()) {
                errs.push(FieldError::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => validate_rolling_update(
            strategy,
            "spec.strategy.rollingUpdate",
            "may not be 0 when `maxSurge` is 0",
            super::required(
                "spec.strategy.rollingUpdate",
                "this should be defaulted and never be nil",
            ),
            errs,
        ),
        other => errs.push(FieldError::not_supported(
            "spec.strategy.type",
            &Value::String(other.into()),
            &["Recreate", "RollingUpdate"],
        )),
    }
}

pub fn validate_replica_set(obj: &Value, errs: &mut Vec<FieldError>) {
    let spec = spec(obj);
    nonnegative_spec(errs, spec, &["replicas", "minReadySeconds"]);
    validate_workload_template(spec, &REPLICA_SET_RULES, errs);
}

pub fn validate_daemon_set(obj: &Value, errs: &mut Vec<FieldError>) {
    let spec = spec(obj);
    validate_workload_template(
        spec,
        &Rules {
            empty_selector: "empty selector is invalid for daemonset",
            active_deadline: "activeDeadlineSeconds in DaemonSet is not Supported",
        },
        errs,
    );
    nonnegative_spec(errs, spec, &["minReadySeconds", "revisionHistoryLimit"]);
    let (strategy, ty) = strategy(spec, "updateStrategy");
    match ty {
        "OnDelete" => {}
        "RollingUpdate" => validate_rolling_update(
            strategy,
            "spec.updateStrategy.rollingUpdate",
            "cannot be 0 when maxSurge is 0",
            FieldError::required("spec.updateStrategy.rollingUpdate"),
            errs,
        ),
        other => errs.push(FieldError::not_supported(
            "spec.updateStrategy",
            &Value::String(other.into()),
            &["RollingUpdate", "OnDelete"],
        )),
    }
}

pub fn validate_stateful_set(obj: &Value, errs: &mut Vec<FieldError>) {
    let spec = spec(obj);
    match get_str(spec, "podManagementPolicy").unwrap_or_default() {
        "" => errs.push(FieldError::required("spec.podManagementPolicy")),
        "OrderedReady" | "Parallel" => {}
        other => errs.push(FieldError::invalid(
            "spec.podManagementPolicy",
            &Value::String(other.into()),
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let (strategy, ty) = strategy(spec, "updateStrategy");
    match ty {
        "" => errs.push(FieldError::required("spec.updateStrategy")),
        "OnDelete" => {
            if strategy.get("rollingUpdate").is_some_and(|r| !r.is_null()) {
                errs.push(invalid_rendered(
                    "spec.updateStrategy.rollingUpdate",
                    &strategy["rollingUpdate"].to_string(),
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(ru) = strategy.get("rollingUpdate") {
                nonnegative(
                    errs,
                    ru,
                    "partition",
                    "spec.updateStrategy.rollingUpdate.partition",
                );
            }
        }
        _ => errs.push(invalid_rendered(
            "spec.updateStrategy",
            &strategy.to_string(),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    nonnegative_spec(errs, spec, &["replicas", "minReadySeconds"]);
    validate_workload_template(
        &with_claim_volumes(spec),
        &Rules {
            empty_selector: "empty selector is not valid for statefulset.",
            active_deadline: "must not be specified",
        },
        errs,
    );
}

/// The spec with a volume for each `volumeClaimTemplates` entry the template lacks, as its pods
/// get one: mounts may name them. (Kubernetes skips the pod spec of a StatefulSet's template
/// for that reason; checking the union keeps the rest of the spec validated.)
fn with_claim_volumes(spec: &Value) -> Value {
    let mut spec = spec.clone();
    let claims: Vec<Value> = spec
        .get("volumeClaimTemplates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.pointer("/metadata/name").cloned())
        .map(|name| json!({"name": name, "persistentVolumeClaim": {"claimName": name}}))
        .collect();
    if claims.is_empty() {
        return spec;
    }
    if let Some(pod) = spec
        .pointer_mut("/template/spec")
        .and_then(Value::as_object_mut)
    {
        let volumes = pod.entry("volumes").or_insert(Value::Null);
        if volumes.is_null() {
            *volumes = json!([]);
        }
        if let Some(volumes) = volumes.as_array_mut() {
            for claim in claims {
                if !volumes.iter().any(|v| v.get("name") == claim.get("name")) {
                    volumes.push(claim);
                }
            }
        }
    }
    spec
}

pub fn validate_rc(obj: &Value, errs: &mut Vec<FieldError>) {
    let spec = spec(obj);
    nonnegative_spec(errs, spec, &["minReadySeconds"]);
    let selector = spec.get("selector").and_then(Value::as_object);
    if selector.is_none_or(|s| s.is_empty()) {
        errs.push(FieldError::required("spec.selector"));
    }
    nonnegative_spec(errs, spec, &["replicas"]);
    // A ReplicationController's selector is a plain map: every pair must be a template label.
    let selects = selector.filter(|s| !s.is_empty()).map(|sel| {
        move |labels: &Map<String, Value>| sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    });
    validate_selected_template(
        spec,
        selects,
        "activeDeadlineSeconds in ReplicationController is not Supported",
        errs,
    );
}

fn spec(obj: &Value) -> &Value {
    static EMPTY: Value = Value::Null;
    obj.get("spec").unwrap_or(&EMPTY)
}

/// `nonnegative` for each of `keys` of a spec, at `spec.<key>`.
fn nonnegative_spec(errs: &mut Vec<FieldError>, spec: &Value, keys: &[&str]) {
    for key in keys {
        nonnegative(errs, spec, key, &format!("spec.{key}"));
    }
}

/// The update strategy object under `key` (null when absent) and its `type` ("" when unset).
fn strategy<'a>(spec: &'a Value, key: &str) -> (&'a Value, &'a str) {
    let strategy = spec.get(key).unwrap_or(&Value::Null);
    (strategy, get_str(strategy, "type").unwrap_or_default())
}

/// An apps/v1 workload: selector required and non-empty, then its template as
/// [`validate_selected_template`] checks it.
fn validate_workload_template(spec: &Value, rules: &Rules, errs: &mut Vec<FieldError>) {
    let selector = match spec.get("selector") {
        None | Some(Value::Null) => {
            errs.push(FieldError::required("spec.selector"));
            None
        }
        Some(sel) => {
            let parsed = label_selector(errs, Some(sel), "spec.selector");
            if parsed.as_ref().is_some_and(|s| s.is_empty()) {
                errs.push(invalid_rendered(
                    "spec.selector",
                    &go_label_selector(Some(sel)),
                    rules.empty_selector,
                ));
            }
            parsed
        }
    };
    let selects = selector
        .filter(|s| !s.is_empty())
        .map(|sel| move |labels: &Map<String, Value>| sel.matches(labels));
    validate_selected_template(spec, selects, rules.active_deadline, errs);
}

/// The template required, its labels matched by `selects` (when there is a selector to check),
/// the pod template valid, restartPolicy Always and no activeDeadlineSeconds.
fn validate_selected_template(
    spec: &Value,
    selects: Option<impl Fn(&Map<String, Value>) -> bool>,
    active_deadline: &str,
    errs: &mut Vec<FieldError>,
) {
    let Some(template) = spec.get("template") else {
        errs.push(FieldError::required("spec.template"));
        return;
    };
    if let Some(selects) = selects {
        let no_labels = Map::new();
        let labels = template
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .unwrap_or(&no_labels);
        if !selects(labels) {
            errs.push(invalid_rendered(
                "spec.template.metadata.labels",
                &go_string_map(template.pointer("/metadata/labels")),
                "`selector` does not match template `labels`",
            ));
        }
    }
    validate_template(Some(template), "spec.template", errs);
    template_policies(template, active_deadline, errs);
}

fn template_policies(template: &Value, active_deadline: &str, errs: &mut Vec<FieldError>) {
    let policy = template
        .pointer("/spec/restartPolicy")
        .and_then(Value::as_str);
    if let Some(p) = policy.filter(|p| !p.is_empty() && *p != "Always") {
        errs.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            &Value::String(p.into()),
            &["Always"],
        ));
    }
    if let Some(ads) = template
        .pointer("/spec/activeDeadlineSeconds")
        .filter(|v| !v.is_null())
    {
        errs.push(FieldError::invalid(
            "spec.template.spec.activeDeadlineSeconds",
            ads,
            active_deadline,
        ));
    }
}

/// A `RollingUpdate` strategy's `rollingUpdate` at `path` (`missing` when absent):
/// `maxUnavailable`/`maxSurge` non-negative ints or percents, not both zero, at most 100%
/// unavailable.
fn validate_rolling_update(
    strategy: &Value,
    path: &str,
    both_zero: &str,
    missing: FieldError,
    errs: &mut Vec<FieldError>,
) {
    let Some(ru) = strategy.get("rollingUpdate") else {
        errs.push(missing);
        return;
    };
    let mut value_of = |key: &str| -> Option<i64> {
        let p = format!("{path}.{key}");
        match ru.get(key)? {
            Value::String(s) => {
                let msgs = names::percent(s);
                let ok = msgs.is_empty();
                super::invalid_each(errs, &p, s, msgs);
                ok.then(|| s.trim_end_matches('%').parse().ok()).flatten()
            }
            Value::Number(n) => {
                nonnegative(errs, ru, key, &p);
                n.as_i64()
            }
            _ => None,
        }
    };
    let unavailable = value_of("maxUnavailable");
    let surge = value_of("maxSurge");
    if unavailable == Some(0) && surge.unwrap_or(0) == 0 {
        errs.push(FieldError::invalid(
            format!("{path}.maxUnavailable"),
            ru.get("maxUnavailable").unwrap_or(&Value::Null),
            both_zero,
        ));
    }
    if let Some(Value::String(s)) = ru.get("maxUnavailable")
        && unavailable.is_some_and(|v| v > 100)
    {
        errs.push(FieldError::invalid(
            format!("{path}.maxUnavailable"),
            &Value::String(s.clone()),
            "must not be greater than 100%",
        ));
    }
}

/// apps/v1 selectors are immutable (Deployment, ReplicaSet, DaemonSet).
pub fn validate_selector_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    let (n, o) = (spec(new).get("selector"), spec(old).get("selector"));
    if n != o {
        errs.push(invalid_rendered(
            "spec.selector",
            &go_label_selector(n),
            "field is immutable",
        ));
    }
}

/// Only replicas, ordinals, template, updateStrategy, the PVC retention policy and
/// minReadySeconds of a StatefulSet may change.
pub fn validate_stateful_set_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    let strip = |v: &Value| {
        let mut s = spec(v).clone();
        if let Some(m) = s.as_object_mut() {
            for k in [
                "replicas",
                "ordinals",
                "template",
                "updateStrategy",
                "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds",
            ] {
                m.remove(k);
            }
        }
        s
    };
    if strip(new) != strip(old) {
        errs.push(FieldError::forbidden(
            "spec",
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        ));
    }
}
