use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use super::daemon::{
    Daemon, Placement, TEMPLATE_GENERATION_LABEL, add_daemon_tolerations, by_node, place_on,
    target_node,
};
use super::*;

fn node(name: &str, labels: Value, taints: Value) -> NodeInfo {
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints},
    }))
    .unwrap();
    NodeInfo::from_node(&node)
}

fn plain(name: &str) -> NodeInfo {
    node(name, json!({}), json!([]))
}

fn daemon_set(spec: Value) -> DaemonSet {
    let mut ds = json!({
        "metadata": {"name": "agent", "namespace": "default", "uid": "u1", "generation": 2},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "agent", "image": "agent:1"}]},
            },
        },
    });
    merge(&mut ds["spec"], spec);
    serde_json::from_value(ds).unwrap()
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn rolling(surge: Value, unavailable: Value) -> Value {
    json!({"updateStrategy": {"type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}})
}

/// A running pod of the DaemonSet on `node` at revision `hash`, ready since `ready` seconds
/// ago (`None`: not ready), created `age` seconds ago.
fn pod(name: &str, node: &str, hash: &str, ready: Option<i64>, age: i64) -> Arc<Pod> {
    let now = Timestamp::now();
    let ago = |s: i64| Time(now - k8s_openapi::jiff::SignedDuration::from_secs(s));
    let conditions =
        ready.map(|s| json!([{"type": "Ready", "status": "True", "lastTransitionTime": ago(s)}]));
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": ago(age),
                         "labels": {"app": "agent", REVISION_HASH_LABEL: hash}},
            "spec": {"nodeName": node, "containers": [{"name": "agent", "image": "agent:1"}]},
            "status": {"phase": "Running", "conditions": conditions},
        }))
        .unwrap(),
    )
}

fn with_phase(pod: &Pod, phase: &str) -> Arc<Pod> {
    let mut pod = pod.clone();
    pod.status.get_or_insert_with(Default::default).phase = Some(phase.into());
    Arc::new(pod)
}

fn names(pods: &[Arc<Pod>]) -> Vec<String> {
    let mut names: Vec<_> = pods.iter().map(|p| p.name_any()).collect();
    names.sort();
    names
}

