//! Changing objects in place: label, annotate, scale, patch (strategic, merge, json), edit, and the
//! resourceVersion precondition that refuses a stale update.

use skiff_tests::Cluster;

const DEPLOYMENT: &str = "
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx:1.27-alpine
          ports: [{containerPort: 80}]
        - name: sidecar
          image: busybox:1.36
          command: [sleep, infinity]
";

fn jsonpath(cluster: &Cluster, target: &str, path: &str) -> String {
    cluster.kubectl_ok(&["get", target, "-o", &format!("jsonpath={path}")])
}

#[test]
fn label_and_annotate() {
    let cluster = Cluster::start();
    cluster.create_configmap("default", "settings", &[("color", "blue")]);

    assert_eq!(
        cluster.kubectl_ok(&["label", "cm", "settings", "tier=backend"]),
        "configmap/settings labeled\n"
    );
    assert_eq!(
        jsonpath(&cluster, "cm/settings", "{.metadata.labels.tier}"),
        "backend"
    );
    let err = cluster.kubectl_err(&["label", "cm", "settings", "tier=frontend"]);
    assert_eq!(
        err,
        "error: 'tier' already has a value (backend), and --overwrite is false\n"
    );
    cluster.kubectl_ok(&["label", "cm", "settings", "tier=frontend", "--overwrite"]);
    assert_eq!(
        jsonpath(&cluster, "cm/settings", "{.metadata.labels.tier}"),
        "frontend"
    );
    assert_eq!(
        cluster.kubectl_ok(&["label", "cm", "settings", "tier-"]),
        "configmap/settings unlabeled\n"
    );
    assert_eq!(jsonpath(&cluster, "cm/settings", "{.metadata.labels}"), "");

    assert_eq!(
        cluster.kubectl_ok(&["annotate", "cm", "settings", "owner=team-a"]),
        "configmap/settings annotated\n"
    );
    assert_eq!(
        jsonpath(&cluster, "cm/settings", "{.metadata.annotations.owner}"),
        "team-a"
    );
}

#[test]
fn scale_a_deployment() {
    let cluster = Cluster::start();
    cluster.apply(DEPLOYMENT);
    let generation = jsonpath(&cluster, "deploy/web", "{.metadata.generation}");
    assert_eq!(generation, "1");

    assert_eq!(
        cluster.kubectl_ok(&["scale", "deployment", "web", "--replicas=5"]),
        "deployment.apps/web scaled\n"
    );
    assert_eq!(jsonpath(&cluster, "deploy/web", "{.spec.replicas}"), "5");
    assert_eq!(
        jsonpath(&cluster, "deploy/web", "{.metadata.generation}"),
        "2"
    );

    let scale: serde_json::Value = serde_json::from_str(&cluster.kubectl_ok(&[
        "get",
        "--raw",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
    ]))
    .expect("Scale JSON");
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 5);
    assert_eq!(scale["status"]["selector"], "app=web");

    let err = cluster.kubectl_err(&[
        "scale",
        "deployment",
        "web",
        "--replicas=3",
        "--current-replicas=4",
    ]);
    assert!(err.contains("Expected replicas to be 4, was 5"), "{err}");
}

