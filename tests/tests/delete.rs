//! Deleting: cascading through ownerReferences (background, foreground, orphan), waiting for a
//! deletion, finalizers holding an object, and namespace termination.

use skiff_tests::{Cluster, eventually, table};

/// Creates ConfigMap `owner` and two dependents whose ownerReferences point at it.
fn owner_with_dependents(cluster: &Cluster) {
    cluster.create_configmap("default", "owner", &[]);
    let uid = cluster.kubectl_ok(&["get", "cm", "owner", "-o", "jsonpath={.metadata.uid}"]);
    for dep in ["dep-1", "dep-2"] {
        cluster.apply(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {dep}\n  labels: {{family: owner}}\n  \
             ownerReferences:\n  - apiVersion: v1\n    kind: ConfigMap\n    name: owner\n    uid: {uid}\n"
        ));
    }
}

fn family(cluster: &Cluster) -> String {
    cluster.kubectl_ok(&["get", "cm", "-l", "family=owner", "-o", "name"])
}

#[test]
fn background_cascade_deletes_dependents() {
    let cluster = Cluster::start();
    owner_with_dependents(&cluster);
    let out = cluster.kubectl_ok(&["delete", "cm", "owner", "--cascade=background"]);
    assert_eq!(out, "configmap \"owner\" deleted\n");
    eventually("the garbage collector deleting dependents", || {
        let left = family(&cluster);
        if left.is_empty() { Ok(()) } else { Err(left) }
    });
}

#[test]
fn foreground_cascade_deletes_dependents_before_the_owner() {
    let cluster = Cluster::start();
    owner_with_dependents(&cluster);
    // kubectl waits for the owner to be gone, which foreground deletion allows only after the dependents.
    let out = cluster.kubectl_ok(&["delete", "cm", "owner", "--cascade=foreground"]);
    assert_eq!(out, "configmap \"owner\" deleted\n");
    assert_eq!(family(&cluster), "");
    let err = cluster.kubectl_err(&["get", "cm", "owner"]);
    assert_eq!(
        err,
        "Error from server (NotFound): configmaps \"owner\" not found\n"
    );
}

#[test]
fn orphan_cascade_keeps_dependents_without_owner_references() {
    let cluster = Cluster::start();
    owner_with_dependents(&cluster);
    let out = cluster.kubectl_ok(&["delete", "cm", "owner", "--cascade=orphan"]);
    assert_eq!(out, "configmap \"owner\" deleted\n");
    cluster.kubectl_err(&["get", "cm", "owner"]);
    assert_eq!(family(&cluster), "configmap/dep-1\nconfigmap/dep-2\n");
    for dep in ["dep-1", "dep-2"] {
        let refs = cluster.kubectl_ok(&[
            "get",
            "cm",
            dep,
            "-o",
            "jsonpath={.metadata.ownerReferences}",
        ]);
        assert_eq!(refs, "", "{dep} still points at its deleted owner");
    }
}

#[test]
fn wait_for_delete_returns_once_a_finalizer_is_released() {
    let cluster = Cluster::start();
    cluster.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  finalizers: [example.com/hold]\n",
    );
    let out = cluster.kubectl_ok(&["delete", "cm", "held", "--wait=false"]);
    assert_eq!(out, "configmap \"held\" deleted\n");
    // The finalizer keeps it, marked for deletion.
    let ts = cluster.kubectl_ok(&[
        "get",
        "cm",
        "held",
        "-o",
        "jsonpath={.metadata.deletionTimestamp}",
    ]);
    assert!(!ts.is_empty(), "deletionTimestamp is set");

    let mut wait = cluster
        .cmd(&["wait", "--for=delete", "cm/held", "--timeout=60s", "-v=6"])
        .spawn();
    // -v=6 logs each response: once the watch is open, releasing the finalizer must end the wait.
    wait.expect_stderr("the watch request", |l| {
        l.contains("watch=true") && l.contains("200 OK")
    });
    cluster.kubectl_ok(&[
        "patch",
        "cm",
        "held",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    let done = wait.finish();
    assert!(done.success(), "{done}");
    assert_eq!(done.stdout, "configmap/held condition met\n");
    cluster.kubectl_err(&["get", "cm", "held"]);
}

#[test]
fn deleting_a_namespace_terminates_it_and_its_contents() {
    let cluster = Cluster::start();
    cluster.create("{apiVersion: v1, kind: Namespace, metadata: {name: doomed}}");
    cluster.create_configmap("doomed", "plain", &[]);
    // A finalizer holds one object so the Terminating phase can be observed without racing.
    cluster.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: doomed\n  \
         finalizers: [example.com/hold]\n",
    );

    let out = cluster.kubectl_ok(&["delete", "namespace", "doomed", "--wait=false"]);
    assert_eq!(out, "namespace \"doomed\" deleted\n");
    let ns = table(&cluster.kubectl_ok(&["get", "namespace", "doomed"]));
    assert_eq!(ns[1][..2], ["doomed", "Terminating"]);

    eventually("the namespace's plain ConfigMap being deleted", || {
        let left = cluster.kubectl_ok(&["get", "cm", "-n", "doomed", "-o", "name"]);
        if left.lines().any(|l| l == "configmap/plain") {
            Err(left)
        } else {
            Ok(())
        }
    });
    let err = cluster
        .cmd(&["create", "-f", "-"])
        .stdin("{apiVersion: v1, kind: ConfigMap, metadata: {name: late, namespace: doomed}}")
        .err();
    assert_eq!(
        err,
        "Error from server (Forbidden): error when creating \"STDIN\": configmaps \"late\" is forbidden: \
         unable to create new content in namespace doomed because it is being terminated\n"
    );

    cluster.kubectl_ok(&[
        "patch",
        "cm",
        "held",
        "-n",
        "doomed",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    let out = cluster.kubectl_ok(&["wait", "--for=delete", "namespace/doomed", "--timeout=60s"]);
    assert!(
        out.is_empty() || out == "namespace/doomed condition met\n",
        "{out}"
    );
    let err = cluster.kubectl_err(&["get", "namespace", "doomed"]);
    assert_eq!(
        err,
        "Error from server (NotFound): namespaces \"doomed\" not found\n"
    );
}

#[test]
fn the_standard_namespaces_cannot_be_deleted() {
    let cluster = Cluster::start();
    for ns in ["default", "kube-system", "kube-public"] {
        let err = cluster.kubectl_err(&["delete", "namespace", ns, "--wait=false"]);
        assert_eq!(
            err,
            format!(
                "Error from server (Forbidden): namespaces \"{ns}\" is forbidden: this namespace may not be deleted\n"
            )
        );
    }
    let namespaces = table(&cluster.kubectl_ok(&["get", "namespaces"]));
    assert!(
        namespaces[1..].iter().all(|r| r[1] == "Active"),
        "{namespaces:?}"
    );
}
