//! Cell formatting shared by every printer: apimachinery's `duration.HumanDuration`, the
//! timestamp-to-age cells (`translateTimestampSince`), label and label-selector strings
//! (`labels.FormatLabels`, `metav1.FormatLabelSelector`), container name/image cells, the row
//! shape pod controllers share, and null-tolerant readers over the JSON objects being printed.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

/// apimachinery `duration.HumanDuration`: about two significant figures ("5s", "3m20s", "2d5h").
/// Up to a second in the future counts as now (clock skew); further is `<invalid>`.
pub fn human_duration(d: TimeDelta) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d.num_minutes();
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d.num_hours();
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let years = hours / 24 / 365;
        return match (hours / 24) % 365 {
            0 => format!("{years}y"),
            days => format!("{years}y{days}d"),
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// The string at a JSON pointer, `""` when absent or not a string (Go's zero value).
pub(super) fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The integer at a JSON pointer, 0 when absent (Go's zero value).
pub(super) fn int_at(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// The array at a JSON pointer, empty when absent.
pub(super) fn arr_at<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Number of entries of the map at a JSON pointer.
pub(super) fn map_len(v: &Value, pointer: &str) -> usize {
    v.pointer(pointer)
        .and_then(Value::as_object)
        .map_or(0, serde_json::Map::len)
}

/// Unix seconds of Go's zero `time.Time`, 0001-01-01T00:00:00Z.
const GO_ZERO_TIME: i64 = -62_135_596_800;

/// A `metav1.Time`/`MicroTime` field; `None` when absent, unparsable, or Go's zero time.
pub(super) fn time_at(v: &Value, pointer: &str) -> Option<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(v.pointer(pointer)?.as_str()?).ok()?;
    let t = t.with_timezone(&Utc);
    // Go's zero time.Time (0001-01-01T00:00:00Z) prints as `<unknown>`, like an absent one.
    (t.timestamp() != GO_ZERO_TIME).then_some(t)
}

/// `translateTimestampSince`: the age of a timestamp, `<unknown>` when it is not set.
pub(super) fn since(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    t.map_or_else(|| "<unknown>".to_string(), |t| human_duration(now - t))
}

/// The AGE cell of an object.
pub(super) fn age(obj: &Value, now: DateTime<Utc>) -> Value {
    since(time_at(obj, "/metadata/creationTimestamp"), now).into()
}

pub(super) fn name(obj: &Value) -> Value {
    str_at(obj, "/metadata/name").into()
}

/// The object is being deleted: it has a `deletionTimestamp`.
pub(super) fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

/// `spec.replicas` of a workload; the API defaults it to 1, so an absent one means 1.
pub(super) fn spec_replicas(obj: &Value) -> i64 {
    obj.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

/// An empty string becomes `<none>`, as most printers show a missing value.
pub(super) fn or_none(s: &str) -> Value {
    if s.is_empty() { "<none>" } else { s }.into()
}

/// `labels.FormatLabels`: `k=v` pairs sorted by key, `<none>` when empty.
pub(super) fn format_labels(map: &Value) -> String {
    let Some(map) = map.as_object().filter(|m| !m.is_empty()) else {
        return "<none>".to_string();
    };
    let mut pairs: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// `metav1.LabelSelectorAsSelector(...).String()`: requirements sorted by key, `in`/`notin`
/// values sorted; `""` for an absent or empty selector; `Err` for a malformed one.
pub(super) fn label_selector_string(selector: &Value) -> Result<String, ()> {
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            reqs.push((k.clone(), format!("{k}={}", v.as_str().ok_or(())?)));
        }
    }
    for expr in arr_at(selector, "/matchExpressions") {
        let key = str_at(expr, "/key");
        let mut values: Vec<&str> = arr_at(expr, "/values")
            .iter()
            .map(|v| v.as_str().ok_or(()))
            .collect::<Result<_, _>>()?;
        values.sort_unstable();
        values.dedup();
        let text = match (str_at(expr, "/operator"), values.is_empty()) {
            ("In", false) => format!("{key} in ({})", values.join(",")),
            ("NotIn", false) => format!("{key} notin ({})", values.join(",")),
            ("Exists", true) => key.to_string(),
            ("DoesNotExist", true) => format!("!{key}"),
            _ => return Err(()),
        };
        reqs.push((key.to_string(), text));
    }
    // A stable sort by key keeps matchLabels before expressions on the same key, as Go does.
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(reqs
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(","))
}

/// `metav1.FormatLabelSelector`: `<none>` when empty, `<error>` when malformed.
pub(super) fn format_label_selector(selector: &Value) -> String {
    match label_selector_string(selector) {
        Err(()) => "<error>".to_string(),
        Ok(s) if s.is_empty() => "<none>".to_string(),
        Ok(s) => s,
    }
}

/// `layoutContainerCells`: container names and images, each comma-joined.
pub(super) fn container_cells(containers: &[Value]) -> (Value, Value) {
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, "/image")).collect();
    (names.join(",").into(), images.join(",").into())
}

