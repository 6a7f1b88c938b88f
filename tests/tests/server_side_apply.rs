//! `kubectl apply --server-side`: field ownership per manager, conflicts, and `--force-conflicts`.

use skiff_tests::Cluster;

fn settings(color: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: {color}\n"
    )
}

#[test]
fn server_side_apply_owns_fields_and_reports_conflicts() {
    let cluster = Cluster::start();

    let out = cluster
        .cmd(&["apply", "--server-side", "-f", "-"])
        .stdin(&settings("blue"))
        .ok();
    assert_eq!(out, "configmap/settings serverside-applied\n");
    let again = cluster
        .cmd(&["apply", "--server-side", "-f", "-"])
        .stdin(&settings("blue"))
        .ok();
    assert_eq!(again, "configmap/settings serverside-applied\n");

    let managers = cluster.kubectl_ok(&[
        "get",
        "cm",
        "settings",
        "--show-managed-fields",
        "-o",
        "jsonpath={range .metadata.managedFields[*]}{.manager}/{.operation};{end}",
    ]);
    assert_eq!(managers, "kubectl/Apply;");

    // Another manager setting the same field to another value conflicts.
    let err = cluster
        .cmd(&["apply", "--server-side", "--field-manager=other", "-f", "-"])
        .stdin(&settings("red"))
        .err();
    assert!(
        err.contains(
            // An Apply manager is named alone; only Update managers get "using <apiVersion>".
            "Apply failed with 1 conflict: conflict with \"kubectl\": .data.color"
        ),
        "{err}"
    );
    assert!(
        err.contains("--force-conflicts"),
        "kubectl explains how to resolve it: {err}"
    );
    let color = cluster.kubectl_ok(&["get", "cm", "settings", "-o", "jsonpath={.data.color}"]);
    assert_eq!(color, "blue");

    // Agreeing on the value is no conflict: both share the field.
    cluster
        .cmd(&["apply", "--server-side", "--field-manager=agree", "-f", "-"])
        .stdin(&settings("blue"))
        .ok();

    let out = cluster
        .cmd(&[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            "-",
        ])
        .stdin(&settings("red"))
        .ok();
    assert_eq!(out, "configmap/settings serverside-applied\n");
    let color = cluster.kubectl_ok(&["get", "cm", "settings", "-o", "jsonpath={.data.color}"]);
    assert_eq!(color, "red");
    let managers = cluster.kubectl_ok(&[
        "get",
        "cm",
        "settings",
        "--show-managed-fields",
        "-o",
        "jsonpath={range .metadata.managedFields[*]}{.manager}={.fieldsV1};{end}",
    ]);
    assert!(
        managers.contains(r#"other={"f:data":{"f:color":{}}}"#),
        "the forced manager owns .data.color: {managers}"
    );
    assert!(
        !managers.contains("kubectl={\"f:data\":{\"f:color\""),
        "the previous owners lost it: {managers}"
    );
}

#[test]
fn server_side_apply_removes_fields_its_manager_dropped() {
    let cluster = Cluster::start();
    let both =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: pruned\ndata:\n  a: '1'\n  b: '2'\n";
    let only_a = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: pruned\ndata:\n  a: '1'\n";
    cluster
        .cmd(&["apply", "--server-side", "-f", "-"])
        .stdin(both)
        .ok();
    cluster
        .cmd(&["apply", "--server-side", "-f", "-"])
        .stdin(only_a)
        .ok();
    let data = cluster.kubectl_ok(&["get", "cm", "pruned", "-o", "jsonpath={.data}"]);
    assert_eq!(data, r#"{"a":"1"}"#);
}

#[test]
fn client_side_apply_records_last_applied_and_updates() {
    let cluster = Cluster::start();
    assert_eq!(
        cluster.apply(&settings("blue")),
        "configmap/settings created\n"
    );
    let last = cluster.kubectl_ok(&[
        "apply",
        "view-last-applied",
        "configmap/settings",
        "-o",
        "json",
    ]);
    let last: serde_json::Value = serde_json::from_str(&last).expect("JSON");
    assert_eq!(last["data"]["color"], "blue");
    assert_eq!(
        cluster.apply(&settings("green")),
        "configmap/settings configured\n"
    );
    let color = cluster.kubectl_ok(&["get", "cm", "settings", "-o", "jsonpath={.data.color}"]);
    assert_eq!(color, "green");
}
