//! Writes: create, update (PUT), patch (JSON, merge, strategic merge, server-side apply) and the
//! pod `binding` subresource. One admission pipeline serves them all: decode, strict field
//! validation, metadata, typed normalisation, defaults, validation, managedFields, then a
//! compare-and-swap write.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};
use skiff_api::patch::{self, PatchType};
use skiff_api::{ApiError, FieldError, ResourceInfo, defaults, registry, strict, validation};

use super::{decode, store_error};
use crate::apiserver::ApiServer;
use crate::apiserver::codec::{self, Query};
use crate::apiserver::objects::{self, metadata_mut};
use crate::apiserver::path::ResourcePath;
use crate::server::User;
use crate::store::{Store, StoreError};

/// Attempts at a read-modify-write before giving up under contention.
const MAX_ATTEMPTS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

/// Query options shared by every write.
pub(crate) struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: String,
    pub field_validation: FieldValidation,
    pub force: bool,
}

impl WriteOptions {
    pub fn from_query(query: &Query, _user: &User, headers: &HeaderMap) -> Result<Self, ApiError> {
        let field_validation = match query.get("fieldValidation") {
            None | Some("") | Some("Warn") => FieldValidation::Warn,
            Some("Ignore") => FieldValidation::Ignore,
            Some("Strict") => FieldValidation::Strict,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {other:?}"
                )));
            }
        };
        // Without fieldManager, Kubernetes names the manager after the client's User-Agent.
        let field_manager = match query.get("fieldManager") {
            Some(m) if !m.is_empty() => {
                if m.len() > 128 {
                    return Err(ApiError::bad_request(
                        "fieldManager: Too long: may not be longer than 128",
                    ));
                }
                m.to_string()
            }
            _ => headers
                .get(axum::http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .and_then(|ua| ua.split('/').next())
                .filter(|s| !s.is_empty())
                .unwrap_or("unknown")
                .to_string(),
        };
        Ok(Self {
            dry_run: query.dry_run()?,
            field_manager,
            field_validation,
            force: query.flag("force"),
        })
    }
}

/// The apiVersion/kind of a body must be the endpoint's (or absent: then they are filled in).
fn check_type(info: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {})",
            info.kind
        )));
    };
    let api_version = info.api_version();
    match map.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("apiVersion".into(), Value::String(api_version));
        }
        Some(v) if v == api_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )));
        }
    }
    match map.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("kind".into(), Value::String(info.kind.to_string()));
        }
        Some(k) if k == info.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                info.kind
            )));
        }
    }
    Ok(())
}

/// Unknown and duplicate fields of a request body.
fn field_problems(info: &ResourceInfo, obj: &Value, raw: &[u8]) -> Vec<FieldError> {
    let mut causes: Vec<FieldError> = strict::unknown_fields(info, obj)
        .into_iter()
        .map(FieldError::unknown)
        .collect();
    causes.extend(strict::duplicate_fields(raw).into_iter().map(|f| {
        FieldError::new(
            skiff_api::status::CauseType::FieldValueDuplicate,
            f.clone(),
            format!("duplicate field \"{f}\""),
        )
    }));
    causes
}

/// Under `fieldValidation=Strict`, unknown and duplicate fields refuse the request.
fn check_fields(
    info: &ResourceInfo,
    obj: &Value,
    raw: &[u8],
    opts: &WriteOptions,
) -> Result<(), ApiError> {
    if opts.field_validation != FieldValidation::Strict {
        return Ok(());
    }
    let causes = field_problems(info, obj, raw);
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::strict_decoding(&info.kind, &info.version, causes))
    }
}

/// Under `fieldValidation=Warn` (the default), the same problems become `Warning` headers.
pub(crate) fn field_warnings(
    info: &ResourceInfo,
    obj: &Value,
    raw: &[u8],
    opts: &WriteOptions,
) -> Vec<String> {
    if opts.field_validation != FieldValidation::Warn {
        return Vec::new();
    }
    field_problems(info, obj, raw)
        .into_iter()
        .map(|c| c.message)
        .collect()
}

