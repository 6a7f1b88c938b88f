//! The ReplicaSet controller, which also runs ReplicationControllers (Kubernetes converts one to
//! the other; here both implement [`ReplicaOwner`]): keeps `replicas` active pods matching the
//! selector, adopting matching orphans and releasing pods that stop matching, deletes surplus
//! pods in [`pods::deletion_order`], and reports `replicas`, `fullyLabeledReplicas`,
//! `readyReplicas`, `availableReplicas` (ready for `minReadySeconds`), `observedGeneration` and
//! the `ReplicaFailure` condition when the API refuses a pod.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::warn;

use super::expectations::{Expectations, owner_key};
use super::informer::Informer;
use super::ownership::{Selector, claim, controller_reference, owners_of};
use super::pods::{self, PodControl};
use super::recorder::Recorder;
use super::status;

/// At most this many pods are created or deleted per reconcile (kube-controller-manager's
/// `burstReplicas`).
const BURST_REPLICAS: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum ReplicaSetError {
    #[error("API request: {0}")]
    Api(#[from] kube::Error),
}

/// What the controller needs of a ReplicaSet or a ReplicationController.
pub trait ReplicaOwner:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The component its events come from.
    const COMPONENT: &'static str;
    fn replicas(&self) -> i32;
    fn selector(&self) -> Selector;
    fn template(&self) -> Option<&PodTemplateSpec>;
    fn min_ready_seconds(&self) -> i32;
    /// The current status, in the shape both kinds share.
    fn replica_status(&self) -> Option<ReplicaSetStatus>;
}

impl ReplicaOwner for ReplicaSet {
    const COMPONENT: &'static str = "replicaset-controller";
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn selector(&self) -> Selector {
        Selector::new(self.spec.as_ref().map(|s| &s.selector))
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn replica_status(&self) -> Option<ReplicaSetStatus> {
        self.status.clone()
    }
}

impl ReplicaOwner for ReplicationController {
    const COMPONENT: &'static str = "replication-controller";
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn selector(&self) -> Selector {
        match self.spec.as_ref().and_then(|s| s.selector.as_ref()) {
            Some(labels) => Selector::from_labels(labels),
            None => Selector::new(None),
        }
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn replica_status(&self) -> Option<ReplicaSetStatus> {
        // The two statuses have the same fields under the same names.
        serde_json::to_value(&self.status)
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
    }
}

struct Context {
    client: Client,
    pods: Store<Pod>,
    recorder: Recorder,
    expectations: Expectations,
}

/// Runs the controller for `K` until its watch ends.
pub async fn run<K: ReplicaOwner>(client: Client, owners: Informer<K>, pods: Informer<Pod>) {
    let controller = owners.controller();
    let store = owners.store();
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), K::COMPONENT),
        client,
        pods: pods.store(),
        expectations: Expectations::default(),
    });
    let controller = controller.reconcile_on(
        pods.triggers(move |pod: &Pod| owners_of(&pod.metadata, &store, K::selector)),
    );
    if !(owners.synced().await && pods.synced().await) {
        return;
    }
    controller
        .run(reconcile::<K>, error_policy::<K>, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile<K: ReplicaOwner>(
    owner: Arc<K>,
    ctx: Arc<Context>,
) -> Result<Action, ReplicaSetError> {
    let namespace = owner.namespace().unwrap_or_default();
    let control = PodControl {
        client: &ctx.client,
        recorder: &ctx.recorder,
        expectations: &ctx.expectations,
        key: owner_key(owner.as_ref()),
    };
    let settled = control.settled(&ctx.pods, &namespace);
    let candidates = ctx
        .pods
        .state_filter(|p| p.namespace().as_deref() == Some(&namespace) && pods::is_active(p));
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let selector = owner.selector();
    let owned = if selector.is_empty() {
        // Kubernetes refuses to manage every pod of a namespace.
        Vec::new()
    } else {
        claim(&pods_api, owner.as_ref(), &selector, candidates).await?
    };
    let failure = if settled && owner.meta().deletion_timestamp.is_none() && !selector.is_empty() {
        manage_replicas(owner.as_ref(), &owned, &control).await
    } else {
        None
    };
    let now = Timestamp::now();
    let status = calculate_status(owner.as_ref(), &owned, failure.as_ref(), now);
    if Some(&status) != owner.replica_status().as_ref() {
        status::write(&ctx.client, owner.as_ref(), &status).await?;
    }
    if let Some(e) = failure {
        return Err(e.into());
    }
    // A ready pod becomes available after minReadySeconds without any event to say so.
    let min_ready = Duration::from_secs(owner.min_ready_seconds().max(0) as u64);
    let wake = owned
        .iter()
        .filter_map(|p| pods::until_available(p, min_ready, now))
        .min();
    Ok(match wake {
        Some(after) => Action::requeue(after + Duration::from_millis(10)),
        None => Action::await_change(),
    })
}

/// Creates or deletes pods towards `replicas`; the first API error, if any.
async fn manage_replicas<K: ReplicaOwner>(
    owner: &K,
    owned: &[Arc<Pod>],
    control: &PodControl<'_>,
) -> Option<kube::Error> {
    let wanted = owner.replicas().max(0) as usize;
    if owned.len() < wanted {
        let template = owner.template()?;
        let count = (wanted - owned.len()).min(BURST_REPLICAS);
        let prefix = format!("{}-", owner.name_any());
        let reference = controller_reference(owner);
        let (_, error) = control
            .create(owner, count, |_| {
                pods::from_template(template, reference.clone(), prefix.clone())
            })
            .await;
        error
    } else if owned.len() > wanted {
        let count = (owned.len() - wanted).min(BURST_REPLICAS);
        let victims = pods::pick_for_deletion(owned, count);
        control.delete(owner, &victims).await
    } else {
        None
    }
}

fn calculate_status<K: ReplicaOwner>(
    owner: &K,
    owned: &[Arc<Pod>],
    failure: Option<&kube::Error>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let template_labels = owner
        .template()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let fully_labeled = |p: &Pod| {
        let labels: &BTreeMap<String, String> = p.labels();
        template_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    };
    let min_ready = Duration::from_secs(owner.min_ready_seconds().max(0) as u64);
    let count = |f: &dyn Fn(&Pod) -> bool| owned.iter().filter(|p| f(p)).count() as i32;
    let previous = owner.replica_status().unwrap_or_default();
    let mut conditions: Vec<ReplicaSetCondition> = previous
        .conditions
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ != "ReplicaFailure" || failure.is_some())
        .collect();
    if let Some(e) = failure
        && !conditions.iter().any(|c| c.type_ == "ReplicaFailure")
    {
        let reason = if (owned.len() as i32) < owner.replicas() {
            "FailedCreate"
        } else {
            "FailedDelete"
        };
        conditions.push(ReplicaSetCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(pods::reason(e)),
            last_transition_time: Some(Time(now)),
        });
    }
    ReplicaSetStatus {
        replicas: owned.len() as i32,
        fully_labeled_replicas: Some(count(&fully_labeled)),
        ready_replicas: Some(count(&pods::is_ready)),
        available_replicas: Some(count(&|p| pods::is_available(p, min_ready, now))),
        observed_generation: owner.meta().generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        terminating_replicas: None,
    }
}

