//! The scheduler and the node lifecycle controller against `skiff control` with fake Node
//! objects (each with a Lease, as an agent would keep), driven by the real kubectl.

use serde_json::json;
use skiff_tests::{Cluster, eventually, field, row, table};

struct FakeNode<'a> {
    name: &'a str,
    labels: serde_json::Value,
    taints: serde_json::Value,
    cpu: &'a str,
    handlers: &'a [&'a str],
}

impl<'a> FakeNode<'a> {
    fn new(name: &'a str) -> FakeNode<'a> {
        FakeNode {
            name,
            labels: json!({}),
            taints: json!([]),
            cpu: "4",
            handlers: &["wasmtime", "runc"],
        }
    }

    fn create(&self, cluster: &Cluster) {
        let mut labels = self.labels.clone();
        labels["kubernetes.io/hostname"] = json!(self.name);
        let resources = json!({"cpu": self.cpu, "memory": "8Gi", "pods": "110"});
        let handlers: Vec<_> = self.handlers.iter().map(|h| json!({"name": h})).collect();
        let node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.name, "labels": labels},
            "spec": {"taints": self.taints},
            "status": {
                "capacity": resources, "allocatable": resources, "runtimeHandlers": handlers,
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "fake node"}],
            },
        });
        cluster.create(&node.to_string());
        renew_lease(cluster, self.name, 0);
    }
}

/// Creates or renews the node's Lease; each `beat` writes a distinct renewTime, which is
/// what the node lifecycle controller watches for.
fn renew_lease(cluster: &Cluster, node: &str, beat: u32) {
    let renew = format!(
        "2030-01-01T{:02}:{:02}:{:02}.000000Z",
        beat / 3600 % 24,
        beat / 60 % 60,
        beat % 60
    );
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": node, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": renew},
    });
    cluster.apply(&lease.to_string());
}

fn pod(name: &str, spec: serde_json::Value) -> String {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "app", "image": "registry.invalid/app:1"}]);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}).to_string()
}

fn jsonpath(cluster: &Cluster, kind: &str, name: &str, path: &str) -> String {
    cluster.kubectl_ok(&["get", kind, name, "-o", &format!("jsonpath={path}")])
}

/// Waits for `pod` to be bound and returns its node.
fn node_of(cluster: &Cluster, pod: &str) -> String {
    eventually(&format!("pod {pod} scheduled"), || {
        let node = jsonpath(cluster, "pod", pod, "{.spec.nodeName}");
        if node.is_empty() {
            Err(format!(
                "still pending: {}",
                unschedulable_message(cluster, pod)
            ))
        } else {
            Ok(node)
        }
    })
}

fn unschedulable_message(cluster: &Cluster, pod: &str) -> String {
    jsonpath(
        cluster,
        "pod",
        pod,
        r#"{.status.conditions[?(@.type=="PodScheduled")].reason}: {.status.conditions[?(@.type=="PodScheduled")].message}"#,
    )
}

/// Waits for `pod`'s `PodScheduled=False` condition to read `Unschedulable: message`.
fn wait_unschedulable(cluster: &Cluster, pod: &str, message: &str) {
    let want = format!("Unschedulable: {message}");
    eventually(&format!("pod {pod} unschedulable"), || {
        let got = unschedulable_message(cluster, pod);
        if got == want { Ok(()) } else { Err(got) }
    });
    assert_eq!(jsonpath(cluster, "pod", pod, "{.spec.nodeName}"), "");
}

/// Why a pod selecting one node of `placement_honours_selectors_taints_and_cordons` cannot go
/// anywhere: each node fails at its first filter.
const BLOCKED: &str = "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, \
     1 node(s) were unschedulable, 2 node(s) didn't match Pod's node affinity/selector. \
     preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling..";

/// The control plane with a grace period no test outlasts on a loaded machine, so that the fake
/// nodes stay Ready without a Lease renewer; the Lease test sets its own.
fn start() -> Cluster {
    Cluster::start_control_plane_with_env(&[("SKIFF_NODE_MONITOR_GRACE_PERIOD", "600")])
}

