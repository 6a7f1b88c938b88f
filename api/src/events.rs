//! Events as the kubelet and kube-scheduler record them: core/v1 `Event` objects, which is what
//! `kubectl describe` and `kubectl get events` read. One builder, so every component writes them
//! alike; sending them is the caller's (an API client).

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Who records: `component` as Kubernetes names it (`kubelet`, `default-scheduler`) and, for a
/// node's agent, the node.
#[derive(Debug, Clone)]
pub struct EventSourceRef {
    pub component: String,
    pub host: Option<String>,
}

/// A new Event about `regarding` (its namespace is the Event's; cluster-scoped objects' events go
/// to `default`, as Kubernetes does).
pub fn event(
    regarding: ObjectReference,
    source: &EventSourceRef,
    kind: EventType,
    reason: &str,
    message: String,
) -> Event {
    let now = Timestamp::now();
    let namespace = regarding
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_string());
    let name = format!(
        "{}.{:x}",
        regarding.name.as_deref().unwrap_or("event"),
        now.as_nanosecond()
    );
    Event {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace),
            ..ObjectMeta::default()
        },
        involved_object: regarding,
        reason: Some(reason.to_string()),
        message: Some(message),
        type_: Some(kind.as_str().to_string()),
        count: Some(1),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: None::<MicroTime>,
        source: Some(EventSource {
            component: Some(source.component.clone()),
            host: source.host.clone(),
        }),
        reporting_component: Some(source.component.clone()),
        reporting_instance: Some(
            source
                .host
                .clone()
                .unwrap_or_else(|| source.component.clone()),
        ),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_their_object_and_source() {
        let regarding = ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some("demo".into()),
            name: Some("web".into()),
            field_path: Some("spec.containers{app}".into()),
            ..ObjectReference::default()
        };
        let source = EventSourceRef {
            component: "kubelet".into(),
            host: Some("edge-1".into()),
        };
        let e = event(
            regarding,
            &source,
            EventType::Normal,
            "Pulled",
            "msg".into(),
        );
        assert_eq!(e.metadata.namespace.as_deref(), Some("demo"));
        assert!(e.metadata.name.as_deref().unwrap().starts_with("web."));
        assert_eq!(e.type_.as_deref(), Some("Normal"));
        assert_eq!(e.source.unwrap().host.as_deref(), Some("edge-1"));
        assert_eq!(
            e.involved_object.field_path.as_deref(),
            Some("spec.containers{app}")
        );
    }
}
