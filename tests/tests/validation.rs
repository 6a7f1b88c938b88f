//! What the server refuses and how it says so (the field named, Kubernetes' wording), and requests
//! that create nothing (`--dry-run=server`) or name themselves (`generateName`).

use skiff_tests::Cluster;

fn apply_err(cluster: &Cluster, manifest: &str) -> String {
    cluster.cmd(&["apply", "-f", "-"]).stdin(manifest).err()
}

#[test]
fn a_deployment_whose_selector_does_not_match_its_template_is_invalid() {
    let cluster = Cluster::start();
    let err = apply_err(
        &cluster,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: bad\nspec:\n  selector:\n    matchLabels: {app: web}\n  \
         template:\n    metadata:\n      labels: {app: other}\n    spec:\n      containers:\n      - name: web\n        image: nginx\n",
    );
    assert_eq!(
        err,
        "The Deployment \"bad\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does \
         not match template `labels`\n"
    );
    cluster.kubectl_err(&["get", "deployment", "bad"]);
}

#[test]
fn a_container_without_an_image_is_invalid() {
    let cluster = Cluster::start();
    let err = cluster
        .cmd(&["create", "-f", "-"])
        .stdin("apiVersion: v1\nkind: Pod\nmetadata:\n  name: noimage\nspec:\n  containers:\n  - name: app\n")
        .err();
    assert_eq!(
        err,
        "The Pod \"noimage\" is invalid: spec.containers[0].image: Required value\n"
    );
}

#[test]
fn several_invalid_fields_are_all_reported() {
    let cluster = Cluster::start();
    let err = cluster
        .cmd(&["create", "-f", "-"])
        .stdin(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: Bad_Name\nspec:\n  containers:\n  - name: app\n    image: nginx\n  \
             restartPolicy: Sometimes\n",
        )
        .err();
    assert!(
        err.starts_with(
            "The Pod \"Bad_Name\" is invalid: \n* metadata.name: Invalid value: \"Bad_Name\": "
        ),
        "{err}"
    );
    assert!(
        err.contains("* spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""),
        "{err}"
    );
}

#[test]
fn unknown_fields_are_refused_by_strict_validation() {
    let cluster = Cluster::start();
    let err = apply_err(
        &cluster,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: typo\nspec:\n  foo: bar\n  containers:\n  - name: app\n    image: nginx\n",
    );
    assert_eq!(
        err,
        "Error from server (BadRequest): error when creating \"STDIN\": Pod in version \"v1\" cannot be handled \
         as a Pod: strict decoding error: unknown field \"spec.foo\"\n"
    );
    cluster.kubectl_err(&["get", "pod", "typo"]);

    // With validation off the unknown field is dropped and the object created.
    let out = cluster
        .cmd(&["apply", "--validate=false", "-f", "-"])
        .stdin("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lax\nfoo: bar\n")
        .ok();
    assert_eq!(out, "configmap/lax created\n");
}

#[test]
fn malformed_yaml_is_refused_before_reaching_the_server() {
    let cluster = Cluster::start();
    let err = apply_err(
        &cluster,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n",
    );
    assert!(
        err.starts_with("error: error parsing STDIN: error converting YAML to JSON: yaml: "),
        "{err}"
    );
    let missing_kind = apply_err(&cluster, "apiVersion: v1\nmetadata:\n  name: nokind\n");
    assert!(
        missing_kind.contains("error validating data: kind not set"),
        "{missing_kind}"
    );
}

#[test]
fn creating_twice_is_already_exists() {
    let cluster = Cluster::start();
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: once\n";
    assert_eq!(cluster.create(manifest), "configmap/once created\n");
    let err = cluster.cmd(&["create", "-f", "-"]).stdin(manifest).err();
    assert_eq!(
        err,
        "Error from server (AlreadyExists): error when creating \"STDIN\": configmaps \"once\" already exists\n"
    );
}

/// `kubectl create configmap|namespace|deployment` go through kubectl's typed clients, which send
/// protobuf request bodies.
#[test]
fn imperative_create_commands() {
    let cluster = Cluster::start();
    assert_eq!(
        cluster.kubectl_ok(&["create", "configmap", "once", "--from-literal=k=v"]),
        "configmap/once created\n"
    );
    let err = cluster.kubectl_err(&["create", "configmap", "once"]);
    assert_eq!(
        err,
        "error: failed to create configmap: configmaps \"once\" already exists\n"
    );
    assert_eq!(
        cluster.kubectl_ok(&["create", "namespace", "team-a"]),
        "namespace/team-a created\n"
    );
    assert_eq!(
        cluster.kubectl_ok(&[
            "create",
            "deployment",
            "web",
            "--image=nginx:1.27-alpine",
            "-n",
            "team-a"
        ]),
        "deployment.apps/web created\n"
    );
    let image = cluster.kubectl_ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "team-a",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "nginx:1.27-alpine");
}

#[test]
fn dry_run_server_creates_nothing() {
    let cluster = Cluster::start();
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ghost\ndata:\n  a: '1'\n";
    let out = cluster
        .cmd(&["apply", "--dry-run=server", "-f", "-"])
        .stdin(manifest)
        .ok();
    assert_eq!(out, "configmap/ghost created (server dry run)\n");
    let out = cluster
        .cmd(&[
            "create",
            "--dry-run=server",
            "-f",
            "-",
            "-o",
            "jsonpath={.metadata.uid}",
        ])
        .stdin(manifest)
        .ok();
    assert!(
        !out.is_empty(),
        "a server dry run returns the object as it would be stored"
    );
    let err = cluster.kubectl_err(&["get", "cm", "ghost"]);
    assert_eq!(
        err,
        "Error from server (NotFound): configmaps \"ghost\" not found\n"
    );

    // Still validated.
    let err = cluster
        .cmd(&["create", "--dry-run=server", "-f", "-"])
        .stdin("apiVersion: v1\nkind: Pod\nmetadata:\n  name: noimage\nspec:\n  containers:\n  - name: app\n")
        .err();
    assert_eq!(
        err,
        "The Pod \"noimage\" is invalid: spec.containers[0].image: Required value\n"
    );
}

#[test]
fn generate_name_appends_five_random_characters() {
    let cluster = Cluster::start();
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: batch-\n";
    let first = cluster.create(manifest);
    let second = cluster.create(manifest);
    for out in [&first, &second] {
        let name = out
            .strip_prefix("configmap/batch-")
            .and_then(|rest| rest.strip_suffix(" created\n"))
            .unwrap_or_else(|| panic!("unexpected output {out:?}"));
        assert_eq!(name.len(), 5, "{out}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
            "{out}"
        );
    }
    assert_ne!(first, second);
    let listed = cluster.kubectl_ok(&["get", "cm", "-o", "name"]);
    assert!(
        listed.contains(first.trim_end_matches(" created\n")),
        "{listed}"
    );
}

#[test]
fn secret_string_data_is_stored_base64_under_data() {
    let cluster = Cluster::start();
    cluster.create(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  password: change-me\ndata:\n  user: YWRtaW4=\n",
    );
    let data = cluster.kubectl_ok(&["get", "secret", "creds", "-o", "jsonpath={.data}"]);
    assert_eq!(data, r#"{"password":"Y2hhbmdlLW1l","user":"YWRtaW4="}"#);
    let string_data =
        cluster.kubectl_ok(&["get", "secret", "creds", "-o", "jsonpath={.stringData}"]);
    assert_eq!(string_data, "");
    let kind = cluster.kubectl_ok(&["get", "secret", "creds", "-o", "jsonpath={.type}"]);
    assert_eq!(kind, "Opaque", "type defaults to Opaque");
}
