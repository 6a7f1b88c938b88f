//! Encoding on the wire: request bodies (JSON or YAML, size-limited), query parameters, the
//! response media type a client asked for (plain JSON or a `meta.k8s.io` Table), and the one
//! conversion of [`ApiError`] into an HTTP response.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use skiff_api::ApiError;
use skiff_api::printers::IncludeObject;

/// The API server's request body limit (Kubernetes' `MaxRequestBodyBytes`, 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// An [`ApiError`] as an HTTP response carrying its `Status`.
pub struct ErrorResponse(pub ApiError);

impl From<ApiError> for ErrorResponse {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for ErrorResponse {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.0.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = json(code, &self.0.to_status());
        if let Some(s) = self.0.retry_after_seconds {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

pub fn json(code: StatusCode, value: &impl serde::Serialize) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Adds RFC 7234 `Warning` headers (code 299), which kubectl prints as `Warning: ...`.
pub fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

/// Query parameters by name (the last value wins for repeated keys).
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let mut map = HashMap::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.insert(decode_component(k), decode_component(v));
        }
        Self(map)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// `true`, `1` (and Go's other truthy spellings) are true.
    pub fn flag(&self, key: &str) -> bool {
        matches!(
            self.get(key),
            Some("true" | "1" | "t" | "T" | "TRUE" | "True")
        )
    }

    pub fn number(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(s) => s.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value {s:?} for query parameter {key}"))
            }),
        }
    }

    /// `dryRun=All`; any other value is refused as Kubernetes does.
    pub fn dry_run(&self) -> Result<bool, ApiError> {
        match self.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "Invalid dry run value: unsupported dry run value {other:?}: supported values: \"All\""
            ))),
        }
    }
}

fn decode_component(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How the client wants objects back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    Table(IncludeObject),
    /// `as=PartialObjectMetadata` (objects) / `as=PartialObjectMetadataList` (lists): metadata only.
    Metadata,
}

/// The `PartialObjectMetadata` of an object, borrowing its metadata: metadata-only watches (the
/// garbage collector's, on every resource) encode one per change, and a copy of each would cost
/// more than the encoding.
#[derive(serde::Serialize)]
pub struct PartialObjectMetadata<'a> {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: &'a Value,
}

/// The same `PartialObjectMetadata`, around metadata already encoded as JSON (the watch cache's).
pub fn partial_metadata_json(metadata: &[u8]) -> Vec<u8> {
    let mut object = Vec::with_capacity(metadata.len() + 80);
    object.extend_from_slice(
        br#"{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":"#,
    );
    object.extend_from_slice(metadata);
    object.push(b'}');
    object
}

pub fn partial_metadata(obj: &Value) -> PartialObjectMetadata<'_> {
    static NO_METADATA: std::sync::LazyLock<Value> =
        std::sync::LazyLock::new(|| Value::Object(Default::default()));
    PartialObjectMetadata {
        kind: "PartialObjectMetadata",
        api_version: "meta.k8s.io/v1",
        metadata: obj.get("metadata").unwrap_or(&NO_METADATA),
    }
}

/// Picks the first acceptable media type of the `Accept` header, as Kubernetes' negotiation does.
pub fn output(headers: &HeaderMap, query: &Query) -> Result<Output, ApiError> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    for part in accept.split(',') {
        let mut params = part.split(';').map(str::trim);
        let media = params.next().unwrap_or("");
        let params: Vec<(&str, &str)> = params.filter_map(|p| p.split_once('=')).collect();
        let param = |k: &str| params.iter().find(|(pk, _)| *pk == k).map(|(_, v)| *v);
        match media {
            "application/json" | "application/yaml" | "*/*" | "application/*" => {
                if param("as") == Some("Table") && param("g") == Some("meta.k8s.io") {
                    if matches!(param("v"), Some("v1" | "v1beta1")) {
                        return Ok(Output::Table(IncludeObject::parse(
                            query.get("includeObject"),
                        )?));
                    }
                    continue;
                }
                if matches!(
                    param("as"),
                    Some("PartialObjectMetadata" | "PartialObjectMetadataList")
                ) && param("g") == Some("meta.k8s.io")
                    && matches!(param("v"), Some("v1" | "v1beta1"))
                {
                    return Ok(Output::Metadata);
                }
                if param("as").is_some() {
                    // Other transformations are not served; try the next type.
                    continue;
                }
                return Ok(Output::Json);
            }
            _ => continue,
        }
    }
    Err(ApiError::not_acceptable(format!(
        "only the following media types are accepted: application/json, application/yaml, application/json;as=Table;v=v1;g=meta.k8s.io, application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io; got {accept}"
    )))
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or("").trim())
        .unwrap_or("application/json")
}

/// Decodes a JSON or YAML body into one JSON value.
pub fn decode_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = content_type(headers);
    match ct {
        "application/json" | "" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the object provided is unrecognized: json: {e}"))
        }),
        "application/yaml" | "application/apply-patch+yaml" => decode_yaml(body),
        // kubectl's typed commands (`create configmap`, `create namespace`, ...) send protobuf.
        skiff_api::protobuf::MEDIA_TYPE => skiff_api::protobuf::decode(body),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

pub fn decode_yaml(body: &[u8]) -> Result<Value, ApiError> {
    serde_yaml_ng::from_slice::<Value>(body)
        .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: yaml: {e}")))
}

/// The media type of a PATCH body, with the 415 Kubernetes answers for others.
pub fn patch_content_type(headers: &HeaderMap) -> &str {
    content_type(headers)
}

/// How much of an oversized body is read (and dropped) before answering 413: a client still
/// sending gets its answer instead of a reset connection, and a huge body cannot hold the server.
const DRAIN_BYTES: usize = 32 * 1024 * 1024;

/// The request body, refusing more than [`MAX_BODY_BYTES`] with 413.
pub async fn read_body(body: Body) -> Result<bytes::Bytes, ApiError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        total += chunk.len();
        if total <= MAX_BODY_BYTES {
            buf.extend_from_slice(&chunk);
        } else if total > DRAIN_BYTES {
            break;
        }
    }
    if total > MAX_BODY_BYTES {
        return Err(ApiError::request_entity_too_large(MAX_BODY_BYTES));
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_metadata_is_the_same_from_a_value_or_from_json() {
        let obj = serde_json::json!({"kind": "Pod", "metadata": {"name": "a", "uid": "u"}});
        let metadata = serde_json::to_vec(&obj["metadata"]).unwrap();
        assert_eq!(
            partial_metadata_json(&metadata),
            serde_json::to_vec(&partial_metadata(&obj)).unwrap()
        );
    }

    fn headers(accept: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
        h
    }

    #[test]
    fn kubectl_get_gets_a_table() {
        let q = Query::parse(Some("limit=500&includeObject=Object"));
        let h = headers(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
        );
        assert_eq!(
            output(&h, &q).unwrap(),
            Output::Table(IncludeObject::Object)
        );
        assert_eq!(
            output(&headers("application/json"), &q).unwrap(),
            Output::Json
        );
        assert_eq!(
            output(&headers("application/vnd.kubernetes.protobuf, */*"), &q).unwrap(),
            Output::Json
        );
        assert_eq!(
            output(&headers("application/vnd.kubernetes.protobuf"), &q)
                .unwrap_err()
                .code,
            406
        );
    }

    #[test]
    fn query_values_are_percent_decoded() {
        let q = Query::parse(Some("labelSelector=app%3Dweb%2Ctier+in+%28a%29&watch=1"));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(q.flag("watch"));
    }
}
