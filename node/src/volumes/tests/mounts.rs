//! hostPath checks, volume removal and container mounts.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use k8s_openapi::api::core::v1::Container;
use serde_json::json;

use super::{objects, prepare, read};
use crate::volumes::*;

#[tokio::test]
async fn host_path_types_are_checked_like_the_kubelet() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let host = tmp.path().join("host");
    fs::create_dir(&host).expect("host dir");
    fs::write(host.join("file"), "f").expect("file");
    let _listener = std::os::unix::net::UnixListener::bind(host.join("sock")).expect("socket");
    let p = |name: &str| host.join(name).to_string_lossy().into_owned();
    let check = |name: &str, kind: &str| {
        let volume = json!([{"name": "h", "hostPath": {"path": p(name), "type": kind}}]);
        let pod_dir = tmp.path().join("pod");
        async move {
            prepare(&pod_dir, volume, &objects())
                .await
                .map(|v| v.get("h").expect("h").path.clone())
        }
    };
    let ok = |r: Result<std::path::PathBuf, VolumeError>| r.expect("type check passes");
    let err =
        |r: Result<std::path::PathBuf, VolumeError>| r.expect_err("type check fails").to_string();
    let prefix = "MountVolume.SetUp failed for volume \"h\" : hostPath type check failed: ";

    assert_eq!(ok(check("file", "").await), host.join("file"));
    ok(check("missing-ok", "").await);
    ok(check(".", "Directory").await);
    ok(check("file", "File").await);
    ok(check("sock", "Socket").await);
    assert_eq!(
        err(check("nope", "Directory").await),
        format!("{prefix}{} does not exist", p("nope"))
    );
    assert_eq!(
        err(check("nope", "File").await),
        format!("{prefix}{} does not exist", p("nope"))
    );
    assert_eq!(
        err(check("file", "Directory").await),
        format!("{prefix}{} is not a directory", p("file"))
    );
    assert_eq!(
        err(check("file", "DirectoryOrCreate").await),
        format!("{prefix}{} is not a directory", p("file"))
    );
    assert_eq!(
        err(check(".", "File").await),
        format!("{prefix}{} is not a file", p("."))
    );
    assert_eq!(
        err(check("file", "Socket").await),
        format!("{prefix}{} is not a socket file", p("file"))
    );
    assert_eq!(
        err(check("file", "CharDevice").await),
        format!("{prefix}{} is not a character device", p("file"))
    );
    assert_eq!(
        err(check("file", "BlockDevice").await),
        format!("{prefix}{} is not a block device", p("file"))
    );
    assert_eq!(
        err(check("file", "Weird").await),
        "MountVolume.SetUp failed for volume \"h\" : Weird is an invalid volume type"
    );
    ok(check("/dev/null", "CharDevice").await);

    ok(check("made/dir", "DirectoryOrCreate").await);
    assert!(host.join("made/dir").is_dir());
    ok(check("made.txt", "FileOrCreate").await);
    assert!(host.join("made.txt").is_file());
    assert_eq!(
        read(&host.join("file")),
        "f",
        "FileOrCreate on an existing file keeps it"
    );
    ok(check("file", "FileOrCreate").await);
    assert_eq!(read(&host.join("file")), "f");
}

#[tokio::test]
async fn remove_volumes_deletes_pod_volumes_but_not_host_paths() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let host = tmp.path().join("host");
    fs::create_dir(&host).expect("host");
    fs::write(host.join("keep"), "k").expect("keep");
    let pod_dir = tmp.path().join("pod");
    let vols = prepare(
        &pod_dir,
        json!([{"name": "e", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}},
               {"name": "h", "hostPath": {"path": host.to_string_lossy()}}]),
        &objects(),
    )
    .await
    .expect("prepare");
    // A symlink to the host inside an emptyDir must not be followed on removal.
    symlink(&host, vols.get("e").expect("e").path.join("link")).expect("symlink");
    remove_volumes(&pod_dir).expect("remove");
    assert!(!pod_dir.join("volumes").exists());
    assert_eq!(read(&host.join("keep")), "k");
    remove_volumes(&pod_dir).expect("removing twice is fine");
}

