use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::SignedDuration;
use serde_json::{Value, json};

use super::identity::{POD_INDEX_LABEL, POD_NAME_LABEL, claims, new_pod, pod_name};
use super::plan::Step;
use super::*;
use crate::controllers::history::REVISION_HASH_LABEL;

fn stateful_set(replicas: i32, spec: Value) -> StatefulSet {
    let mut set = json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "set-uid", "generation": 3},
        "spec": {
            "replicas": replicas,
            "serviceName": "nginx",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "web:1"}]},
            },
        },
    });
    if let (Some(into), Value::Object(from)) = (set["spec"].as_object_mut(), spec) {
        into.extend(from);
    }
    serde_json::from_value(set).unwrap()
}

/// Pod `web-<ordinal>` at `revision`, in `phase`, ready since `ready` seconds ago if at all.
fn pod(ordinal: i32, revision: &str, phase: &str, ready: Option<i64>) -> Arc<Pod> {
    let now = Timestamp::now();
    let conditions = ready.map(|s| {
        json!([{"type": "Ready", "status": "True",
                "lastTransitionTime": Time(now - SignedDuration::from_secs(s))}])
    });
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": format!("web-{ordinal}"), "namespace": "default",
                         "labels": {"app": "web", REVISION_HASH_LABEL: revision}},
            "spec": {"containers": [{"name": "web", "image": "web:1"}]},
            "status": {"phase": phase, "conditions": conditions},
        }))
        .unwrap(),
    )
}

fn healthy(ordinal: i32, revision: &str) -> Arc<Pod> {
    pod(ordinal, revision, "Running", Some(60))
}

fn plan_for(set: &StatefulSet, owned: &[Arc<Pod>]) -> plan::Plan {
    members(set, owned).plan(
        &policy(set),
        |p| ordinal_of(set, p),
        "web-new",
        revision_of,
        Timestamp::now(),
    )
}

/// The steps as `create 1`, `delete web-2` and so on.
fn steps(plan: &plan::Plan) -> Vec<String> {
    plan.steps
        .iter()
        .map(|s| match s {
            Step::Create { ordinal, current } => {
                format!("create {ordinal}{}", if *current { " current" } else { "" })
            }
            Step::Recreate(p) => format!("recreate {}", p.name_any()),
            Step::CreateClaims(p) => format!("claims {}", p.name_any()),
            Step::HandClaimsTo(p) => format!("hand claims to {}", p.name_any()),
            Step::ScaleDown(p) => format!("scale down {}", p.name_any()),
            Step::Update(p) => format!("update {}", p.name_any()),
        })
        .collect()
}

#[test]
fn ordinals_come_from_member_names_only() {
    let set = stateful_set(1, json!({}));
    let named = |name: &str| Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..Pod::default()
    };
    assert_eq!(ordinal_of(&set, &named("web-0")), Some(0));
    assert_eq!(ordinal_of(&set, &named("web-12")), Some(12));
    assert_eq!(ordinal_of(&set, &named("web-x")), None);
    assert_eq!(ordinal_of(&set, &named("web-")), None);
    assert_eq!(ordinal_of(&set, &named("webby-0")), None);
    assert_eq!(ordinal_of(&set, &named("web-0-1")), None);
    assert_eq!(pod_name(&set, 4), "web-4");
}

