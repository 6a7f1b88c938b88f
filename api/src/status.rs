//! `ApiError`: every failure the API server can answer with, and its one conversion to a
//! Kubernetes `Status` (`metav1.Status`). Messages are worded as the Kubernetes API server words
//! them, because kubectl prints them verbatim (`Error from server (Reason): message`).

use serde_json::{Value, json};

/// Why a field was refused; Kubernetes' `CauseType` strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CauseType {
    FieldValueRequired,
    FieldValueInvalid,
    FieldValueNotSupported,
    FieldValueDuplicate,
    FieldValueForbidden,
    FieldValueTooLong,
    FieldValueTooMany,
    /// Strict decoding: a field the schema does not know.
    FieldValueUnknown,
    FieldManagerConflict,
}

impl CauseType {
    pub fn as_str(self) -> &'static str {
        match self {
            CauseType::FieldValueRequired => "FieldValueRequired",
            CauseType::FieldValueInvalid => "FieldValueInvalid",
            CauseType::FieldValueNotSupported => "FieldValueNotSupported",
            CauseType::FieldValueDuplicate => "FieldValueDuplicate",
            CauseType::FieldValueForbidden => "FieldValueForbidden",
            CauseType::FieldValueTooLong => "FieldValueTooLong",
            CauseType::FieldValueTooMany => "FieldValueTooMany",
            CauseType::FieldValueUnknown => "FieldValueUnknown",
            CauseType::FieldManagerConflict => "FieldManagerConflict",
        }
    }
}

/// One invalid field: `details.causes[]` of a Status.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub cause: CauseType,
    /// Path as Kubernetes prints it: `spec.containers[0].image`, `metadata.labels`.
    pub field: String,
    /// The detail after the field, e.g. `Required value` or `Invalid value: "x": must be ...`.
    pub message: String,
}

impl FieldError {
    pub fn required(field: impl Into<String>) -> Self {
        Self::new(
            CauseType::FieldValueRequired,
            field,
            "Required value".to_string(),
        )
    }

    /// `Invalid value: <value>: <detail>`, with the value rendered as Go's `%#v`-like JSON.
    pub fn invalid(field: impl Into<String>, value: &Value, detail: impl AsRef<str>) -> Self {
        let detail = detail.as_ref();
        let message = if detail.is_empty() {
            format!("Invalid value: {}", render_value(value))
        } else {
            format!("Invalid value: {}: {detail}", render_value(value))
        };
        Self::new(CauseType::FieldValueInvalid, field, message)
    }

    pub fn not_supported(field: impl Into<String>, value: &Value, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
        let message = format!(
            "Unsupported value: {}: supported values: {}",
            render_value(value),
            list.join(", ")
        );
        Self::new(CauseType::FieldValueNotSupported, field, message)
    }

    pub fn duplicate(field: impl Into<String>, value: &Value) -> Self {
        Self::new(
            CauseType::FieldValueDuplicate,
            field,
            format!("Duplicate value: {}", render_value(value)),
        )
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(
            CauseType::FieldValueForbidden,
            field,
            format!("Forbidden: {}", detail.into()),
        )
    }

    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        Self::new(
            CauseType::FieldValueTooLong,
            field,
            format!("Too long: may not be more than {max} bytes"),
        )
    }

    /// Kubernetes' wording for a changed immutable field.
    pub fn immutable(field: impl Into<String>, value: &Value) -> Self {
        Self::new(
            CauseType::FieldValueInvalid,
            field,
            format!("Invalid value: {}: field is immutable", render_value(value)),
        )
    }

    pub fn unknown(field: impl Into<String>) -> Self {
        let field = field.into();
        let message = format!("unknown field \"{field}\"");
        Self::new(CauseType::FieldValueUnknown, field, message)
    }

    pub fn new(cause: CauseType, field: impl Into<String>, message: String) -> Self {
        Self {
            cause,
            field: field.into(),
            message,
        }
    }

    /// `field: message`, the form Kubernetes joins into an Invalid Status message.
    pub fn display(&self) -> String {
        format!("{}: {}", self.field, self.message)
    }
}

fn render_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("\"{s}\""),
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