fn container(mounts: serde_json::Value) -> Container {
    serde_json::from_value(json!({"name": "app", "volumeMounts": mounts})).expect("container")
}

#[tokio::test]
async fn container_mounts_map_paths_and_read_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let vols = prepare(
        tmp.path(),
        json!([{"name": "e", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}},
               {"name": "sec", "secret": {"secretName": "creds"}}]),
        &objects(),
    )
    .await
    .expect("prepare");
    let mounts = container_mounts(
        &container(json!([
            {"name": "e", "mountPath": "/data"},
            {"name": "e", "mountPath": "/data-ro", "readOnly": true},
            {"name": "cfg", "mountPath": "/etc/app", "readOnly": false},
            {"name": "sec", "mountPath": "/secrets"},
        ])),
        &vols,
        &[],
    )
    .expect("mounts");
    let e = &vols.get("e").expect("e").path;
    let got: Vec<(&Path, &str, bool)> = mounts
        .iter()
        .map(|m| {
            (
                m.host_path.as_path(),
                m.container_path.as_str(),
                m.read_only,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (e.as_path(), "/data", false),
            (e.as_path(), "/data-ro", true),
            (
                vols.get("cfg").expect("cfg").path.as_path(),
                "/etc/app",
                true
            ),
            (
                vols.get("sec").expect("sec").path.as_path(),
                "/secrets",
                true
            ),
        ]
    );
    let err = container_mounts(
        &container(json!([{"name": "ghost", "mountPath": "/x"}])),
        &vols,
        &[],
    )
    .expect_err("unknown volume");
    assert_eq!(
        err.to_string(),
        "cannot find volume \"ghost\" to mount into container \"app\""
    );
}

#[tokio::test]
async fn sub_paths_stay_inside_their_volume() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let vols = prepare(
        tmp.path(),
        json!([{"name": "e", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}}]),
        &objects(),
    )
    .await
    .expect("prepare");
    let e = fs::canonicalize(&vols.get("e").expect("e").path).expect("canonical");
    let env = [("POD".to_string(), "web".to_string())];
    let mount = |m: serde_json::Value| container_mounts(&container(json!([m])), &vols, &env);

    let m =
        mount(json!({"name": "e", "mountPath": "/logs", "subPath": "logs/app"})).expect("subPath");
    assert_eq!(m[0].host_path, e.join("logs/app"));
    assert!(e.join("logs/app").is_dir(), "created");
    let m =
        mount(json!({"name": "e", "mountPath": "/p", "subPathExpr": "pods/$(POD)"})).expect("expr");
    assert_eq!(m[0].host_path, e.join("pods/web"));
    let m = mount(json!({"name": "cfg", "mountPath": "/app.conf", "subPath": "app.conf"}))
        .expect("file");
    assert_eq!(read(&m[0].host_path), "level=debug");
    assert!(m[0].read_only);

    let err = |m| mount(m).expect_err("refused").to_string();
    assert_eq!(
        err(json!({"name": "e", "mountPath": "/x", "subPath": "../../etc"})),
        "unable to provision SubPath `../../etc`: must not contain '..'"
    );
    assert_eq!(
        err(json!({"name": "e", "mountPath": "/x", "subPath": "/etc"})),
        "error SubPath `/etc` must not be an absolute path"
    );
    assert_eq!(
        err(json!({"name": "e", "mountPath": "/x", "subPathExpr": "$(NOPE)/$(POD)"})),
        "failed to expand subPathExpr of volumeMount \"e\": missing value for NOPE"
    );
    symlink("/etc", e.join("escape")).expect("symlink");
    let escaped = err(json!({"name": "e", "mountPath": "/x", "subPath": "escape"}));
    assert!(
        escaped.starts_with("subpath ") && escaped.contains("not within volume path"),
        "{escaped}"
    );
    let escaped = err(json!({"name": "e", "mountPath": "/x", "subPath": "escape/newdir"}));
    assert!(escaped.contains("not within volume path"), "{escaped}");
    assert!(!Path::new("/etc/newdir").exists());
}
