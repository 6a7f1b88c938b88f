//! `persistentVolumeClaim` volumes: waiting for the binding, the bound volume's path, readOnly.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use k8s_openapi::api::core::v1::{Container, PersistentVolume, PersistentVolumeClaim};
use serde_json::json;

use super::{objects, prepare};
use crate::volumes::*;

fn claim(status: serde_json::Value, volume: &str) -> PersistentVolumeClaim {
    serde_json::from_value(json!({"metadata": {"name": "data", "namespace": "default"},
        "spec": {"volumeName": volume}, "status": status}))
    .expect("claim")
}

fn local_path_volume(path: &std::path::Path) -> PersistentVolume {
    serde_json::from_value(json!({"metadata": {"name": "pvc-1",
            "annotations": {"pv.kubernetes.io/provisioned-by": "rancher.io/local-path"}},
        "spec": {"hostPath": {"path": path, "type": "DirectoryOrCreate"}}}))
    .expect("pv")
}

#[tokio::test]
async fn a_claim_mounts_once_bound_and_its_local_path_dir_is_made_writable_by_all() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let objects = objects();
    let spec = json!([{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]);
    let err = prepare(tmp.path(), spec.clone(), &objects)
        .await
        .expect_err("no claim");
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"d\" : persistentvolumeclaim \"data\" not found"
    );
    objects.put_claim(claim(json!({"phase": "Pending"}), ""));
    let err = prepare(tmp.path(), spec.clone(), &objects)
        .await
        .expect_err("unbound");
    assert!(
        err.to_string().ends_with(
            "PVC default/data has non-bound phase (\"Pending\") or empty pvc.Spec.VolumeName (\"\")"
        ),
        "{err}"
    );
    objects.put_claim(claim(json!({"phase": "Bound"}), "pvc-1"));
    let err = prepare(tmp.path(), spec.clone(), &objects)
        .await
        .expect_err("no volume");
    assert!(
        err.to_string()
            .ends_with("persistentvolume \"pvc-1\" not found"),
        "{err}"
    );
    let dir = tmp.path().join("storage/pvc-1_default_data");
    objects.put_volume(local_path_volume(&dir));
    let volumes = prepare(&tmp.path().join("pod"), spec, &objects)
        .await
        .expect("bound");
    let d = volumes.get("d").expect("d");
    assert_eq!(d.path, dir);
    assert_eq!(
        d.kind,
        VolumeKind::PersistentVolumeClaim { read_only: false }
    );
    let mode = fs::metadata(&dir).expect("made").permissions().mode() & 0o777;
    assert_eq!(mode, 0o777);
}

#[tokio::test]
async fn a_read_only_claim_is_mounted_read_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let objects = objects();
    objects.put_claim(claim(json!({"phase": "Bound"}), "pvc-1"));
    objects.put_volume(local_path_volume(&tmp.path().join("v")));
    let spec =
        json!([{"name": "d", "persistentVolumeClaim": {"claimName": "data", "readOnly": true}}]);
    let volumes = prepare(&tmp.path().join("pod"), spec, &objects)
        .await
        .expect("bound");
    let container: Container = serde_json::from_value(json!({"name": "c",
        "volumeMounts": [{"name": "d", "mountPath": "/data"}]}))
    .expect("container");
    let mounts = container_mounts(&container, &volumes, &[]).expect("mounts");
    assert!(mounts[0].read_only);
    assert_eq!(mounts[0].host_path, tmp.path().join("v"));
}