fn error_policy<K: ReplicaOwner>(
    owner: Arc<K>,
    err: &ReplicaSetError,
    _ctx: Arc<Context>,
) -> Action {
    warn!(kind = %K::kind(&()), name = %owner.name_any(), error = %err, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::runtime::reflector::ObjectRef;
    use kube::runtime::watcher;
    use serde_json::json;

    fn replica_set(replicas: i32, min_ready: i32) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "generation": 3},
            "spec": {"replicas": replicas, "minReadySeconds": min_ready,
                     "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web", "tier": "front"}}}},
        }))
        .unwrap()
    }

    fn pod(labels: &[(&str, &str)], ready_for: Option<i64>, now: Timestamp) -> Arc<Pod> {
        let conditions = ready_for.map(|secs| {
            vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(
                    now - k8s_openapi::jiff::SignedDuration::from_secs(secs),
                )),
                ..PodCondition::default()
            }]
        });
        Arc::new(Pod {
            metadata: ObjectMeta {
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions,
                ..PodStatus::default()
            }),
        })
    }

    #[test]
    fn status_counts_labelled_ready_and_available_pods() {
        let now = Timestamp::now();
        let rs = replica_set(3, 10);
        let full = [("app", "web"), ("tier", "front")];
        let owned = [
            pod(&full, Some(60), now),
            pod(&full, Some(2), now),
            pod(&[("app", "web")], None, now),
        ];
        let status = calculate_status(&rs, &owned, None, now);
        assert_eq!(status.replicas, 3);
        assert_eq!(status.fully_labeled_replicas, Some(2));
        assert_eq!(status.ready_replicas, Some(2));
        assert_eq!(
            status.available_replicas,
            Some(1),
            "ready for 2 s of the 10 required"
        );
        assert_eq!(status.observed_generation, Some(3));
        assert!(status.conditions.is_none());
    }

    #[test]
    fn a_refused_creation_sets_replica_failure_until_creations_succeed() {
        let now = Timestamp::now();
        let mut rs = replica_set(2, 0);
        let refused = kube::Error::Api(
            serde_json::from_value(json!({"status": "Failure", "message": "pods \"web-x\" is forbidden: exceeded quota", "reason": "Forbidden", "code": 403}))
                .unwrap(),
        );
        let status = calculate_status(&rs, &[], Some(&refused), now);
        let failure = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (
                failure.type_.as_str(),
                failure.reason.as_deref(),
                failure.message.as_deref()
            ),
            (
                "ReplicaFailure",
                Some("FailedCreate"),
                Some("pods \"web-x\" is forbidden: exceeded quota")
            )
        );
        rs.status = Some(status);
        let cleared = calculate_status(&rs, &[], None, now);
        assert!(cleared.conditions.is_none(), "{cleared:?}");
    }

    #[test]
    fn an_orphan_concerns_every_owner_that_selects_it() {
        let pod = Pod {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        };
        let (store, mut writer) = kube::runtime::reflector::store::<ReplicaSet>();
        writer.apply_watcher_event(&watcher::Event::Apply(replica_set(1, 0)));
        assert_eq!(
            owners_of(&pod.metadata, &store, ReplicaSet::selector),
            vec![ObjectRef::new("web").within("ns")]
        );
        let mut owned = pod.clone();
        owned.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "v1".into(),
                kind: "ReplicationController".into(),
                name: "other".into(),
                uid: "u".into(),
                controller: Some(true),
                block_owner_deletion: None,
            },
        ]);
        assert!(
            owners_of(&owned.metadata, &store, ReplicaSet::selector).is_empty(),
            "another kind's pod"
        );
        assert_eq!(
            owners_of(
                &owned.metadata,
                &kube::runtime::reflector::store().0,
                ReplicationController::selector
            ),
            vec![ObjectRef::new("other").within("ns")]
        );
    }
}