/// Decodes into the Kubernetes type and back: normalises the object and refuses wrong value types.
fn normalise(info: &ResourceInfo, obj: Value) -> Result<Value, ApiError> {
    let Some(typed) = info.typed else {
        return Ok(obj);
    };
    let mut obj = (typed.roundtrip)(&obj).map_err(|e| {
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {e}",
            kind = info.kind,
            version = info.version
        ))
    })?;
    if let Some(root) = skiff_api::schema::index().root(info) {
        skiff_api::schema::omit_empty(root, &mut obj);
    }
    Ok(obj)
}

fn invalid(info: &ResourceInfo, obj: &Value, errs: Vec<FieldError>) -> Result<(), ApiError> {
    if errs.is_empty() {
        return Ok(());
    }
    let name = objects::name(obj).unwrap_or("");
    Err(ApiError::invalid(&info.object_ref(name), errs))
}

/// What clients send as status is not theirs to set: a new object starts without one, and
/// defaulting gives it the status Kubernetes starts it with (a Pod's phase and QoS class, ...).
fn reset_status(info: &ResourceInfo, obj: &mut Value) {
    if info.has_subresource("status")
        && info.kind != "Node"
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("status");
    }
}

/// Namespaced objects go only into namespaces that exist and are not terminating.
async fn check_namespace<S: Store>(
    api: &ApiServer<S>,
    info: &ResourceInfo,
    name: &str,
    namespace: &str,
) -> Result<(), ApiError> {
    let ns_info = registry::find("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("no namespaces resource"))?;
    let kv = api
        .store
        .get(&ns_info.key("", namespace))
        .await
        .map_err(|e| store_error(ns_info, namespace, e))?;
    let Some(kv) = kv else {
        return Err(ApiError::not_found(&ns_info.object_ref(namespace)));
    };
    let ns = decode(&kv)?;
    if objects::is_deleting(&ns) {
        let r = info.object_ref(name);
        return Err(ApiError::forbidden(
            &r,
            &format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            ),
        ));
    }
    Ok(())
}

pub(crate) async fn create<S: Store>(
    api: &ApiServer<S>,
    rp: &ResourcePath,
    opts: &WriteOptions,
    mut obj: Value,
    raw: &[u8],
) -> Result<(StatusCode, Value), ApiError> {
    let info = rp.info;
    check_type(info, &mut obj)?;
    check_fields(info, &obj, raw, opts)?;
    // What a client claims to manage is recomputed from what it wrote.
    metadata_mut(&mut obj).remove("managedFields");
    let mut obj = admit_create(api, rp, obj)?;
    patch::record_update(
        info,
        None,
        &mut obj,
        &opts.field_manager,
        None,
        &objects::now_rfc3339(),
    );
    store_create(api, rp, obj, opts).await
}

/// Metadata, normalisation, defaults and validation of a new object (no I/O but allocations).
fn admit_create<S: Store>(
    api: &ApiServer<S>,
    rp: &ResourcePath,
    obj: Value,
) -> Result<Value, ApiError> {
    let info = rp.info;
    let mut obj = obj;
    {
        let meta = metadata_mut(&mut obj);
        if meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
        {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        if info.namespaced {
            let path_ns = rp.namespace.clone().unwrap_or_default();
            match meta.get("namespace").and_then(Value::as_str) {
                Some(ns) if !ns.is_empty() && ns != path_ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), Value::String(path_ns));
                }
            }
        } else {
            meta.remove("namespace");
        }
        let has_name = meta
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if !has_name
            && let Some(prefix) = meta
                .get("generateName")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
        {
            let generated = objects::generate_name(prefix);
            meta.insert("name".into(), Value::String(generated));
        }
        meta.insert(
            "uid".into(),
            Value::String(uuid::Uuid::new_v4().to_string()),
        );
        meta.insert(
            "creationTimestamp".into(),
            Value::String(objects::now_rfc3339()),
        );
        for server_owned in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "generation",
        ] {
            meta.remove(server_owned);
        }
        if objects::tracks_generation(info) {
            meta.insert("generation".into(), json!(1));
        }
    }
    let _ = api;
    let mut obj = normalise(info, obj)?;
    reset_status(info, &mut obj);
    if info.kind == "Namespace" {
        // Set at creation only (the namespace strategy's PrepareForCreate): the namespace
        // controller removes it, through `finalize`, once the namespace is empty.
        obj["spec"]["finalizers"] = json!(["kubernetes"]);
    }
    defaults::apply(info, &mut obj);
    invalid(info, &obj, validation::validate_create(info, &obj))?;
    Ok(obj)
}