#[test]
fn a_pod_has_its_identity_and_its_claims() {
    let set = stateful_set(
        3,
        json!({
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                "containers": [{"name": "web", "image": "web:1"}],
                "volumes": [{"name": "data", "emptyDir": {}}, {"name": "config", "emptyDir": {}}],
            }},
            "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": {"tier": "db"}},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"},
        }),
    );
    let pod = new_pod(&set, &template(&set), "web-6c7d8b8f9", 2);
    assert_eq!(pod.name_any(), "web-2");
    assert_eq!(pod.metadata.generate_name, None);
    let labels = pod.labels();
    assert_eq!(labels[POD_NAME_LABEL], "web-2");
    assert_eq!(labels[POD_INDEX_LABEL], "2");
    assert_eq!(labels[REVISION_HASH_LABEL], "web-6c7d8b8f9");
    assert_eq!(labels["app"], "web");
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("web-2"));
    assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
    let volumes = serde_json::to_value(&spec.volumes).unwrap();
    assert_eq!(
        volumes,
        json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data-web-2"}},
               {"name": "config", "emptyDir": {}}])
    );
    let made = claims(&set, 2);
    assert_eq!(made.len(), 1);
    assert_eq!(made[0].name_any(), "data-web-2");
    assert_eq!(made[0].labels()["tier"], "db");
    assert_eq!(made[0].labels()["app"], "web");
    // whenDeleted: Delete makes the set an owner, not the controller.
    let refs = made[0].owner_references();
    assert_eq!(refs.len(), 1);
    assert_eq!(
        (refs[0].kind.as_str(), refs[0].uid.as_str()),
        ("StatefulSet", "set-uid")
    );
    assert_eq!(refs[0].controller, None);
    let retained = stateful_set(
        1,
        json!({"volumeClaimTemplates": [{"metadata": {"name": "data"}}]}),
    );
    assert!(claims(&retained, 0)[0].owner_references().is_empty());
}

#[test]
fn ordered_ready_creates_one_pod_at_a_time_after_its_predecessors_are_ready() {
    let set = stateful_set(3, json!({}));
    assert_eq!(steps(&plan_for(&set, &[])), ["create 0"]);
    let starting = pod(0, "web-new", "Pending", None);
    assert!(steps(&plan_for(&set, &[starting])).is_empty());
    let running_not_ready = pod(0, "web-new", "Running", None);
    assert!(steps(&plan_for(&set, &[running_not_ready])).is_empty());
    assert_eq!(
        steps(&plan_for(&set, &[healthy(0, "web-new")])),
        ["create 1"]
    );
    // A gap is filled in order, whatever exists above it.
    assert_eq!(
        steps(&plan_for(
            &set,
            &[healthy(0, "web-new"), healthy(2, "web-new")]
        )),
        ["create 1"]
    );
    // A failed pod is replaced before anything else.
    let failed = pod(0, "web-new", "Failed", None);
    assert_eq!(
        steps(&plan_for(&set, &[failed, healthy(1, "web-new")])),
        ["recreate web-0"]
    );
}

#[test]
fn min_ready_seconds_holds_the_next_pod_back() {
    let set = stateful_set(2, json!({"minReadySeconds": 30}));
    let fresh = pod(0, "web-new", "Running", Some(10));
    let plan = plan_for(&set, &[fresh]);
    assert!(plan.steps.is_empty());
    let wake = plan.wake.expect("a wake-up when web-0 becomes available");
    assert!(
        wake <= Duration::from_secs(20) && wake > Duration::from_secs(15),
        "{wake:?}"
    );
    let old = pod(0, "web-new", "Running", Some(31));
    assert_eq!(steps(&plan_for(&set, &[old])), ["create 1"]);
}

#[test]
fn scale_down_goes_from_the_highest_ordinal_one_at_a_time() {
    let set = stateful_set(1, json!({}));
    let all = [
        healthy(0, "web-new"),
        healthy(1, "web-new"),
        healthy(2, "web-new"),
    ];
    assert_eq!(steps(&plan_for(&set, &all)), ["scale down web-2"]);
    // While web-2 terminates, nothing else happens.
    let mut terminating = (*all[2]).clone();
    terminating.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    let pods = [all[0].clone(), all[1].clone(), Arc::new(terminating)];
    assert!(steps(&plan_for(&set, &pods)).is_empty());
    // An unhealthy pod below blocks scale-down, unless it is the one to go.
    let broken = [
        healthy(0, "web-new"),
        pod(1, "web-new", "Running", None),
        healthy(2, "web-new"),
    ];
    let set2 = stateful_set(2, json!({}));
    assert!(steps(&plan_for(&set2, &broken)).is_empty());
    let set1 = stateful_set(1, json!({}));
    let top_broken = [healthy(0, "web-new"), pod(1, "web-new", "Running", None)];
    assert_eq!(steps(&plan_for(&set1, &top_broken)), ["scale down web-1"]);
}

