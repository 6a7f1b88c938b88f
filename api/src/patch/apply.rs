//! Server-side apply (structured-merge-diff `Updater.Apply` behind the API server's
//! fieldmanager): merge the applied configuration into the live object, drop fields this
//! manager applied before and omits now (unless someone else owns them), detect conflicts with
//! other managers' fields, and record the manager's `Apply` entry in managedFields.

use serde_json::{Value, json};

use super::fieldpath::{FieldSet, Path, PathElement, path_string};
use super::managed_fields::{self, APPLY, Entry};
use super::merge_keys::Ty;
use super::typed;
use crate::registry::ResourceInfo;
use crate::status::{ApiError, CauseType, Details, FieldError};

/// Decodes an apply body (`application/apply-patch+yaml`: YAML, or JSON which is YAML too).
pub fn decode_apply_body(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_yaml_ng::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    match v {
        Value::Object(_) => Ok(v),
        Value::Null => Ok(json!({})),
        _ => Err(ApiError::bad_request(
            "error decoding YAML: error unmarshaling JSON: while decoding JSON: json: cannot unmarshal into Go value of type map[string]interface {}",
        )),
    }
}

/// Server-side apply of `applied` by `manager` to `live` (`None`: the object does not exist and
/// apply creates it). Returns the new object with its managedFields. Fields other managers own
/// with a different value are a 409 Conflict unless `force`, which takes them over. An apply
/// that changes neither the object nor any ownership returns `live` unchanged.
pub fn server_side_apply(
    info: &ResourceInfo,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApiError> {
    check_applied(info, applied)?;
    let ty = Ty::of(info);
    let live_plain = live
        .map(managed_fields::without_managed_fields)
        .unwrap_or_else(|| json!({}));
    let mut config = applied.clone();
    if info.has_subresource("status")
        && let Some(m) = config.as_object_mut()
    {
        // The main resource never writes status (its strategy resets it).
        m.shift_remove("status");
    }
    let typed_err = |e: typed::MissingKey| typed_error(info, e);
    let applied_set = typed::to_set(&config, ty).map_err(typed_err)?;
    let mut entries = live.map(managed_fields::decode).unwrap_or_default();
    let me = Entry {
        manager: manager.to_string(),
        operation: APPLY.into(),
        api_version: info.api_version(),
        time: Some(now.to_string()),
        subresource: None,
        fields: FieldSet::default(),
    };
    let previous = entries
        .iter()
        .position(|e| e.same_manager(&me))
        .map(|i| entries.remove(i));

    let mut merged = typed::merge(&live_plain, &config, ty).map_err(typed_err)?;
    if let Some(last) = &previous {
        prune(&mut merged, ty, &last.fields, &applied_set, &entries);
    }

    let cmp = typed::compare(&live_plain, &merged, ty).map_err(typed_err)?;
    let changed = cmp.changed();
    let mut conflicts: Vec<(String, Path)> = Vec::new();
    for e in &entries {
        let clash = e.fields.intersection(&changed);
        conflicts.extend(clash.paths().into_iter().map(|p| (e.describe(), p)));
    }
    if !force && !conflicts.is_empty() {
        return Err(conflict_error(conflicts));
    }
    for e in &mut entries {
        e.fields = e.fields.difference(&changed).difference(&cmp.removed);
    }
    entries.retain(|e| !e.fields.is_empty());

    let fields = managed_fields::restrict(info, None, managed_fields::strip(&applied_set));
    // When nothing changed, other managers lost nothing either: only this entry can differ.
    let unchanged_ownership = previous.as_ref().is_some_and(|p| p.fields == fields);
    if let Some(l) = live
        && cmp.is_same()
        && unchanged_ownership
    {
        return Ok(l.clone());
    }
    if !fields.is_empty() {
        entries.push(Entry { fields, ..me });
    }
    managed_fields::encode(&mut merged, entries);
    Ok(merged)
}

fn check_applied(info: &ResourceInfo, applied: &Value) -> Result<(), ApiError> {
    let version = applied
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if version != info.api_version() {
        return Err(ApiError::bad_request(format!(
            "Incorrect version specified in apply patch. Specified patch version: {version}, expected: {}",
            info.api_version()
        )));
    }
    if applied
        .pointer("/metadata/managedFields")
        .is_some_and(|m| !m.is_null())
    {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    Ok(())
}

/// Removes from `merged` the fields `last` (this manager's previous apply) holds that nobody owns
/// any more: not the new configuration, not another manager, not below them either.
fn prune(merged: &mut Value, ty: Ty, last: &FieldSet, applied: &FieldSet, others: &[Entry]) {
    let mut owned = applied.clone();
    for e in others {
        owned.union(&e.fields);
    }
    let mut doomed = Vec::new();
    collect_unowned(last, Some(&owned), &mut Vec::new(), &mut doomed);
    for path in doomed {
        typed::remove_path(merged, ty, &path);
    }
}

fn collect_unowned(
    last: &FieldSet,
    owned: Option<&FieldSet>,
    path: &mut Vec<PathElement>,
    out: &mut Vec<Path>,
) {
    for (pe, child) in &last.children {
        path.push(pe.clone());
        match owned.and_then(|o| o.children.get(pe)) {
            None => out.push(path.clone()),
            Some(o) => collect_unowned(child, Some(o), path, out),
        }
        path.pop();
    }
}

/// The 409 Kubernetes answers a conflicting apply with (fieldmanager `NewConflictError`).
fn conflict_error(mut conflicts: Vec<(String, Path)>) -> ApiError {
    conflicts.sort();
    let message = if let [(who, path)] = conflicts.as_slice() {
        format!(
            "Apply failed with 1 conflict: conflict with {who}: {}",
            path_string(path)
        )
    } else {
        let mut lines = Vec::new();
        let mut current: Option<&str> = None;
        for (who, path) in &conflicts {
            if current != Some(who) {
                lines.push(format!("conflicts with {who}:"));
                current = Some(who);
            }
            lines.push(format!("- {}", path_string(path)));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    let causes = conflicts
        .iter()
        .map(|(who, path)| {
            FieldError::new(
                CauseType::FieldManagerConflict,
                path_string(path),
                format!("conflict with {who}"),
            )
        })
        .collect();
    ApiError {
        code: 409,
        reason: "Conflict",
        message,
        details: Some(Box::new(Details {
            causes,
            ..Default::default()
        })),
        retry_after_seconds: None,
    }
}

fn typed_error(info: &ResourceInfo, e: typed::MissingKey) -> ApiError {
    super::unknown(format!(
        "failed to create typed patch object ({}, Kind={}): {e}",
        info.api_version(),
        info.kind
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::record_update;
    use crate::registry;

    const T1: &str = "2025-01-01T00:00:00Z";
    const T2: &str = "2025-01-02T00:00:00Z";

    fn deployments() -> &'static ResourceInfo {
        registry::find("apps", "v1", "deployments").unwrap()
    }

    fn config(replicas: Option<i64>, image: &str) -> Value {
        let mut c = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","labels":{"app":"web"}},
            "spec":{"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},
            "spec":{"containers":[{"name":"nginx","image":image}]}}}});
        if let Some(r) = replicas {
            c["spec"]["replicas"] = json!(r);
        }
        c
    }

    /// kubectl's unforced apply of `config(replicas, image)` to `live` at `now`.
    // ApiError is the API server's one error type, large or not.
    fn apply(
        live: Option<&Value>,
        replicas: Option<i64>,
        image: &str,
        now: &str,
    ) -> Result<Value, ApiError> {
        server_side_apply(
            deployments(),
            live,
            &config(replicas, image),
            "kubectl",
            false,
            now,
        )
    }

    #[test]
    fn apply_creates_with_an_exact_apply_entry() {
        let out = apply(None, Some(2), "nginx:1.25", T1).unwrap();
        assert_eq!(out["spec"]["replicas"], 2);
        assert_eq!(
            serde_json::to_string(&out["metadata"]["managedFields"]).unwrap(),
            serde_json::to_string(&json!([{"manager":"kubectl","operation":"Apply","apiVersion":"apps/v1","time":T1,
                "fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:replicas":{},
                "f:selector":{},"f:template":{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{
                "k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:name":{}}}}}}}}]))
            .unwrap()
        );
    }

    #[test]
    fn identical_reapply_returns_the_live_object() {
        let live = apply(None, Some(2), "a", T1).unwrap();
        let again = apply(Some(&live), Some(2), "a", T2).unwrap();
        assert_eq!(again, live);
    }

    #[test]
    fn conflicting_with_a_client_side_updater_is_a_409_unless_forced() {
        let mut live = config(Some(1), "a");
        record_update(
            deployments(),
            None,
            &mut live,
            "kubectl-client-side-apply",
            None,
            T1,
        );
        let err = apply(Some(&live), Some(3), "a", T2).unwrap_err();
        assert_eq!(err.code, 409);
        assert_eq!(
            err.message,
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
        );
        let status = err.to_status();
        assert_eq!(status["reason"], "Conflict");
        assert_eq!(
            status["details"]["causes"],
            json!([{"reason":"FieldManagerConflict","message":"conflict with \"kubectl-client-side-apply\" using apps/v1","field":".spec.replicas"}])
        );
        // Same values are shared ownership, not a conflict.
        let shared = apply(Some(&live), Some(1), "a", T2).unwrap();
        assert_eq!(
            shared["metadata"]["managedFields"]
                .as_array()
                .unwrap()
                .len(),
            2
        );

        let forced = server_side_apply(
            deployments(),
            Some(&live),
            &config(Some(3), "b"),
            "kubectl",
            true,
            T2,
        )
        .unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        let mf = forced["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(mf[0]["manager"], "kubectl");
        let csa = &mf[1]["fieldsV1"]["f:spec"];
        assert!(csa.get("f:replicas").is_none());
        assert_eq!(
            csa["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"],
            json!({".":{},"f:name":{}})
        );
    }

    #[test]
    fn several_conflicts_are_listed_per_manager() {
        let mut live = config(Some(1), "a");
        record_update(deployments(), None, &mut live, "kubectl-create", None, T1);
        let err = apply(Some(&live), Some(3), "b", T2).unwrap_err();
        assert_eq!(
            err.message,
            "Apply failed with 2 conflicts: conflicts with \"kubectl-create\" using apps/v1:\n- .spec.replicas\n- .spec.template.spec.containers[name=\"nginx\"].image"
        );
    }

    #[test]
    fn fields_dropped_from_the_configuration_are_removed_unless_owned_elsewhere() {
        let live = apply(None, Some(2), "a", T1).unwrap();
        let out = apply(Some(&live), None, "a", T2).unwrap();
        assert!(out["spec"].get("replicas").is_none());
        assert!(
            out["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]
                .get("f:replicas")
                .is_none()
        );

        // A field another applier also set survives this manager dropping it.
        let both = server_side_apply(
            deployments(),
            Some(&live),
            &config(Some(2), "a"),
            "other",
            false,
            T2,
        )
        .unwrap();
        let out = apply(Some(&both), None, "a", T2).unwrap();
        assert_eq!(out["spec"]["replicas"], 2);

        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(5);
        record_update(
            deployments(),
            Some(&live),
            &mut scaled,
            "kubectl",
            Some("scale"),
            T2,
        );
        let out = apply(Some(&scaled), None, "a", T2).unwrap();
        assert_eq!(out["spec"]["replicas"], 5);
    }

    #[test]
    fn refuses_managed_fields_and_wrong_versions() {
        let mut c = config(None, "a");
        c["metadata"]["managedFields"] = json!([]);
        let e = server_side_apply(deployments(), None, &c, "kubectl", false, T1).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "metadata.managedFields must be nil")
        );
        c["apiVersion"] = json!("apps/v1beta1");
        let e = server_side_apply(deployments(), None, &c, "kubectl", false, T1).unwrap_err();
        assert_eq!(
            e.message,
            "Incorrect version specified in apply patch. Specified patch version: apps/v1beta1, expected: apps/v1"
        );
    }

    #[test]
    fn decodes_yaml_and_json_bodies() {
        let y = decode_apply_body(
            b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  k: v\n",
        )
        .unwrap();
        assert_eq!(
            y,
            json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"k":"v"}})
        );
        assert_eq!(
            decode_apply_body(br#"{"kind":"ConfigMap"}"#).unwrap(),
            json!({"kind":"ConfigMap"})
        );
        assert_eq!(decode_apply_body(b"a: [").unwrap_err().code, 400);
    }
}
