//! REST verbs on resources: dispatch by method and path shape, and the read side (get, list).
//! Writes live in `write.rs`, deletes in `delete.rs`, the `scale` subresource in `scale.rs`,
//! `log`, `exec`, `attach` and `portforward` (proxied to the pod's node) in `node_proxy.rs`.

mod admission;
mod delete;
pub(crate) mod node_proxy;
mod pod_log;
mod scale;
mod write;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use base64::Engine;
use serde_json::{Map, Value, json};
use skiff_api::printers;
use skiff_api::selectors::{FieldSelector, LabelSelector};
use skiff_api::{ApiError, ResourceInfo};

use super::codec::{self, Output, Query};
use super::objects;
use super::path::ResourcePath;
use super::{ApiServer, watch};
use crate::server::User;
use crate::store::{KeyValue, Store, StoreError};

pub(crate) use admission::WriteOptions;

/// Maps a store failure about `name` of `info` to the Status a client sees.
pub(crate) fn store_error(info: &ResourceInfo, name: &str, e: StoreError) -> ApiError {
    let r = info.object_ref(name);
    match e {
        StoreError::AlreadyExists { .. } => ApiError::already_exists(&r),
        StoreError::NotFound { .. } => ApiError::not_found(&r),
        StoreError::Conflict { .. } => ApiError::stale(&r),
        StoreError::Compacted { requested, oldest } => {
            ApiError::expired(format!("too old resource version: {requested} ({oldest})"))
        }
        StoreError::Backend(e) => ApiError::internal(e.to_string()),
    }
}

/// Decodes a stored object and stamps its resourceVersion.
pub(crate) fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    objects::decode_stored(&kv.value, kv.mod_revision)
        .map_err(|e| ApiError::internal(format!("decoding stored {}: {e}", kv.key)))
}

pub(crate) async fn serve<S: Store>(
    api: &Arc<ApiServer<S>>,
    rp: ResourcePath,
    query: Query,
    user: User,
    req: Request,
) -> Result<Response, ApiError> {
    let info = rp.info;
    let method = req.method().clone();
    let verb_check = |verb: &str| {
        if info.supports(verb) || rp.subresource.is_some() {
            Ok(())
        } else {
            Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource".to_string(),
            ))
        }
    };
    let output = codec::output(req.headers(), &query)?;
    let opts = WriteOptions::from_query(&query, &user, req.headers())?;
    match (&method, rp.name.as_deref(), rp.subresource.as_deref()) {
        (&Method::GET, None, None) if query.flag("watch") => {
            verb_check("watch")?;
            watch::serve(api, &rp, &query, output).await
        }
        (&Method::GET, None, None) => {
            verb_check("list")?;
            list(api, &rp, &query, output).await
        }
        (&Method::GET, Some(name), None | Some("status")) => {
            verb_check("get")?;
            let obj = get(api, &rp, name).await?;
            respond(info, StatusCode::OK, obj, output)
        }
        (&Method::GET, Some(name), Some("scale")) => scale::get(api, &rp, name).await,
        (&Method::POST, None, None) => {
            verb_check("create")?;
            let headers = req.headers().clone();
            let body = codec::read_body(req.into_body()).await?;
            let value = codec::decode_body(&headers, &body)?;
            let warnings = admission::field_warnings(info, &value, &body, &opts);
            let (code, obj) = write::create(api, &rp, &opts, value, &body).await?;
            respond(info, code, obj, output).map(|r| codec::with_warnings(r, &warnings))
        }
        (&Method::POST, Some(name), Some("binding")) => {
            let headers = req.headers().clone();
            let body = codec::read_body(req.into_body()).await?;
            let value = codec::decode_body(&headers, &body)?;
            write::bind(api, &rp, name, &opts, value).await
        }
        (&Method::PUT, Some(name), sub @ (None | Some("status") | Some("finalize"))) => {
            verb_check("update")?;
            let headers = req.headers().clone();
            let body = codec::read_body(req.into_body()).await?;
            let value = codec::decode_body(&headers, &body)?;
            let warnings = admission::field_warnings(info, &value, &body, &opts);
            let (code, obj) = write::replace(api, &rp, name, sub, &opts, value, &body).await?;
            respond(info, code, obj, output).map(|r| codec::with_warnings(r, &warnings))
        }
        (&Method::PUT, Some(name), Some("scale")) => {
            let headers = req.headers().clone();
            let body = codec::read_body(req.into_body()).await?;
            let value = codec::decode_body(&headers, &body)?;
            scale::replace(api, &rp, name, &opts, value).await
        }
        (&Method::PATCH, Some(name), sub @ (None | Some("status"))) => {
            verb_check("patch")?;
            let ct = codec::patch_content_type(req.headers()).to_string();
            let body = codec::read_body(req.into_body()).await?;
            let (code, obj) = write::patch(api, &rp, name, sub, &opts, &ct, &body).await?;
            respond(info, code, obj, output)
        }
        (&Method::PATCH, Some(name), Some("scale")) => {
            let ct = codec::patch_content_type(req.headers()).to_string();
            let body = codec::read_body(req.into_body()).await?;
            scale::patch(api, &rp, name, &opts, &ct, &body).await
        }
        (&Method::DELETE, Some(name), None) => {
            verb_check("delete")?;
            let body = codec::read_body(req.into_body()).await?;
            let options = delete::DeleteOptions::parse(&query, &body)?;
            let (code, obj) = delete::delete(api, &rp, name, &options, &opts).await?;
            respond(info, code, obj, output)
        }
        (&Method::DELETE, None, None) => {
            verb_check("deletecollection")?;
            let body = codec::read_body(req.into_body()).await?;
            let options = delete::DeleteOptions::parse(&query, &body)?;
            delete::delete_collection(api, &rp, &query, &options, &opts).await
        }
        (&Method::GET, Some(name), Some("log")) => node_proxy::log(api, &rp, name, &query).await,
        (_, Some(name), Some(sub @ ("exec" | "attach" | "portforward"))) => {
            node_proxy::stream(api, &rp, name, sub, &query, req).await
        }
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
    }
}

