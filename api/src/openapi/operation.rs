//! The building blocks of an OpenAPI operation as Kubernetes publishes them: query and path
//! parameters, request bodies (the PATCH body lists the patch types served) and responses.

use serde_json::{Map, Value, json};

use super::components::PATCH;
use crate::schema::REF_PREFIX;

/// Patch types a PATCH request body may carry. Strategic merge is left out on purpose: when it
/// is listed, client-side `kubectl apply` computes its patch from these schemas, which carry no
/// `x-kubernetes-patch-merge-key` yet, and would replace merge-by-key lists (containers, env)
/// whole; unlisted, kubectl uses its compiled-in types, which know every merge key.
const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
];

pub(super) const LIST_PARAMS: &[&str] = &[
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
];
pub(super) const WRITE_PARAMS: &[&str] = &["dryRun", "fieldManager", "fieldValidation"];
pub(super) const PATCH_PARAMS: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "force"];
pub(super) const DELETE_PARAMS: &[&str] = &[
    "dryRun",
    "gracePeriodSeconds",
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "orphanDependents",
    "propagationPolicy",
];
pub(super) const DELETE_COLLECTION_PARAMS: &[&str] = &[
    "continue",
    "dryRun",
    "fieldSelector",
    "gracePeriodSeconds",
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "labelSelector",
    "limit",
    "orphanDependents",
    "propagationPolicy",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
];
pub(super) const LOG_PARAMS: &[&str] = &[
    "container",
    "follow",
    "insecureSkipTLSVerifyBackend",
    "limitBytes",
    "previous",
    "sinceSeconds",
    "stream",
    "tailLines",
    "timestamps",
];
pub(super) const EXEC_PARAMS: &[&str] =
    &["command", "container", "stderr", "stdin", "stdout", "tty"];
pub(super) const ATTACH_PARAMS: &[&str] = &["container", "stderr", "stdin", "stdout", "tty"];
pub(super) const PORTFORWARD_PARAMS: &[&str] = &["ports"];

/// One query or path parameter, described briefly.
pub(super) fn parameter(name: &str) -> Value {
    let (location, ty, description) = match name {
        "name" => ("path", "string", "name of the object"),
        "namespace" => (
            "path",
            "string",
            "object name and auth scope, such as for teams and projects",
        ),
        "pretty" => (
            "query",
            "string",
            "If 'true', the output is pretty printed.",
        ),
        "allowWatchBookmarks" => (
            "query",
            "boolean",
            "Requests watch events of type BOOKMARK.",
        ),
        "continue" => (
            "query",
            "string",
            "The continue token of a previous, limited list.",
        ),
        "fieldSelector" => (
            "query",
            "string",
            "Restricts the objects returned by their fields.",
        ),
        "labelSelector" => (
            "query",
            "string",
            "Restricts the objects returned by their labels.",
        ),
        "limit" => (
            "query",
            "integer",
            "The maximum number of objects a list returns.",
        ),
        "resourceVersion" => (
            "query",
            "string",
            "The resource version to read or watch from.",
        ),
        "resourceVersionMatch" => (
            "query",
            "string",
            "How resourceVersion applies to a list: Exact or NotOlderThan.",
        ),
        "sendInitialEvents" => ("query", "boolean", "Starts a watch with the current state."),
        "timeoutSeconds" => (
            "query",
            "integer",
            "Ends the list or watch after this long.",
        ),
        "watch" => (
            "query",
            "boolean",
            "Watches for changes instead of listing.",
        ),
        "dryRun" => ("query", "string", "All: the request is not persisted."),
        "fieldManager" => (
            "query",
            "string",
            "The name of the actor making the change.",
        ),
        "fieldValidation" => (
            "query",
            "string",
            "Ignore, Warn or Strict: how unknown and duplicate fields in the request are handled. Strict fails the request with a BadRequest error listing them.",
        ),
        "force" => (
            "query",
            "boolean",
            "Apply requests take conflicting fields over.",
        ),
        "gracePeriodSeconds" => ("query", "integer", "Seconds before the object is deleted."),
        "ignoreStoreReadErrorWithClusterBreakingPotential" => (
            "query",
            "boolean",
            "Deletes an object that cannot be read from the store.",
        ),
        "orphanDependents" => ("query", "boolean", "Deprecated: use propagationPolicy."),
        "propagationPolicy" => (
            "query",
            "string",
            "Orphan, Background or Foreground: what happens to dependents.",
        ),
        "container" => (
            "query",
            "string",
            "The container; may be omitted for one container.",
        ),
        "follow" => ("query", "boolean", "Streams the log as it grows."),
        "insecureSkipTLSVerifyBackend" => (
            "query",
            "boolean",
            "Skips verifying the serving certificate of the node.",
        ),
        "limitBytes" => ("query", "integer", "The most bytes of log returned."),
        "previous" => (
            "query",
            "boolean",
            "The log of the previous, terminated container.",
        ),
        "sinceSeconds" => (
            "query",
            "integer",
            "Only log lines newer than this many seconds.",
        ),
        "stream" => ("query", "string", "All, Stdout or Stderr."),
        "tailLines" => (
            "query",
            "integer",
            "Only this many lines from the end of the log.",
        ),
        "timestamps" => (
            "query",
            "boolean",
            "Prefixes each log line with its timestamp.",
        ),
        "command" => (
            "query",
            "string",
            "The command to run, one argument per parameter.",
        ),
        "stderr" => ("query", "boolean", "Redirects the standard error stream."),
        "stdin" => ("query", "boolean", "Redirects the standard input stream."),
        "stdout" => ("query", "boolean", "Redirects the standard output stream."),
        "tty" => ("query", "boolean", "Allocates a terminal."),
        "ports" => ("query", "integer", "The ports to forward."),
        _ => ("query", "string", ""),
    };
    let mut p = json!({
        "description": description,
        "in": location,
        "name": name,
        "schema": {"type": ty, "uniqueItems": true},
    });
    if location == "path" {
        p["required"] = Value::Bool(true);
    }
    p
}