async fn store_create<S: Store>(
    api: &ApiServer<S>,
    rp: &ResourcePath,
    mut obj: Value,
    opts: &WriteOptions,
) -> Result<(StatusCode, Value), ApiError> {
    let info = rp.info;
    let name = objects::name(&obj).unwrap_or("").to_string();
    let namespace = rp.namespace.clone().unwrap_or_default();
    if info.namespaced {
        check_namespace(api, info, &name, &namespace).await?;
    }
    if info.kind == "Service" {
        crate::allocators::allocate_service(api, &mut obj).await?;
    }
    if opts.dry_run {
        return Ok((StatusCode::CREATED, obj));
    }
    let bytes = serde_json::to_vec(&obj).map_err(|e| ApiError::internal(e.to_string()))?;
    let rev = api
        .store
        .create(&info.key(&namespace, &name), bytes)
        .await
        .map_err(|e| store_error(info, &name, e))?;
    objects::set_resource_version(&mut obj, rev);
    Ok((StatusCode::CREATED, obj))
}

/// Builds the next version of `old` from what a client sent, through the same admission as a
/// create. `sub` is the subresource written (`status`, `finalize`) or `None` for the object.
fn admit_update(
    info: &ResourceInfo,
    old: &Value,
    mut new: Value,
    sub: Option<&str>,
    manager: Option<&str>,
) -> Result<Value, ApiError> {
    let old_meta = objects::metadata(old).cloned().unwrap_or_default();
    match sub {
        Some("status") => {
            let status = new.get("status").cloned();
            new = old.clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        Some("finalize") => {
            let finalizers = new["spec"]["finalizers"].clone();
            new = old.clone();
            new["spec"]["finalizers"] = finalizers;
        }
        _ => {
            if info.has_subresource("status") {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            let meta = metadata_mut(&mut new);
            for field in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                if (field == "name" || field == "namespace" || field == "uid")
                    && let Some(given) = meta
                        .get(field)
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                    && old_meta.get(field).and_then(Value::as_str) != Some(given)
                {
                    if field == "uid" {
                        return Err(ApiError::conflict(
                            &info.object_ref(
                                old_meta.get("name").and_then(Value::as_str).unwrap_or(""),
                            ),
                            "Precondition failed: UID in precondition does not match the object",
                        ));
                    }
                    return Err(ApiError::bad_request(format!(
                        "the {field} of the object ({given}) does not match the {field} on the URL ({})",
                        old_meta.get(field).and_then(Value::as_str).unwrap_or("")
                    )));
                }
                match old_meta.get(field) {
                    Some(v) => meta.insert(field.into(), v.clone()),
                    None => meta.remove(field),
                };
            }
            if meta.get("managedFields").is_none()
                && let Some(mf) = old_meta.get("managedFields")
            {
                meta.insert("managedFields".into(), mf.clone());
            }
        }
    }
    let mut new = normalise(info, new)?;
    defaults::apply(info, &mut new);
    if objects::tracks_generation(info) && !objects::spec_equal(old, &new) {
        let generation = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        metadata_mut(&mut new).insert("generation".into(), json!(generation));
    }
    invalid(info, &new, validation::validate_update(info, &new, old))?;
    if let Some(manager) = manager {
        patch::record_update(
            info,
            Some(old),
            &mut new,
            manager,
            sub,
            &objects::now_rfc3339(),
        );
    }
    Ok(new)
}

/// Whether an object whose deletion was requested has nothing left holding it.
fn deletion_complete(info: &ResourceInfo, obj: &Value) -> bool {
    objects::is_deleting(obj)
        && objects::finalizers(obj).is_empty()
        && (info.kind != "Namespace"
            || obj["spec"]["finalizers"]
                .as_array()
                .is_none_or(Vec::is_empty))
}

/// Writes `new` over the version at `old_revision`: the one place an update reaches the store.
pub(crate) async fn commit_update<S: Store>(
    api: &ApiServer<S>,
    info: &ResourceInfo,
    key: &str,
    old: &Value,
    old_revision: u64,
    mut new: Value,
    dry_run: bool,
) -> Result<(StatusCode, Value), StoreError> {
    if objects::semantically_equal(old, &new) && !deletion_complete(info, &new) {
        return Ok((StatusCode::OK, old.clone()));
    }
    if dry_run {
        return Ok((StatusCode::OK, new));
    }
    if deletion_complete(info, &new) {
        let deleted = api.store.delete(key, Some(old_revision)).await?;
        objects::set_resource_version(&mut new, deleted.mod_revision);
        return Ok((StatusCode::OK, new));
    }
    let bytes = serde_json::to_vec(&new).map_err(|e| StoreError::Backend(Box::new(e)))?;
    let rev = api.store.update(key, bytes, old_revision).await?;
    objects::set_resource_version(&mut new, rev);
    Ok((StatusCode::OK, new))
}

/// Reads the object, lets `change` build the next version, and commits it, retrying on
/// concurrent writes unless the caller pinned a resourceVersion.
pub(crate) async fn read_modify_write<S: Store, F>(
    api: &ApiServer<S>,
    rp: &ResourcePath,
    name: &str,
    dry_run: bool,
    mut change: F,
) -> Result<(StatusCode, Value), ApiError>
where
    F: FnMut(&Value) -> Result<Value, ApiError>,
{
    let info = rp.info;
    let key = info.key(rp.namespace.as_deref().unwrap_or(""), name);
    for _ in 0..MAX_ATTEMPTS {
        let (revision, old) = super::get_versioned(api, rp, name).await?;
        let new = change(&old)?;
        let pinned = objects::parse_resource_version(objects::meta_str(&new, "resourceVersion"))?;
        if pinned.is_some_and(|rv| rv != revision) {
            return Err(ApiError::stale(&info.object_ref(name)));
        }
        match commit_update(api, info, &key, &old, revision, new, dry_run).await {
            Err(StoreError::Conflict { .. }) if pinned.is_none() => continue,
            other => return other.map_err(|e| store_error(info, name, e)),
        }
    }
    Err(ApiError::stale(&info.object_ref(name)))
}

pub(crate) async fn replace<S: Store>(
    api: &ApiServer<S>,
    rp: &ResourcePath,
    name: &str,
    sub: Option<&str>,
    opts: &WriteOptions,
    mut body: Value,
    raw: &[u8],
) -> Result<(StatusCode, Value), ApiError> {
    let info = rp.info;
    check_type(info, &mut body)?;
    check_fields(info, &body, raw, opts)?;
    if objects::name(&body).is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            objects::name(&body).unwrap_or("")
        )));
    }
    read_modify_write(api, rp, name, opts.dry_run, |old| {
        let mut next = admit_update(info, old, body.clone(), sub, Some(&opts.field_manager))?;
        // A resourceVersion in the body is a precondition on the stored version.
        if let Some(rv) = objects::meta_str(&body, "resourceVersion").filter(|s| !s.is_empty()) {
            metadata_mut(&mut next).insert("resourceVersion".into(), Value::String(rv.to_string()));
        } else {
            metadata_mut(&mut next).remove("resourceVersion");
        }
        Ok(next)
    })
    .await
}

