use super::*;
use crate::scheduler::cache::Usage;
use k8s_openapi::api::core::v1::{Affinity, NodeAffinity, NodeSelector, PodSpec};
use k8s_openapi::api::node::v1::Scheduling;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::json;

fn pod(spec: serde_json::Value) -> Pod {
    let mut spec: PodSpec = serde_json::from_value(spec).expect("pod spec");
    if spec.containers.is_empty() {
        spec.containers.push(Container {
            name: "c".into(),
            ..Default::default()
        });
    }
    Pod {
        spec: Some(spec),
        ..Default::default()
    }
}

fn facts(spec: serde_json::Value) -> PodFacts {
    PodFacts::new(&pod(spec), &HashMap::new()).expect("no runtime class named")
}

fn node() -> NodeInfo {
    NodeInfo {
        name: "n1".into(),
        labels: BTreeMap::from([("disk".into(), "ssd".into()), ("cores".into(), "8".into())]),
        allocatable: Resources {
            milli_cpu: 2000,
            memory: 4 << 30,
        },
        allocatable_pods: 110,
        runtime_handlers: vec!["wasmtime".into()],
        ..Default::default()
    }
}

fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        value: value.map(str::to_string),
        effect: effect.into(),
        time_added: None,
    }
}

fn container(requests: serde_json::Value) -> serde_json::Value {
    json!({"name": "c", "resources": {"requests": requests}})
}

#[test]
fn effective_request_is_max_of_containers_sum_and_largest_init_plus_overhead() {
    let p = pod(json!({
        "containers": [container(json!({"cpu": "250m", "memory": "64Mi"})),
                       container(json!({"cpu": "250m"}))],
        "initContainers": [container(json!({"cpu": "1", "memory": "10Mi"}))],
        "overhead": {"cpu": "10m", "memory": "1Mi"},
    }));
    let r = pod_requests(&p);
    assert_eq!(
        r.exact,
        Resources {
            milli_cpu: 1010,
            memory: 65 << 20
        }
    );
    // The container without a memory request scores as if it asked for 200Mi.
    assert_eq!(r.nonzero.memory, (64 + 200 + 1) << 20);
}

#[test]
fn resources_fit_reports_every_shortage() {
    let f = facts(json!({"containers": [container(json!({"cpu": "1500m", "memory": "3Gi"}))]}));
    let busy = Usage {
        requested: Resources {
            milli_cpu: 1000,
            memory: 2 << 30,
        },
        pods: 110,
        ..Default::default()
    };
    assert_eq!(
        f.filter(&node(), &busy),
        Err(vec![
            Reason::TooManyPods,
            Reason::InsufficientCpu,
            Reason::InsufficientMemory
        ])
    );
    assert_eq!(f.filter(&node(), &Usage::default()), Ok(()));
}

#[test]
fn a_pod_requesting_nothing_fits_a_full_node_except_for_the_pod_count() {
    let full = Usage {
        requested: Resources {
            milli_cpu: 2000,
            memory: 4 << 30,
        },
        pods: 3,
        ..Default::default()
    };
    assert_eq!(facts(json!({})).filter(&node(), &full), Ok(()));
}

#[test]
fn cordoned_nodes_take_only_pods_tolerating_unschedulable() {
    let mut n = node();
    n.unschedulable = true;
    assert_eq!(
        facts(json!({})).filter(&n, &Usage::default()),
        Err(vec![Reason::Unschedulable])
    );
    let tolerant = facts(json!({"tolerations": [
        {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}));
    assert_eq!(tolerant.filter(&n, &Usage::default()), Ok(()));
}

#[test]
fn taints_need_a_matching_toleration() {
    let mut n = node();
    n.taints = vec![taint("dedicated", Some("gpu"), "NoSchedule")];
    let untolerated = Err(vec![Reason::UntoleratedTaint {
        key: "dedicated".into(),
        value: "gpu".into(),
    }]);
    assert_eq!(facts(json!({})).filter(&n, &Usage::default()), untolerated);
    for (toleration, tolerated) in [
        (
            json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}),
            true,
        ),
        (
            json!({"key": "dedicated", "operator": "Equal", "value": "gpu"}),
            true,
        ),
        (json!({"key": "dedicated", "operator": "Exists"}), true),
        (json!({"operator": "Exists"}), true),
        (json!({"key": "dedicated", "value": "cpu"}), false),
        (
            json!({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}),
            false,
        ),
        (json!({"key": "other", "operator": "Exists"}), false),
    ] {
        let f = facts(json!({ "tolerations": [toleration.clone()] }));
        assert_eq!(
            f.filter(&n, &Usage::default()).is_ok(),
            tolerated,
            "{toleration}"
        );
    }
    n.taints = vec![taint("unreachable", None, "NoExecute")];
    assert_eq!(
        facts(json!({})).filter(&n, &Usage::default()),
        Err(vec![Reason::UntoleratedTaint {
            key: "unreachable".into(),
            value: String::new()
        }])
    );
}

