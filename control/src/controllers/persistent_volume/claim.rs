//! The claim reconciler: binds an unbound claim to the best fitting volume, waits for the
//! scheduler's node or provisions one, finishes a binding half made, reports a lost volume, and
//! lets a deleted claim go once no pod uses it.

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use serde_json::{Value, json};
use skiff_api::storage::{
    BIND_COMPLETED_ANNOTATION, BOUND_BY_CONTROLLER_ANNOTATION, LOCAL_PATH_PROVISIONER,
    PROVISIONED_BY_ANNOTATION, PVC_PROTECTION_FINALIZER, SELECTED_NODE_ANNOTATION,
    STORAGE_PROVISIONER_ANNOTATION,
};
use std::sync::Arc;

use super::super::local_path;
use super::super::pods;
use super::super::volume_matching::{
    best_volume, claim_class, claim_volume_name, pod_claim_names, reserved_for, volume_fits_claim,
    volume_node_terms, volume_phase,
};
use super::{Context, PersistentVolumeError};
use crate::scheduler::cache::NodeInfo;
use crate::scheduler::filters::any_term_matches;

pub(super) async fn reconcile_claim(
    claim: Arc<PersistentVolumeClaim>,
    ctx: Arc<Context>,
) -> Result<Action, PersistentVolumeError> {
    if claim.metadata.deletion_timestamp.is_some() {
        ctx.forget(&claim);
        release_protection(&ctx, &claim).await?;
        return Ok(Action::await_change());
    }
    match claim_volume_name(&claim) {
        Some(volume) => sync_named_claim(&ctx, &claim, volume).await?,
        None => sync_unbound_claim(&ctx, &claim).await?,
    }
    Ok(Action::await_change())
}

/// A claim that names its volume: finishes the binding, or reports the volume lost.
async fn sync_named_claim(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    volume: &str,
) -> Result<(), PersistentVolumeError> {
    let Some(pv) = ctx.volumes.get(&ObjectRef::new(volume)) else {
        let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
        if phase == Some("Bound") {
            patch_claim_status(ctx, claim, json!({"phase": "Lost"})).await?;
            ctx.recorder.warning(
                claim,
                "ClaimLost",
                "Bound claim has lost its PersistentVolume. Data on the volume is lost!".into(),
            );
        }
        // Otherwise its author named a volume that does not exist yet.
        return Ok(());
    };
    let uid_bound = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .and_then(|r| r.uid.as_deref())
        .is_some_and(|uid| Some(uid) == claim.uid().as_deref());
    if uid_bound || volume_fits_claim(&pv, claim) {
        return bind(ctx, &pv, claim).await;
    }
    ctx.tell(
        claim,
        true,
        "FailedBinding",
        format!("volume \"{volume}\" already bound to a different claim."),
    );
    Ok(())
}

async fn sync_unbound_claim(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
) -> Result<(), PersistentVolumeError> {
    let class_name = claim_class(claim);
    let class = if class_name.is_empty() {
        None
    } else {
        Api::<StorageClass>::all(ctx.client.clone())
            .get_opt(class_name)
            .await?
    };
    let waits = class
        .as_ref()
        .is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"));
    let selected = claim
        .annotations()
        .get(SELECTED_NODE_ANNOTATION)
        .filter(|n| !n.is_empty());
    if waits && selected.is_none() {
        ctx.tell(
            claim,
            false,
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding".into(),
        );
        return Ok(());
    }
    // A waiting claim binds only a volume its selected node can reach.
    let node = match selected.filter(|_| waits) {
        Some(name) => Some(
            Api::<Node>::all(ctx.client.clone())
                .get_opt(name)
                .await?
                .map(|n| NodeInfo::from_node(&n)),
        ),
        None => None,
    };
    let volumes = ctx.volumes.state();
    let reachable = |pv: &PersistentVolume| match (&node, volume_node_terms(pv)) {
        (None, _) | (_, None) => true,
        (Some(node), Some(terms)) => node
            .as_ref()
            .is_some_and(|node| any_term_matches(terms, node)),
    };
    if let Some(pv) = best_volume(claim, volumes.iter().map(AsRef::as_ref), reachable) {
        return bind(ctx, pv, claim).await;
    }
    match class {
        None if class_name.is_empty() => ctx.tell(
            claim,
            false,
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set".into(),
        ),
        None => ctx.tell(
            claim,
            true,
            "ProvisioningFailed",
            format!("storageclass.storage.k8s.io \"{class_name}\" not found"),
        ),
        Some(class) if class.provisioner == LOCAL_PATH_PROVISIONER => {
            provision(ctx, claim, &class).await?;
        }
        Some(class) => ctx.tell(
            claim,
            false,
            "ExternalProvisioning",
            format!(
                "Waiting for a volume to be created either by the external provisioner '{}' or \
                 manually by the system administrator. If volume creation is delayed, please \
                 verify that the provisioner is running and correctly registered.",
                class.provisioner
            ),
        ),
    }
    Ok(())
}