#[test]
fn placement_honours_selectors_taints_and_cordons() {
    let cluster = start();
    FakeNode::new("plain").create(&cluster);
    FakeNode {
        labels: json!({"disk": "ssd"}),
        ..FakeNode::new("fast")
    }
    .create(&cluster);
    FakeNode {
        taints: json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
        ..FakeNode::new("gpu")
    }
    .create(&cluster);
    FakeNode::new("drained").create(&cluster);
    let cordon = cluster.kubectl_ok(&["cordon", "drained"]);
    assert!(cordon.contains("node/drained cordoned"), "{cordon}");

    cluster.create(&pod("wants-ssd", json!({"nodeSelector": {"disk": "ssd"}})));
    assert_eq!(node_of(&cluster, "wants-ssd"), "fast");

    let on_gpu = json!({"kubernetes.io/hostname": "gpu"});
    cluster.create(&pod(
        "tolerates-gpu",
        json!({"nodeSelector": on_gpu, "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}),
    ));
    assert_eq!(node_of(&cluster, "tolerates-gpu"), "gpu");

    cluster.create(&pod("untolerated", json!({"nodeSelector": on_gpu})));
    wait_unschedulable(&cluster, "untolerated", BLOCKED);

    cluster.create(&pod(
        "wants-drained",
        json!({"nodeSelector": {"kubernetes.io/hostname": "drained"}}),
    ));
    // The cordon is checked before the selector, as kube-scheduler orders its filters.
    wait_unschedulable(&cluster, "wants-drained", BLOCKED);
    // Ten more pods free to go anywhere: never the cordoned or the tainted node.
    for i in 0..10 {
        cluster.create(&pod(&format!("free-{i}"), json!({})));
    }
    for i in 0..10 {
        let node = node_of(&cluster, &format!("free-{i}"));
        assert!(node == "plain" || node == "fast", "free-{i} went to {node}");
    }
    // Uncordoning is a cluster change: the waiting pod is retried without a new create.
    cluster.kubectl_ok(&["uncordon", "drained"]);
    assert_eq!(node_of(&cluster, "wants-drained"), "drained");
}

#[test]
fn too_big_pod_waits_with_kubernetes_words_until_a_node_fits() {
    let cluster = start();
    FakeNode {
        cpu: "1",
        ..FakeNode::new("small")
    }
    .create(&cluster);
    let big = json!({"containers": [{"name": "app", "image": "registry.invalid/app:1",
                                     "resources": {"requests": {"cpu": "2", "memory": "1Gi"}}}]});
    cluster.create(&pod("big", big));
    let message = "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are \
                   available: 1 No preemption victims found for incoming pod..";
    wait_unschedulable(&cluster, "big", message);
    let describe = eventually("FailedScheduling event", || {
        let out = cluster.kubectl_ok(&["describe", "pod", "big"]);
        if out.contains("FailedScheduling") {
            Ok(out)
        } else {
            Err(out)
        }
    });
    let event = describe
        .lines()
        .find(|l| l.contains("FailedScheduling"))
        .unwrap_or_default();
    assert!(event.contains("Warning"), "{describe}");
    assert!(event.contains("default-scheduler"), "{describe}");
    assert!(event.contains(message), "{describe}");
    assert_eq!(field(&describe, "Status:"), Some("Pending"), "{describe}");

    FakeNode {
        cpu: "8",
        ..FakeNode::new("large")
    }
    .create(&cluster);
    assert_eq!(node_of(&cluster, "big"), "large");
    eventually("Scheduled event", || {
        let out = cluster.kubectl_ok(&["describe", "pod", "big"]);
        let line = out.lines().find(|l| l.contains(" Scheduled "));
        match line {
            Some(l) if l.contains("Successfully assigned default/big to large") => Ok(()),
            _ => Err(out),
        }
    });
}

#[test]
fn runtime_classes_exist_and_pick_nodes_with_their_handler() {
    let cluster = start();
    let classes = table(&cluster.kubectl_ok(&["get", "runtimeclass"]));
    assert_eq!(classes[0][..2], ["NAME", "HANDLER"], "{classes:?}");
    assert_eq!(row(&classes, "wasmtime")[1], "wasmtime");
    assert_eq!(row(&classes, "runc")[1], "runc");

    FakeNode {
        handlers: &["wasmtime"],
        ..FakeNode::new("wasm-only")
    }
    .create(&cluster);
    FakeNode {
        handlers: &["runc"],
        ..FakeNode::new("oci-only")
    }
    .create(&cluster);
    cluster.create(&pod("wasm", json!({"runtimeClassName": "wasmtime"})));
    cluster.create(&pod("oci", json!({"runtimeClassName": "runc"})));
    assert_eq!(node_of(&cluster, "wasm"), "wasm-only");
    assert_eq!(node_of(&cluster, "oci"), "oci-only");

    cluster.create(&pod(
        "wasm-on-oci",
        json!({"runtimeClassName": "wasmtime",
               "nodeSelector": {"kubernetes.io/hostname": "oci-only"}}),
    ));
    wait_unschedulable(
        &cluster,
        "wasm-on-oci",
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
         1 node(s) didn't support runtime handler \"wasmtime\". preemption: 0/2 nodes are \
         available: 2 Preemption is not helpful for scheduling..",
    );
    cluster.create(&pod("sandboxed", json!({"runtimeClassName": "gvisor"})));
    wait_unschedulable(
        &cluster,
        "sandboxed",
        "0/2 nodes are available: runtimeclass.node.k8s.io \"gvisor\" not found. preemption: \
         0/2 nodes are available: 2 Preemption is not helpful for scheduling..",
    );
    // Creating the missing RuntimeClass is a change worth retrying for.
    cluster.create(
        &json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                "metadata": {"name": "gvisor"}, "handler": "runc"})
        .to_string(),
    );
    assert_eq!(node_of(&cluster, "sandboxed"), "oci-only");
}