#[test]
fn eligibility_follows_selectors_affinity_and_taints() {
    let ds = daemon_set(json!({"template": {"spec": {
        "nodeSelector": {"role": "edge"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}],
    }}}));
    let d = Daemon::new(&ds, "h".into());
    let run = Placement {
        should_run: true,
        may_stay: true,
    };
    let edge = json!({"role": "edge"});
    assert_eq!(d.placement(&node("a", edge.clone(), json!([]))), run);
    assert_eq!(
        d.placement(&node("b", json!({}), json!([]))),
        Placement {
            should_run: false,
            may_stay: false
        },
        "selector does not match"
    );
    // The template's own toleration and the ones every daemon pod gets.
    let tolerated = json!([
        {"key": "dedicated", "value": "infra", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
        {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
        {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"},
    ]);
    assert_eq!(d.placement(&node("c", edge.clone(), tolerated)), run);
    // An untolerated NoSchedule taint keeps new pods off but lets one there stay.
    assert_eq!(
        d.placement(&node(
            "d",
            edge.clone(),
            json!([{"key": "gpu", "effect": "NoSchedule"}])
        )),
        Placement {
            should_run: false,
            may_stay: true
        }
    );
    assert_eq!(
        d.placement(&node(
            "e",
            edge.clone(),
            json!([{"key": "gpu", "effect": "NoExecute"}])
        )),
        Placement {
            should_run: false,
            may_stay: false
        }
    );
    // PreferNoSchedule never filters.
    assert_eq!(
        d.placement(&node(
            "f",
            edge,
            json!([{"key": "gpu", "effect": "PreferNoSchedule"}])
        )),
        run
    );
    // network-unavailable is tolerated by hostNetwork pods only.
    let unavailable =
        json!([{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]);
    let plain_ds = Daemon::new(&daemon_set(json!({})), "h".into());
    assert!(
        !plain_ds
            .placement(&node("g", json!({}), unavailable.clone()))
            .should_run
    );
    let host = Daemon::new(
        &daemon_set(json!({"template": {"spec": {"hostNetwork": true}}})),
        "h".into(),
    );
    assert!(
        host.placement(&node("g", json!({}), unavailable))
            .should_run
    );
}

#[test]
fn required_node_affinity_and_node_name_limit_the_nodes() {
    let ds = daemon_set(json!({"template": {"spec": {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1", "z2"]}]}]}}}}}}));
    let d = Daemon::new(&ds, "h".into());
    assert!(
        d.placement(&node("a", json!({"zone": "z2"}), json!([])))
            .should_run
    );
    assert!(
        !d.placement(&node("b", json!({"zone": "z3"}), json!([])))
            .should_run
    );
    let pinned = Daemon::new(
        &daemon_set(json!({"template": {"spec": {"nodeName": "a"}}})),
        "h".into(),
    );
    assert!(pinned.placement(&plain("a")).should_run);
    assert!(!pinned.placement(&plain("b")).should_run);
}

#[test]
fn pods_carry_daemon_tolerations_revision_labels_and_their_node() {
    let ds = daemon_set(json!({"template": {"spec": {
        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "Exists"}]}]}}},
    }}}));
    let d = Daemon::new(&ds, "5d8f7".into());
    let template = d.pod_template(&ds);
    let labels = template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
    assert_eq!(labels[REVISION_HASH_LABEL], "5d8f7");
    assert_eq!(labels[TEMPLATE_GENERATION_LABEL], "2");
    let mut spec = template.spec.unwrap();
    let tolerations = spec.tolerations.clone().unwrap();
    assert_eq!(tolerations.len(), 6, "{tolerations:?}");
    // Adding them again changes nothing.
    add_daemon_tolerations(&mut spec);
    assert_eq!(spec.tolerations.as_ref().unwrap().len(), 6);

    place_on(&mut spec, "node-b");
    let pod = Pod {
        spec: Some(spec),
        ..Pod::default()
    };
    let terms = serde_json::to_value(&pod.spec.as_ref().unwrap().affinity).unwrap();
    assert_eq!(
        terms["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"],
        json!({"nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["node-b"]}]}]})
    );
    assert_eq!(target_node(&pod), Some("node-b"));
    let bound = pod_on("x", "node-c");
    assert_eq!(target_node(&bound), Some("node-c"));
}

fn pod_on(name: &str, node: &str) -> Arc<Pod> {
    pod(name, node, "h", Some(100), 100)
}

#[test]
fn the_core_loop_fills_empty_nodes_and_clears_the_rest() {
    let ds = daemon_set(json!({"template": {"spec": {"nodeSelector": {"run": "yes"}}}}));
    let d = Daemon::new(&ds, "h".into());
    let yes = json!({"run": "yes"});
    let nodes = [
        node("empty", yes.clone(), json!([])),
        node("one", yes.clone(), json!([])),
        node("two", yes.clone(), json!([])),
        node("failed", yes.clone(), json!([])),
        node("unwanted", json!({}), json!([])),
    ];
    let owned = vec![
        pod("p-one", "one", "h", Some(10), 10),
        pod("p-two-old", "two", "h", Some(10), 20),
        pod("p-two-new", "two", "h", Some(10), 5),
        with_phase(&pod("p-failed", "failed", "h", None, 10), "Failed"),
        pod("p-unwanted", "unwanted", "h", Some(10), 10),
        pod("p-gone", "removed", "h", Some(10), 10),
    ];
    let plan = d.manage(&nodes, &by_node(&owned));
    assert_eq!(plan.create, ["empty"]);
    assert_eq!(names(&plan.delete), ["p-two-new", "p-unwanted"]);
    assert_eq!(
        plan.failed
            .iter()
            .map(|(p, n)| (p.name_any(), n.clone()))
            .collect::<Vec<_>>(),
        [("p-failed".to_string(), "failed".to_string())]
    );
    assert_eq!(names(&plan.gone), ["p-gone"]);
}

#[test]
fn failed_pods_back_off_per_node() {
    let backoff = FailedPodBackoff::default();
    let failed = vec![(pod_on("p", "a"), "a".to_string())];
    let (admitted, wait) = backoff.admit("ds", &failed);
    assert_eq!(admitted.len(), 1);
    assert_eq!(wait, None);
    // The next failure on that node waits for the back-off.
    let (admitted, wait) = backoff.admit("ds", &failed);
    assert!(admitted.is_empty());
    assert!(wait.is_some_and(|w| w <= FAILED_POD_BACKOFF));
    // Another node is not held back.
    let (admitted, _) = backoff.admit("ds", &[(pod_on("q", "b"), "b".to_string())]);
    assert_eq!(admitted.len(), 1);
}

#[test]
fn without_surge_old_pods_go_within_max_unavailable() {
    let nodes: Vec<_> = ["a", "b", "c", "d"].into_iter().map(plain).collect();
    let old = |n: &str| pod(&format!("old-{n}"), n, "old", Some(100), 100);
    let owned = vec![old("a"), old("b"), old("c"), old("d")];
    // 25% of 4 nodes is one.
    let d = Daemon::new(&daemon_set(rolling(json!(0), json!("25%"))), "new".into());
    let plan = d.rolling_update(&nodes, by_node(&owned), Timestamp::now());
    assert_eq!(names(&plan.delete), ["old-a"]);
    assert!(plan.create.is_empty());
    // 30% of 4 rounds up to two.
    let d = Daemon::new(&daemon_set(rolling(json!(0), json!("30%"))), "new".into());
    let plan = d.rolling_update(&nodes, by_node(&owned), Timestamp::now());
    assert_eq!(names(&plan.delete), ["old-a", "old-b"]);

    // An updated pod not yet ready uses up the one allowed; an old pod that is down anyway is
    // replaced regardless.
    let d = Daemon::new(&daemon_set(rolling(json!(0), json!(1))), "new".into());
    let owned = vec![
        pod("new-a", "a", "new", None, 1),
        old("b"),
        pod("old-c", "c", "old", None, 100),
        old("d"),
    ];
    let plan = d.rolling_update(&nodes, by_node(&owned), Timestamp::now());
    assert_eq!(names(&plan.delete), ["old-c"]);
    // Once it is available, the next old pod goes.
    let owned = vec![
        pod("new-a", "a", "new", Some(1), 1),
        old("b"),
        old("c"),
        old("d"),
    ];
    let plan = d.rolling_update(&nodes, by_node(&owned), Timestamp::now());
    assert_eq!(names(&plan.delete), ["old-b"]);
    // A node waiting for its pod counts as unavailable.
    let owned = vec![old("b"), old("c"), old("d")];
    let plan = d.rolling_update(&nodes, by_node(&owned), Timestamp::now());
    assert!(plan.delete.is_empty());
}

#[test]
fn with_surge_new_pods_come_first_and_old_ones_go_once_they_are_available() {
    let nodes: Vec<_> = ["a", "b", "c"].into_iter().map(plain).collect();
    let old = |n: &str| pod(&format!("old-{n}"), n, "old", Some(100), 100);
    let d = Daemon::new(&daemon_set(rolling(json!(1), json!(0))), "new".into());
    let plan = d.rolling_update(
        &nodes,
        by_node(&[old("a"), old("b"), old("c")]),
        Timestamp::now(),
    );
    assert_eq!(plan.create, ["a"]);
    assert!(plan.delete.is_empty());
    // Surging on a: nothing more until the new pod is available.
    let surging = vec![
        old("a"),
        pod("new-a", "a", "new", None, 1),
        old("b"),
        old("c"),
    ];
    let plan = d.rolling_update(&nodes, by_node(&surging), Timestamp::now());
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    let done = vec![
        old("a"),
        pod("new-a", "a", "new", Some(1), 1),
        old("b"),
        old("c"),
    ];
    let plan = d.rolling_update(&nodes, by_node(&done), Timestamp::now());
    assert_eq!(names(&plan.delete), ["old-a"]);
    assert_eq!(plan.create, ["b"]);
    // The core loop keeps both pods while the new one is not available.
    let on_a = by_node(&surging);
    assert!(d.manage(&nodes, &on_a).delete.is_empty());
    assert_eq!(names(&d.manage(&nodes, &by_node(&done)).delete), ["old-a"]);
}

#[test]
fn on_delete_leaves_old_pods_alone() {
    let d = Daemon::new(
        &daemon_set(json!({"updateStrategy": {"type": "OnDelete"}})),
        "new".into(),
    );
    assert!(d.rolling.is_none());
    assert_eq!(d.surge(10), 0);
}

#[test]
fn status_counts_per_node() {
    let ds = daemon_set(json!({"template": {"spec": {"nodeSelector": {"run": "yes"}}}}));
    let d = Daemon::new(&ds, "new".into());
    let yes = json!({"run": "yes"});
    let nodes = [
        node("a", yes.clone(), json!([])),
        node("b", yes.clone(), json!([])),
        node("c", yes.clone(), json!([])),
        node("d", json!({}), json!([])),
    ];
    let owned = vec![
        pod("pa", "a", "new", Some(5), 5),
        pod("pb", "b", "old", None, 5),
        pod("pd", "d", "new", Some(5), 5),
    ];
    let status = d.status(
        &ds,
        &nodes,
        &by_node(&owned),
        true,
        Some(1),
        Timestamp::now(),
    );
    assert_eq!(status.desired_number_scheduled, 3);
    assert_eq!(status.current_number_scheduled, 2);
    assert_eq!(status.number_misscheduled, 1);
    assert_eq!(status.number_ready, 1);
    assert_eq!(status.number_available, Some(1));
    assert_eq!(status.number_unavailable, Some(2));
    assert_eq!(status.updated_number_scheduled, Some(1));
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(status.collision_count, Some(1));
    let unobserved = d.status(&ds, &nodes, &by_node(&owned), false, None, Timestamp::now());
    assert_eq!(unobserved.observed_generation, None);
}
