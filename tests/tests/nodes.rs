//! Node agents end to end: `skiff up`'s local node and a second `skiff node` joined with the
//! token, their Node objects and Leases, and pods placed across them.

use serde_json::Value;
use skiff_tests::Registry;
use skiff_tests::{Cluster, LOCAL_NODE, eventually, sample_module};

#[test]
fn the_local_node_registers_renews_its_lease_and_lists_its_runtimes() {
    let cluster = Cluster::start();
    cluster.wait_node_ready(LOCAL_NODE, || cluster.server_log());
    let node = cluster.get_json(&["node", LOCAL_NODE]);
    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], LOCAL_NODE);
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert!(labels["kubernetes.io/arch"].is_string());
    let status = &node["status"];
    for resource in ["cpu", "memory", "pods"] {
        assert!(
            status["capacity"][resource].is_string(),
            "capacity {resource}: {status}"
        );
        assert!(
            status["allocatable"][resource].is_string(),
            "allocatable {resource}"
        );
    }
    assert_eq!(status["addresses"][0]["type"], "InternalIP");
    assert_eq!(status["addresses"][0]["address"], "127.0.0.1");
    let runtime = status["nodeInfo"]["containerRuntimeVersion"]
        .as_str()
        .unwrap();
    assert!(runtime.starts_with("wasmtime://"), "{runtime}");
    assert_eq!(status["runtimeHandlers"][0]["name"], "wasmtime");

    let lease = cluster.get_json(&["lease", LOCAL_NODE, "-n", "kube-node-lease"]);
    assert_eq!(lease["spec"]["holderIdentity"], LOCAL_NODE);
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
    let first = lease["spec"]["renewTime"].as_str().unwrap().to_string();
    eventually("the lease is renewed", || {
        let lease = cluster.get_json(&["lease", LOCAL_NODE, "-n", "kube-node-lease"]);
        let now = lease["spec"]["renewTime"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if now != first { Ok(()) } else { Err(now) }
    });

    let classes = cluster.kubectl_ok(&["get", "runtimeclass"]);
    assert!(
        classes.contains("wasmtime") && classes.contains("runc"),
        "{classes}"
    );
    let table = cluster.kubectl_ok(&["get", "nodes"]);
    assert!(
        table.contains(LOCAL_NODE) && table.contains("Ready"),
        "{table}"
    );
}

#[test]
fn a_joined_node_runs_pods_placed_by_selector_and_taints() {
    let registry = Registry::start().expect("starting the registry");
    let cluster = Cluster::start();
    cluster.wait_node_ready(LOCAL_NODE, || cluster.server_log());
    let node_b = cluster.join_node("node-b");
    registry
        .push_wasm(&sample_module("hello"), "samples/hello:v1")
        .expect("pushing hello");
    let hello = format!("{}/samples/hello:v1", registry.addr());

    cluster.kubectl_ok(&["label", "node", "node-b", "disk=ssd"]);
    cluster.kubectl_ok(&["taint", "node", LOCAL_NODE, "dedicated=infra:NoSchedule"]);
    let pod = |name: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n{extra}  containers:\n  - name: app\n    image: {hello}\n"
        )
    };
    // Only node-b is untainted: an unconstrained pod lands there, and its logs come through
    // node-b's own server.
    cluster.apply(&pod("anywhere", ""));
    let placed = cluster.wait_pod_phase("anywhere", "Succeeded");
    assert_eq!(placed["spec"]["nodeName"], "node-b");
    let logs = cluster.kubectl_ok(&["logs", "anywhere"]);
    assert!(
        logs.contains("Hello from Skiff!"),
        "{logs}\n{}",
        node_b.log()
    );

    // A toleration and a selector pick node-a.
    cluster.apply(&pod(
        "infra",
        "  nodeSelector: {kubernetes.io/hostname: node-a}\n  tolerations: [{key: dedicated, operator: Equal, value: infra, effect: NoSchedule}]\n",
    ));
    assert_eq!(
        cluster.wait_pod_phase("infra", "Succeeded")["spec"]["nodeName"],
        LOCAL_NODE
    );

    // Nothing fits: the pod stays Pending with Kubernetes' explanation.
    cluster.apply(&pod("nowhere", "  nodeSelector: {disk: hdd}\n"));
    let condition = eventually("PodScheduled=False", || {
        let pod: Value = cluster.get_json(&["pod", "nowhere"]);
        pod["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled").cloned())
            .filter(|c| c["status"] == "False")
            .ok_or_else(|| pod["status"].to_string())
    });
    assert_eq!(condition["reason"], "Unschedulable");
    let message = condition["message"].as_str().unwrap();
    assert!(message.starts_with("0/2 nodes are available:"), "{message}");
    assert!(
        message.contains("1 node(s) didn't match Pod's node affinity/selector"),
        "{message}"
    );
    assert!(
        message.contains("1 node(s) had untolerated taint"),
        "{message}"
    );
    let described = cluster.kubectl_ok(&["describe", "pod", "nowhere"]);
    assert!(described.contains("FailedScheduling"), "{described}");

    // Labelling a node to match schedules the waiting pod.
    cluster.kubectl_ok(&["label", "node", "node-b", "disk=hdd", "--overwrite"]);
    assert_eq!(
        cluster.wait_pod_phase("nowhere", "Succeeded")["spec"]["nodeName"],
        "node-b"
    );
}

#[test]
fn skiff_push_publishes_a_module_that_pods_run() {
    let registry = Registry::start().expect("starting the registry");
    let image = format!("{}/pushed/hello:v2", registry.addr());
    let out = std::process::Command::new(skiff_tests::skiff_bin())
        .args(["push"])
        .arg(sample_module("hello"))
        .arg(&image)
        .output()
        .expect("running skiff push");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("sha256:"), "{stdout}");
    let cluster = Cluster::start();
    cluster.wait_node_ready(LOCAL_NODE, || cluster.server_log());
    cluster.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pushed\nspec:\n  restartPolicy: Never\n  containers:\n  - name: app\n    image: {image}\n"
    ));
    cluster.wait_pod_phase("pushed", "Succeeded");
}

#[test]
fn pods_keep_running_while_the_control_plane_is_away() {
    let registry = Registry::start().expect("starting the registry");
    registry
        .push_wasm(&sample_module("sleeper"), "samples/sleeper:v1")
        .expect("pushing sleeper");
    let image = format!("{}/samples/sleeper:v1", registry.addr());
    let mut cluster = Cluster::start_control_plane();
    let node = cluster.join_node("node-b");
    cluster.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: steady\nspec:\n  containers:\n  - name: app\n    image: {image}\n"
    ));
    let before = cluster.wait_pod_phase("steady", "Running");
    let id = before["status"]["containerStatuses"][0]["containerID"].clone();

    cluster.stop();
    std::thread::sleep(std::time::Duration::from_secs(3));
    cluster.start_again();

    // The agent rode out the outage: same run, no restart, still Running.
    let after = cluster.wait_pod_phase("steady", "Running");
    let status = &after["status"]["containerStatuses"][0];
    assert_eq!(status["containerID"], id, "{status}\n{}", node.log());
    assert_eq!(status["restartCount"], 0, "{status}");
    let logs = cluster.kubectl_ok(&["logs", "steady"]);
    assert!(logs.contains("sleeping"), "{logs}");
}