#[test]
fn a_replica_sets_pods_spread_across_nodes() {
    let cluster = start();
    for name in ["n1", "n2", "n3"] {
        FakeNode::new(name).create(&cluster);
    }
    // A busy unrelated pod on n1 must not matter more than spreading.
    cluster.create(&pod(
        "other",
        json!({"nodeSelector": {"kubernetes.io/hostname": "n1"}}),
    ));
    node_of(&cluster, "other");
    cluster.create(
        &json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
                "spec": {"replicas": 6, "selector": {"matchLabels": {"app": "web"}},
                         "template": {"metadata": {"labels": {"app": "web"}},
                                      "spec": {"containers": [{"name": "app", "image": "x"}]}}}})
        .to_string(),
    );
    let per_node = eventually("the six replicas scheduled", || {
        let pods = cluster.get_json(&["pods", "-l", "app=web"]);
        let nodes: Vec<String> = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
            .collect();
        if nodes.len() != 6 {
            return Err(format!("{} of 6 scheduled", nodes.len()));
        }
        let mut per_node = std::collections::BTreeMap::new();
        for node in nodes {
            *per_node.entry(node).or_insert(0) += 1;
        }
        Ok(per_node)
    });
    assert_eq!(
        per_node,
        [
            ("n1".to_string(), 2),
            ("n2".to_string(), 2),
            ("n3".to_string(), 2)
        ]
        .into(),
        "two of the six replicas on each node"
    );
}

