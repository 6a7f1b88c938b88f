//! Writes: create, update (PUT), patch (JSON, merge, strategic merge, server-side apply) and the
//! pod `binding` subresource. Each runs the one admission pipeline (`admission.rs`), then a
//! compare-and-swap write.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};
use skiff_api::patch::{self, PatchType};
use skiff_api::{ApiError, FieldError, ResourceInfo, registry};

use super::admission::{
    FieldValidation, WriteOptions, admit_create, admit_update, check_fields, check_type,
    deletion_complete,
};
use super::{decode, store_error};
use crate::apiserver::ApiServer;
use crate::apiserver::codec;
use crate::apiserver::objects::{self, metadata_mut};
use crate::apiserver::path::ResourcePath;
use crate::apiserver::stored::{self, BindRefusal};
use crate::store::{Store, StoreError};

/// Attempts at a read-modify-write before giving up under contention.
const MAX_ATTEMPTS: usize = 8;

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
    let mut obj = admit_create(rp, obj)?;
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
    if info.group.is_empty() && info.kind == "PersistentVolumeClaim" {
        super::admission::default_storage_class(api, &mut obj).await?;
    }
    if info.group.is_empty() && info.kind == "Pod" {
        super::admission::service_account_exists(api, info, &namespace, &obj).await?;
    }
    let _allocating = if info.kind == "Service" {
        let guard = api.service_allocation.lock().await;
        crate::allocators::allocate_service(api, &mut obj).await?;
        Some(guard)
    } else {
        None
    };
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
    let remove = deletion_complete(info, &new);
    if objects::semantically_equal(old, &new) && !remove {
        return Ok((StatusCode::OK, old.clone()));
    }
    if dry_run {
        // Nothing was written: the object is still at the version it was read at.
        objects::set_resource_version(&mut new, old_revision);
        return Ok((StatusCode::OK, new));
    }
    if remove {
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
        let obj = admit_create(rp, created)?;
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

/// `POST pods/NAME/binding`: sets `spec.nodeName` of an unbound pod, as the scheduler does. The
/// pod is changed as stored, without decoding it: binds come in bursts of thousands.
pub(crate) async fn bind<S: Store>(
    api: &ApiServer<S>,
    rp: &ResourcePath,
    name: &str,
    opts: &WriteOptions,
    binding: Value,
) -> Result<Response, ApiError> {
    let info = rp.info;
    let node = binding["target"]["name"].as_str().unwrap_or("");
    if node.is_empty() {
        let binding_info = registry::find("", "v1", "bindings")
            .ok_or_else(|| ApiError::internal("no bindings resource"))?;
        return Err(ApiError::invalid(
            &binding_info.object_ref(name),
            vec![FieldError::required("target.name")],
        ));
    }
    let uid = binding["metadata"]["uid"].as_str();
    let key = info.key(rp.namespace.as_deref().unwrap_or(""), name);
    let now = objects::now_rfc3339();
    let mut attempts = 0;
    loop {
        let stored = api
            .store
            .get(&key)
            .await
            .map_err(|e| store_error(info, name, e))?
            .ok_or_else(|| ApiError::not_found(&info.object_ref(name)))?;
        let bound = stored::bind_stored(&stored.value, node, uid, &now).map_err(|refusal| {
            let conflict = |message: String| ApiError::conflict(&info.object_ref(name), &message);
            match refusal {
                BindRefusal::AlreadyBound(current) => conflict(format!(
                    "pod {name} is already assigned to node \"{current}\""
                )),
                BindRefusal::Deleting => conflict(format!(
                    "pod {name} is being deleted, cannot be assigned to a host"
                )),
                BindRefusal::UidMismatch { expected, actual } => conflict(format!(
                    "Precondition failed: UID in precondition: {expected}, UID in object meta: {actual}"
                )),
                BindRefusal::Unreadable => {
                    ApiError::internal(format!("stored pod {key} is not a JSON object"))
                }
            }
        })?;
        if opts.dry_run {
            break;
        }
        match api.store.update(&key, bound, stored.mod_revision).await {
            Err(StoreError::Conflict { .. }) if attempts + 1 < MAX_ATTEMPTS => attempts += 1,
            other => {
                other.map_err(|e| store_error(info, name, e))?;
                break;
            }
        }
    }
    let mut status = Map::new();
    status.insert("kind".into(), "Status".into());
    status.insert("apiVersion".into(), "v1".into());
    status.insert("metadata".into(), json!({}));
    status.insert("status".into(), "Success".into());
    Ok(codec::json(StatusCode::CREATED, &Value::Object(status)))
}