#[test]
fn node_selector_and_required_affinity_must_both_match() {
    let n = node();
    assert!(
        facts(json!({"nodeSelector": {"disk": "ssd"}}))
            .filter(&n, &Usage::default())
            .is_ok()
    );
    assert_eq!(
        facts(json!({"nodeSelector": {"disk": "hdd"}})).filter(&n, &Usage::default()),
        Err(vec![Reason::NodeAffinity])
    );
    let affinity = |terms: serde_json::Value| {
        let f = facts(json!({"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}));
        f.filter(&n, &Usage::default()).is_ok()
    };
    let expr = |key: &str, op: &str, values: &[&str]| json!([{"matchExpressions": [{"key": key, "operator": op, "values": values}]}]);
    assert!(affinity(expr("disk", "In", &["hdd", "ssd"])));
    assert!(!affinity(expr("disk", "NotIn", &["ssd"])));
    assert!(
        affinity(expr("zone", "NotIn", &["a"])),
        "an absent label is not in any set"
    );
    assert!(affinity(expr("disk", "Exists", &[])));
    assert!(affinity(expr("zone", "DoesNotExist", &[])));
    assert!(affinity(expr("cores", "Gt", &["4"])));
    assert!(!affinity(expr("cores", "Lt", &["4"])));
    assert!(
        !affinity(expr("disk", "Gt", &["4"])),
        "a non-integer label never compares"
    );
    assert!(affinity(json!([{"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": ["n1"]}]}])));
    assert!(!affinity(json!([{}])), "an empty term matches no node");
    assert!(
        affinity(json!([
            expr("disk", "In", &["hdd"])[0],
            expr("disk", "In", &["ssd"])[0]
        ])),
        "terms are ORed"
    );
    // Typed construction, as a controller would build it.
    let typed = Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![],
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut p = pod(json!({}));
    if let Some(s) = p.spec.as_mut() {
        s.affinity = Some(typed);
    }
    let f = PodFacts::new(&p, &HashMap::new()).expect("facts");
    assert!(
        f.filter(&n, &Usage::default()).is_err(),
        "no terms: no node"
    );
}

#[test]
fn runtime_class_brings_its_handler_selector_and_tolerations() {
    let rc = |name: &str, handler: &str, scheduling: Option<Scheduling>| {
        let mut rc = RuntimeClass {
            handler: handler.into(),
            scheduling,
            ..Default::default()
        };
        rc.metadata.name = Some(name.into());
        (name.to_string(), rc)
    };
    let classes = HashMap::from([
        rc("wasmtime", "wasmtime", None),
        rc("runc", "runc", None),
        rc(
            "edge",
            "wasmtime",
            Some(Scheduling {
                node_selector: Some(BTreeMap::from([("disk".into(), "ssd".into())])),
                tolerations: Some(vec![Toleration {
                    key: Some("edge".into()),
                    operator: Some("Exists".into()),
                    ..Default::default()
                }]),
            }),
        ),
    ]);
    let with = |name: &str| PodFacts::new(&pod(json!({"runtimeClassName": name})), &classes);
    let mut n = node();
    assert!(
        with("wasmtime")
            .expect("known")
            .filter(&n, &Usage::default())
            .is_ok()
    );
    assert_eq!(
        with("runc").expect("known").filter(&n, &Usage::default()),
        Err(vec![Reason::RuntimeHandler("runc".into())])
    );
    assert_eq!(
        with("gvisor").err(),
        Some(MissingRuntimeClass("gvisor".into()))
    );
    n.taints = vec![taint("edge", Some("yes"), "NoSchedule")];
    assert!(
        with("edge")
            .expect("known")
            .filter(&n, &Usage::default())
            .is_ok()
    );
    n.labels.insert("disk".into(), "hdd".into());
    assert_eq!(
        with("edge").expect("known").filter(&n, &Usage::default()),
        Err(vec![Reason::NodeAffinity])
    );
    assert!(
        facts(json!({})).runtime_handler.is_none(),
        "no class, no handler filter"
    );
}

#[test]
fn controller_owner_is_the_spread_key() {
    let mut p = pod(json!({}));
    p.metadata.owner_references = Some(vec![
        OwnerReference {
            uid: "not-controller".into(),
            ..Default::default()
        },
        OwnerReference {
            uid: "rs-uid".into(),
            controller: Some(true),
            ..Default::default()
        },
    ]);
    let f = PodFacts::new(&p, &HashMap::new()).expect("facts");
    assert_eq!(f.owner.as_deref(), Some("rs-uid"));
}