#[test]
fn a_node_whose_lease_stops_turns_unknown_and_recovers() {
    let cluster =
        Cluster::start_control_plane_with_env(&[("SKIFF_NODE_MONITOR_GRACE_PERIOD", "4")]);
    FakeNode::new("edge").create(&cluster);
    let ready = r#"{.status.conditions[?(@.type=="Ready")].status}"#;
    assert_eq!(jsonpath(&cluster, "node", "edge", ready), "True");

    eventually("node edge marked NotReady", || {
        let nodes = table(&cluster.kubectl_ok(&["get", "nodes"]));
        match row(&nodes, "edge")[1].as_str() {
            "NotReady" => Ok(()),
            other => Err(other.to_string()),
        }
    });
    let reason = r#"{.status.conditions[?(@.type=="Ready")].reason}"#;
    let message = r#"{.status.conditions[?(@.type=="Ready")].message}"#;
    assert_eq!(jsonpath(&cluster, "node", "edge", ready), "Unknown");
    assert_eq!(
        jsonpath(&cluster, "node", "edge", reason),
        "NodeStatusUnknown"
    );
    assert_eq!(
        jsonpath(&cluster, "node", "edge", message),
        "Kubelet stopped posting node status."
    );
    let taints = || {
        jsonpath(
            &cluster,
            "node",
            "edge",
            r#"{range .spec.taints[*]}{.key}:{.effect} {end}"#,
        )
    };
    eventually("unreachable taints", || {
        let t = taints();
        if t.trim()
            == "node.kubernetes.io/unreachable:NoSchedule node.kubernetes.io/unreachable:NoExecute"
        {
            Ok(())
        } else {
            Err(t)
        }
    });
    cluster.create(&pod("newcomer", json!({})));
    wait_unschedulable(
        &cluster,
        "newcomer",
        "0/1 nodes are available: 1 node(s) had untolerated taint \
         {node.kubernetes.io/unreachable: }. preemption: 0/1 nodes are available: 1 Preemption \
         is not helpful for scheduling..",
    );

    // The agent comes back: it renews its Lease and reports Ready.
    let mut beat = 1;
    eventually("taints removed once the node is back", || {
        renew_lease(&cluster, "edge", beat);
        beat += 1;
        let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True",
            "reason": "KubeletReady", "message": "back"}]}});
        cluster.kubectl_ok(&[
            "patch",
            "node",
            "edge",
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ]);
        let t = taints();
        if t.trim().is_empty() { Ok(()) } else { Err(t) }
    });
    assert_eq!(node_of(&cluster, "newcomer"), "edge");
}

/// What another scheduler does: `POST pods/NAME/binding`, refused once the pod is bound.
#[test]
fn a_binding_assigns_a_pod_once() {
    let cluster = Cluster::start_control_plane();
    cluster.create("{apiVersion: v1, kind: Pod, metadata: {name: mine}, spec: {schedulerName: my-scheduler, containers: [{name: c, image: busybox}]}}");
    let uid = cluster.kubectl_ok(&["get", "pod", "mine", "-o", "jsonpath={.metadata.uid}"]);
    let binding = |node: &str, uid: &str| {
        let body = json!({"apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": "mine", "uid": uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
        let path = cluster.write_file("binding.json", &body.to_string());
        cluster.kubectl(&[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/mine/binding",
            "-f",
            path.to_str().unwrap(),
        ])
    };

    let wrong_uid = binding("node-a", "not-the-uid");
    assert!(!wrong_uid.success(), "{wrong_uid}");
    assert!(
        wrong_uid
            .stderr
            .contains("Precondition failed: UID in precondition"),
        "{wrong_uid}"
    );
    let bound = binding("node-a", &uid);
    assert!(bound.success(), "{bound}");
    let pod = cluster.get_json(&["pod", "mine"]);
    assert_eq!(pod["spec"]["nodeName"], "node-a");
    let conditions = pod["status"]["conditions"].as_array().unwrap();
    let scheduled: Vec<_> = conditions
        .iter()
        .filter(|c| c["type"] == "PodScheduled")
        .collect();
    assert_eq!(scheduled.len(), 1, "{conditions:?}");
    assert_eq!(scheduled[0]["status"], "True");

    let again = binding("node-b", &uid);
    assert!(
        again
            .stderr
            .contains("pod mine is already assigned to node \"node-a\""),
        "{again}"
    );
    assert_eq!(
        cluster.kubectl_ok(&["get", "pod", "mine", "-o", "jsonpath={.spec.nodeName}"]),
        "node-a"
    );
}
