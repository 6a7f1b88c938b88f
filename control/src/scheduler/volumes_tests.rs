use super::*;
use serde_json::json;

fn node(name: &str) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        labels: [("kubernetes.io/hostname".to_string(), name.to_string())].into(),
        ..Default::default()
    }
}

fn pod(claims: &[&str]) -> Pod {
    let volumes: Vec<_> = claims
        .iter()
        .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
        .chain([json!({"name": "tmp", "emptyDir": {}})])
        .collect();
    serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns"},
        "spec": {"containers": [{"name": "c"}], "volumes": volumes}}))
    .expect("pod")
}

fn claim(name: &str, class: &str, extra: serde_json::Value) -> PersistentVolumeClaim {
    let mut c = json!({"metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")},
        "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "1Gi"}}}});
    merge(&mut c, extra);
    serde_json::from_value(c).expect("claim")
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    match (into, from) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn local_pv(name: &str, node: &str, extra: serde_json::Value) -> PersistentVolume {
    let mut pv = json!({"metadata": {"name": name},
        "spec": {"storageClassName": "manual", "accessModes": ["ReadWriteOnce"],
                 "capacity": {"storage": "1Gi"}, "hostPath": {"path": "/d"},
                 "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                     {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}},
        "status": {"phase": "Available"}});
    merge(&mut pv, extra);
    serde_json::from_value(pv).expect("pv")
}

fn class(name: &str, provisioner: &str, mode: &str) -> StorageClass {
    serde_json::from_value(
        json!({"metadata": {"name": name}, "provisioner": provisioner,
        "volumeBindingMode": mode}),
    )
    .expect("class")
}

fn cache() -> StorageCache {
    let mut cache = StorageCache::default();
    cache.class_event(Event::Apply(class(
        "local-path",
        "rancher.io/local-path",
        "WaitForFirstConsumer",
    )));
    cache.class_event(Event::Apply(class(
        "manual",
        "kubernetes.io/no-provisioner",
        "WaitForFirstConsumer",
    )));
    cache.class_event(Event::Apply(class("now", "example.com/disk", "Immediate")));
    cache
}

#[test]
fn a_pod_without_claims_has_no_claim_facts() {
    assert_eq!(cache().pod_claims(&pod(&[])), Ok(None));
}

#[test]
fn missing_deleting_and_unbound_immediate_claims_reject_every_node() {
    let mut cache = cache();
    assert_eq!(
        cache.pod_claims(&pod(&["data"])),
        Err(ClaimError::NotFound("data".into()))
    );
    assert_eq!(
        ClaimError::NotFound("data".into()).to_string(),
        "persistentvolumeclaim \"data\" not found"
    );
    cache.claim_event(Event::Apply(claim("data", "now", json!({}))));
    assert_eq!(
        cache.pod_claims(&pod(&["data"])),
        Err(ClaimError::UnboundImmediate)
    );
    cache.claim_event(Event::Apply(claim("data", "", json!({}))));
    assert_eq!(
        cache.pod_claims(&pod(&["data"])),
        Err(ClaimError::UnboundImmediate)
    );
    cache.claim_event(Event::Apply(claim(
        "data",
        "local-path",
        json!({"metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"}}),
    )));
    assert_eq!(
        cache.pod_claims(&pod(&["data"])),
        Err(ClaimError::Deleting("data".into()))
    );
}

#[test]
fn a_provisioning_class_waits_for_any_node_then_pins_the_chosen_one() {
    let mut cache = cache();
    cache.claim_event(Event::Apply(claim("data", "local-path", json!({}))));
    let facts = cache
        .pod_claims(&pod(&["data"]))
        .expect("ok")
        .expect("claims");
    assert_eq!(facts.filter(&node("a")), Ok(()));
    assert_eq!(facts.filter(&node("b")), Ok(()));
    cache.assume_selected(&facts.delayed, "b");
    let facts = cache
        .pod_claims(&pod(&["data"]))
        .expect("ok")
        .expect("claims");
    assert_eq!(facts.delayed[0].selected.as_deref(), Some("b"));
    assert_eq!(
        facts.filter(&node("a")),
        Err(vec![Reason::VolumeNodeConflict])
    );
    assert_eq!(facts.filter(&node("b")), Ok(()));
}

#[test]
fn a_bound_volume_keeps_the_pod_on_its_node() {
    let mut cache = cache();
    cache.claim_event(Event::Apply(claim(
        "data",
        "local-path",
        json!({"spec": {"volumeName": "pvc-1"}, "status": {"phase": "Bound"}}),
    )));
    let facts = cache
        .pod_claims(&pod(&["data"]))
        .expect("ok")
        .expect("claims");
    assert_eq!(facts.filter(&node("a")), Err(vec![Reason::VolumeMissing]));
    cache.volume_event(Event::Apply(local_pv("pvc-1", "b", json!({}))));
    let facts = cache
        .pod_claims(&pod(&["data"]))
        .expect("ok")
        .expect("claims");
    assert_eq!(
        facts.filter(&node("a")),
        Err(vec![Reason::VolumeNodeConflict])
    );
    assert_eq!(facts.filter(&node("b")), Ok(()));
}

#[test]
fn without_a_provisioner_only_nodes_with_a_fitting_volume_pass() {
    let mut cache = cache();
    cache.claim_event(Event::Apply(claim("data", "manual", json!({}))));
    let facts = cache
        .pod_claims(&pod(&["data"]))
        .expect("ok")
        .expect("claims");
    assert_eq!(
        facts.filter(&node("a")),
        Err(vec![Reason::VolumeBindConflict])
    );
    cache.volume_event(Event::Apply(local_pv("static", "a", json!({}))));
    let facts = cache
        .pod_claims(&pod(&["data"]))
        .expect("ok")
        .expect("claims");
    assert_eq!(facts.filter(&node("a")), Ok(()));
    assert_eq!(
        facts.filter(&node("b")),
        Err(vec![Reason::VolumeBindConflict])
    );
}

#[test]
fn a_relist_forgets_what_was_not_seen_again() {
    let mut cache = cache();
    cache.claim_event(Event::Apply(claim("data", "local-path", json!({}))));
    cache.claim_event(Event::Init);
    cache.claim_event(Event::InitDone);
    assert_eq!(
        cache.pod_claims(&pod(&["data"])),
        Err(ClaimError::NotFound("data".into()))
    );
}
