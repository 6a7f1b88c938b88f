//! API semantics clients rely on beyond the everyday commands: watches resumed from a
//! resourceVersion past the window (410 Expired), `sendInitialEvents` bookmarks, paginated lists,
//! field selectors, the body size limit, deletecollection, and `kind: List` manifests (which
//! kubectl validates against `/openapi/v2`).

use base64::Engine;
use serde_json::Value;
use skiff_tests::{Cluster, require_tool};

/// The JSON watch events of a raw watch request (kubectl prints the chunked stream as it comes).
fn watch_events(cluster: &Cluster, path: &str) -> Vec<Value> {
    let out = cluster.kubectl_ok(&["get", "--raw", path]);
    serde_json::Deserializer::from_str(&out)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("watch stream is not JSON events ({e}):\n{out}"))
}

/// A multi-document stream of ConfigMaps.
fn config_maps(count: usize, prefix: &str) -> String {
    (0..count)
        .map(|i| {
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("{prefix}-{i:03}"), "labels": {"batch": prefix}},
                "data": {"i": i.to_string()}})
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n---\n")
}

#[test]
fn a_watch_from_a_revision_past_the_window_gets_410_expired() {
    let cluster = Cluster::start();
    let first = cluster.create_configmap("default", "early", &[]);
    assert!(first.contains("created"), "{first}");
    let rv = cluster.kubectl_ok(&[
        "get",
        "cm",
        "early",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    // More changes than the watch cache keeps for one resource.
    cluster
        .cmd(&["create", "-f", "-"])
        .stdin(&config_maps(300, "churn"))
        .ok();

    let events = watch_events(
        &cluster,
        &format!(
            "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=2"
        ),
    );
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "ERROR");
    assert_eq!(events[0]["object"]["kind"], "Status");
    assert_eq!(events[0]["object"]["code"], 410);
    assert_eq!(events[0]["object"]["reason"], "Expired");

    // A watch from the current revision is fine and times out on its own.
    let list_rv: Value = serde_json::from_str(&cluster.kubectl_ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/configmaps?limit=1",
    ]))
    .unwrap();
    let rv = list_rv["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let events = watch_events(
        &cluster,
        &format!(
            "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=1"
        ),
    );
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn send_initial_events_ends_with_a_bookmark() {
    let cluster = Cluster::start();
    cluster.create_configmap("default", "one", &[]);
    let events = watch_events(
        &cluster,
        "/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1",
    );
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or(""))
        .collect();
    let names: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "ADDED")
        .map(|e| e["object"]["metadata"]["name"].as_str().unwrap_or(""))
        .collect();
    assert!(
        names.contains(&"one") && names.contains(&"kube-root-ca.crt"),
        "{events:?}"
    );
    assert_eq!(types.last(), Some(&"BOOKMARK"), "{events:?}");
    let bookmark = &events.last().unwrap()["object"]["metadata"];
    assert_eq!(bookmark["annotations"]["k8s.io/initial-events-end"], "true");
}

#[test]
fn lists_are_paginated_with_limit_and_continue() {
    let cluster = Cluster::start();
    cluster
        .cmd(&["create", "-f", "-"])
        .stdin(&config_maps(7, "page"))
        .ok();
    let page: Value = serde_json::from_str(&cluster.kubectl_ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/configmaps?labelSelector=batch%3Dpage&limit=3",
    ]))
    .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    let token = page["metadata"]["continue"]
        .as_str()
        .expect("a continue token")
        .to_string();
    let listed_at = page["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    // Changes between the pages: the rest of the list still shows the state of the first page,
    // and a watch from the list's resourceVersion delivers them.
    cluster.kubectl_ok(&["label", "cm", "page-005", "changed=yes"]);
    cluster.kubectl_ok(&["delete", "cm", "page-006"]);
    cluster
        .cmd(&["create", "-f", "-"])
        .stdin(&config_maps(1, "page").replace("page-000", "page-010"))
        .ok();
    let rest: Value = serde_json::from_str(&cluster.kubectl_ok(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/default/configmaps?labelSelector=batch%3Dpage&limit=10&continue={token}"),
    ]))
    .unwrap();
    let names: Vec<&str> = rest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|cm| cm["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["page-003", "page-004", "page-005", "page-006"],
        "{rest}"
    );
    assert!(
        rest["items"][2]["metadata"]["labels"]
            .get("changed")
            .is_none(),
        "{rest}"
    );
    assert_eq!(rest["metadata"]["resourceVersion"], listed_at.as_str());
    assert!(
        rest["metadata"].get("continue").is_none_or(|c| c == ""),
        "{rest}"
    );
    let events = watch_events(
        &cluster,
        &format!(
            "/api/v1/namespaces/default/configmaps?labelSelector=batch%3Dpage&watch=1&resourceVersion={listed_at}&timeoutSeconds=1"
        ),
    );
    let changes: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["object"]["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("MODIFIED", "page-005"),
            ("DELETED", "page-006"),
            ("ADDED", "page-010")
        ]
    );

    // A token whose revision the server no longer holds is refused, not served inconsistently.
    let stale = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(r#"{"start":"/registry/core/configmaps/default/page-002","rv":1}"#);
    let err = cluster.kubectl_err(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/default/configmaps?limit=2&continue={stale}"),
    ]);
    assert!(
        err.contains(
            "The provided continue parameter is too old to display a consistent list result"
        ),
        "{err}"
    );
    // kubectl follows the tokens itself with --chunk-size.
    let names = cluster.kubectl_ok(&[
        "get",
        "cm",
        "-l",
        "batch=page",
        "--chunk-size=2",
        "-o",
        "name",
    ]);
    assert_eq!(names.lines().count(), 7, "{names}");
}

