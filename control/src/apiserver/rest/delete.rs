//! Deletes: preconditions, finalizers, propagation policies (the `orphan` and
//! `foregroundDeletion` finalizers the garbage collector acts on), graceful deletion of pods
//! bound to a node, namespaces moving to Terminating, and deletecollection.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use skiff_api::{ApiError, ResourceInfo};

use super::WriteOptions;
use super::write::commit_update;
use super::{get_versioned, list_query, store_error};
use crate::apiserver::ApiServer;
use crate::apiserver::codec::{self, Query};
use crate::apiserver::objects::{self, metadata_mut};
use crate::apiserver::path::ResourcePath;
use crate::store::{Store, StoreError};

pub const ORPHAN_FINALIZER: &str = "orphan";
/// Namespaces Kubernetes refuses to delete (its NamespaceLifecycle admission).
const IMMORTAL_NAMESPACES: [&str; 3] = ["default", "kube-system", "kube-public"];
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Propagation {
    Orphan,
    Background,
    Foreground,
}

pub(crate) struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation: Option<Propagation>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
}

impl DeleteOptions {
    /// From the body (`DeleteOptions`) and the query; the body wins, as in Kubernetes.
    pub fn parse(query: &Query, body: &[u8]) -> Result<Self, ApiError> {
        let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
        };
        let policy = body["propagationPolicy"]
            .as_str()
            .map(str::to_string)
            .or_else(|| query.get("propagationPolicy").map(str::to_string));
        let orphan_legacy = body["orphanDependents"]
            .as_bool()
            .or_else(|| query.get("orphanDependents").map(|v| v == "true"));
        let propagation = match (policy.as_deref(), orphan_legacy) {
            (Some("Orphan"), _) => Some(Propagation::Orphan),
            (Some("Background"), _) => Some(Propagation::Background),
            (Some("Foreground"), _) => Some(Propagation::Foreground),
            (Some(""), _) | (None, None) => None,
            (None, Some(true)) => Some(Propagation::Orphan),
            (None, Some(false)) => Some(Propagation::Background),
            (Some(other), _) => {
                return Err(ApiError::bad_request(format!(
                    "propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
                )));
            }
        };
        let grace_period_seconds = match body["gracePeriodSeconds"].as_i64() {
            Some(g) => Some(g),
            None => query.number("gracePeriodSeconds")?,
        };
        Ok(Self {
            grace_period_seconds,
            propagation,
            precondition_uid: body["preconditions"]["uid"].as_str().map(str::to_string),
            precondition_rv: body["preconditions"]["resourceVersion"]
                .as_str()
                .map(str::to_string),
        })
    }
}

fn check_preconditions(
    info: &ResourceInfo,
    name: &str,
    obj: &Value,
    options: &DeleteOptions,
) -> Result<(), ApiError> {
    let r = info.object_ref(name);
    if let Some(uid) = &options.precondition_uid {
        let actual = objects::meta_str(obj, "uid").unwrap_or("");
        if uid != actual {
            return Err(ApiError::conflict(
                &r,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                ),
            ));
        }
    }
    if let Some(rv) = &options.precondition_rv {
        let actual = objects::meta_str(obj, "resourceVersion").unwrap_or("");
        if rv != actual {
            return Err(ApiError::conflict(
                &r,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual}"
                ),
            ));
        }
    }
    Ok(())
}

