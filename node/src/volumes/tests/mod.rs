use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::*;
use crate::objects::fake::FakeObjects;

fn facts() -> PodFacts {
    PodFacts {
        node_name: "node-a".into(),
        node_allocatable_cpu_millis: 2000,
        node_allocatable_memory_bytes: 1 << 30,
        ..Default::default()
    }
}

fn pod(volumes: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "u-1",
            "labels": {"app": "web"}, "annotations": {"build": "42"}},
        "spec": {
            "containers": [{"name": "app", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}}],
            "volumes": volumes,
        },
    }))
    .expect("pod fixture")
}

fn objects() -> FakeObjects {
    let objects = FakeObjects::default().secret(
        "default",
        "creds",
        &[("password", b"s3cret"), ("key.bin", &[0, 159, 146, 150])],
    );
    objects.put_config_map(
        "default",
        "cfg",
        &[("app.conf", "level=debug"), ("other", "o")],
        &[("blob", &[0xff, 0x00])],
    );
    objects
}

async fn prepare(
    pod_dir: &Path,
    volumes: serde_json::Value,
    objects: &FakeObjects,
) -> Result<PodVolumes, VolumeError> {
    prepare_volumes(&pod(volumes), pod_dir, objects, &facts()).await
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn empty_dir_is_a_writable_dir_that_survives_a_second_prepare() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let spec = json!([{"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                      {"name": "plain", "emptyDir": {}}]);
    let vols = prepare(tmp.path(), spec.clone(), &objects())
        .await
        .expect("prepare");
    let scratch = vols.get("scratch").expect("scratch");
    assert_eq!(
        scratch.path,
        tmp.path().join("volumes/kubernetes.io~empty-dir/scratch")
    );
    assert_eq!(
        scratch.kind,
        VolumeKind::EmptyDir(EmptyDirSpec {
            medium: EmptyDirMedium::Memory,
            size_limit_bytes: Some(64 << 20)
        })
    );
    assert_eq!(mode(&scratch.path), 0o777);
    let mounted = |dir: &Path| {
        let info = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        info.lines().any(|l| {
            l.split(' ').nth(4) == Some(dir.to_str().expect("utf-8"))
                && l.contains(" - tmpfs ")
                && l.contains("size=65536k")
        })
    };
    let scratch_dir = scratch.path.canonicalize().expect("canonical");
    let mounted_now = mounted(&scratch_dir);
    fs::write(scratch.path.join("state"), "kept").expect("write");
    prepare(tmp.path(), spec, &objects())
        .await
        .expect("second prepare");
    let kept = read(&scratch.path.join("state"));
    remove_volumes(tmp.path()).expect("remove");
    assert!(mounted_now, "medium Memory is a tmpfs of sizeLimit");
    assert_eq!(kept, "kept");
    assert!(!mounted(&scratch_dir), "removal unmounts it");
    assert!(!tmp.path().join("volumes").exists());
}

#[tokio::test]
async fn projected_volumes_merge_their_sources_into_one_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let vols = prepare(
        tmp.path(),
        json!([{"name": "all", "projected": {"defaultMode": 0o400, "sources": [
            {"configMap": {"name": "cfg", "items": [{"key": "app.conf", "path": "conf/app.conf"}]}},
            {"secret": {"name": "creds"}},
            {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}
        ]}}]),
        &objects(),
    )
    .await
    .expect("prepare");
    let all = vols.get("all").expect("all");
    assert_eq!(
        all.path,
        tmp.path().join("volumes/kubernetes.io~projected/all")
    );
    assert!(all.kind.always_read_only());
    assert_eq!(read(&all.path.join("conf/app.conf")), "level=debug");
    assert_eq!(read(&all.path.join("password")), "s3cret");
    assert_eq!(read(&all.path.join("labels")), "app=\"web\"");
    assert_eq!(mode(&all.path.join("password")), 0o400);

    let conflict = prepare(
        tmp.path(),
        json!([{"name": "twice", "projected": {"sources": [
            {"configMap": {"name": "cfg"}}, {"configMap": {"name": "cfg"}}
        ]}}]),
        &objects(),
    )
    .await
    .expect_err("conflict");
    assert_eq!(
        conflict.to_string(),
        "MountVolume.SetUp failed for volume \"twice\" : projected sources conflict: more than one writes \"app.conf\""
    );
}

#[tokio::test]
async fn config_map_volume_projects_text_and_binary_keys_with_modes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let vols = prepare(
        tmp.path(),
        json!([{"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 0o440}}]),
        &objects(),
    )
    .await
    .expect("prepare");
    let dir = &vols.get("cfg").expect("cfg").path;
    assert_eq!(dir, &tmp.path().join("volumes/kubernetes.io~configmap/cfg"));
    assert_eq!(read(&dir.join("app.conf")), "level=debug");
    assert_eq!(fs::read(dir.join("blob")).expect("blob"), [0xff, 0x00]);
    assert_eq!(mode(&dir.join("app.conf")), 0o440);
    assert_eq!(
        fs::read_link(dir.join("app.conf")).expect("symlink"),
        Path::new("..data/app.conf")
    );
    assert!(
        fs::symlink_metadata(dir.join("..data"))
            .expect("..data")
            .file_type()
            .is_symlink()
    );
}

#[tokio::test]
async fn items_map_keys_to_paths_with_their_own_mode() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let spec = json!([
        {"name": "cfg", "configMap": {"name": "cfg", "items": [
            {"key": "app.conf", "path": "conf/app.conf", "mode": 0o400}]}},
        {"name": "sec", "secret": {"secretName": "creds", "defaultMode": 0o600, "items": [
            {"key": "password", "path": "pw"}]}},
    ]);
    let vols = prepare(tmp.path(), spec, &objects())
        .await
        .expect("prepare");
    let cfg = &vols.get("cfg").expect("cfg").path;
    assert_eq!(read(&cfg.join("conf/app.conf")), "level=debug");
    assert_eq!(mode(&cfg.join("conf/app.conf")), 0o400);
    assert!(!cfg.join("other").exists(), "only listed items");
    let sec = &vols.get("sec").expect("sec").path;
    assert_eq!(sec, &tmp.path().join("volumes/kubernetes.io~secret/sec"));
    assert_eq!(read(&sec.join("pw")), "s3cret");
    assert_eq!(mode(&sec.join("pw")), 0o600);
}

#[tokio::test]
async fn secret_volume_keeps_binary_data_and_defaults_to_0644() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let vols = prepare(
        tmp.path(),
        json!([{"name": "sec", "secret": {"secretName": "creds"}}]),
        &objects(),
    )
    .await
    .expect("prepare");
    let sec = &vols.get("sec").expect("sec").path;
    assert_eq!(
        fs::read(sec.join("key.bin")).expect("bin"),
        [0, 159, 146, 150]
    );
    assert_eq!(mode(&sec.join("password")), 0o644);
}

#[tokio::test]
async fn missing_objects_and_keys_fail_unless_optional() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let objects = objects();
    let cases = [
        (
            json!({"name": "cfg", "configMap": {"name": "x"}}),
            "MountVolume.SetUp failed for volume \"cfg\" : configmap \"x\" not found",
        ),
        (
            json!({"name": "sec", "secret": {"secretName": "x"}}),
            "MountVolume.SetUp failed for volume \"sec\" : secret \"x\" not found",
        ),
        (
            json!({"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "nope", "path": "p"}]}}),
            "MountVolume.SetUp failed for volume \"cfg\" : configmap references non-existent config key: nope",
        ),
        (
            json!({"name": "sec", "secret": {"secretName": "creds", "items": [{"key": "nope", "path": "p"}]}}),
            "MountVolume.SetUp failed for volume \"sec\" : references non-existent secret key: nope",
        ),
        (
            json!({"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "other", "path": "../escape"}]}}),
            "MountVolume.SetUp failed for volume \"cfg\" : invalid path: must not contain '..': ../escape",
        ),
    ];
    for (volume, message) in cases {
        let err = prepare(tmp.path(), json!([volume]), &objects)
            .await
            .expect_err(message);
        assert_eq!(err.to_string(), message);
    }
    let vols = prepare(
        tmp.path(),
        json!([
            {"name": "cfg", "configMap": {"name": "x", "optional": true}},
            {"name": "sec", "secret": {"secretName": "creds", "optional": true, "items": [
                {"key": "nope", "path": "p"}, {"key": "password", "path": "pw"}]}},
        ]),
        &objects,
    )
    .await
    .expect("optional");
    let cfg = &vols.get("cfg").expect("cfg").path;
    assert_eq!(
        fs::read_dir(cfg).expect("dir").count(),
        2,
        "only ..data and its target"
    );
    assert_eq!(
        read(&vols.get("sec").expect("sec").path.join("pw")),
        "s3cret"
    );
}

#[tokio::test]
async fn second_prepare_swaps_changed_content_atomically() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let objects = objects();
    let spec = json!([{"name": "cfg", "configMap": {"name": "cfg"}}]);
    let vols = prepare(tmp.path(), spec.clone(), &objects)
        .await
        .expect("first");
    let dir = vols.get("cfg").expect("cfg").path.clone();
    let first = fs::read_link(dir.join("..data")).expect("..data");

    prepare(tmp.path(), spec.clone(), &objects)
        .await
        .expect("unchanged");
    assert_eq!(
        fs::read_link(dir.join("..data")).expect("..data"),
        first,
        "no change, no swap"
    );

    objects.put_config_map(
        "default",
        "cfg",
        &[("app.conf", "level=info"), ("new", "n")],
        &[],
    );
    prepare(tmp.path(), spec, &objects).await.expect("changed");
    let second = fs::read_link(dir.join("..data")).expect("..data");
    assert_ne!(first, second);
    assert!(!dir.join(&first).exists(), "old data removed");
    assert_eq!(read(&dir.join("app.conf")), "level=info");
    assert_eq!(read(&dir.join("new")), "n");
    assert!(
        fs::symlink_metadata(dir.join("other")).is_err(),
        "dropped key's symlink removed"
    );
    assert!(fs::symlink_metadata(dir.join("blob")).is_err());
}

#[tokio::test]
async fn downward_api_volume_writes_fields_and_resources() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let spec = json!([{"name": "info", "downwardAPI": {"items": [
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}},
        {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}},
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}, "mode": 0o400},
        {"path": "cpu", "resourceFieldRef": {"containerName": "app", "resource": "limits.cpu", "divisor": "1m"}},
        {"path": "mem", "resourceFieldRef": {"containerName": "app", "resource": "limits.memory", "divisor": "1Mi"}},
    ]}}]);
    let vols = prepare(tmp.path(), spec, &objects())
        .await
        .expect("prepare");
    let dir = &vols.get("info").expect("info").path;
    assert_eq!(
        dir,
        &tmp.path().join("volumes/kubernetes.io~downward-api/info")
    );
    assert_eq!(read(&dir.join("name")), "web");
    assert_eq!(read(&dir.join("namespace")), "default");
    assert_eq!(read(&dir.join("uid")), "u-1");
    assert_eq!(read(&dir.join("labels")), "app=\"web\"");
    assert_eq!(read(&dir.join("annotations")), "build=\"42\"");
    assert_eq!(mode(&dir.join("annotations")), 0o400);
    assert_eq!(read(&dir.join("cpu")), "500");
    assert_eq!(read(&dir.join("mem")), "64");

    let err = prepare(
        tmp.path(),
        json!([{"name": "bad", "downwardAPI": {"items": [{"path": "x", "fieldRef": {"fieldPath": "spec.nodeName"}}]}}]),
        &objects(),
    )
    .await
    .expect_err("volumes only expose metadata");
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"bad\" : unsupported fieldPath: spec.nodeName"
    );
}

#[tokio::test]
async fn unsupported_sources_are_named_and_nothing_is_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let err = prepare(
        tmp.path(),
        json!([{"name": "scratch", "emptyDir": {}},
               {"name": "data", "csi": {"driver": "example.com/disk"}}]),
        &objects(),
    )
    .await
    .expect_err("csi");
    assert_eq!(
        err.to_string(),
        "volume \"data\": csi volumes are not supported by this node"
    );
    assert!(!tmp.path().join("volumes").exists());
    let err = prepare(
        tmp.path(),
        json!([{"name": "p", "nfs": {"server": "example", "path": "/"}}]),
        &objects(),
    )
    .await
    .expect_err("nfs");
    assert_eq!(
        err.to_string(),
        "volume \"p\": nfs volumes are not supported by this node"
    );
}

mod mounts;
mod persistent_volume_claim;