#[test]
fn patch_strategic_merge_and_json() {
    let cluster = Cluster::start();
    cluster.apply(DEPLOYMENT);

    // Strategic merge: containers merge by name, so the sidecar and the web ports survive.
    let out = cluster.kubectl_ok(&[
        "patch", "deployment", "web", "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.28-alpine"}]}}}}"#,
    ]);
    assert_eq!(out, "deployment.apps/web patched\n");
    assert_eq!(
        jsonpath(
            &cluster,
            "deploy/web",
            "{.spec.template.spec.containers[*].name}"
        ),
        "web sidecar"
    );
    assert_eq!(
        jsonpath(
            &cluster,
            "deploy/web",
            "{.spec.template.spec.containers[0].image}"
        ),
        "nginx:1.28-alpine"
    );
    assert_eq!(
        jsonpath(
            &cluster,
            "deploy/web",
            "{.spec.template.spec.containers[0].ports[0].containerPort}"
        ),
        "80"
    );

    // The same patch again changes nothing.
    let out = cluster.kubectl_ok(&[
        "patch", "deployment", "web", "--type", "strategic", "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.28-alpine"}]}}}}"#,
    ]);
    assert_eq!(out, "deployment.apps/web patched (no change)\n");

    // Merge patch replaces lists whole.
    cluster.kubectl_ok(&[
        "patch", "deployment", "web", "--type", "merge", "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"only","image":"nginx:1.28-alpine"}]}}}}"#,
    ]);
    assert_eq!(
        jsonpath(
            &cluster,
            "deploy/web",
            "{.spec.template.spec.containers[*].name}"
        ),
        "only"
    );

    // JSON patch, with a failing test op leaving the object untouched.
    cluster.kubectl_ok(&[
        "patch",
        "deployment",
        "web",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":3}]"#,
    ]);
    assert_eq!(jsonpath(&cluster, "deploy/web", "{.spec.replicas}"), "3");
    let err = cluster.kubectl_err(&[
        "patch", "deployment", "web", "--type", "json", "-p",
        r#"[{"op":"test","path":"/spec/replicas","value":9},{"op":"replace","path":"/spec/replicas","value":4}]"#,
    ]);
    assert!(!err.is_empty());
    assert_eq!(jsonpath(&cluster, "deploy/web", "{.spec.replicas}"), "3");

    let err = cluster.kubectl_err(&["patch", "configmap", "nope", "--type", "merge", "-p", "{}"]);
    assert_eq!(
        err,
        "Error from server (NotFound): configmaps \"nope\" not found\n"
    );
}

#[test]
fn edit_through_kube_editor() {
    let cluster = Cluster::start();
    cluster.create_configmap("default", "settings", &[("color", "blue")]);
    let editor = cluster.write_file(
        "editor.sh",
        "#!/bin/sh\nsed -i 's/color: blue/color: green/' \"$1\"\n",
    );
    make_executable(&editor);

    let out = cluster
        .cmd(&["edit", "configmap", "settings"])
        .env("KUBE_EDITOR", &editor)
        .ok();
    assert_eq!(out, "configmap/settings edited\n");
    assert_eq!(jsonpath(&cluster, "cm/settings", "{.data.color}"), "green");

    // Saving without changes.
    let out = cluster
        .cmd(&["edit", "configmap", "settings"])
        .env("KUBE_EDITOR", &editor)
        .run();
    assert!(out.success(), "{out}");
    assert_eq!(out.stderr, "Edit cancelled, no changes made.\n");
}

fn make_executable(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .expect("chmod the editor script");
}

#[test]
fn a_stale_update_is_refused_with_conflict() {
    let cluster = Cluster::start();
    cluster.create_configmap("default", "stale", &[("color", "blue")]);
    let old = cluster.kubectl_ok(&["get", "cm", "stale", "-o", "yaml"]);
    cluster.kubectl_ok(&["label", "cm", "stale", "changed=yes"]);

    let edited = old.replace("color: blue", "color: red");
    let err = cluster.cmd(&["replace", "-f", "-"]).stdin(&edited).err();
    assert_eq!(
        err,
        "Error from server (Conflict): error when replacing \"STDIN\": Operation cannot be fulfilled on \
         configmaps \"stale\": the object has been modified; please apply your changes to the latest \
         version and try again\n"
    );
    assert_eq!(jsonpath(&cluster, "cm/stale", "{.data.color}"), "blue");

    // With the current resourceVersion the same replace succeeds.
    let current = cluster.kubectl_ok(&["get", "cm", "stale", "-o", "yaml"]);
    let out = cluster
        .cmd(&["replace", "-f", "-"])
        .stdin(&current.replace("color: blue", "color: red"))
        .ok();
    assert_eq!(out, "configmap/stale replaced\n");
    assert_eq!(jsonpath(&cluster, "cm/stale", "{.data.color}"), "red");
}
