//! What kubectl learns from discovery and OpenAPI: api-resources, api-versions, explain, the
//! namespaces every cluster starts with, and the version handshake.

use skiff_tests::{Cluster, row, table};

#[test]
fn api_resources_lists_kinds_with_short_names() {
    let cluster = Cluster::start();
    let resources = table(&cluster.kubectl_ok(&["api-resources"]));
    assert_eq!(
        resources[0],
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    );
    for expected in [
        ["pods", "po", "v1", "true", "Pod"],
        ["services", "svc", "v1", "true", "Service"],
        ["namespaces", "ns", "v1", "false", "Namespace"],
        ["configmaps", "cm", "v1", "true", "ConfigMap"],
        ["deployments", "deploy", "apps/v1", "true", "Deployment"],
        ["replicasets", "rs", "apps/v1", "true", "ReplicaSet"],
        ["cronjobs", "cj", "batch/v1", "true", "CronJob"],
    ] {
        assert_eq!(row(&resources, expected[0]), expected, "{resources:#?}");
    }
    // Resources without short names have an empty cell, so the row is one shorter.
    assert_eq!(
        row(&resources, "secrets"),
        ["secrets", "v1", "true", "Secret"]
    );

    let namespaced = cluster.kubectl_ok(&["api-resources", "--namespaced=false", "-o", "name"]);
    assert!(
        namespaced.lines().any(|l| l == "namespaces"),
        "{namespaced}"
    );
    assert!(!namespaced.lines().any(|l| l == "pods"), "{namespaced}");

    let apps = cluster.kubectl_ok(&["api-resources", "--api-group=apps", "-o", "name"]);
    assert!(apps.lines().any(|l| l == "deployments.apps"), "{apps}");
}

#[test]
fn api_versions_lists_served_group_versions() {
    let cluster = Cluster::start();
    let versions = cluster.kubectl_ok(&["api-versions"]);
    let lines: Vec<&str> = versions.lines().collect();
    for expected in [
        "v1",
        "apps/v1",
        "batch/v1",
        "coordination.k8s.io/v1",
        "rbac.authorization.k8s.io/v1",
    ] {
        assert!(
            lines.contains(&expected),
            "api-versions lacks {expected}:\n{versions}"
        );
    }
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted, "kubectl prints them sorted");
}

#[test]
fn explain_reads_the_openapi_schema() {
    let cluster = Cluster::start();
    let out = cluster.kubectl_ok(&["explain", "pod.spec.containers"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["KIND:       Pod", "VERSION:    v1"], "{out}");
    assert!(lines.contains(&"FIELD: containers <[]Container>"), "{out}");
    assert!(lines.contains(&"DESCRIPTION:"), "{out}");
    assert!(lines.contains(&"FIELDS:"), "{out}");
    assert!(lines.contains(&"  image\t<string>"), "{out}");
    assert!(lines.contains(&"  name\t<string> -required-"), "{out}");

    let deploy = cluster.kubectl_ok(&["explain", "deployment.spec.replicas"]);
    assert!(
        deploy.starts_with("GROUP:      apps\nKIND:       Deployment\nVERSION:    v1\n"),
        "{deploy}"
    );
    assert!(deploy.contains("FIELD: replicas <integer>"), "{deploy}");

    let err = cluster.kubectl_err(&["explain", "pod.spec.nosuchfield"]);
    assert!(
        err.contains("field \"nosuchfield\" does not exist"),
        "{err}"
    );
}

#[test]
fn a_new_cluster_has_the_standard_namespaces() {
    let cluster = Cluster::start();
    let namespaces = table(&cluster.kubectl_ok(&["get", "namespaces"]));
    assert_eq!(namespaces[0], ["NAME", "STATUS", "AGE"]);
    let names: Vec<&str> = namespaces[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        names,
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );
    for ns in &namespaces[1..] {
        assert_eq!(ns[1], "Active", "{ns:?}");
    }
}

#[test]
fn kubectl_version_reports_the_server() {
    let cluster = Cluster::start();
    let version: serde_json::Value =
        serde_json::from_str(&cluster.kubectl_ok(&["version", "-o", "json"])).expect("JSON");
    assert_eq!(version["serverVersion"]["major"], "1", "{version}");
    assert_eq!(version["serverVersion"]["minor"], "33", "{version}");
    let git = version["serverVersion"]["gitVersion"]
        .as_str()
        .unwrap_or_default();
    assert!(git.starts_with("v1.33."), "{version}");

    let health = cluster.kubectl_ok(&["get", "--raw", "/healthz"]);
    assert_eq!(health, "ok");
}
