//! Patches on wire JSON, as the Kubernetes API server applies them: JSON patch (RFC 6902),
//! merge patch (RFC 7386), strategic merge patch ([`strategic`]), server-side apply
//! ([`server_side_apply`]) and the `metadata.managedFields` bookkeeping every write does
//! ([`record_update`]). Merge keys live in one table ([`merge_keys`]) shared by strategic merge
//! and apply. Pure functions: the API server reads, calls, validates and stores.

mod apply;
mod fieldpath;
mod managed_fields;
mod merge_keys;
mod strategic;
mod typed;

pub use apply::{decode_apply_body, server_side_apply};
pub use managed_fields::record_update;

use serde_json::{Map, Value};

use crate::registry::ResourceInfo;
use crate::status::ApiError;

/// The four PATCH body types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    StrategicMerge,
    Apply,
}

/// Kubernetes' cap on the operations of one JSON patch.
const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

impl PatchType {
    /// The patch type of a request's Content-Type (parameters such as `charset` ignored);
    /// `None` for anything else, including `application/apply-patch+cbor`, which we do not serve.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let media = ct.split(';').next().unwrap_or("").trim();
        match media.to_ascii_lowercase().as_str() {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::StrategicMerge),
            "application/apply-patch+yaml" => Some(Self::Apply),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json-patch+json",
            Self::Merge => "application/merge-patch+json",
            Self::StrategicMerge => "application/strategic-merge-patch+json",
            Self::Apply => "application/apply-patch+yaml",
        }
    }

    /// The patch types a resource accepts: custom resources have no strategic merge.
    pub fn supported(info: &ResourceInfo) -> &'static [PatchType] {
        if info.typed.is_some() {
            &[Self::Json, Self::Merge, Self::StrategicMerge, Self::Apply]
        } else {
            &[Self::Json, Self::Merge, Self::Apply]
        }
    }
}

/// Applies a JSON, merge or strategic merge patch `body` to `live`. Strategic merge on a
/// resource without a schema (custom resources) is refused with 415, as Kubernetes does.
/// Apply patches go through [`server_side_apply`] instead; passing one here is a 415 too.
pub fn patch(
    info: &ResourceInfo,
    live: &Value,
    body: &[u8],
    ty: PatchType,
) -> Result<Value, ApiError> {
    if ty == PatchType::Apply || !PatchType::supported(info).contains(&ty) {
        return Err(unsupported(info));
    }
    match ty {
        PatchType::Json => json_patch(live, body),
        PatchType::Merge => merge_patch(live, body),
        _ => {
            let patch: Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(go_json_error(&e, body, "map[string]interface {}"))
            })?;
            strategic::apply(live, patch, merge_keys::Ty::of(info))
        }
    }
}

fn json_patch(live: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let ops: Vec<Value> = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(go_json_error(&e, body, "jsonpatch.Patch")))?;
    if ops.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(ApiError {
            code: 413,
            reason: "RequestEntityTooLarge",
            message: format!(
                "Request entity too large: The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
                ops.len()
            ),
            details: None,
            retry_after_seconds: None,
        });
    }
    // Go decodes any operation and fails while applying it; both surface as the same 422.
    let patch: json_patch::Patch =
        serde_json::from_value(Value::Array(ops)).map_err(|_| rejected())?;
    let mut doc = live.clone();
    json_patch::patch(&mut doc, &patch).map_err(|_| rejected())?;
    Ok(doc)
}

fn merge_patch(live: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let patch: Value =
        serde_json::from_slice(body).map_err(|_| ApiError::bad_request("Invalid JSON Patch"))?;
    if !patch.is_object() {
        return Err(ApiError::bad_request("Invalid JSON Patch"));
    }
    let mut doc = live.clone();
    json_patch::merge(&mut doc, &patch);
    Ok(doc)
}

/// Go's `encoding/json` wording for a body of the wrong JSON type; serde's for syntax errors.
fn go_json_error(e: &serde_json::Error, body: &[u8], go_type: &str) -> String {
    let found = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(_)) => "object",
        Ok(Value::Array(_)) => "array",
        Ok(Value::String(_)) => "string",
        Ok(Value::Number(_)) => "number",
        Ok(Value::Bool(_)) => "bool",
        Ok(Value::Null) | Err(_) => return e.to_string(),
    };
    format!("json: cannot unmarshal {found} into Go value of type {go_type}")
}

/// The 415 for a patch type the resource does not accept, listing the ones it does.
fn unsupported(info: &ResourceInfo) -> ApiError {
    let accepted: Vec<&str> = PatchType::supported(info)
        .iter()
        .map(|t| t.content_type())
        .collect();
    ApiError {
        code: 415,
        reason: "UnsupportedMediaType",
        message: format!(
            "the body of the request was in an unknown format - accepted media types include: {}",
            accepted.join(", ")
        ),
        details: None,
        retry_after_seconds: None,
    }
}

