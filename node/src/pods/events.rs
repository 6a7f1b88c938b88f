//! The node's event recorder: core/v1 Events from the `kubelet` component, sent in the background
//! so that a slow or absent control plane never holds up a pod.

use k8s_openapi::api::core::v1::{Event, ObjectReference, Pod};
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use skiff_api::events::{EventSourceRef, EventType, event};
use tokio::sync::mpsc;
use tracing::debug;

#[derive(Clone)]
pub struct EventRecorder {
    source: EventSourceRef,
    queue: mpsc::UnboundedSender<Event>,
}

impl EventRecorder {
    pub fn new(client: kube::Client, node_name: String) -> EventRecorder {
        let (queue, mut pending) = mpsc::unbounded_channel::<Event>();
        tokio::spawn(async move {
            while let Some(e) = pending.recv().await {
                let ns = e.metadata.namespace.clone().unwrap_or_default();
                let api: Api<Event> = Api::namespaced(client.clone(), &ns);
                if let Err(err) = api.create(&PostParams::default(), &e).await {
                    debug!(error = %err, reason = ?e.reason, "recording an event failed");
                }
            }
        });
        EventRecorder {
            source: EventSourceRef {
                component: "kubelet".to_string(),
                host: Some(node_name),
            },
            queue,
        }
    }

    /// Records an event about `pod`, or about one of its containers when `container` is given
    /// (`fieldPath` `spec.containers{name}`, as `kubectl describe` shows).
    pub fn pod(
        &self,
        pod: &Pod,
        container: Option<(&str, bool)>,
        kind: EventType,
        reason: &str,
        message: String,
    ) {
        let regarding = ObjectReference {
            api_version: Some("v1".to_string()),
            kind: Some("Pod".to_string()),
            namespace: pod.namespace(),
            name: Some(pod.name_any()),
            uid: pod.uid(),
            resource_version: pod.resource_version(),
            field_path: container.map(|(name, init)| {
                let list = if init { "initContainers" } else { "containers" };
                format!("spec.{list}{{{name}}}")
            }),
        };
        let _ = self
            .queue
            .send(event(regarding, &self.source, kind, reason, message));
    }
}
