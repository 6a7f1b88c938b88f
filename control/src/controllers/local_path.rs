//! The built-in local-path provisioner, K3s's `rancher.io/local-path` (`provisioner.go`): for a
//! claim of a class it provisions, on the node the scheduler selected
//! (`volume.kubernetes.io/selected-node`), it creates the PersistentVolume `pvc-<claim uid>`: a
//! `hostPath` (`DirectoryOrCreate`) under the storage directory the node publishes on its Node,
//! pinned to that node by required node affinity, with the claim's size and access modes and
//! the class's reclaim policy, already reserved for the claim (`claimRef`).
//!
//! Only the API object is made here: the control plane may run on another machine. The node
//! agent creates the directory when a pod mounts it and removes it once the volume is released
//! ([`skiff_api::storage`] describes the division); K3s's helper pods are not needed.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec,
    VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};
use skiff_api::storage::{
    LOCAL_PATH_PROVISIONER, PROVISIONED_BY_ANNOTATION, SELECTED_NODE_ANNOTATION,
    STORAGE_DIR_ANNOTATION, volume_dir,
};

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// K3s's words for a claim no pod has placed yet (its class binds immediately).
    #[error("configuration error, no node was specified")]
    NoNode,
    #[error("node \"{0}\" not found")]
    NodeNotFound(String),
    #[error("node \"{node}\" publishes no local-path storage directory ({STORAGE_DIR_ANNOTATION})")]
    NoStorageDir { node: String },
    #[error("creating the volume: {0}")]
    Api(#[from] kube::Error),
}

/// The name of the volume provisioned for a claim.
pub fn volume_name(claim: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", claim.uid().unwrap_or_default())
}

/// The volume for `claim` of `class` in `storage_dir` on `node`.
pub fn volume(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
    storage_dir: &Path,
) -> PersistentVolume {
    let name = volume_name(claim);
    let namespace = claim.namespace().unwrap_or_default();
    let path = volume_dir(storage_dir, &name, &namespace, &claim.name_any());
    let spec = claim.spec.clone().unwrap_or_default();
    let capacity = spec
        .resources
        .and_then(|r| r.requests)
        .and_then(|r| r.get("storage").cloned())
        .map(|q| BTreeMap::from([("storage".to_string(), q)]));
    let hostname = NodeSelectorRequirement {
        key: "kubernetes.io/hostname".into(),
        operator: "In".into(),
        values: Some(vec![node.to_string()]),
    };
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name),
            annotations: Some(BTreeMap::from([(
                PROVISIONED_BY_ANNOTATION.to_string(),
                LOCAL_PATH_PROVISIONER.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: spec.access_modes,
            capacity,
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(namespace),
                name: Some(claim.name_any()),
                uid: claim.uid(),
                resource_version: claim.resource_version(),
                field_path: None,
            }),
            host_path: Some(HostPathVolumeSource {
                path: path.to_string_lossy().into_owned(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![hostname]),
                        match_fields: None,
                    }],
                }),
            }),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            storage_class_name: Some(class.name_any()),
            volume_mode: spec.volume_mode,
            mount_options: class.mount_options.clone(),
            ..PersistentVolumeSpec::default()
        }),
        status: None,
    }
}

/// Creates the volume of `claim` on its selected node, or returns the one an earlier attempt
/// created.
pub async fn provision(
    client: &Client,
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
) -> Result<PersistentVolume, ProvisionError> {
    let node = claim
        .annotations()
        .get(SELECTED_NODE_ANNOTATION)
        .filter(|n| !n.is_empty())
        .ok_or(ProvisionError::NoNode)?;
    let found = Api::<Node>::all(client.clone())
        .get_opt(node)
        .await?
        .ok_or_else(|| ProvisionError::NodeNotFound(node.clone()))?;
    let storage_dir = found
        .annotations()
        .get(STORAGE_DIR_ANNOTATION)
        .filter(|d| Path::new(d).is_absolute())
        .ok_or_else(|| ProvisionError::NoStorageDir { node: node.clone() })?;
    let pv = volume(claim, class, node, Path::new(storage_dir));
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    match volumes.create(&PostParams::default(), &pv).await {
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(volumes.get(&pv.name_any()).await?),
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_volume_is_a_host_path_on_the_selected_node_reserved_for_the_claim() {
        let claim: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "web", "uid": "1234", "resourceVersion": "7"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                     "resources": {"requests": {"storage": "128Mi"}}, "volumeMode": "Filesystem"}}))
        .expect("claim");
        let class: StorageClass = serde_json::from_value(json!({
            "metadata": {"name": "local-path"}, "provisioner": "rancher.io/local-path",
            "reclaimPolicy": "Retain", "volumeBindingMode": "WaitForFirstConsumer"}))
        .expect("class");
        let pv = volume(
            &claim,
            &class,
            "node-a",
            Path::new("/var/lib/skiff/storage"),
        );
        assert_eq!(
            serde_json::to_value(&pv).expect("json"),
            json!({
                "apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": "pvc-1234",
                             "annotations": {"pv.kubernetes.io/provisioned-by": "rancher.io/local-path"}},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "capacity": {"storage": "128Mi"},
                    "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                 "namespace": "web", "name": "data", "uid": "1234",
                                 "resourceVersion": "7"},
                    "hostPath": {"path": "/var/lib/skiff/storage/pvc-1234_web_data",
                                 "type": "DirectoryOrCreate"},
                    "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-a"]}]}]}},
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": "local-path",
                    "volumeMode": "Filesystem",
                },
            })
        );
    }
}
