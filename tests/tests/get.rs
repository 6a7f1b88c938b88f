//! `kubectl get`: server-side tables and their columns, and every output format a user reaches for.

use skiff_tests::{Cluster, row, table};

const PODS: &str = "
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  labels: {app: web, tier: frontend}
spec:
  containers:
    - name: web
      image: nginx:1.27-alpine
---
apiVersion: v1
kind: Pod
metadata:
  name: worker-1
  namespace: kube-public
  labels: {app: worker}
spec:
  containers:
    - name: worker
      image: busybox:1.36
      command: [sleep, '3600']
";

#[test]
fn pods_table_has_kubernetes_columns() {
    let cluster = Cluster::start_control_plane();
    cluster.apply(PODS);

    let pods = table(&cluster.kubectl_ok(&["get", "pods"]));
    assert_eq!(pods[0], ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert_eq!(pods.len(), 2, "only the default namespace: {pods:?}");
    assert_eq!(row(&pods, "web-1")[1..4], ["0/1", "Pending", "0"]);

    let wide = table(&cluster.kubectl_ok(&["get", "pods", "-o", "wide"]));
    assert_eq!(
        wide[0],
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED NODE",
            "READINESS GATES"
        ]
    );
    assert_eq!(row(&wide, "web-1").len(), 9, "{wide:?}");

    let by_name = cluster.kubectl_ok(&["get", "pod", "web-1", "--no-headers"]);
    assert!(by_name.starts_with("web-1 "), "{by_name}");
    assert_eq!(by_name.lines().count(), 1);
}

#[test]
fn labels_as_columns() {
    let cluster = Cluster::start();
    cluster.apply(PODS);

    let shown = table(&cluster.kubectl_ok(&["get", "pods", "--show-labels"]));
    assert_eq!(shown[0].last().map(String::as_str), Some("LABELS"));
    assert_eq!(
        row(&shown, "web-1").last().map(String::as_str),
        Some("app=web,tier=frontend")
    );

    let columns = table(&cluster.kubectl_ok(&["get", "pods", "-L", "app", "-L", "tier"]));
    assert_eq!(columns[0][5..], ["APP", "TIER"]);
    assert_eq!(row(&columns, "web-1")[5..], ["web", "frontend"]);

    let selected = cluster.kubectl_ok(&["get", "pods", "-A", "-l", "app=worker", "-o", "name"]);
    assert_eq!(selected, "pod/worker-1\n");
    let set_based = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-A",
        "-l",
        "app in (web,worker),!tier",
        "-o",
        "name",
    ]);
    assert_eq!(set_based, "pod/worker-1\n");
    let none = cluster.kubectl_ok(&["get", "pods", "-l", "app=nothing"]);
    assert_eq!(none, "");
}

#[test]
fn all_namespaces_adds_a_namespace_column() {
    let cluster = Cluster::start();
    cluster.apply(PODS);

    let all = table(&cluster.kubectl_ok(&["get", "pods", "-A"]));
    assert_eq!(
        all[0],
        ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    assert_eq!(row(&all, "web-1")[0], "default");
    assert_eq!(row(&all, "worker-1")[0], "kube-public");

    let in_one = cluster.kubectl_ok(&["get", "pods", "-n", "kube-public", "-o", "name"]);
    assert_eq!(in_one, "pod/worker-1\n");

    let fields = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-A",
        "--field-selector",
        "metadata.namespace=kube-public",
        "-o",
        "name",
    ]);
    assert_eq!(fields, "pod/worker-1\n");
}

#[test]
fn sort_by_a_field_the_server_does_not_sort_on() {
    let cluster = Cluster::start();
    for (name, rank) in [("alpha", "3"), ("bravo", "1"), ("charlie", "2")] {
        cluster.apply(&format!(
            "{{apiVersion: v1, kind: ConfigMap, metadata: {{name: {name}, labels: {{sort: demo}}}}, data: {{rank: '{rank}'}}}}"
        ));
    }
    let by_rank = cluster.kubectl_ok(&[
        "get",
        "cm",
        "-l",
        "sort=demo",
        "--sort-by",
        ".data.rank",
        "-o",
        "name",
    ]);
    assert_eq!(
        by_rank,
        "configmap/bravo\nconfigmap/charlie\nconfigmap/alpha\n"
    );

    let by_name = table(&cluster.kubectl_ok(&[
        "get",
        "cm",
        "-l",
        "sort=demo",
        "--sort-by",
        ".metadata.name",
    ]));
    let order: Vec<&str> = by_name[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(order, ["alpha", "bravo", "charlie"]);
}

#[test]
fn yaml_json_jsonpath_and_name_output() {
    let cluster = Cluster::start();
    cluster.create_configmap("default", "settings", &[("color", "blue")]);

    let yaml = cluster.kubectl_ok(&["get", "cm", "settings", "-o", "yaml"]);
    for expected in [
        "apiVersion: v1\n",
        "kind: ConfigMap\n",
        "  color: blue\n",
        "  name: settings\n",
        "  namespace: default\n",
        "  creationTimestamp: ",
        "  resourceVersion: ",
        "  uid: ",
    ] {
        assert!(
            yaml.contains(expected),
            "-o yaml lacks {expected:?}:\n{yaml}"
        );
    }

    let json: serde_json::Value =
        serde_json::from_str(&cluster.kubectl_ok(&["get", "cm", "settings", "-o", "json"]))
            .expect("-o json prints JSON");
    assert_eq!(json["kind"], "ConfigMap");
    assert_eq!(json["data"]["color"], "blue");
    let uid = json["metadata"]["uid"].as_str().expect("uid is set");
    assert_eq!(uid.len(), 36, "a UUID: {uid}");
    let rv = json["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion is a string");
    assert!(rv.parse::<u64>().is_ok(), "resourceVersion {rv:?}");

    let list: serde_json::Value =
        serde_json::from_str(&cluster.kubectl_ok(&["get", "cm", "-o", "json"])).expect("JSON list");
    assert_eq!(list["kind"], "List");
    assert!(
        list["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|i| i["metadata"]["name"] == "settings")),
        "{list}"
    );

    let color = cluster.kubectl_ok(&["get", "cm", "settings", "-o", "jsonpath={.data.color}"]);
    assert_eq!(color, "blue");
    let names = cluster.kubectl_ok(&[
        "get",
        "ns",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name}{"\n"}{end}"#,
    ]);
    assert!(names.lines().any(|n| n == "default"), "{names}");

    let name = cluster.kubectl_ok(&["get", "cm", "settings", "-o", "name"]);
    assert_eq!(name, "configmap/settings\n");

    let custom = table(&cluster.kubectl_ok(&[
        "get",
        "cm",
        "settings",
        "-o",
        "custom-columns=NAME:.metadata.name,COLOR:.data.color",
    ]));
    assert_eq!(custom, [["NAME", "COLOR"], ["settings", "blue"]]);
}

#[test]
fn missing_objects_are_not_found() {
    let cluster = Cluster::start();
    let err = cluster.kubectl_err(&["get", "pod", "nope"]);
    assert_eq!(
        err,
        "Error from server (NotFound): pods \"nope\" not found\n"
    );
    let err = cluster.kubectl_err(&["get", "deploy", "nope", "-n", "kube-system"]);
    assert_eq!(
        err,
        "Error from server (NotFound): deployments.apps \"nope\" not found\n"
    );
    let empty = cluster.kubectl(&["get", "pods"]);
    assert!(empty.success(), "{empty}");
    assert_eq!(empty.stderr, "No resources found in default namespace.\n");
}
