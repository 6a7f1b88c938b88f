//! What the scheduler tells users, written in the background so that it never holds up a bind:
//! the `PodScheduled=False` condition of a pod that fits nowhere, and the Events
//! `Normal Scheduled` / `Warning FailedScheduling` (core/v1, from `default-scheduler`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, warn};

pub const SCHEDULER_NAME: &str = "default-scheduler";

/// How many reports may wait; beyond that they are dropped (with a warning) rather than slow
/// the scheduler down. A dropped condition is rewritten at the pod's next attempt.
const QUEUE: usize = 16 * 1024;
/// Writes in flight: few, so that binds keep most of the API server.
const CONCURRENCY: usize = 4;
/// Reports wait while binds are in flight, for at most this long after they were made: a burst
/// of binds goes first and its reports follow, while under a steady load they trail by no more
/// than this. Kubernetes' Events are asynchronous and best effort too.
const MAX_DEFER: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub enum Report {
    Scheduled {
        pod: ObjectReference,
        node: String,
    },
    Unschedulable {
        pod: ObjectReference,
        message: String,
        /// The `PodScheduled` condition to merge into the pod's status, when it changed.
        condition: Option<serde_json::Value>,
    },
}

/// A report and when it was made (its Event's timestamp, and the end of its deferral).
struct Queued {
    report: Report,
    at: Instant,
    time: Timestamp,
}

#[derive(Clone)]
pub struct Reporter {
    tx: mpsc::Sender<Queued>,
}

impl Reporter {
    /// Starts the writer; it ends when every `Reporter` clone is dropped. `binding` says whether
    /// binds are in flight.
    pub fn start(client: Client, binding: watch::Receiver<bool>) -> Reporter {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(ReceiverStream::new(rx).for_each_concurrent(
            CONCURRENCY,
            move |queued: Queued| {
                let client = client.clone();
                let mut binding = binding.clone();
                async move {
                    let idle = binding.wait_for(|binding| !*binding);
                    let _ = tokio::time::timeout_at((queued.at + MAX_DEFER).into(), idle).await;
                    write(client, queued.report, queued.time).await
                }
            },
        ));
        Reporter { tx }
    }

    pub fn send(&self, report: Report) {
        let queued = Queued {
            report,
            at: Instant::now(),
            time: Timestamp::now(),
        };
        if self.tx.try_send(queued).is_err() {
            warn!("scheduler report queue full; dropping a status update or event");
        }
    }
}

/// The reference Events and reports carry for `pod`.
pub fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: pod.namespace(),
        name: Some(pod.name_any()),
        uid: pod.uid(),
        resource_version: pod.resource_version(),
        ..Default::default()
    }
}

/// The `PodScheduled=False` condition for `message`, or `None` when `pod` already says so
/// (kube-scheduler skips the write then). The transition time moves only when the status does.
pub fn unschedulable_condition(pod: &Pod, message: &str) -> Option<serde_json::Value> {
    let old = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
    if old.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
            && c.message.as_deref() == Some(message)
    }) {
        return None;
    }
    let transition = old
        .filter(|c| c.status == "False")
        .and_then(|c| c.last_transition_time.clone())
        .map(|t| t.0)
        .unwrap_or_else(Timestamp::now);
    Some(json!({
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastProbeTime": null,
        "lastTransitionTime": Time(transition),
    }))
}

async fn write(client: Client, report: Report, time: Timestamp) {
    let (pod, type_, reason, message) = match report {
        Report::Scheduled { pod, node } => {
            let message = format!(
                "Successfully assigned {}/{} to {node}",
                pod.namespace.as_deref().unwrap_or_default(),
                pod.name.as_deref().unwrap_or_default()
            );
            (pod, "Normal", "Scheduled", message)
        }
        Report::Unschedulable {
            pod,
            message,
            condition,
        } => {
            if let Some(condition) = condition {
                patch_condition(&client, &pod, condition).await;
            }
            (pod, "Warning", "FailedScheduling", message)
        }
    };
    let namespace = pod.namespace.clone().unwrap_or_default();
    let event = event(pod, type_, reason, message, time);
    if let Err(e) = Api::<Event>::namespaced(client, &namespace)
        .create(&PostParams::default(), &event)
        .await
    {
        // A namespace being deleted refuses new Events; nothing to do about it.
        debug!(error = %e, reason, "scheduler event not recorded");
    }
}