fn schema_ref(definition: &str) -> Value {
    json!({"$ref": format!("{REF_PREFIX}{definition}")})
}

/// Responses carrying `definition` under each of `codes`, and 401.
pub(super) fn responses(definition: &str, codes: &[&str]) -> Value {
    let mut out = Map::new();
    for code in codes {
        let description = match *code {
            "201" => "Created",
            "202" => "Accepted",
            _ => "OK",
        };
        out.insert(
            code.to_string(),
            json!({
                "content": {
                    "application/json": {"schema": schema_ref(definition)},
                    "application/yaml": {"schema": schema_ref(definition)},
                },
                "description": description,
            }),
        );
    }
    out.insert("401".into(), json!({"description": "Unauthorized"}));
    Value::Object(out)
}

pub(super) fn text_responses() -> Value {
    json!({
        "200": {"content": {"*/*": {"schema": {"type": "string"}}}, "description": "OK"},
        "401": {"description": "Unauthorized"},
    })
}

pub(super) fn object_body(definition: &str) -> Value {
    json!({"content": {"*/*": {"schema": schema_ref(definition)}}, "required": true})
}

pub(super) fn patch_body() -> Value {
    let content: Map<String, Value> = PATCH_TYPES
        .iter()
        .map(|t| (t.to_string(), json!({"schema": schema_ref(PATCH)})))
        .collect();
    json!({"content": content, "required": true})
}

/// One operation of a path item.
pub(super) struct Operation {
    pub action: &'static str,
    pub id: String,
    pub description: String,
    pub params: &'static [&'static str],
    pub body: Option<Value>,
    pub responses: Value,
    pub gvk: Value,
}

impl Operation {
    pub fn into_json(self, tag: &str) -> Value {
        let mut op = json!({
            "description": self.description,
            "operationId": self.id,
        });
        if !self.params.is_empty() {
            op["parameters"] = self.params.iter().map(|p| parameter(p)).collect();
        }
        if let Some(body) = self.body {
            op["requestBody"] = body;
        }
        op["responses"] = self.responses;
        op["tags"] = json!([tag]);
        op["x-kubernetes-action"] = json!(self.action);
        op["x-kubernetes-group-version-kind"] = self.gvk;
        op
    }
}