/// Names the object a failure is about, as `details` carries it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectRef {
    pub group: String,
    /// Plural resource name (`pods`), used in NotFound/AlreadyExists/Conflict messages.
    pub resource: String,
    /// Kind (`Pod`), used in Invalid messages and `details.kind` there.
    pub kind: String,
    pub name: String,
}

impl ObjectRef {
    /// `pods` for the core group, `deployments.apps` otherwise: the qualified resource.
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

/// A failed API request, convertible to a Status. Constructors follow `k8s.io/apimachinery/pkg/api/errors`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason} ({code}): {message}")]
pub struct ApiError {
    pub code: u16,
    /// `StatusReason`, e.g. `NotFound`; empty for an unclassified error.
    pub reason: &'static str,
    pub message: String,
    /// Boxed: errors travel in every `Result` of the request path, so they stay small.
    pub details: Option<Box<Details>>,
    /// Seconds a client should wait before retrying (`details.retryAfterSeconds`).
    pub retry_after_seconds: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Details {
    pub name: String,
    pub group: String,
    /// The resource (plural) for most reasons, the kind for Invalid, as Kubernetes does.
    pub kind: String,
    pub causes: Vec<FieldError>,
}

impl ApiError {
    fn with_ref(
        code: u16,
        reason: &'static str,
        message: String,
        r: &ObjectRef,
        kind: &str,
    ) -> Self {
        Self {
            code,
            reason,
            message,
            details: Some(Box::new(Details {
                name: r.name.clone(),
                group: r.group.clone(),
                kind: kind.to_string(),
                causes: Vec::new(),
            })),
            retry_after_seconds: None,
        }
    }

    pub fn not_found(r: &ObjectRef) -> Self {
        let msg = format!("{} \"{}\" not found", r.qualified_resource(), r.name);
        Self::with_ref(404, "NotFound", msg, r, &r.resource)
    }

    pub fn already_exists(r: &ObjectRef) -> Self {
        let msg = format!("{} \"{}\" already exists", r.qualified_resource(), r.name);
        Self::with_ref(409, "AlreadyExists", msg, r, &r.resource)
    }

    pub fn conflict(r: &ObjectRef, why: &str) -> Self {
        let msg = format!(
            "Operation cannot be fulfilled on {} \"{}\": {why}",
            r.qualified_resource(),
            r.name
        );
        Self::with_ref(409, "Conflict", msg, r, &r.resource)
    }

    /// The stale-resourceVersion Conflict, worded exactly as Kubernetes does.
    pub fn stale(r: &ObjectRef) -> Self {
        Self::conflict(
            r,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn invalid(r: &ObjectRef, causes: Vec<FieldError>) -> Self {
        let joined: Vec<String> = causes.iter().map(FieldError::display).collect();
        let summary = match joined.len() {
            0 => String::new(),
            1 => joined[0].clone(),
            _ => format!("[{}]", joined.join(", ")),
        };
        let msg = format!("{} \"{}\" is invalid: {summary}", r.kind, r.name);
        let mut e = Self::with_ref(422, "Invalid", msg, r, &r.kind);
        if let Some(d) = e.details.as_mut() {
            d.causes = causes;
        }
        e
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::plain(400, "BadRequest", message)
    }

    /// Strict field validation failure: BadRequest whose message lists each unknown or
    /// duplicate field, worded as the decoder of `kind` in `version` reports it.
    pub fn strict_decoding(kind: &str, version: &str, causes: Vec<FieldError>) -> Self {
        let msgs: Vec<String> = causes.iter().map(|c| c.message.clone()).collect();
        let mut e = Self::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
            msgs.join(", ")
        ));
        e.details = Some(Box::new(Details {
            causes,
            ..Default::default()
        }));
        e
    }

    pub fn unauthorized() -> Self {
        Self::plain(401, "Unauthorized", "Unauthorized")
    }

    /// `configmaps "x" is forbidden: <why>` (without a name: `configmaps is forbidden: <why>`).
    pub fn forbidden(r: &ObjectRef, why: &str) -> Self {
        let msg = if r.name.is_empty() {
            format!("{} is forbidden: {why}", r.qualified_resource())
        } else {
            format!(
                "{} \"{}\" is forbidden: {why}",
                r.qualified_resource(),
                r.name
            )
        };
        Self::with_ref(403, "Forbidden", msg, r, &r.resource)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::plain(405, "MethodNotAllowed", message)
    }

