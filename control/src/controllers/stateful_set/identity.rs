//! A StatefulSet pod's stable identity (`stateful_set_utils.go`): its name `<set>-<ordinal>`,
//! hostname and subdomain (the governing Service), identity labels, and its claims
//! `<template>-<set>-<ordinal>` mounted in place of the template's volumes of the same name.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;

use crate::controllers::history::REVISION_HASH_LABEL;
use crate::controllers::ownership::controller_reference;
use crate::controllers::pods;

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

pub fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", set.name_any())
}

/// The ordinal of a pod named `<set>-<ordinal>` (`getParentNameAndOrdinal`); `None` for a pod
/// that is not a member of `set`.
pub fn ordinal_of(set: &StatefulSet, pod: &Pod) -> Option<i32> {
    let name = pod.metadata.name.as_deref()?;
    let (parent, ordinal) = name.rsplit_once('-')?;
    if parent != set.name_any()
        || ordinal.is_empty()
        || !ordinal.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    ordinal.parse().ok()
}

/// The revision (ControllerRevision name) a pod was made from.
pub fn revision_of(pod: &Pod) -> Option<&str> {
    pod.labels().get(REVISION_HASH_LABEL).map(String::as_str)
}

/// The pod of `ordinal` made from `template` at `revision` (`newStatefulSetPod`).
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i32) -> Pod {
    let mut pod = pods::from_template(template, controller_reference(set), String::new());
    let name = pod_name(set, ordinal);
    pod.metadata.generate_name = None;
    pod.metadata.name = Some(name.clone());
    pod.metadata.namespace = set.namespace();
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_HASH_LABEL.into(), revision.into());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = Some(name);
    spec.subdomain = set.spec.as_ref().and_then(|s| s.service_name.clone());
    // Claims replace the template's volumes of the same name (`updateStorage`).
    let claims = claims(set, ordinal);
    let mut volumes: Vec<Volume> = set_templates(set)
        .iter()
        .zip(&claims)
        .map(|(template, claim)| Volume {
            name: template.name_any(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.name_any(),
                read_only: None,
            }),
            ..Volume::default()
        })
        .collect();
    let claimed: Vec<String> = volumes.iter().map(|v| v.name.clone()).collect();
    volumes.extend(
        spec.volumes
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|v| !claimed.contains(&v.name)),
    );
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
    pod
}

fn set_templates(set: &StatefulSet) -> &[PersistentVolumeClaim] {
    set.spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_deref())
        .unwrap_or_default()
}

/// Whether the set's pods have claims of their own.
pub fn has_claims(set: &StatefulSet) -> bool {
    !set_templates(set).is_empty()
}

/// The claims of `ordinal` (`getPersistentVolumeClaims`): each template named
/// `<template>-<set>-<ordinal>`, labelled with the set's selector. With `whenDeleted: Delete`
/// the set owns them, so they go when it does.
pub fn claims(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let selector_labels = set
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    let owned_by_set = retention(set).0 == "Delete";
    set_templates(set)
        .iter()
        .map(|template| {
            let mut claim = PersistentVolumeClaim {
                metadata: template.metadata.clone(),
                spec: template.spec.clone(),
                status: None,
            };
            claim.metadata.name = Some(format!(
                "{}-{}-{ordinal}",
                template.name_any(),
                set.name_any()
            ));
            claim.metadata.namespace = set.namespace();
            claim
                .metadata
                .labels
                .get_or_insert_with(BTreeMap::new)
                .extend(selector_labels.clone());
            if owned_by_set {
                claim.metadata.owner_references = Some(vec![owner(controller_reference(set))]);
            }
            claim
        })
        .collect()
}

/// `persistentVolumeClaimRetentionPolicy` as `(whenDeleted, whenScaled)`; `Retain` unless set.
pub fn retention(set: &StatefulSet) -> (&str, &str) {
    let policy = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    (
        policy
            .and_then(|p| p.when_deleted.as_deref())
            .unwrap_or("Retain"),
        policy
            .and_then(|p| p.when_scaled.as_deref())
            .unwrap_or("Retain"),
    )
}

/// A plain (not controlling) owner reference, as the retention policy sets on claims.
pub fn owner(reference: OwnerReference) -> OwnerReference {
    OwnerReference {
        controller: None,
        block_owner_deletion: None,
        ..reference
    }
}
