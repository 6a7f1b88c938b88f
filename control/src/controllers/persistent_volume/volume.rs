//! The volume reconciler: a volume is `Available` while free, `Bound` while its claim is, and
//! `Released` once the claim is gone, then reclaimed by its policy.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use serde_json::json;
use skiff_api::storage::{
    BOUND_BY_CONTROLLER_ANNOTATION, LOCAL_PATH_PROVISIONER, PROVISIONED_BY_ANNOTATION,
};

use super::super::volume_matching::{claim_volume_name, volume_phase};
use super::{Context, PersistentVolumeError};

pub(super) async fn reconcile_volume(
    pv: Arc<PersistentVolume>,
    ctx: Arc<Context>,
) -> Result<Action, PersistentVolumeError> {
    if pv.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let reservation = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    let Some((r, uid)) = reservation.and_then(|r| Some((r, r.uid.as_deref()?))) else {
        // Free, or reserved by its author for a claim that will bind it.
        set_volume_phase(&ctx, &pv, "Available").await?;
        return Ok(Action::await_change());
    };
    let namespace = r.namespace.clone().unwrap_or_default();
    let name = r.name.clone().unwrap_or_default();
    let cached = ctx.claims.get(&ObjectRef::new(&name).within(&namespace));
    // The cache may not have seen a claim created a moment ago: ask before releasing.
    let claim = match cached.filter(|c| c.uid().as_deref() == Some(uid)) {
        Some(claim) => Some(claim),
        None => Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &namespace)
            .get_opt(&name)
            .await?
            .filter(|c| c.uid().as_deref() == Some(uid))
            .map(Arc::new),
    };
    match claim {
        // Bound, or being bound: the claim's reconcile writes the rest.
        Some(claim) if claim_volume_name(&claim).is_none_or(|v| v == pv.name_any()) => {
            if claim_volume_name(&claim).is_some() {
                set_volume_phase(&ctx, &pv, "Bound").await?;
            }
        }
        // Its claim bound another volume; a reservation the controller made is undone.
        Some(_) => {
            if pv
                .annotations()
                .contains_key(BOUND_BY_CONTROLLER_ANNOTATION)
            {
                let patch = json!({"spec": {"claimRef": null}});
                Api::<PersistentVolume>::all(ctx.client.clone())
                    .patch(
                        &pv.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?;
            }
        }
        None => release(&ctx, &pv).await?,
    }
    Ok(Action::await_change())
}

/// The volume's claim is gone: `Released`, then reclaimed by its policy.
async fn release(ctx: &Context, pv: &PersistentVolume) -> Result<(), PersistentVolumeError> {
    if matches!(volume_phase(pv), "Released" | "Failed") {
        return Ok(());
    }
    let policy = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain");
    let ours = pv
        .annotations()
        .get(PROVISIONED_BY_ANNOTATION)
        .map(String::as_str)
        == Some(LOCAL_PATH_PROVISIONER);
    if policy == "Retain" || ours {
        // A local-path volume's node removes its directory, then the volume.
        return set_volume_phase(ctx, pv, "Released").await;
    }
    let message = format!(
        "error getting deleter volume plugin for volume \"{}\": no deletable volume plugin matched",
        pv.name_any()
    );
    ctx.recorder
        .warning(pv, "VolumeFailedDelete", message.clone());
    let status = json!({"status": {"phase": "Failed", "message": message}});
    Api::<PersistentVolume>::all(ctx.client.clone())
        .patch_status(
            &pv.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await?;
    Ok(())
}

async fn set_volume_phase(
    ctx: &Context,
    pv: &PersistentVolume,
    phase: &str,
) -> Result<(), PersistentVolumeError> {
    if volume_phase(pv) == phase {
        return Ok(());
    }
    let status = json!({"status": {"phase": phase}});
    match Api::<PersistentVolume>::all(ctx.client.clone())
        .patch_status(
            &pv.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other.map(drop).map_err(Into::into),
    }
}