pub(crate) async fn patch<S: Store>(
    api: &ApiServer<S>,
    rp: &ResourcePath,
    name: &str,
    sub: Option<&str>,
    opts: &WriteOptions,
    content_type: &str,
    body: &[u8],
) -> Result<(StatusCode, Value), ApiError> {
    let info = rp.info;
    let ty = PatchType::from_content_type(content_type)
        .ok_or_else(|| ApiError::unsupported_media_type(content_type))?;
    if ty == PatchType::Apply {
        return apply(api, rp, name, sub, opts, body).await;
    }
    read_modify_write(api, rp, name, opts.dry_run, |old| {
        let mut patched = patch::patch(info, old, body, ty)?;
        let pinned = objects::meta_str(&patched, "resourceVersion").map(str::to_string);
        if opts.field_validation == FieldValidation::Strict {
            check_fields(info, &patched, b"", opts)?;
        }
        check_type(info, &mut patched)?;
        let mut next = admit_update(info, old, patched, sub, Some(&opts.field_manager))?;
        // A patch that names a resourceVersion other than the current one is a precondition.
        match pinned {
            Some(rv) if Some(rv.as_str()) != objects::meta_str(old, "resourceVersion") => {
                metadata_mut(&mut next).insert("resourceVersion".into(), Value::String(rv));
            }
            _ => {
                metadata_mut(&mut next).remove("resourceVersion");
            }
        }
        Ok(next)
    })
    .await
}

