//! Defaults of the storage kinds (`SetDefaults_PersistentVolume`,
//! `SetDefaults_PersistentVolumeClaim` and `SetDefaults_StorageClass` of Kubernetes v1.33): a new
//! volume or claim starts `Pending` with a `Filesystem` volume mode; a volume is retained and a
//! class deletes by default, and a class binds at once unless it says otherwise.

use serde_json::json;

use super::{child, default};

pub fn persistent_volume(obj: &mut serde_json::Value) {
    default(child(obj, "status"), "phase", json!("Pending"));
    let spec = child(obj, "spec");
    default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
    default(spec, "volumeMode", json!("Filesystem"));
}

pub fn persistent_volume_claim(obj: &mut serde_json::Value) {
    default(child(obj, "status"), "phase", json!("Pending"));
    default(child(obj, "spec"), "volumeMode", json!("Filesystem"));
}

pub fn storage_class(obj: &mut serde_json::Value) {
    default(obj, "reclaimPolicy", json!("Delete"));
    default(obj, "volumeBindingMode", json!("Immediate"));
}