/// One object as JSON or as a one-row Table.
pub(crate) fn respond(
    info: &ResourceInfo,
    code: StatusCode,
    obj: Value,
    output: Output,
) -> Result<Response, ApiError> {
    match output {
        Output::Json => Ok(codec::json(code, &obj)),
        Output::Metadata => Ok(codec::json(code, &codec::partial_metadata(&obj))),
        Output::Table(include) => {
            let rv = objects::meta_str(&obj, "resourceVersion")
                .unwrap_or("")
                .to_string();
            let table = printers::table(
                info,
                std::slice::from_ref(&obj),
                include,
                true,
                json!({"resourceVersion": rv}),
                chrono::Utc::now(),
            );
            Ok(codec::json(code, &table))
        }
    }
}

pub(crate) async fn get<S: Store>(
    api: &ApiServer<S>,
    rp: &ResourcePath,
    name: &str,
) -> Result<Value, ApiError> {
    get_versioned(api, rp, name).await.map(|(_, obj)| obj)
}

/// The stored object with the revision a compare-and-swap write must name, or NotFound.
pub(crate) async fn get_versioned<S: Store>(
    api: &ApiServer<S>,
    rp: &ResourcePath,
    name: &str,
) -> Result<(u64, Value), ApiError> {
    let key = rp.info.key(rp.namespace.as_deref().unwrap_or(""), name);
    match api
        .store
        .get(&key)
        .await
        .map_err(|e| store_error(rp.info, name, e))?
    {
        Some(kv) => Ok((kv.mod_revision, decode(&kv)?)),
        None => Err(ApiError::not_found(&rp.info.object_ref(name))),
    }
}

/// Parsed `labelSelector` and `fieldSelector`.
pub(crate) struct Selectors {
    pub label: Option<LabelSelector>,
    pub field: Option<FieldSelector>,
}

impl Selectors {
    pub fn parse(info: &ResourceInfo, query: &Query) -> Result<Self, ApiError> {
        let label = match query.get("labelSelector") {
            Some(s) if !s.is_empty() => Some(LabelSelector::parse(s)?),
            _ => None,
        };
        let field = match query.get("fieldSelector") {
            Some(s) if !s.is_empty() => Some(FieldSelector::parse(info, s)?),
            _ => None,
        };
        Ok(Self { label, field })
    }

    /// Nothing to filter by: every object matches.
    pub fn is_empty(&self) -> bool {
        self.label.is_none() && self.field.is_none()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let empty = Map::new();
        let labels = objects::metadata(obj)
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        self.label.as_ref().is_none_or(|l| l.matches(labels))
            && self.field.as_ref().is_none_or(|f| f.matches(obj))
    }
}

