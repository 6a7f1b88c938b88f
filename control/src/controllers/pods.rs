//! What every controller that manages pods needs (Kubernetes' `controller_utils.go` and
//! `podutil`): pods made from a template, their readiness and availability, the order in which
//! surplus pods are deleted, and creation and deletion with their events and expectations.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Resource, ResourceExt};

use super::expectations::{Expectations, Seen};
use super::recorder::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};

/// A pod to create from `template`, controlled by `owner`; the API server completes its name.
pub fn from_template(
    template: &PodTemplateSpec,
    owner: OwnerReference,
    generate_name: String,
) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Neither finished nor being deleted: a pod that counts towards `replicas`.
pub fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase(pod), "Succeeded" | "Failed")
}

/// Succeeded or Failed.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// When the pod's Ready condition last turned True, if it is True.
pub fn ready_since(pod: &Pod) -> Option<Option<&Time>> {
    let ready = pod
        .status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    (ready.status == "True").then_some(ready.last_transition_time.as_ref())
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready` by `now` (`podutil.IsPodAvailable`).
pub fn is_available(pod: &Pod, min_ready: Duration, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready.is_zero() => true,
        Some(since) => {
            since.is_some_and(|t| now.duration_since(t.0).unsigned_abs() >= min_ready && t.0 <= now)
        }
    }
}

/// How long until a ready pod becomes available, if it is not yet.
pub fn until_available(pod: &Pod, min_ready: Duration, now: Timestamp) -> Option<Duration> {
    let since = ready_since(pod)??;
    let ready_for = now.duration_since(since.0);
    let ready_for = Duration::try_from(ready_for).unwrap_or_default();
    (ready_for < min_ready).then(|| min_ready - ready_for)
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .map(|c| c.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

/// The order in which surplus pods are deleted, first the ones to go first
/// (`controller.ActivePodsWithRanks`): unscheduled before scheduled; Pending, Unknown, then
/// Running; not ready before ready; those sharing their node with more of their siblings
/// (`rank`) first; ready for less time first; more restarts first; newer first.
pub fn deletion_order(a: &Pod, rank_a: usize, b: &Pod, rank_b: usize) -> Ordering {
    let scheduled = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let phase_rank = |p: &Pod| match phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    };
    let ready_time = |p: &Pod| ready_since(p).flatten().map(|t| t.0);
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    scheduled(a)
        .cmp(&scheduled(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        .then_with(|| rank_b.cmp(&rank_a))
        // Later readiness means ready for less time: it goes first.
        .then_with(|| match (ready_time(a), ready_time(b)) {
            (Some(x), Some(y)) => y.cmp(&x),
            _ => Ordering::Equal,
        })
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| match (created(a), created(b)) {
            (Some(x), Some(y)) => y.cmp(&x),
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
}

/// `count` of `pods` to delete, in [`deletion_order`], ranked by how many of `pods` share each
/// one's node.
pub fn pick_for_deletion(pods: &[Arc<Pod>], count: usize) -> Vec<Arc<Pod>> {
    let node = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.clone());
    let mut per_node = std::collections::HashMap::<String, usize>::new();
    for p in pods {
        if let Some(n) = node(p) {
            *per_node.entry(n).or_default() += 1;
        }
    }
    let rank = |p: &Pod| node(p).and_then(|n| per_node.get(&n).copied()).unwrap_or(0);
    let mut ranked: Vec<_> = pods.iter().map(|p| (rank(p), p.clone())).collect();
    ranked.sort_by(|(ra, a), (rb, b)| deletion_order(a, *ra, b, *rb));
    ranked.into_iter().take(count).map(|(_, p)| p).collect()
}

/// Creates and deletes the pods of one owner, recording events about the owner and
/// expectations under `key`.
pub struct PodControl<'a> {
    pub client: &'a kube::Client,
    pub recorder: &'a Recorder,
    pub expectations: &'a Expectations,
    pub key: String,
}

impl PodControl<'_> {
    /// Creates `count` pods from `make`, in batches that double while they succeed
    /// (client-go's slow start: a quota refusal costs one request, not hundreds). Returns how
    /// many were created and the first error.
    pub async fn create<K: Resource<DynamicType = ()>>(
        &self,
        owner: &K,
        count: usize,
        make: impl Fn(usize) -> Pod,
    ) -> (usize, Option<kube::Error>) {
        let namespace = owner.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let mut created = 0;
        let mut batch = 1;
        while created < count {
            let size = batch.min(count - created);
            let results = futures::future::join_all((created..created + size).map(|i| {
                let pod = make(i);
                let api = api.clone();
                async move { api.create(&PostParams::default(), &pod).await }
            }))
            .await;
            let mut error = None;
            for result in results {
                match result {
                    Ok(pod) => {
                        created += 1;
                        self.expectations.expect_created(&self.key, pod.name_any());
                        self.recorder.normal(
                            owner,
                            "SuccessfulCreate",
                            format!("Created pod: {}", pod.name_any()),
                        );
                    }
                    Err(e) => {
                        self.recorder.warning(
                            owner,
                            "FailedCreate",
                            format!("Error creating: {}", reason(&e)),
                        );
                        error.get_or_insert(e);
                    }
                }
            }
            if error.is_some() {
                return (created, error);
            }
            batch *= 2;
        }
        (created, None)
    }

    /// Deletes `pods` (gracefully), all at once.
    pub async fn delete<K: Resource<DynamicType = ()>>(
        &self,
        owner: &K,
        pods: &[Arc<Pod>],
    ) -> Option<kube::Error> {
        self.delete_with(owner, pods, &DeleteParams::default())
            .await
    }

    /// [`PodControl::delete`] with `params`: a zero grace period for pods whose node is gone,
    /// since no agent is left to finish a graceful deletion.
    pub async fn delete_with<K: Resource<DynamicType = ()>>(
        &self,
        owner: &K,
        pods: &[Arc<Pod>],
        params: &DeleteParams,
    ) -> Option<kube::Error> {
        let results = futures::future::join_all(pods.iter().map(|pod| async move {
            let api: Api<Pod> =
                Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
            self.expectations.expect_deleted(&self.key, pod.name_any());
            let result = api.delete(&pod.name_any(), params).await;
            (pod, result)
        }))
        .await;
        let mut error = None;
        for (pod, result) in results {
            match result {
                Ok(_) => self.recorder.normal(
                    owner,
                    "SuccessfulDelete",
                    format!("Deleted pod: {}", pod.name_any()),
                ),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    self.expectations.forget(&self.key, &pod.name_any());
                    self.recorder.warning(
                        owner,
                        "FailedDelete",
                        format!("Error deleting: {}", reason(&e)),
                    );
                    error.get_or_insert(e);
                }
            }
        }
        error
    }

    /// Whether the pod cache shows every pod this owner created or deleted.
    pub fn settled(&self, pods: &Store<Pod>, namespace: &str) -> bool {
        self.expectations.satisfied(&self.key, |name| {
            match pods.get(&ObjectRef::new(name).within(namespace)) {
                None => Seen::Absent,
                Some(p) if p.metadata.deletion_timestamp.is_some() => Seen::Deleting,
                Some(_) => Seen::Present,
            }
        })
    }
}

/// An API error as a user reads it: the `Status` message, not the client's wrapping.
pub fn reason(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: Option<&str>, phase: &str, ready: bool, created: i64) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "creationTimestamp": Timestamp::from_second(created).unwrap().to_string()},
                "spec": {"nodeName": node, "containers": []},
                "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn surplus_pods_go_unscheduled_pending_unready_crowded_then_newest_first() {
        let pods = [
            pod("running-old", Some("a"), "Running", true, 100),
            pod("running-new", Some("b"), "Running", true, 200),
            pod("running-oldest", Some("a"), "Running", true, 50),
            pod("unready", Some("b"), "Running", false, 10),
            pod("pending", Some("b"), "Pending", false, 10),
            pod("unscheduled", None, "Pending", false, 10),
        ];
        let order: Vec<String> = pick_for_deletion(&pods, 6)
            .iter()
            .map(|p| p.name_any())
            .collect();
        // Among the ready ones, node b's (three siblings there, two on a) go first, then the
        // newest.
        assert_eq!(
            order,
            [
                "unscheduled",
                "pending",
                "unready",
                "running-new",
                "running-old",
                "running-oldest"
            ]
        );
        assert_eq!(pick_for_deletion(&pods, 2).len(), 2);
    }
}
