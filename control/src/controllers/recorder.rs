//! Events from controllers ("Scaled up replica set web-7d9c… to 3", "Created pod: web-…"), which
//! is what `kubectl describe` and `kubectl get events` show of a workload. They are sent in the
//! background, so a reconcile never waits on them, and a lost event loses only a line of history.

use k8s_openapi::api::core::v1::{Event, ObjectReference};
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt};
use skiff_api::events::{EventSourceRef, EventType, event};
use tokio::sync::mpsc;
use tracing::debug;

#[derive(Clone)]
pub struct Recorder {
    source: EventSourceRef,
    queue: mpsc::UnboundedSender<Event>,
}

impl Recorder {
    /// A recorder for `component`, as kube-controller-manager names its controllers
    /// (`replicaset-controller`, `deployment-controller`).
    pub fn new(client: Client, component: &str) -> Recorder {
        let (queue, mut pending) = mpsc::unbounded_channel::<Event>();
        tokio::spawn(async move {
            while let Some(e) = pending.recv().await {
                let namespace = e.metadata.namespace.clone().unwrap_or_default();
                let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
                if let Err(err) = api.create(&PostParams::default(), &e).await {
                    debug!(error = %err, reason = ?e.reason, "recording an event failed");
                }
            }
        });
        Recorder {
            source: EventSourceRef {
                component: component.to_string(),
                host: None,
            },
            queue,
        }
    }

    /// Records an event about `object`.
    pub fn publish<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        kind: EventType,
        reason: &str,
        message: String,
    ) {
        let _ = self.queue.send(event(
            reference(object),
            &self.source,
            kind,
            reason,
            message,
        ));
    }

    pub fn normal<K: Resource<DynamicType = ()>>(&self, object: &K, reason: &str, message: String) {
        self.publish(object, EventType::Normal, reason, message);
    }

    pub fn warning<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        reason: &str,
        message: String,
    ) {
        self.publish(object, EventType::Warning, reason, message);
    }
}

/// The reference an event (or a `CronJob`'s `status.active`) keeps to `object`.
pub fn reference<K: Resource<DynamicType = ()>>(object: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        namespace: object.namespace(),
        name: Some(object.name_any()),
        uid: object.uid(),
        resource_version: object.resource_version(),
        field_path: None,
    }
}
