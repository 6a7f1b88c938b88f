//! The `scale` subresource: an `autoscaling/v1` Scale view of a workload's replicas, as
//! `kubectl scale` and autoscalers read and write it.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use skiff_api::ApiError;
use skiff_api::patch::{self, PatchType};
use skiff_api::selectors::LabelSelector;

use super::WriteOptions;
use super::write::read_modify_write;
use crate::apiserver::ApiServer;
use crate::apiserver::codec;
use crate::apiserver::objects::{self, metadata_mut};
use crate::apiserver::path::ResourcePath;
use crate::store::Store;

/// The Scale of a workload object.
fn scale_of(obj: &Value) -> Value {
    let meta = objects::metadata(obj).cloned().unwrap_or_default();
    let mut scale_meta = serde_json::Map::new();
    for field in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta.get(field) {
            scale_meta.insert(field.into(), v.clone());
        }
    }
    // ReplicationControllers' selector is a plain map; the others' a LabelSelector.
    let selector = match obj["spec"]["selector"]
        .get("matchLabels")
        .or(obj["spec"]["selector"].get("matchExpressions"))
    {
        Some(_) => LabelSelector::from_object(&obj["spec"]["selector"], "spec.selector")
            .map(|s| s.to_string())
            .unwrap_or_default(),
        None => LabelSelector::from_object(
            &json!({"matchLabels": obj["spec"]["selector"]}),
            "spec.selector",
        )
        .map(|s| s.to_string())
        .unwrap_or_default(),
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_meta,
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

pub(crate) async fn get<S: Store>(
    api: &ApiServer<S>,
    rp: &ResourcePath,
    name: &str,
) -> Result<Response, ApiError> {
    Ok(codec::json(
        StatusCode::OK,
        &scale_of(&super::get(api, rp, name).await?),
    ))
}

/// Applies a new Scale to the workload: only `spec.replicas` changes.
async fn write_replicas<S: Store, F>(
    api: &ApiServer<S>,
    rp: &ResourcePath,
    name: &str,
    opts: &WriteOptions,
    mut next_scale: F,
) -> Result<Response, ApiError>
where
    F: FnMut(&Value) -> Result<Value, ApiError>,
{
    let info = rp.info;
    let (_, obj) = read_modify_write(api, rp, name, opts.dry_run, |old| {
        let scale = next_scale(&scale_of(old))?;
        let replicas = scale["spec"]["replicas"].as_i64().unwrap_or(0);
        if replicas < 0 {
            let scale_ref = skiff_api::ObjectRef {
                group: "autoscaling".into(),
                resource: info.plural.to_string(),
                kind: "Scale".into(),
                name: name.into(),
            };
            return Err(ApiError::invalid(
                &scale_ref,
                vec![skiff_api::FieldError::invalid(
                    "spec.replicas",
                    &json!(replicas),
                    "must be greater than or equal to 0",
                )],
            ));
        }
        let mut next = old.clone();
        next["spec"]["replicas"] = json!(replicas);
        if objects::tracks_generation(info) && next != *old {
            let generation = objects::metadata(old)
                .and_then(|m| m.get("generation"))
                .and_then(Value::as_i64)
                .unwrap_or(0)
                + 1;
            metadata_mut(&mut next).insert("generation".into(), json!(generation));
        }
        // A resourceVersion in the Scale is a precondition on the workload.
        match objects::meta_str(&scale, "resourceVersion").filter(|s| !s.is_empty()) {
            Some(rv) => metadata_mut(&mut next).insert("resourceVersion".into(), json!(rv)),
            None => metadata_mut(&mut next).remove("resourceVersion"),
        };
        patch::record_update(
            info,
            Some(old),
            &mut next,
            &opts.field_manager,
            Some("scale"),
            &objects::now_rfc3339(),
        );
        Ok(next)
    })
    .await?;
    Ok(codec::json(StatusCode::OK, &scale_of(&obj)))
}

pub(crate) async fn replace<S: Store>(
    api: &ApiServer<S>,
    rp: &ResourcePath,
    name: &str,
    opts: &WriteOptions,
    body: Value,
) -> Result<Response, ApiError> {
    write_replicas(api, rp, name, opts, |_| Ok(body.clone())).await
}

pub(crate) async fn patch<S: Store>(
    api: &ApiServer<S>,
    rp: &ResourcePath,
    name: &str,
    opts: &WriteOptions,
    content_type: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    let ty = PatchType::from_content_type(content_type)
        .ok_or_else(|| ApiError::unsupported_media_type(content_type))?;
    // A Scale has no lists, so a strategic merge patch of it is a merge patch.
    let ty = if ty == PatchType::StrategicMerge {
        PatchType::Merge
    } else {
        ty
    };
    write_replicas(api, rp, name, opts, |scale| {
        patch::patch(rp.info, scale, body, ty)
    })
    .await
}
