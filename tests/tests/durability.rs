//! What survives a restart (every object, the CA, the kubeconfig a user already has), a `kill -9`
//! right after an acknowledged write, and who may talk to the server at all.

use std::process::Command;

use skiff_tests::{Cluster, require_tool, samples_dir, skiff_bin};

fn snapshot(cluster: &Cluster) -> serde_json::Value {
    let out = cluster.kubectl_ok(&[
        "get",
        "namespaces,configmaps,secrets,deployments,services",
        "-A",
        "-o",
        "json",
    ]);
    let list: serde_json::Value = serde_json::from_str(&out).expect("JSON list");
    let mut items: Vec<String> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            let m = &i["metadata"];
            // Controllers may write a Deployment's status at start; user-written kinds must not move.
            let rv = match i["kind"].as_str() {
                Some("ConfigMap" | "Secret") => &m["resourceVersion"],
                _ => &serde_json::Value::Null,
            };
            format!(
                "{} {}/{} uid={} rv={rv}",
                i["kind"], m["namespace"], m["name"], m["uid"]
            )
        })
        .collect();
    items.sort();
    serde_json::json!(items)
}

#[test]
fn restart_keeps_objects_and_the_ca() {
    let mut cluster = Cluster::start();
    cluster.kubectl_ok(&["apply", "-f", samples_dir().to_str().expect("utf-8 path")]);
    let before = snapshot(&cluster);
    let old_kubeconfig =
        std::fs::read_to_string(cluster.kubeconfig()).expect("reading the kubeconfig");
    let saved = cluster.write_file("old-kubeconfig", &old_kubeconfig);

    cluster.restart();

    assert_eq!(snapshot(&cluster), before);
    // The kubeconfig written before the restart still works: same CA, same admin credential.
    let out = cluster
        .cmd(&["get", "cm", "hello-config", "-n", "demo", "-o", "name"])
        .kubeconfig(&saved)
        .ok();
    assert_eq!(out, "configmap/hello-config\n");
    let ca_line = |kubeconfig: &str| {
        kubeconfig
            .lines()
            .find(|l| l.trim_start().starts_with("certificate-authority-data:"))
            .map(str::to_string)
    };
    let new_kubeconfig =
        std::fs::read_to_string(cluster.kubeconfig()).expect("reading the kubeconfig");
    assert!(ca_line(&old_kubeconfig).is_some(), "{old_kubeconfig}");
    assert_eq!(ca_line(&new_kubeconfig), ca_line(&old_kubeconfig));

    // Writes continue from where they were: a new object gets a newer resourceVersion.
    let rv_before: u64 = cluster
        .kubectl_ok(&[
            "get",
            "cm",
            "hello-config",
            "-n",
            "demo",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .parse()
        .expect("numeric resourceVersion");
    cluster.create_configmap("default", "after-restart", &[]);
    let rv_after: u64 = cluster
        .kubectl_ok(&[
            "get",
            "cm",
            "after-restart",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .parse()
        .expect("numeric resourceVersion");
    assert!(rv_after > rv_before, "{rv_after} > {rv_before}");
}

#[test]
fn an_acknowledged_create_survives_kill_9() {
    let mut cluster = Cluster::start();
    assert_eq!(
        cluster.create_configmap("default", "durable", &[("k", "v")]),
        "configmap/durable created\n"
    );
    cluster.kill();
    cluster.start_again();
    let value = cluster.kubectl_ok(&["get", "cm", "durable", "-o", "jsonpath={.data.k}"]);
    assert_eq!(value, "v");
}

#[test]
fn requests_without_credentials_are_unauthorized() {
    let cluster = Cluster::start();
    let curl = require_tool("curl");
    let out = Command::new(curl)
        .args(["-sk", "-w", "\n%{http_code}"])
        .arg(format!("{}/api/v1/namespaces", cluster.server()))
        .output()
        .expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text
        .rsplit_once('\n')
        .expect("curl printed the status code");
    assert_eq!(code, "401", "{text}");
    let status: serde_json::Value = serde_json::from_str(body).expect("a Status body");
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Unauthorized");
    assert_eq!(status["code"], 401);

    // kubectl with the client certificate replaced by a token the server never issued. (With no
    // credential at all kubectl would prompt for a username instead of sending the request.)
    let kubeconfig = std::fs::read_to_string(cluster.kubeconfig()).expect("reading the kubeconfig");
    let forged: String = kubeconfig
        .lines()
        .filter(|l| !l.contains("client-key-data"))
        .map(|l| {
            if l.contains("client-certificate-data") {
                "    token: not-a-token-this-server-issued\n".to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let path = cluster.write_file("forged-kubeconfig", &forged);
    let err = cluster.cmd(&["get", "namespaces"]).kubeconfig(&path).err();
    // kubectl logs each failed discovery attempt, then says what the user must do; its discovery
    // client words the 401 itself rather than quoting the Status message.
    assert!(
        err.ends_with(
            "\nerror: You must be logged in to the server (the server has asked for the client to \
             provide credentials)\n"
        ),
        "{err}"
    );
}

#[test]
fn skiff_up_tells_the_user_where_the_kubeconfig_is() {
    let cluster = Cluster::start();
    let export = format!("export KUBECONFIG={}", cluster.kubeconfig().display());
    let log = cluster.server_log();
    assert!(
        log.contains(&export),
        "skiff up should print {export:?}:\n{log}"
    );
}

#[test]
fn skiff_version_prints_the_version() {
    let out = Command::new(skiff_bin())
        .arg("version")
        .output()
        .expect("running skiff version");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
}
