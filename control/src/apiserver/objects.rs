//! Object metadata as the API server maintains it: resourceVersion from the store revision, uid,
//! timestamps, generation, and the comparisons that decide whether a write changes anything.

use serde_json::{Map, Value};
use skiff_api::ResourceInfo;

pub fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn metadata(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

/// The object's metadata map, created if absent or not an object.
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let map = obj.as_object_mut().expect("made an object above");
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().expect("made an object above")
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    metadata(obj)?.get(field)?.as_str()
}

pub fn name(obj: &Value) -> Option<&str> {
    meta_str(obj, "name").filter(|n| !n.is_empty())
}

pub fn set_resource_version(obj: &mut Value, revision: u64) {
    metadata_mut(obj).insert(
        "resourceVersion".into(),
        Value::String(revision.to_string()),
    );
}

/// A stored object as clients see it: its bytes decoded, `resourceVersion` the given revision.
pub fn decode_stored(bytes: &[u8], revision: u64) -> Result<Value, serde_json::Error> {
    let mut v: Value = serde_json::from_slice(bytes)?;
    set_resource_version(&mut v, revision);
    Ok(v)
}

/// Parses a resourceVersion string; `None` for absent or empty.
pub fn parse_resource_version(rv: Option<&str>) -> Result<Option<u64>, skiff_api::ApiError> {
    match rv {
        None | Some("") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| {
            skiff_api::ApiError::bad_request(format!("invalid resource version: {s}"))
        }),
    }
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    metadata(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn set_finalizers(obj: &mut Value, list: &[String]) {
    let meta = metadata_mut(obj);
    if list.is_empty() {
        meta.remove("finalizers");
    } else {
        meta.insert(
            "finalizers".into(),
            Value::Array(list.iter().cloned().map(Value::String).collect()),
        );
    }
}

pub fn is_deleting(obj: &Value) -> bool {
    metadata(obj).is_some_and(|m| m.get("deletionTimestamp").is_some_and(|t| !t.is_null()))
}

/// Kinds whose `metadata.generation` counts spec changes (Kubernetes' strategies that set it).
pub fn tracks_generation(info: &ResourceInfo) -> bool {
    matches!(
        info.kind.as_ref(),
        "Deployment"
            | "ReplicaSet"
            | "DaemonSet"
            | "StatefulSet"
            | "ReplicationController"
            | "Job"
            | "CronJob"
            | "HorizontalPodAutoscaler"
            | "Ingress"
            | "NetworkPolicy"
            | "CustomResourceDefinition"
    ) || info.typed.is_none()
}

/// Everything but `metadata` and `status`: what a generation bump tracks.
pub fn spec_equal(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| -> Map<String, Value> {
        let mut m = v.as_object().cloned().unwrap_or_default();
        m.remove("metadata");
        m.remove("status");
        m
    };
    strip(a) == strip(b)
}

/// True when two versions differ only in server-maintained bookkeeping (managedFields times,
/// resourceVersion): such a write is skipped, as Kubernetes skips no-op updates.
pub fn semantically_equal(a: &Value, b: &Value) -> bool {
    // Compared in place: this runs on every update, and copies of both objects would cost more
    // than the comparison.
    fn relevant(metadata: &Map<String, Value>) -> impl Iterator<Item = (&String, &Value)> {
        metadata
            .iter()
            .filter(|(k, _)| k.as_str() != "managedFields" && k.as_str() != "resourceVersion")
    }
    let (Value::Object(a), Value::Object(b)) = (a, b) else {
        return a == b;
    };
    let metadata_equal = match (a.get("metadata"), b.get("metadata")) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            relevant(x).count() == relevant(y).count()
                && relevant(x).all(|(k, v)| y.get(k) == Some(v))
        }
        (x, y) => x == y,
    };
    metadata_equal
        && a.len() == b.len()
        && a.iter()
            .all(|(k, v)| k == "metadata" || b.get(k) == Some(v))
}

/// A name for `generateName`: the prefix plus five random lowercase alphanumerics, as Kubernetes.
/// How many random characters `generateName` gets.
pub const GENERATED_SUFFIX_LEN: usize = 5;

pub fn generate_name(prefix: &str) -> String {
    use rand::Rng;
    // Kubernetes avoids vowels and lookalikes in generated suffixes.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    let suffix: String = (0..GENERATED_SUFFIX_LEN)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    // Names are at most 253 characters; Kubernetes truncates the prefix to leave room.
    let max_prefix = 63 - GENERATED_SUFFIX_LEN;
    let prefix = if prefix.len() > max_prefix {
        &prefix[..max_prefix]
    } else {
        prefix
    };
    format!("{prefix}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn generated_names_keep_the_prefix() {
        let n = generate_name("web-");
        assert!(n.starts_with("web-") && n.len() == 9, "{n}");
    }

    #[test]
    fn bookkeeping_changes_are_not_changes() {
        let a = json!({"metadata": {"name": "a", "resourceVersion": "1", "managedFields": [1]}, "data": {"k": "v"}});
        let b = json!({"metadata": {"name": "a", "resourceVersion": "2"}, "data": {"k": "v"}});
        assert!(semantically_equal(&a, &b));
        let c = json!({"metadata": {"name": "a"}, "data": {"k": "w"}});
        assert!(!semantically_equal(&a, &c));
        let labelled = json!({"metadata": {"name": "a", "labels": {"x": "y"}}, "data": {"k": "v"}});
        assert!(!semantically_equal(&a, &labelled) && !semantically_equal(&labelled, &a));
        let extra = json!({"metadata": {"name": "a"}, "data": {"k": "v"}, "extra": 1});
        assert!(!semantically_equal(&a, &extra) && !semantically_equal(&extra, &a));
        assert!(spec_equal(
            &json!({"spec": 1, "status": 2}),
            &json!({"spec": 1, "status": 3})
        ));
    }
}