async fn provision(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
) -> Result<(), PersistentVolumeError> {
    let namespaced = format!(
        "{}/{}",
        claim.namespace().unwrap_or_default(),
        claim.name_any()
    );
    ctx.provisioner.normal(
        claim,
        "Provisioning",
        format!("External provisioner is provisioning volume for claim \"{namespaced}\""),
    );
    let pv = match local_path::provision(&ctx.client, claim, class).await {
        Ok(pv) => pv,
        Err(e) => {
            ctx.provisioner.warning(
                claim,
                "ProvisioningFailed",
                format!(
                    "failed to provision volume with StorageClass \"{}\": {e}",
                    class.name_any()
                ),
            );
            return Err(e.into());
        }
    };
    ctx.provisioner.normal(
        claim,
        "ProvisioningSucceeded",
        format!("Successfully provisioned volume {}", pv.name_any()),
    );
    bind(ctx, &pv, claim).await
}

/// Binds `pv` and `claim`, writing only what is not yet so: the volume's reservation (with its
/// resourceVersion as a precondition, so two claims never both take it) and phase, then the
/// claim's volume name, annotations and status.
async fn bind(
    ctx: &Context,
    pv: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> Result<(), PersistentVolumeError> {
    let name = pv.name_any();
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let reservation = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    if reservation.and_then(|r| r.uid.as_deref()) != claim.uid().as_deref() {
        let mut patch = json!({
            "metadata": {"resourceVersion": pv.resource_version()},
            "spec": {"claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": claim.namespace(), "name": claim.name_any(), "uid": claim.uid(),
                "resourceVersion": claim.resource_version()}},
        });
        // A volume its author reserved for the claim was not bound by the controller.
        if !reserved_for(pv, claim) {
            patch["metadata"]["annotations"] = json!({BOUND_BY_CONTROLLER_ANNOTATION: "yes"});
        }
        volumes
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    if volume_phase(pv) != "Bound" {
        let status = json!({"status": {"phase": "Bound"}});
        volumes
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
    }
    let annotations = claim.annotations();
    if claim_volume_name(claim) != Some(name.as_str())
        || annotations
            .get(BIND_COMPLETED_ANNOTATION)
            .map(String::as_str)
            != Some("yes")
    {
        let mut added = json!({BIND_COMPLETED_ANNOTATION: "yes"});
        if claim_volume_name(claim).is_none() {
            added[BOUND_BY_CONTROLLER_ANNOTATION] = json!("yes");
        }
        if let Some(provisioner) = pv.annotations().get(PROVISIONED_BY_ANNOTATION) {
            added[STORAGE_PROVISIONER_ANNOTATION] = json!(provisioner);
        }
        let patch = json!({"metadata": {"annotations": added}, "spec": {"volumeName": name}});
        Api::<PersistentVolumeClaim>::namespaced(
            ctx.client.clone(),
            &claim.namespace().unwrap_or_default(),
        )
        .patch(
            &claim.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    let spec = pv.spec.clone().unwrap_or_default();
    let status = json!({"phase": "Bound", "accessModes": spec.access_modes,
                        "capacity": spec.capacity});
    let current = claim
        .status
        .as_ref()
        .map(|s| json!({"phase": s.phase, "accessModes": s.access_modes, "capacity": s.capacity}));
    if current.as_ref() != Some(&status) {
        patch_claim_status(ctx, claim, status).await?;
    }
    ctx.forget(claim);
    Ok(())
}

async fn patch_claim_status(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    status: Value,
) -> Result<(), kube::Error> {
    Api::<PersistentVolumeClaim>::namespaced(
        ctx.client.clone(),
        &claim.namespace().unwrap_or_default(),
    )
    .patch_status(
        &claim.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .map(drop)
}

/// Whether a scheduled pod that has not finished mounts the claim (the pvc-protection
/// controller's `podUsesPVC`).
fn uses(pod: &Pod, claim: &PersistentVolumeClaim) -> bool {
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    scheduled
        && !pods::is_terminal(pod)
        && pod.namespace() == claim.namespace()
        && pod_claim_names(pod).any(|n| n == claim.name_any())
}

/// Removes the pvc-protection finalizer of a deleted claim no pod uses, asking the API rather
/// than the cache before letting go, as the controller does: a pod just created must not lose
/// its claim.
async fn release_protection(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
) -> Result<(), PersistentVolumeError> {
    let finalizers = claim.finalizers();
    if !finalizers.iter().any(|f| f == PVC_PROTECTION_FINALIZER)
        || ctx.pods.state().iter().any(|p| uses(p, claim))
    {
        return Ok(());
    }
    let namespace = claim.namespace().unwrap_or_default();
    let live = Api::<Pod>::namespaced(ctx.client.clone(), &namespace)
        .list(&ListParams::default())
        .await?;
    if live.items.iter().any(|p| uses(p, claim)) {
        return Ok(());
    }
    let kept: Vec<&String> = finalizers
        .iter()
        .filter(|f| *f != PVC_PROTECTION_FINALIZER)
        .collect();
    let patch =
        json!({"metadata": {"finalizers": kept, "resourceVersion": claim.resource_version()}});
    match Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &namespace)
        .patch(
            &claim.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other.map(drop).map_err(Into::into),
    }
}
