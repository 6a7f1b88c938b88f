//! `/openapi/v3`: the index of group-version documents and each OpenAPI 3.0 document, as
//! kubectl reads them (`explain`; `apply`/`create` check that PATCH takes `fieldValidation`
//! before asking the server for strict validation). Each document holds the paths of its
//! group-version's resources ([`paths`]) and every schema they reference ([`components`]).
//! Documents are built once, on first use, and kept serialized with their hash, which the index
//! puts in each URL (`?hash=`) and the server sends as the ETag. `/openapi/v2`, the same
//! definitions as Swagger 2.0 in protobuf, is [`v2`]'s.

mod components;
mod operation;
mod paths;
#[cfg(test)]
mod tests;
mod v2;

pub use v2::{V2_PROTOBUF_CONTENT_TYPE, v2_protobuf};

use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use crate::registry;

struct Document {
    group: &'static str,
    version: &'static str,
    json: String,
    hash: String,
}

fn documents() -> &'static [Document] {
    static DOCUMENTS: OnceLock<Vec<Document>> = OnceLock::new();
    DOCUMENTS.get_or_init(|| {
        registry::group_versions()
            .into_iter()
            .map(|(group, version)| {
                let json = build(group, version).to_string();
                let hash = hash(json.as_bytes());
                Document {
                    group,
                    version,
                    json,
                    hash,
                }
            })
            .collect()
    })
}

fn build(group: &str, version: &str) -> Value {
    let paths = Value::Object(paths::for_group_version(group, version));
    let schemas = components::closure(&paths);
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// `api/v1`, `apis/apps/v1`: a group-version's key in the index, and its URL under `/openapi/v3/`.
fn index_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// FNV-1a, 128 bits, as upper-case hex: stable across builds and platforms, and no crypto needed
/// to tell one document version from another.
fn hash(bytes: &[u8]) -> String {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    let h = bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u128::from(*b)).wrapping_mul(PRIME));
    format!("{h:032X}")
}

/// `GET /openapi/v3`: `{"paths":{"api/v1":{"serverRelativeURL":"/openapi/v3/api/v1?hash=<HASH>"},...}}`.
pub fn v3_index() -> &'static Value {
    static INDEX: OnceLock<Value> = OnceLock::new();
    INDEX.get_or_init(|| {
        let paths: Map<String, Value> = documents()
            .iter()
            .map(|d| {
                let key = index_key(d.group, d.version);
                let url = format!("/openapi/v3/{key}?hash={}", d.hash);
                (key, json!({"serverRelativeURL": url}))
            })
            .collect();
        json!({"paths": paths})
    })
}

/// `GET /openapi/v3/api/v1`, `/openapi/v3/apis/apps/v1`: the OpenAPI 3.0 document of one
/// group-version (`""` for core) as JSON, and its hash (the ETag). `None` for a group-version
/// not served.
pub fn v3_document(group: &str, version: &str) -> Option<(&'static str, &'static str)> {
    documents()
        .iter()
        .find(|d| d.group == group && d.version == version)
        .map(|d| (d.json.as_str(), d.hash.as_str()))
}