/// The bare 422 Kubernetes answers for a patch that does not apply (a failed JSON patch `test`,
/// a missing path, patch content contradicting `$retainKeys`).
pub(crate) fn rejected() -> ApiError {
    ApiError {
        code: 422,
        reason: "Invalid",
        message: "the server rejected our request due to an error in our request".into(),
        details: Some(Box::default()),
        retry_after_seconds: None,
    }
}

/// An error Kubernetes does not classify (a plain Go error): 500 without a reason.
pub(crate) fn unknown(message: impl Into<String>) -> ApiError {
    ApiError {
        code: 500,
        reason: "",
        message: message.into(),
        details: None,
        retry_after_seconds: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::printers::tests::custom_resource;
    use crate::registry::{self, ResourceInfo};
    use serde_json::json;

    fn deployments() -> &'static ResourceInfo {
        registry::find("apps", "v1", "deployments").unwrap()
    }

    fn live() -> Value {
        json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","labels":{"app":"web"}},
            "spec":{"replicas":1,"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.25"}]}}}})
    }

    #[test]
    fn content_types_map_to_patch_types() {
        assert_eq!(
            PatchType::from_content_type("application/json-patch+json"),
            Some(PatchType::Json)
        );
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchType::Merge)
        );
        assert_eq!(
            PatchType::from_content_type("application/strategic-merge-patch+json"),
            Some(PatchType::StrategicMerge)
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml"),
            Some(PatchType::Apply)
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+cbor"),
            None
        );
        assert_eq!(PatchType::from_content_type("application/json"), None);
    }

    #[test]
    fn kubectl_label_annotate_and_scale_are_merge_patches() {
        let body =
            br#"{"metadata":{"labels":{"tier":"web","app":null},"annotations":{"note":"x"}}}"#;
        let out = patch(deployments(), &live(), body, PatchType::Merge).unwrap();
        assert_eq!(
            out["metadata"],
            json!({"name":"web","labels":{"tier":"web"},"annotations":{"note":"x"}})
        );
        let out = patch(
            deployments(),
            &live(),
            br#"{"spec":{"replicas":4}}"#,
            PatchType::Merge,
        )
        .unwrap();
        assert_eq!(out["spec"]["replicas"], 4);
        assert_eq!(out["spec"]["template"], live()["spec"]["template"]);
        let e = patch(deployments(), &live(), b"[1]", PatchType::Merge).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (400, "Invalid JSON Patch"));
    }

    #[test]
    fn kubectl_patch_type_json_add_replace_remove_and_failing_test() {
        let body = br#"[{"op":"add","path":"/metadata/labels/tier","value":"web"},
            {"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.26"},
            {"op":"remove","path":"/spec/replicas"}]"#;
        let out = patch(deployments(), &live(), body, PatchType::Json).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"app":"web","tier":"web"}));
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1.26"
        );
        assert!(out["spec"].get("replicas").is_none());

        let failing = br#"[{"op":"test","path":"/spec/replicas","value":2},{"op":"replace","path":"/spec/replicas","value":3}]"#;
        let e = patch(deployments(), &live(), failing, PatchType::Json).unwrap_err();
        let s = e.to_status();
        assert_eq!(s["code"], 422);
        assert_eq!(s["reason"], "Invalid");
        assert_eq!(
            s["message"],
            "the server rejected our request due to an error in our request"
        );
        assert_eq!(s["details"], json!({}));

        let e = patch(deployments(), &live(), br#"{"op":"add"}"#, PatchType::Json).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                400,
                "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
            )
        );
    }

    #[test]
    fn strategic_merge_patch_from_kubectl_set_image() {
        let body = br#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.27"}]}}}}"#;
        let out = patch(deployments(), &live(), body, PatchType::StrategicMerge).unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name":"nginx","image":"nginx:1.27"}])
        );
        let e = patch(deployments(), &live(), b"[]", PatchType::StrategicMerge).unwrap_err();
        assert_eq!(
            e.message,
            "json: cannot unmarshal array into Go value of type map[string]interface {}"
        );
    }

    #[test]
    fn custom_resources_refuse_strategic_merge_with_415() {
        let crd = custom_resource();
        let e = patch(&crd, &json!({}), b"{}", PatchType::StrategicMerge).unwrap_err();
        assert_eq!(e.code, 415);
        assert_eq!(e.reason, "UnsupportedMediaType");
        assert_eq!(
            e.message,
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
        );
        let out = patch(
            &crd,
            &json!({"spec":{"a":1}}),
            br#"{"spec":{"b":2}}"#,
            PatchType::Merge,
        )
        .unwrap();
        assert_eq!(out, json!({"spec":{"a":1,"b":2}}));
    }
}