    /// A path or subresource that does not exist.
    pub fn no_such_resource() -> Self {
        Self::plain(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// A watch or list from a resourceVersion older than the retained window.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::plain(410, "Expired", message)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::plain(410, "Gone", message)
    }

    pub fn request_entity_too_large(limit: usize) -> Self {
        Self::plain(
            413,
            "RequestEntityTooLarge",
            format!("the request body exceeds the limit of {limit} bytes"),
        )
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::plain(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf; got {content_type}"
            ),
        )
    }

    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::plain(406, "NotAcceptable", message)
    }

    pub fn too_many_requests(message: impl Into<String>, retry_after_seconds: u32) -> Self {
        let mut e = Self::plain(429, "TooManyRequests", message);
        e.retry_after_seconds = Some(retry_after_seconds);
        e
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::plain(504, "Timeout", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::plain(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::plain(503, "ServiceUnavailable", message)
    }

    fn plain(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after_seconds: None,
        }
    }

    /// The Kubernetes `Status` object for this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if self.details.is_some() || self.retry_after_seconds.is_some() {
            let mut d = serde_json::Map::new();
            if let Some(det) = &self.details {
                if !det.name.is_empty() {
                    d.insert("name".into(), det.name.clone().into());
                }
                if !det.group.is_empty() {
                    d.insert("group".into(), det.group.clone().into());
                }
                if !det.kind.is_empty() {
                    d.insert("kind".into(), det.kind.clone().into());
                }
                if !det.causes.is_empty() {
                    let causes: Vec<Value> = det
                        .causes
                        .iter()
                        .map(|c| {
                            json!({"reason": c.cause.as_str(), "message": c.message, "field": c.field})
                        })
                        .collect();
                    d.insert("causes".into(), Value::Array(causes));
                }
            }
            if let Some(s) = self.retry_after_seconds {
                d.insert("retryAfterSeconds".into(), s.into());
            }
            status["details"] = Value::Object(d);
        }
        status
    }
}

/// The `Status` a successful delete of a resource without a body returns.
pub fn success_status(r: &ObjectRef, uid: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": r.name, "group": r.group, "kind": r.resource, "uid": uid},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> ObjectRef {
        ObjectRef {
            group: String::new(),
            resource: "pods".into(),
            kind: "Pod".into(),
            name: name.into(),
        }
    }

    #[test]
    fn messages_read_as_kubernetes_words_them() {
        assert_eq!(
            ApiError::not_found(&pod("abc")).message,
            "pods \"abc\" not found"
        );
        let dep = ObjectRef {
            group: "apps".into(),
            resource: "deployments".into(),
            kind: "Deployment".into(),
            name: "web".into(),
        };
        assert_eq!(
            ApiError::already_exists(&dep).message,
            "deployments.apps \"web\" already exists"
        );
        assert_eq!(
            ApiError::stale(&pod("abc")).message,
            "Operation cannot be fulfilled on pods \"abc\": the object has been modified; please apply your changes to the latest version and try again"
        );
        let e = ApiError::invalid(
            &pod("abc"),
            vec![FieldError::required("spec.containers[0].image")],
        );
        assert_eq!(
            e.message,
            "Pod \"abc\" is invalid: spec.containers[0].image: Required value"
        );
        let s = e.to_status();
        assert_eq!(s["code"], 422);
        assert_eq!(s["details"]["kind"], "Pod");
        assert_eq!(
            s["details"]["causes"][0]["field"],
            "spec.containers[0].image"
        );
        assert_eq!(s["details"]["causes"][0]["reason"], "FieldValueRequired");
    }

    #[test]
    fn several_causes_are_bracketed() {
        let e = ApiError::invalid(
            &pod("p"),
            vec![
                FieldError::required("spec.containers"),
                FieldError::invalid(
                    "metadata.name",
                    &json!("A_B"),
                    "a lowercase RFC 1123 subdomain",
                ),
            ],
        );
        assert_eq!(
            e.message,
            "Pod \"p\" is invalid: [spec.containers: Required value, metadata.name: Invalid value: \"A_B\": a lowercase RFC 1123 subdomain]"
        );
    }
}