#[test]
fn pods_are_selected_by_their_fields() {
    let cluster = Cluster::start_control_plane();
    cluster.create("{apiVersion: v1, kind: Pod, metadata: {name: waiting}, spec: {containers: [{name: c, image: busybox}]}}");
    let pending = cluster.kubectl_ok(&[
        "get",
        "pods",
        "--field-selector",
        "status.phase=Pending",
        "-o",
        "name",
    ]);
    assert_eq!(pending, "pod/waiting\n");
    let running = cluster.kubectl(&[
        "get",
        "pods",
        "--field-selector",
        "status.phase=Running",
        "-o",
        "name",
    ]);
    assert!(running.success() && running.stdout.is_empty(), "{running}");
    let unbound = cluster.kubectl_ok(&[
        "get",
        "pods",
        "--field-selector",
        "spec.nodeName=",
        "-o",
        "name",
    ]);
    assert_eq!(unbound, "pod/waiting\n");
    let err = cluster.kubectl_err(&["get", "pods", "--field-selector", "spec.bogus=x"]);
    assert!(
        err.contains("Error from server (BadRequest)") && err.contains("spec.bogus"),
        "{err}"
    );
}

#[test]
fn oversized_bodies_are_refused_with_413() {
    let cluster = Cluster::start();
    let curl = require_tool("curl");
    let pki = cluster.data_dir().join("pki");
    let big = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"x":"{}"}}}}"#,
        "x".repeat(4 * 1024 * 1024)
    );
    let body = cluster.write_file("big.json", &big);
    let out = std::process::Command::new(curl)
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
        .arg(pki.join("ca.crt"))
        .arg("--cert")
        .arg(pki.join("admin.crt"))
        .arg("--key")
        .arg(pki.join("admin.key"))
        .args(["-H", "Content-Type: application/json", "--data-binary"])
        .arg(format!("@{}", body.display()))
        .arg(format!(
            "{}/api/v1/namespaces/default/configmaps",
            cluster.server()
        ))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n413"), "{text}");
    assert!(
        text.contains("\"reason\":\"RequestEntityTooLarge\""),
        "{text}"
    );
    cluster.kubectl_err(&["get", "cm", "big"]);
}

#[test]
fn deletecollection_removes_only_the_selected_objects() {
    let cluster = Cluster::start();
    cluster
        .cmd(&["create", "-f", "-"])
        .stdin(&config_maps(3, "gone"))
        .ok();
    cluster.create_configmap("default", "kept", &[]);
    // The raw API: DELETE on the collection with a label selector.
    let pki = cluster.data_dir().join("pki");
    let out = std::process::Command::new(require_tool("curl"))
        .args(["-s", "-X", "DELETE", "--cacert"])
        .arg(pki.join("ca.crt"))
        .arg("--cert")
        .arg(pki.join("admin.crt"))
        .arg("--key")
        .arg(pki.join("admin.key"))
        .arg(format!(
            "{}/api/v1/namespaces/default/configmaps?labelSelector=batch%3Dgone",
            cluster.server()
        ))
        .output()
        .expect("curl runs");
    let list: Value = serde_json::from_slice(&out.stdout).expect("a ConfigMapList");
    assert_eq!(list["kind"], "ConfigMapList");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(3));
    let left = cluster.kubectl_ok(&["get", "cm", "-o", "name"]);
    assert!(
        !left.contains("gone-") && left.contains("configmap/kept"),
        "{left}"
    );
}

#[test]
fn list_manifests_are_validated_and_applied() {
    let cluster = Cluster::start();
    let list = "apiVersion: v1\nkind: List\nitems:\n\
        - {apiVersion: v1, kind: ConfigMap, metadata: {name: a}, data: {k: v}}\n\
        - {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n";
    let out = cluster.cmd(&["apply", "-f", "-"]).stdin(list).ok();
    assert_eq!(out, "configmap/a created\nconfigmap/b created\n");

    // What `kubectl get -o yaml` prints is a List too, and applies back.
    let dumped = cluster.kubectl_ok(&["get", "cm", "a", "b", "-o", "yaml"]);
    let again = cluster.cmd(&["apply", "-f", "-"]).stdin(&dumped).ok();
    assert!(
        again.contains("configmap/a") && again.contains("configmap/b"),
        "{again}"
    );

    // kubectl refuses an unknown field in a List item itself, against the served schema.
    let bad = "apiVersion: v1\nkind: List\nitems:\n\
        - {apiVersion: v1, kind: ConfigMap, metadata: {name: c}, dataa: {k: v}}\n";
    let err = cluster.cmd(&["apply", "-f", "-"]).stdin(bad).err();
    assert!(
        err.contains(r#"unknown field "dataa" in io.k8s.api.core.v1.ConfigMap"#),
        "{err}"
    );
    cluster.kubectl_err(&["get", "cm", "c"]);
}
