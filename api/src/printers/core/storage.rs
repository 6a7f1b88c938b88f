//! The PersistentVolume and PersistentVolumeClaim printers: capacity, access modes (`RWO,RWX`),
//! storage class, phase (`Terminating` while deleted), after `printPersistentVolume` and
//! `printPersistentVolumeClaim` in Kubernetes' `printers.go`.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::super::format::{age, arr_at, is_deleting, name, str_at};
use super::super::{AGE, Doc, NAME, Printer, col, wide};

fn access_modes(modes: &[Value]) -> String {
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| modes.iter().any(|m| m.as_str() == Some(mode)))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The storage class of a volume or claim: the beta annotation still wins over the field.
fn storage_class(obj: &Value) -> &str {
    match obj
        .pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
        .and_then(Value::as_str)
    {
        Some(class) => class,
        None => str_at(obj, "/spec/storageClassName"),
    }
}

fn phase(obj: &Value) -> Value {
    if is_deleting(obj) {
        "Terminating".into()
    } else {
        str_at(obj, "/status/phase").into()
    }
}

fn unset_or(s: &str) -> Value {
    if s.is_empty() { "<unset>" } else { s }.into()
}

pub(super) const PERSISTENT_VOLUME: Printer = Printer::new(
    &[
        NAME,
        col(
            "Capacity",
            "string",
            Doc::Field("io.k8s.api.core.v1.PersistentVolumeSpec", "capacity"),
        ),
        col(
            "Access Modes",
            "string",
            Doc::Field("io.k8s.api.core.v1.PersistentVolumeSpec", "accessModes"),
        ),
        col(
            "Reclaim Policy",
            "string",
            Doc::Field(
                "io.k8s.api.core.v1.PersistentVolumeSpec",
                "persistentVolumeReclaimPolicy",
            ),
        ),
        col(
            "Status",
            "string",
            Doc::Field("io.k8s.api.core.v1.PersistentVolumeStatus", "phase"),
        ),
        col(
            "Claim",
            "string",
            Doc::Field("io.k8s.api.core.v1.PersistentVolumeSpec", "claimRef"),
        ),
        col(
            "StorageClass",
            "string",
            Doc::Text("StorageClass of the pv"),
        ),
        col(
            "VolumeAttributesClass",
            "string",
            Doc::Text("VolumeAttributesClass of the pv"),
        ),
        col(
            "Reason",
            "string",
            Doc::Field("io.k8s.api.core.v1.PersistentVolumeStatus", "reason"),
        ),
        AGE,
        wide(
            "VolumeMode",
            "string",
            Doc::Field("io.k8s.api.core.v1.PersistentVolumeSpec", "volumeMode"),
        ),
    ],
    pv_cells,
);

fn pv_cells(pv: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let claim = match pv.pointer("/spec/claimRef") {
        Some(r) if r.is_object() => format!("{}/{}", str_at(r, "/namespace"), str_at(r, "/name")),
        _ => String::new(),
    };
    // Quantities are printed as stored; Go would print their canonical form.
    let capacity = pv
        .pointer("/spec/capacity/storage")
        .and_then(Value::as_str)
        .unwrap_or("0");
    vec![
        name(pv),
        capacity.into(),
        access_modes(arr_at(pv, "/spec/accessModes")).into(),
        str_at(pv, "/spec/persistentVolumeReclaimPolicy").into(),
        phase(pv),
        claim.into(),
        storage_class(pv).into(),
        unset_or(str_at(pv, "/spec/volumeAttributesClassName")),
        str_at(pv, "/status/reason").into(),
        age(pv, now),
        unset_or(str_at(pv, "/spec/volumeMode")),
    ]
}

pub(super) const PERSISTENT_VOLUME_CLAIM: Printer = Printer::new(
    &[
        NAME,
        col(
            "Status",
            "string",
            Doc::Field("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "phase"),
        ),
        col(
            "Volume",
            "string",
            Doc::Field("io.k8s.api.core.v1.PersistentVolumeClaimSpec", "volumeName"),
        ),
        col(
            "Capacity",
            "string",
            Doc::Field("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "capacity"),
        ),
        col(
            "Access Modes",
            "string",
            Doc::Field(
                "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
                "accessModes",
            ),
        ),
        col(
            "StorageClass",
            "string",
            Doc::Text("StorageClass of the pvc"),
        ),
        col(
            "VolumeAttributesClass",
            "string",
            Doc::Text("VolumeAttributesClass of the pvc"),
        ),
        AGE,
        wide(
            "VolumeMode",
            "string",
            Doc::Field("io.k8s.api.core.v1.PersistentVolumeClaimSpec", "volumeMode"),
        ),
    ],
    pvc_cells,
);

fn pvc_cells(pvc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let volume = str_at(pvc, "/spec/volumeName");
    // Capacity and modes are only meaningful once the claim is bound to a volume.
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        let capacity = pvc
            .pointer("/status/capacity/storage")
            .and_then(Value::as_str)
            .unwrap_or("0");
        (
            capacity.to_string(),
            access_modes(arr_at(pvc, "/status/accessModes")),
        )
    };
    vec![
        name(pvc),
        phase(pvc),
        volume.into(),
        capacity.into(),
        modes.into(),
        storage_class(pvc).into(),
        unset_or(str_at(pvc, "/spec/volumeAttributesClassName")),
        age(pvc, now),
        unset_or(str_at(pvc, "/spec/volumeMode")),
    ]
}