/// A pod controller's row (`printReplicaSet` and its kin): the name, the kind's `own` cells, the
/// age, the container names and images of `spec.template`, then the wide selector cell if the
/// kind prints one.
pub(super) fn controller_row(
    obj: &Value,
    now: DateTime<Utc>,
    own: impl IntoIterator<Item = Value>,
    selector: Option<String>,
) -> Vec<Value> {
    let (names, images) = container_cells(arr_at(obj, "/spec/template/spec/containers"));
    let mut row = vec![name(obj)];
    row.extend(own);
    row.extend([age(obj, now), names, images]);
    row.extend(selector.map(Value::from));
    row
}

/// Desired, current and ready replicas, the counts of replica sets and replication controllers.
pub(super) fn replica_counts(obj: &Value) -> [Value; 3] {
    [
        spec_replicas(obj).into(),
        int_at(obj, "/status/replicas").into(),
        int_at(obj, "/status/readyReplicas").into(),
    ]
}

/// `listWithMoreString`: the first `max` entries, then ` + N more...`; `<unset>` when empty.
pub(super) fn list_with_more(list: &[String], count: usize, max: usize) -> String {
    let joined = list.join(",");
    if count > max {
        format!("{joined} + {} more...", count - max)
    } else if joined.is_empty() {
        "<unset>".to_string()
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MS: TimeDelta = TimeDelta::milliseconds(1);

    #[test]
    fn human_duration_matches_apimachinery() {
        let s = TimeDelta::seconds;
        let m = TimeDelta::minutes;
        let h = TimeDelta::hours;
        let d = |n: i64| TimeDelta::hours(24 * n);
        let y = |n: i64| TimeDelta::hours(24 * 365 * n);
        let cases = [
            (s(-2), "<invalid>"),
            (s(-2) + TimeDelta::nanoseconds(1), "0s"),
            (s(0), "0s"),
            (s(1) - MS, "0s"),
            (s(1), "1s"),
            (s(70), "70s"),
            (m(2) - MS, "119s"),
            (m(2), "2m"),
            (m(2) + s(1), "2m1s"),
            (s(190), "3m10s"),
            (m(10) - MS, "9m59s"),
            (m(10), "10m"),
            (m(10) + s(1), "10m"),
            (m(70), "70m"),
            (h(3) - MS, "179m"),
            (h(3), "3h"),
            (h(3) + m(1), "3h1m"),
            (h(8) - MS, "7h59m"),
            (h(8), "8h"),
            (h(8) + m(59), "8h"),
            (h(47), "47h"),
            (d(2) - MS, "47h"),
            (d(2), "2d"),
            (h(49), "2d1h"),
            (d(8) - MS, "7d23h"),
            (d(8), "8d"),
            (d(8) + h(23), "8d"),
            (d(367), "367d"),
            (y(2) - MS, "729d"),
            (y(2), "2y"),
            (y(2) + h(23), "2y"),
            (y(2) + h(25), "2y1d"),
            (y(8) - MS, "7y364d"),
            (y(8), "8y"),
            (y(9), "9y"),
        ];
        for (delta, want) in cases {
            assert_eq!(human_duration(delta), want, "{delta:?}");
        }
    }

    #[test]
    fn timestamps_and_ages() {
        let now = DateTime::parse_from_rfc3339("2025-01-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let obj = json!({"metadata": {"creationTimestamp": "2025-01-01T11:56:40Z"}});
        assert_eq!(age(&obj, now), json!("3m20s"));
        assert_eq!(age(&json!({}), now), json!("<unknown>"));
        let zero = json!({"metadata": {"creationTimestamp": "0001-01-01T00:00:00Z"}});
        assert_eq!(age(&zero, now), json!("<unknown>"));
        let micro = json!({"t": "2025-01-01T11:59:58.123456Z"});
        assert_eq!(since(time_at(&micro, "/t"), now), "1s");
    }

    #[test]
    fn labels_and_selectors() {
        assert_eq!(format_labels(&json!({"b": "2", "a": "1"})), "a=1,b=2");
        assert_eq!(format_labels(&json!({})), "<none>");
        assert_eq!(format_labels(&Value::Null), "<none>");
        let sel = json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "back"]},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "Exists"},
            ]
        });
        assert_eq!(
            format_label_selector(&sel),
            "app=web,!canary,env notin (prod),tier in (back,front),zone"
        );
        assert_eq!(format_label_selector(&json!({})), "<none>");
        assert_eq!(format_label_selector(&Value::Null), "<none>");
        let bad = json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]});
        assert_eq!(format_label_selector(&bad), "<error>");
        assert_eq!(label_selector_string(&bad), Err(()));
    }

    #[test]
    fn lists_with_more() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(list_with_more(&l(&[]), 0, 3), "<unset>");
        assert_eq!(list_with_more(&l(&["a", "b"]), 2, 3), "a,b");
        assert_eq!(
            list_with_more(&l(&["a", "b", "c"]), 5, 3),
            "a,b,c + 2 more..."
        );
    }
}