/// The `continue` token: where the next page starts, opaque to clients.
fn encode_continue(last_key: &str, revision: u64) -> String {
    let raw = json!({"start": last_key, "rv": revision}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// The key the next page starts after, and the revision every page of the list is read at.
fn decode_continue(token: &str) -> Result<(String, u64), ApiError> {
    let bad =
        || ApiError::bad_request("continue key is not valid: the continue token is malformed");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    let revision = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    Ok((start.to_string(), revision))
}

/// Lists matching objects: the page, the store revision, and the continue token if more follow.
/// Every page of one list is read at the revision of its first, as Kubernetes serves them, so a
/// client that pages through and then watches from the list's resourceVersion misses nothing.
pub(crate) async fn list_objects<S: Store>(
    api: &ApiServer<S>,
    rp: &ResourcePath,
    selectors: &Selectors,
    limit: Option<usize>,
    continue_token: Option<&str>,
) -> Result<(Vec<Value>, u64, Option<String>), ApiError> {
    let prefix = rp.info.list_prefix(rp.namespace.as_deref());
    let (mut start_after, mut revision) = match continue_token {
        Some(t) if !t.is_empty() => {
            let (start, revision) = decode_continue(t)?;
            (Some(start), Some(revision))
        }
        _ => (None, None),
    };
    let mut items = Vec::new();
    loop {
        let want = limit.map(|l| l - items.len()).unwrap_or(0);
        let page = match api
            .store
            .list(&prefix, start_after.as_deref(), want, revision)
            .await
        {
            Err(StoreError::Compacted { .. }) if continue_token.is_some() => {
                return Err(ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list \
                     result. You can start a new list without the continue parameter.",
                ));
            }
            page => page.map_err(|e| store_error(rp.info, "", e))?,
        };
        revision = Some(page.revision);
        let last = page.items.last().map(|kv| kv.key.clone());
        for kv in &page.items {
            let obj = decode(kv)?;
            if selectors.matches(&obj) {
                items.push(obj);
            }
        }
        match (limit, last) {
            (Some(l), Some(last)) if page.more && items.len() < l => start_after = Some(last),
            (Some(_), Some(last)) if page.more => {
                return Ok((
                    items,
                    page.revision,
                    Some(encode_continue(&last, page.revision)),
                ));
            }
            _ => return Ok((items, page.revision, None)),
        }
    }
}

/// Lists with the query's selectors, `limit` and `continue`.
pub(crate) async fn list_query<S: Store>(
    api: &ApiServer<S>,
    rp: &ResourcePath,
    query: &Query,
) -> Result<(Vec<Value>, u64, Option<String>), ApiError> {
    let selectors = Selectors::parse(rp.info, query)?;
    let limit = query
        .number("limit")?
        .filter(|l| *l > 0)
        .map(|l| l as usize);
    list_objects(api, rp, &selectors, limit, query.get("continue")).await
}

async fn list<S: Store>(
    api: &ApiServer<S>,
    rp: &ResourcePath,
    query: &Query,
    output: Output,
) -> Result<Response, ApiError> {
    let (items, revision, cont) = list_query(api, rp, query).await?;
    let mut list_meta = Map::new();
    list_meta.insert(
        "resourceVersion".into(),
        Value::String(revision.to_string()),
    );
    if let Some(c) = cont {
        list_meta.insert("continue".into(), Value::String(c));
    }
    let body = match output {
        Output::Json => json!({
            "kind": rp.info.list_kind(),
            "apiVersion": rp.info.api_version(),
            "metadata": list_meta,
            "items": items,
        }),
        Output::Metadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": list_meta,
            "items": items.iter().map(codec::partial_metadata).collect::<Vec<_>>(),
        }),
        Output::Table(include) => printers::table(
            rp.info,
            &items,
            include,
            true,
            Value::Object(list_meta),
            chrono::Utc::now(),
        ),
    };
    Ok(codec::json(StatusCode::OK, &body))
}

/// Creates `obj` through the full admission pipeline unless it exists: the API server's own
/// bootstrap objects (default namespaces, the `kubernetes` Service).
pub(crate) async fn ensure_exists<S: Store>(
    api: &ApiServer<S>,
    info: &'static ResourceInfo,
    namespace: Option<&str>,
    obj: Value,
) -> Result<(), ApiError> {
    let rp = ResourcePath {
        info,
        namespace: namespace.map(str::to_string),
        name: None,
        subresource: None,
    };
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    if get(api, &rp, name).await.is_ok() {
        return Ok(());
    }
    let opts = WriteOptions {
        dry_run: false,
        field_manager: "skiff-apiserver".into(),
        field_validation: admission::FieldValidation::Strict,
        force: false,
    };
    match write::create(api, &rp, &opts, obj, b"").await {
        Ok(_) => Ok(()),
        Err(e) if e.reason == "AlreadyExists" => Ok(()),
        Err(e) => Err(e),
    }
}