#[test]
fn parallel_creates_and_deletes_without_waiting() {
    let set = stateful_set(3, json!({"podManagementPolicy": "Parallel"}));
    assert_eq!(
        steps(&plan_for(&set, &[])),
        ["create 0", "create 1", "create 2"]
    );
    let set = stateful_set(1, json!({"podManagementPolicy": "Parallel"}));
    let all = [
        pod(0, "web-new", "Pending", None),
        healthy(1, "web-new"),
        healthy(2, "web-new"),
    ];
    assert_eq!(
        steps(&plan_for(&set, &all)),
        ["scale down web-2", "scale down web-1"]
    );
}

#[test]
fn rolling_update_replaces_from_the_highest_ordinal_down_to_the_partition() {
    let set = stateful_set(3, json!({}));
    let old = [
        healthy(0, "web-old"),
        healthy(1, "web-old"),
        healthy(2, "web-old"),
    ];
    assert_eq!(steps(&plan_for(&set, &old)), ["update web-2"]);
    // The replacement must be ready before the next goes.
    let replacing = [
        healthy(0, "web-old"),
        healthy(1, "web-old"),
        pod(2, "web-new", "Running", None),
    ];
    assert!(steps(&plan_for(&set, &replacing)).is_empty());
    let next = [
        healthy(0, "web-old"),
        healthy(1, "web-old"),
        healthy(2, "web-new"),
    ];
    assert_eq!(steps(&plan_for(&set, &next)), ["update web-1"]);
    // With partition 2, web-2 alone is updated and pods below stay at the current revision,
    // even when re-created.
    let partitioned = stateful_set(
        3,
        json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}),
    );
    assert!(steps(&plan_for(&partitioned, &next)).is_empty());
    assert_eq!(
        steps(&plan_for(&partitioned, &[healthy(0, "web-old")])),
        ["create 1 current"]
    );
    // OnDelete never deletes for an update.
    let on_delete = stateful_set(3, json!({"updateStrategy": {"type": "OnDelete"}}));
    assert!(steps(&plan_for(&on_delete, &old)).is_empty());
    assert_eq!(steps(&plan_for(&on_delete, &old[..2])), ["create 2"]);
}

#[test]
fn scaled_away_pods_hand_their_claims_over_when_the_policy_says_delete() {
    let set = stateful_set(
        1,
        json!({"volumeClaimTemplates": [{"metadata": {"name": "data"}}],
               "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Delete"}}),
    );
    let all = [healthy(0, "web-new"), healthy(1, "web-new")];
    assert_eq!(
        steps(&plan_for(&set, &all)),
        ["hand claims to web-1", "scale down web-1"]
    );
    // A pending pod gets its missing claims made.
    let pending = [pod(0, "web-new", "Pending", None)];
    assert_eq!(steps(&plan_for(&set, &pending)), ["claims web-0"]);
}

fn revision(name: &str) -> ControllerRevision {
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..ControllerRevision::default()
    }
}

#[test]
fn status_counts_revisions_and_completes_the_rollout() {
    let set = stateful_set(3, json!({}));
    let (old, new) = (revision("web-old"), revision("web-new"));
    let pods = [
        healthy(0, "web-old"),
        healthy(1, "web-new"),
        pod(2, "web-new", "Running", None),
    ];
    let status = calculate_status(&set, &pods, &old, &new, Some(0), Timestamp::now());
    assert_eq!(status.replicas, 3);
    assert_eq!(status.ready_replicas, Some(2));
    assert_eq!(status.available_replicas, Some(2));
    assert_eq!(status.current_replicas, Some(1));
    assert_eq!(status.updated_replicas, Some(2));
    assert_eq!(status.current_revision.as_deref(), Some("web-old"));
    assert_eq!(status.update_revision.as_deref(), Some("web-new"));
    assert_eq!(status.observed_generation, Some(3));
    let done = [
        healthy(0, "web-new"),
        healthy(1, "web-new"),
        healthy(2, "web-new"),
    ];
    let status = calculate_status(&set, &done, &old, &new, None, Timestamp::now());
    assert_eq!(status.current_revision.as_deref(), Some("web-new"));
    assert_eq!(status.current_replicas, Some(3));
}