/// Server-side apply: creates the object when absent, else merges the applied configuration.
async fn apply<S: Store>(
    api: &ApiServer<S>,
    rp: &ResourcePath,
    name: &str,
    sub: Option<&str>,
    opts: &WriteOptions,
    body: &[u8],
) -> Result<(StatusCode, Value), ApiError> {
    let info = rp.info;
    let mut applied = patch::decode_apply_body(body)?;
    check_type(info, &mut applied)?;
    check_fields(info, &applied, body, opts)?;
    if objects::name(&applied).is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            objects::name(&applied).unwrap_or("")
        )));
    }
    metadata_mut(&mut applied).insert("name".into(), Value::String(name.to_string()));
    let now = objects::now_rfc3339();
    let key = info.key(rp.namespace.as_deref().unwrap_or(""), name);
    let exists = api
        .store
        .get(&key)
        .await
        .map_err(|e| store_error(info, name, e))?
        .is_some();
    if !exists {
        let created =
            patch::server_side_apply(info, None, &applied, &opts.field_manager, opts.force, &now)?;
        let obj = admit_create(api, rp, created)?;
        return match store_create(api, rp, obj, opts).await {
            // Someone created it meanwhile: apply onto theirs.
            Err(e) if e.reason == "AlreadyExists" => {
                Box::pin(apply(api, rp, name, sub, opts, body)).await
            }
            other => other,
        };
    }
    read_modify_write(api, rp, name, opts.dry_run, |old| {
        let merged = patch::server_side_apply(
            info,
            Some(old),
            &applied,
            &opts.field_manager,
            opts.force,
            &now,
        )?;
        let mut next = admit_update(info, old, merged, sub, None)?;
        metadata_mut(&mut next).remove("resourceVersion");
        Ok(next)
    })
    .await
}

/// `POST pods/NAME/binding`: sets `spec.nodeName` of an unbound pod, as the scheduler does.
pub(crate) async fn bind<S: Store>(
    api: &ApiServer<S>,
    rp: &ResourcePath,
    name: &str,
    opts: &WriteOptions,
    binding: Value,
) -> Result<Response, ApiError> {
    let info = rp.info;
    let node = binding["target"]["name"].as_str().unwrap_or("").to_string();
    if node.is_empty() {
        let binding_info = registry::find("", "v1", "bindings")
            .ok_or_else(|| ApiError::internal("no bindings resource"))?;
        return Err(ApiError::invalid(
            &binding_info.object_ref(name),
            vec![FieldError::required("target.name")],
        ));
    }
    read_modify_write(api, rp, name, opts.dry_run, |old| {
        if let Some(current) = old["spec"]["nodeName"].as_str().filter(|s| !s.is_empty()) {
            return Err(ApiError::conflict(
                &info.object_ref(name),
                &format!("pod {name} is already assigned to node \"{current}\""),
            ));
        }
        let mut next = old.clone();
        next["spec"]["nodeName"] = Value::String(node.clone());
        metadata_mut(&mut next).remove("resourceVersion");
        Ok(next)
    })
    .await?;
    let mut status = Map::new();
    status.insert("kind".into(), "Status".into());
    status.insert("apiVersion".into(), "v1".into());
    status.insert("metadata".into(), json!({}));
    status.insert("status".into(), "Success".into());
    Ok(codec::json(StatusCode::CREATED, &Value::Object(status)))
}
