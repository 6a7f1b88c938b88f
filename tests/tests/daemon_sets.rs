//! DaemonSets end to end: real `skiff up` and a second node agent joining it, Wasm pods from a
//! real registry, and the real kubectl as a user drives it: one pod per node as nodes come,
//! taint and go, a rolling update with its ControllerRevisions, and `rollout undo`.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use skiff_tests::{Cluster, LOCAL_NODE, Registry, eventually, row, table};

/// The sleeper module (ready at once, runs until stopped) under `tag`.
fn sleeper(registry: &Registry, tag: &str) -> String {
    registry
        .push_sample_tagged("sleeper", tag)
        .expect("pushing the sleeper module")
}

fn daemon_set(image: &str) -> String {
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {
                    "runtimeClassName": "wasmtime",
                    "containers": [{"name": "app", "image": image}],
                },
            },
        },
    })
    .to_string()
}

/// The live (not terminating) agent pods by node, with their image.
fn pods_by_node(cluster: &Cluster) -> BTreeMap<String, Vec<String>> {
    let pods = cluster.get_json(&["pods", "-l", "app=agent"]);
    let mut nodes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pod in pods["items"].as_array().into_iter().flatten() {
        if !pod["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let node = pod["spec"]["nodeName"].as_str().unwrap_or("<none>");
        let image = pod["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or_default();
        nodes.entry(node.into()).or_default().push(image.into());
    }
    nodes
}

/// Waits until each of `nodes` runs exactly one agent pod of `image`, and no other node runs any.
fn wait_placed(cluster: &Cluster, nodes: &[&str], image: &str) {
    let want: BTreeMap<String, Vec<String>> = nodes
        .iter()
        .map(|n| (n.to_string(), vec![image.to_string()]))
        .collect();
    eventually(&format!("one {image} pod on each of {nodes:?}"), || {
        let got = pods_by_node(cluster);
        if got == want {
            Ok(())
        } else {
            Err(format!("{got:?}\n{}", cluster.server_log_tail()))
        }
    });
}

/// The REVISION column of `kubectl rollout history ds/agent`.
fn history(cluster: &Cluster) -> Vec<String> {
    let out = cluster.kubectl_ok(&["rollout", "history", "ds/agent"]);
    table(&out)
        .into_iter()
        .filter_map(|r| r.first().filter(|c| c.parse::<u32>().is_ok()).cloned())
        .collect()
}

fn rollout_status(cluster: &Cluster) -> String {
    cluster.kubectl_ok(&["rollout", "status", "ds/agent", "--timeout=90s"])
}

/// `kubectl get ds agent`'s DESIRED CURRENT READY UP-TO-DATE AVAILABLE.
fn counts(cluster: &Cluster) -> Vec<String> {
    let out = cluster.kubectl_ok(&["get", "ds", "agent"]);
    let t = table(&out);
    assert_eq!(
        t[0],
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE SELECTOR",
            "AGE"
        ],
        "{out}"
    );
    row(&t, "agent")[1..6].to_vec()
}

fn wait_counts(cluster: &Cluster, want: [&str; 5]) {
    eventually(&format!("ds/agent counts {want:?}"), || {
        let got = counts(cluster);
        if got == want {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });
}

#[test]
fn a_daemon_set_follows_nodes_as_they_join_taint_and_leave_and_rolls_out() {
    let (cluster, registry) = Cluster::start_with_registry();
    let (v1, v2) = (sleeper(&registry, "v1"), sleeper(&registry, "v2"));
    cluster.apply(&daemon_set(&v1));
    let out = rollout_status(&cluster);
    assert!(
        out.contains("daemon set \"agent\" successfully rolled out"),
        "{out}"
    );
    wait_placed(&cluster, &[LOCAL_NODE], &v1);
    wait_counts(&cluster, ["1", "1", "1", "1", "1"]);

    // The pod is pinned to its node by affinity, not by nodeName, and carries the tolerations
    // and labels Kubernetes gives daemon pods.
    let pods = cluster.get_json(&["pods", "-l", "app=agent"]);
    let pod = &pods["items"][0];
    assert_eq!(
        pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"],
        json!({"nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": [LOCAL_NODE]}]}]})
    );
    let tolerations: Vec<&str> = pod["spec"]["tolerations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["key"].as_str())
        .collect();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/unschedulable",
    ] {
        assert!(tolerations.contains(&key), "{tolerations:?}");
    }
    let hash = pod["metadata"]["labels"]["controller-revision-hash"]
        .as_str()
        .expect("a controller-revision-hash label")
        .to_string();
    assert_eq!(pod["metadata"]["labels"]["pod-template-generation"], "1");
    let revisions = cluster.kubectl_ok(&["get", "controllerrevisions"]);
    let revision = format!("agent-{hash}");
    let t = table(&revisions);
    assert_eq!(row(&t, &revision)[1], "daemonset.apps/agent", "{revisions}");
    assert_eq!(row(&t, &revision)[2], "1", "{revisions}");
    let pod_name = pod["metadata"]["name"].as_str().unwrap().to_string();
    let events = cluster.kubectl_ok(&["describe", "ds", "agent"]);
    assert!(
        events.contains(&format!("Created pod: {pod_name}")),
        "{events}"
    );

    // A node that joins gets its pod.
    let mut node_b = cluster.join_node("node-b");
    wait_placed(&cluster, &[LOCAL_NODE, "node-b"], &v1);
    wait_counts(&cluster, ["2", "2", "2", "2", "2"]);

    // A NoExecute taint the pods do not tolerate evicts the daemon pod; a NoSchedule one does
    // not, but keeps a new one from coming.
    cluster.kubectl_ok(&["taint", "node", "node-b", "dedicated=infra:NoExecute"]);
    wait_placed(&cluster, &[LOCAL_NODE], &v1);
    wait_counts(&cluster, ["1", "1", "1", "1", "1"]);
    cluster.kubectl_ok(&["taint", "node", "node-b", "dedicated=infra:NoExecute-"]);
    wait_placed(&cluster, &[LOCAL_NODE, "node-b"], &v1);
    cluster.kubectl_ok(&["taint", "node", "node-b", "dedicated=infra:NoSchedule"]);
    // The pod stays but no longer counts: it is misscheduled.
    wait_counts(&cluster, ["1", "1", "1", "1", "1"]);
    let misscheduled = cluster.kubectl_ok(&[
        "get",
        "ds",
        "agent",
        "-o",
        "jsonpath={.status.numberMisscheduled}",
    ]);
    assert_eq!(misscheduled, "1");
    wait_placed(&cluster, &[LOCAL_NODE, "node-b"], &v1);
    cluster.kubectl_ok(&["taint", "node", "node-b", "dedicated=infra:NoSchedule-"]);
    wait_counts(&cluster, ["2", "2", "2", "2", "2"]);

    // A rolling update replaces each node's pod, one node at a time.
    cluster.kubectl_ok(&["set", "image", "ds/agent", &format!("app={v2}")]);
    let out = rollout_status(&cluster);
    assert!(out.contains("successfully rolled out"), "{out}");
    wait_placed(&cluster, &[LOCAL_NODE, "node-b"], &v2);
    assert_eq!(history(&cluster), ["1", "2"]);
    let revision2 = cluster.kubectl_ok(&["rollout", "history", "ds/agent", "--revision=2"]);
    assert!(revision2.contains(&v2), "{revision2}");

    // Undo goes back to the first template, which becomes revision 3.
    let undo = cluster.kubectl_ok(&["rollout", "undo", "ds/agent"]);
    assert!(undo.contains("daemonset.apps/agent rolled back"), "{undo}");
    rollout_status(&cluster);
    wait_placed(&cluster, &[LOCAL_NODE, "node-b"], &v1);
    assert_eq!(history(&cluster), ["2", "3"]);
    let revisions: Value = cluster.get_json(&["controllerrevisions"]);
    assert_eq!(
        revisions["items"].as_array().unwrap().len(),
        2,
        "{revisions}"
    );

    // A node that leaves loses its pod.
    node_b.kill();
    cluster.kubectl_ok(&["delete", "node", "node-b"]);
    wait_placed(&cluster, &[LOCAL_NODE], &v1);
    wait_counts(&cluster, ["1", "1", "1", "1", "1"]);

    // Deleting the DaemonSet deletes its pods and revisions.
    cluster.kubectl_ok(&["delete", "ds", "agent"]);
    eventually("the agent pods and revisions gone", || {
        let pods = cluster.kubectl_ok(&["get", "pods", "-l", "app=agent", "-o", "name"]);
        let revisions = cluster.kubectl_ok(&["get", "controllerrevisions", "-o", "name"]);
        if pods.trim().is_empty() && revisions.trim().is_empty() {
            Ok(())
        } else {
            Err(format!("{pods}{revisions}"))
        }
    });
}
