//! `kubectl get -w`: the initial state, then a line per change as it happens.

use skiff_tests::{Cluster, table};

fn cells(line: &str) -> Vec<String> {
    table(line).into_iter().next().unwrap_or_default()
}

#[test]
fn get_watch_prints_create_update_and_delete() {
    let cluster = Cluster::start();
    cluster.create_configmap("default", "first", &[("a", "1")]);

    let mut watch = cluster
        .cmd(&["get", "configmaps", "--watch", "--output-watch-events"])
        .spawn();
    let header = watch.expect_stdout("the header", |l| l.starts_with("EVENT"));
    assert_eq!(cells(&header), ["EVENT", "NAME", "DATA", "AGE"]);
    let initial = watch.expect_stdout("the existing ConfigMap", |l| l.contains(" first "));
    assert_eq!(cells(&initial)[..3], ["ADDED", "first", "1"]);

    cluster.create_configmap("default", "second", &[]);
    let added = watch.expect_stdout("the new ConfigMap", |l| l.contains(" second "));
    assert_eq!(cells(&added)[..3], ["ADDED", "second", "0"]);

    cluster.kubectl_ok(&[
        "patch",
        "cm",
        "first",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"b":"2"}}"#,
    ]);
    let modified = watch.expect_stdout("the update", |l| l.contains(" first "));
    assert_eq!(cells(&modified)[..3], ["MODIFIED", "first", "2"]);

    cluster.kubectl_ok(&["delete", "cm", "second"]);
    let deleted = watch.expect_stdout("the deletion", |l| l.contains(" second "));
    assert_eq!(cells(&deleted)[..3], ["DELETED", "second", "0"]);
}

#[test]
fn get_watch_one_object_in_another_namespace() {
    let cluster = Cluster::start();
    cluster.create_configmap("kube-public", "watched", &[]);
    cluster.create_configmap("kube-public", "other", &[]);

    let mut watch = cluster
        .cmd(&["get", "cm", "watched", "-n", "kube-public", "-w"])
        .spawn();
    let header = watch.expect_stdout("the header", |l| l.starts_with("NAME"));
    assert_eq!(cells(&header), ["NAME", "DATA", "AGE"]);
    watch.expect_stdout("the current state", |l| l.starts_with("watched "));

    // A change to another object prints nothing; the next line is about the watched one.
    cluster.kubectl_ok(&["label", "cm", "other", "-n", "kube-public", "x=1"]);
    cluster.kubectl_ok(&[
        "patch",
        "cm",
        "watched",
        "-n",
        "kube-public",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"k":"v"}}"#,
    ]);
    let next = watch.expect_stdout("the update", |_| true);
    assert_eq!(cells(&next)[..2], ["watched", "1"]);
}
