//! `samples/`: what a newcomer does first: apply the directory (twice), then look at what it made.

use skiff_tests::{Cluster, field, row, samples_dir, table};

#[test]
fn applying_samples_twice_creates_then_leaves_unchanged() {
    let cluster = Cluster::start();
    let dir = samples_dir();
    let dir = dir.to_str().expect("utf-8 path");

    let first = cluster.kubectl_ok(&["apply", "-f", dir]);
    assert_eq!(
        first,
        "namespace/demo created\n\
         configmap/hello-config created\n\
         secret/hello-credentials created\n\
         deployment.apps/hello created\n\
         service/hello created\n"
    );
    let second = cluster.kubectl_ok(&["apply", "-f", dir]);
    assert_eq!(
        second,
        "namespace/demo unchanged\n\
         configmap/hello-config unchanged\n\
         secret/hello-credentials unchanged\n\
         deployment.apps/hello unchanged\n\
         service/hello unchanged\n"
    );
}

#[test]
fn sample_objects_print_as_kubernetes_tables() {
    let cluster = Cluster::start();
    cluster.kubectl_ok(&["apply", "-f", samples_dir().to_str().expect("utf-8 path")]);

    let deployments = table(&cluster.kubectl_ok(&["get", "deployments", "-n", "demo"]));
    assert_eq!(
        deployments[0],
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    );
    let hello = row(&deployments, "hello");
    assert!(
        hello[1].ends_with("/2"),
        "READY is ready/desired: {hello:?}"
    );

    let wide = table(&cluster.kubectl_ok(&["get", "deploy", "hello", "-n", "demo", "-o", "wide"]));
    assert_eq!(
        wide[0],
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert_eq!(
        row(&wide, "hello")[5..],
        ["web", "nginx:1.27-alpine", "app.kubernetes.io/name=hello"]
    );

    let services = table(&cluster.kubectl_ok(&["get", "services", "-n", "demo"]));
    assert_eq!(
        services[0],
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    let svc = row(&services, "hello");
    assert_eq!(svc[1], "ClusterIP");
    assert!(
        svc[2].parse::<std::net::IpAddr>().is_ok(),
        "a ClusterIP service gets an address: {svc:?}"
    );
    assert_eq!(svc[3..5], ["<none>", "80/TCP"]);

    let configmaps = table(&cluster.kubectl_ok(&["get", "cm", "hello-config", "-n", "demo"]));
    assert_eq!(configmaps[0], ["NAME", "DATA", "AGE"]);
    assert_eq!(row(&configmaps, "hello-config")[1], "2");

    let secrets =
        table(&cluster.kubectl_ok(&["get", "secrets", "hello-credentials", "-n", "demo"]));
    assert_eq!(secrets[0], ["NAME", "TYPE", "DATA", "AGE"]);
    assert_eq!(row(&secrets, "hello-credentials")[1..3], ["Opaque", "2"]);

    let password = cluster.kubectl_ok(&[
        "get",
        "secret",
        "hello-credentials",
        "-n",
        "demo",
        "-o",
        "jsonpath={.data.password}",
    ]);
    assert_eq!(password, "Y2hhbmdlLW1l");
}

#[test]
fn describe_shows_sample_objects() {
    let cluster = Cluster::start();
    cluster.kubectl_ok(&["apply", "-f", samples_dir().to_str().expect("utf-8 path")]);

    let cm = cluster.kubectl_ok(&["describe", "configmap", "hello-config", "-n", "demo"]);
    assert_eq!(field(&cm, "Name:"), Some("hello-config"), "{cm}");
    assert_eq!(field(&cm, "Namespace:"), Some("demo"), "{cm}");
    assert_eq!(
        field(&cm, "Labels:"),
        Some("app.kubernetes.io/name=hello"),
        "{cm}"
    );
    assert!(cm.contains("GREETING:\n----\nHello from Skiff\n"), "{cm}");

    let deploy = cluster.kubectl_ok(&["describe", "deployment", "hello", "-n", "demo"]);
    for (key, value) in [
        ("Name:", "hello"),
        ("Namespace:", "demo"),
        ("Selector:", "app.kubernetes.io/name=hello"),
        ("StrategyType:", "RollingUpdate"),
        (
            "RollingUpdateStrategy:",
            "25% max unavailable, 25% max surge",
        ),
        ("Image:", "nginx:1.27-alpine"),
        ("Port:", "80/TCP"),
    ] {
        assert_eq!(
            field(&deploy, key),
            Some(value),
            "describe deployment {key}\n{deploy}"
        );
    }

    let secret = cluster.kubectl_ok(&["describe", "secret", "hello-credentials", "-n", "demo"]);
    assert!(secret.contains("password:  9 bytes"), "{secret}");
    assert!(
        !secret.contains("change-me"),
        "describe must not print secret values:\n{secret}"
    );
}

#[test]
fn diff_shows_what_an_apply_would_change_and_nothing_else() {
    let cluster = Cluster::start();
    let dir = samples_dir();
    cluster.kubectl_ok(&["apply", "-f", dir.to_str().expect("utf-8 path")]);

    let unchanged = cluster.kubectl(&["diff", "-f", dir.to_str().expect("utf-8 path")]);
    assert!(
        unchanged.success() && unchanged.stdout.is_empty(),
        "{unchanged}"
    );

    let deployment = std::fs::read_to_string(dir.join("30-deployment.yaml")).expect("sample");
    assert!(
        deployment.contains("replicas: 2"),
        "the sample runs two replicas"
    );
    let scaled = cluster.write_file(
        "scaled.yaml",
        &deployment.replace("replicas: 2", "replicas: 3"),
    );
    let diff = cluster.kubectl(&["diff", "-f", scaled.to_str().expect("utf-8 path")]);
    // kubectl diff exits 1 when there are differences.
    assert_eq!(diff.status.code(), Some(1), "{diff}");
    let changed: Vec<&str> = diff
        .stdout
        .lines()
        .filter(|l| {
            (l.starts_with('-') || l.starts_with('+'))
                && !l.starts_with("---")
                && !l.starts_with("+++")
        })
        .collect();
    assert_eq!(
        changed,
        [
            "-  generation: 1",
            "+  generation: 2",
            "-  replicas: 2",
            "+  replicas: 3"
        ],
        "{diff}"
    );
    // A server-side dry run writes nothing.
    let replicas = cluster.kubectl_ok(&[
        "get",
        "deploy",
        "hello",
        "-n",
        "demo",
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(replicas, "2");
}
