//! The Event printer (`LAST SEEN TYPE REASON OBJECT MESSAGE`), for both `v1` Events and
//! `events.k8s.io/v1` Events. Kubernetes stores the two as one type and prints both with
//! `printEvent`; here each shape names its fields through an [`EventFields`] table.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::format::{int_at, since, str_at, time_at};
use super::{ColumnDef, Doc, META, Printer, col, wide};

const EVENT: &str = "io.k8s.api.core.v1.Event";

const COLUMNS: &[ColumnDef] = &[
    col("Last Seen", "string", Doc::Field(EVENT, "lastTimestamp")),
    col("Type", "string", Doc::Field(EVENT, "type")),
    col("Reason", "string", Doc::Field(EVENT, "reason")),
    col("Object", "string", Doc::Field(EVENT, "involvedObject")),
    wide(
        "Subobject",
        "string",
        Doc::Field("io.k8s.api.core.v1.ObjectReference", "fieldPath"),
    ),
    wide("Source", "string", Doc::Field(EVENT, "source")),
    col("Message", "string", Doc::Field(EVENT, "message")),
    wide("First Seen", "string", Doc::Field(EVENT, "firstTimestamp")),
    wide("Count", "string", Doc::Field(EVENT, "count")),
    ColumnDef {
        format: "name",
        ..wide("Name", "string", Doc::Field(META, "name"))
    },
];

/// JSON pointers of the fields `printEvent` reads, in one Event shape.
struct EventFields {
    first_timestamp: &'static str,
    last_timestamp: &'static str,
    count: &'static str,
    regarding: &'static str,
    message: &'static str,
    source: &'static str,
    reporting_controller: &'static str,
}

const CORE_FIELDS: EventFields = EventFields {
    first_timestamp: "/firstTimestamp",
    last_timestamp: "/lastTimestamp",
    count: "/count",
    regarding: "/involvedObject",
    message: "/message",
    source: "/source",
    reporting_controller: "/reportingComponent",
};

const EVENTS_V1_FIELDS: EventFields = EventFields {
    first_timestamp: "/deprecatedFirstTimestamp",
    last_timestamp: "/deprecatedLastTimestamp",
    count: "/deprecatedCount",
    regarding: "/regarding",
    message: "/note",
    source: "/deprecatedSource",
    reporting_controller: "/reportingController",
};

pub(super) const CORE_EVENT: Printer = Printer::new(COLUMNS, |e, now| cells(e, now, &CORE_FIELDS));
const EVENTS_V1: Printer = Printer::new(COLUMNS, |e, now| cells(e, now, &EVENTS_V1_FIELDS));

pub(super) fn printer(kind: &str) -> Option<&'static Printer> {
    (kind == "Event").then_some(&EVENTS_V1)
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() { b } else { a }
}

fn cells(event: &Value, now: DateTime<Utc>, f: &EventFields) -> Vec<Value> {
    // Events written through events.k8s.io carry only eventTime and series, not the
    // deprecated timestamps and count.
    let first = match time_at(event, f.first_timestamp) {
        Some(t) => since(Some(t), now),
        None => since(time_at(event, "/eventTime"), now),
    };
    let mut last = match time_at(event, f.last_timestamp) {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = int_at(event, f.count);
    match event.get("series").filter(|s| s.is_object()) {
        Some(series) => {
            last = since(time_at(series, "/lastObservedTime"), now);
            count = int_at(series, "/count");
        }
        None if count == 0 => count = 1,
        None => {}
    }
    let regarding = event.pointer(f.regarding).unwrap_or(&Value::Null);
    let kind = str_at(regarding, "/kind").to_lowercase();
    let target = match str_at(regarding, "/name") {
        "" => kind,
        name => format!("{kind}/{name}"),
    };
    let component = first_non_empty(
        str_at(event, &format!("{}/component", f.source)),
        str_at(event, f.reporting_controller),
    );
    let host = first_non_empty(
        str_at(event, &format!("{}/host", f.source)),
        str_at(event, "/reportingInstance"),
    );
    let source = if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    };
    vec![
        last.into(),
        str_at(event, "/type").into(),
        str_at(event, "/reason").into(),
        target.into(),
        str_at(regarding, "/fieldPath").into(),
        source.into(),
        str_at(event, f.message).trim().into(),
        first.into(),
        count.into(),
        str_at(event, "/metadata/name").into(),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{columns_of, row};

    #[test]
    fn core_event_row() {
        let ev = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web.17a", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
            "reason": "BackOff", "type": "Warning", "message": "Back-off restarting failed container\n",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": "2025-01-01T11:00:00Z", "lastTimestamp": "2025-01-01T11:59:30Z", "count": 7,
        });
        assert_eq!(
            row("events", &ev),
            json!([
                "30s",
                "Warning",
                "BackOff",
                "pod/web",
                "spec.containers{app}",
                "kubelet, node-1",
                "Back-off restarting failed container",
                "60m",
                7,
                "web.17a"
            ])
        );
        assert_eq!(
            columns_of("events"),
            [
                "Last Seen",
                "Type",
                "Reason",
                "Object",
                "Subobject",
                "Source",
                "Message",
                "First Seen",
                "Count",
                "Name"
            ]
        );
    }

    #[test]
    fn events_k8s_io_event_with_series() {
        let ev = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "n1.abc", "namespace": "default"},
            "eventTime": "2025-01-01T11:50:00.000000Z",
            "series": {"count": 4, "lastObservedTime": "2025-01-01T11:58:00.000000Z"},
            "regarding": {"kind": "Node", "name": "n1"},
            "reason": "Starting", "type": "Normal", "note": "Starting kubelet.",
            "reportingController": "kubelet", "reportingInstance": "n1",
        });
        let info = crate::registry::find("events.k8s.io", "v1", "events").unwrap();
        let cells = super::super::cells(info, &ev, super::super::tests::now());
        assert_eq!(
            serde_json::Value::Array(cells),
            json!([
                "2m",
                "Normal",
                "Starting",
                "node/n1",
                "",
                "kubelet, n1",
                "Starting kubelet.",
                "10m",
                4,
                "n1.abc"
            ])
        );
    }
}