async fn patch_condition(client: &Client, pod: &ObjectReference, condition: serde_json::Value) {
    let (Some(namespace), Some(name)) = (pod.namespace.as_deref(), pod.name.as_deref()) else {
        return;
    };
    // Only onto the pod as it was when it was found unschedulable: a report that waited must
    // not mark a pod bound meanwhile as unschedulable.
    let patch = json!({
        "metadata": {"resourceVersion": pod.resource_version},
        "status": {"conditions": [condition]},
    });
    if let Err(e) = Api::<Pod>::namespaced(client.clone(), namespace)
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
    {
        // The pod may be gone or changed; a live one gets the condition at its next attempt.
        debug!(pod = %format!("{namespace}/{name}"), error = %e, "PodScheduled condition not written");
    }
}

/// Event names are unique per pod as client-go's recorder makes them: `NAME.<hex nanos>`.
fn event_name(pod: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    format!("{pod}.{:x}", nanos + SEQ.fetch_add(1, Ordering::Relaxed))
}

fn event(
    pod: ObjectReference,
    type_: &str,
    reason: &str,
    message: String,
    time: Timestamp,
) -> Event {
    let now = Time(time);
    Event {
        metadata: ObjectMeta {
            name: Some(event_name(pod.name.as_deref().unwrap_or("pod"))),
            namespace: pod.namespace.clone(),
            ..Default::default()
        },
        involved_object: pod,
        type_: Some(type_.into()),
        reason: Some(reason.into()),
        message: Some(message),
        source: Some(EventSource {
            component: Some(SCHEDULER_NAME.into()),
            host: None,
        }),
        reporting_component: Some(SCHEDULER_NAME.into()),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};

    fn pod_with(condition: Option<PodCondition>) -> Pod {
        Pod {
            status: Some(PodStatus {
                conditions: condition.map(|c| vec![c]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn condition_is_written_once_per_message() {
        let fresh = unschedulable_condition(&pod_with(None), "0/1 nodes").expect("new condition");
        assert_eq!(fresh["reason"], "Unschedulable");
        assert_eq!(fresh["status"], "False");
        let same = PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some("0/1 nodes".into()),
            last_transition_time: Some(Time("2020-01-01T00:00:00Z".parse().expect("timestamp"))),
            ..Default::default()
        };
        assert_eq!(
            unschedulable_condition(&pod_with(Some(same.clone())), "0/1 nodes"),
            None
        );
        let changed = unschedulable_condition(&pod_with(Some(same.clone())), "0/2 nodes")
            .expect("a new message is written");
        assert_eq!(
            changed["lastTransitionTime"],
            json!(same.last_transition_time),
            "the status did not change, so neither does the transition time"
        );
    }

    #[test]
    fn events_name_the_pod_and_come_from_the_scheduler() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("web".into());
        pod.metadata.namespace = Some("shop".into());
        let made = Timestamp::from_second(1_700_000_000).expect("a valid time");
        let e = event(pod_ref(&pod), "Normal", "Scheduled", "m".into(), made);
        assert_eq!(
            e.first_timestamp,
            Some(Time(made)),
            "stamped when made, not when written"
        );
        assert!(
            e.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("web."))
        );
        assert_eq!(e.involved_object.kind.as_deref(), Some("Pod"));
        assert_eq!(
            e.source.and_then(|s| s.component).as_deref(),
            Some("default-scheduler")
        );
        assert_ne!(event_name("web"), event_name("web"));
    }
}