/// Pods bound to a node are deleted gracefully: the node agent stops them, then deletes with 0.
fn grace_period(info: &ResourceInfo, obj: &Value, options: &DeleteOptions) -> i64 {
    if info.kind != "Pod" || obj["spec"]["nodeName"].as_str().is_none_or(str::is_empty) {
        return 0;
    }
    if obj["status"]["phase"]
        .as_str()
        .is_some_and(|p| p == "Succeeded" || p == "Failed")
    {
        return 0;
    }
    options
        .grace_period_seconds
        .or_else(|| obj["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30)
        .max(0)
}

pub(crate) async fn delete<S: Store>(
    api: &ApiServer<S>,
    rp: &ResourcePath,
    name: &str,
    options: &DeleteOptions,
    opts: &WriteOptions,
) -> Result<(StatusCode, Value), ApiError> {
    let info = rp.info;
    if info.kind == "Namespace" && IMMORTAL_NAMESPACES.contains(&name) {
        return Err(ApiError::forbidden(
            &info.object_ref(name),
            "this namespace may not be deleted",
        ));
    }
    let key = info.key(rp.namespace.as_deref().unwrap_or(""), name);
    loop {
        let (revision, old) = get_versioned(api, rp, name).await?;
        check_preconditions(info, name, &old, options)?;
        // kubectl and the API server default to Background.
        let propagation = options.propagation.unwrap_or(Propagation::Background);
        let mut next = old.clone();
        let mut finalizers = objects::finalizers(&old);
        match propagation {
            Propagation::Orphan if !finalizers.iter().any(|f| f == ORPHAN_FINALIZER) => {
                finalizers.retain(|f| f != FOREGROUND_FINALIZER);
                finalizers.push(ORPHAN_FINALIZER.to_string());
            }
            Propagation::Foreground if !finalizers.iter().any(|f| f == FOREGROUND_FINALIZER) => {
                finalizers.retain(|f| f != ORPHAN_FINALIZER);
                finalizers.push(FOREGROUND_FINALIZER.to_string());
            }
            _ => {}
        }
        objects::set_finalizers(&mut next, &finalizers);
        let grace = grace_period(info, &old, options);
        let immediate = finalizers.is_empty() && grace == 0 && info.kind != "Namespace";
        let result = if immediate {
            if opts.dry_run {
                return Ok((StatusCode::OK, old));
            }
            api.store.delete(&key, Some(revision)).await.map(|deleted| {
                let mut obj = old.clone();
                objects::set_resource_version(&mut obj, deleted.mod_revision);
                (StatusCode::OK, obj)
            })
        } else {
            if !objects::is_deleting(&old) {
                let meta = metadata_mut(&mut next);
                meta.insert(
                    "deletionTimestamp".into(),
                    Value::String(objects::now_rfc3339()),
                );
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
                if info.kind == "Namespace" {
                    next["status"]["phase"] = Value::String("Terminating".into());
                }
            } else if old["metadata"]["deletionGracePeriodSeconds"]
                .as_i64()
                .is_some_and(|current| grace < current)
            {
                // A second delete may shorten the grace period, never lengthen it.
                metadata_mut(&mut next).insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
            metadata_mut(&mut next).remove("resourceVersion");
            commit_update(api, info, &key, &old, revision, next, opts.dry_run)
                .await
                .map(|(_, obj)| (StatusCode::OK, obj))
        };
        match result {
            Err(StoreError::Conflict { .. }) if options.precondition_rv.is_none() => continue,
            other => return other.map_err(|e| store_error(info, name, e)),
        }
    }
}

pub(crate) async fn delete_collection<S: Store>(
    api: &ApiServer<S>,
    rp: &ResourcePath,
    query: &Query,
    options: &DeleteOptions,
    opts: &WriteOptions,
) -> Result<Response, ApiError> {
    let (items, revision, _) = list_query(api, rp, query).await?;
    let mut deleted = Vec::with_capacity(items.len());
    for item in items {
        let Some(name) = objects::name(&item).map(str::to_string) else {
            continue;
        };
        let mut item_rp = rp.clone();
        item_rp.namespace = objects::meta_str(&item, "namespace").map(str::to_string);
        match delete(api, &item_rp, &name, options, opts).await {
            Ok((_, obj)) => deleted.push(obj),
            // Gone meanwhile: that is what was asked.
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let body = json!({
        "kind": rp.info.list_kind(),
        "apiVersion": rp.info.api_version(),
        "metadata": {"resourceVersion": revision.to_string()},
        "items": deleted,
    });
    Ok(codec::json(StatusCode::OK, &body))
}
