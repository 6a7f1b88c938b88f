use super::*;
use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};

fn deployment(replicas: i32, surge: IntOrString, unavailable: IntOrString) -> Deployment {
    Deployment {
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(surge),
                    max_unavailable: Some(unavailable),
                }),
            }),
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

fn replica_set(size: i32, max_replicas: Option<i32>) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            annotations: max_replicas.map(|m| [(MAX_REPLICAS.to_string(), m.to_string())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(size),
            ..ReplicaSetSpec::default()
        }),
        status: None,
    }
}

fn pct(s: &str) -> IntOrString {
    IntOrString::String(s.into())
}

#[test]
fn percentages_round_surge_up_and_unavailability_down() {
    assert_eq!(scaled_value(Some(&pct("25%")), 10, true), 3);
    assert_eq!(scaled_value(Some(&pct("25%")), 10, false), 2);
    assert_eq!(scaled_value(Some(&IntOrString::Int(4)), 10, false), 4);
    assert_eq!(
        fenceposts(&deployment(1000, pct("25%"), pct("25%"))),
        (250, 250)
    );
    // Both resolving to zero would stall the rollout: one may be unavailable.
    assert_eq!(fenceposts(&deployment(3, pct("0%"), pct("10%"))), (0, 1));
    assert_eq!(
        max_unavailable(&deployment(2, IntOrString::Int(0), IntOrString::Int(5))),
        2
    );
}

#[test]
fn the_new_set_grows_within_the_surge() {
    let d = deployment(10, IntOrString::Int(2), IntOrString::Int(0));
    // 10 old + 0 new: two may be added.
    assert_eq!(
        new_replica_set_size(&d, &replica_set(0, None), &[replica_set(10, None)]),
        2
    );
    // Already at the surge limit: stays.
    assert_eq!(
        new_replica_set_size(&d, &replica_set(2, None), &[replica_set(10, None)]),
        2
    );
    // Never past replicas, and shrinks to it.
    assert_eq!(
        new_replica_set_size(&d, &replica_set(9, None), &[replica_set(0, None)]),
        10
    );
    assert_eq!(new_replica_set_size(&d, &replica_set(12, None), &[]), 10);
}

#[test]
fn scaling_mid_rollout_is_proportional() {
    // Deployment went from 10 (max 13 with surge 3) to 20 (max 25 with surge 5): +12 to share
    // between a set of 8 and one of 5.
    let d = deployment(20, pct("25%"), pct("25%"));
    let big = replica_set(8, Some(13));
    let small = replica_set(5, Some(13));
    let first = proportion(&d, 13, &big, 12, 0);
    let second = proportion(&d, 13, &small, 12, first);
    assert_eq!((first, second), (7, 5));
    // Scaling down takes proportionally too, never more than asked.
    let d = deployment(5, pct("0%"), pct("25%"));
    assert_eq!(proportion(&d, 10, &replica_set(6, Some(10)), -5, 0), -3);
}

#[test]
fn the_hash_label_does_not_make_templates_differ() {
    let mut labelled = PodTemplateSpec::default();
    labelled.metadata.get_or_insert_default().labels =
        Some([(POD_TEMPLATE_HASH.to_string(), "abc".to_string())].into());
    assert_eq!(without_hash(Some(&labelled)), without_hash(None));
}

#[test]
fn conditions_keep_their_transition_while_their_status_stays() {
    let t0 = Timestamp::from_second(1_000).unwrap();
    let t1 = Timestamp::from_second(2_000).unwrap();
    let mut status = DeploymentStatus::default();
    set_condition(
        &mut status,
        "Progressing",
        "True",
        "NewReplicaSetCreated",
        "a".into(),
        t0,
    );
    set_condition(
        &mut status,
        "Progressing",
        "True",
        "ReplicaSetUpdated",
        "b".into(),
        t1,
    );
    let c = condition(&status, "Progressing").unwrap();
    assert_eq!(c.reason.as_deref(), Some("ReplicaSetUpdated"));
    assert_eq!(c.last_transition_time, Some(Time(t0)));
    assert_eq!(c.last_update_time, Some(Time(t1)));
    // Same status and reason: nothing changes, not even the update time.
    let t2 = Timestamp::from_second(3_000).unwrap();
    set_condition(
        &mut status,
        "Progressing",
        "True",
        "ReplicaSetUpdated",
        "c".into(),
        t2,
    );
    assert_eq!(
        condition(&status, "Progressing").unwrap().last_update_time,
        Some(Time(t1))
    );
    // Renewed progress moves the update time only.
    renew_progressing(&mut status);
    set_condition(
        &mut status,
        "Progressing",
        "True",
        "ReplicaSetUpdated",
        "d".into(),
        t2,
    );
    let c = condition(&status, "Progressing").unwrap();
    assert_eq!(
        (c.last_transition_time.clone(), c.last_update_time.clone()),
        (Some(Time(t0)), Some(Time(t2)))
    );
}
