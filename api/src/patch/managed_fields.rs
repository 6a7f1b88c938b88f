//! `metadata.managedFields`: decoding and encoding the entries, and recording a non-apply write
//! (create, update, patch) the way the API server's fieldmanager does: the writer owns what it
//! changed, other managers lose what it changed or removed.

use serde_json::{Map, Value, json};

use super::fieldpath::{FieldSet, PathElement};
use super::merge_keys::Ty;
use super::typed;
use crate::registry::ResourceInfo;

pub(crate) const APPLY: &str = "Apply";
pub(crate) const UPDATE: &str = "Update";

/// One managedFields entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub(crate) manager: String,
    pub(crate) operation: String,
    pub(crate) api_version: String,
    pub(crate) time: Option<String>,
    pub(crate) subresource: Option<String>,
    pub(crate) fields: FieldSet,
}

impl Entry {
    /// Whether `self` and `other` are the same manager: appliers are one manager whatever the
    /// apiVersion, updaters one per apiVersion (`BuildManagerIdentifier`).
    pub(crate) fn same_manager(&self, other: &Entry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == APPLY || self.api_version == other.api_version)
    }

    /// How conflicts name this manager: `"kubectl"`, `"x" using apps/v1`, `"x" with subresource "scale" using apps/v1`.
    pub(crate) fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            s.push_str(&format!(" with subresource {sub:?}"));
        }
        if self.operation == UPDATE {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    fn encode(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), json!(self.manager));
        m.insert("operation".into(), json!(self.operation));
        m.insert("apiVersion".into(), json!(self.api_version));
        if let Some(t) = &self.time {
            m.insert("time".into(), json!(t));
        }
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if let Some(s) = &self.subresource {
            m.insert("subresource".into(), json!(s));
        }
        Value::Object(m)
    }

    fn decode(v: &Value) -> Option<Entry> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        if text("fieldsType").as_deref() != Some("FieldsV1") {
            return None;
        }
        Some(Entry {
            manager: text("manager").unwrap_or_default(),
            operation: text("operation")?,
            api_version: text("apiVersion").unwrap_or_default(),
            time: text("time"),
            subresource: text("subresource").filter(|s| !s.is_empty()),
            fields: FieldSet::from_fields_v1(v.get("fieldsV1")?)?,
        })
    }
}

/// The entries of an object; entries that do not decode are dropped.
pub(crate) fn decode(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Entry::decode).collect())
        .unwrap_or_default()
}

/// Writes `entries` into `obj`, sorted as Kubernetes sorts them (operation, time, manager,
/// apiVersion, subresource); no entries removes the field.
pub(crate) fn encode(obj: &mut Value, mut entries: Vec<Entry>) {
    entries.sort_by(|a, b| {
        (
            &a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                &b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if entries.is_empty() {
        meta.shift_remove("managedFields");
    } else {
        meta.insert(
            "managedFields".into(),
            Value::Array(entries.iter().map(Entry::encode).collect()),
        );
    }
}

/// A copy of `obj` without `metadata.managedFields`, the form every comparison uses.
pub(crate) fn without_managed_fields(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.shift_remove("managedFields");
    }
    v
}

fn field(name: &str) -> PathElement {
    PathElement::Field(name.into())
}

/// Paths no manager ever owns (fieldmanager `stripMetaManager`).
pub(crate) fn strip(set: &FieldSet) -> FieldSet {
    let mut stripped = FieldSet::default();
    for top in ["apiVersion", "kind", "metadata"] {
        stripped.insert(&[field(top)]);
    }
    for meta in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        stripped.insert(&[field("metadata"), field(meta)]);
    }
    set.difference(&stripped)
}

/// Keeps only what a writer of `subresource` may own: the main resource of a kind with a
/// status subresource never owns `status`; the status subresource owns only `status`
/// (the strategies' reset fields).
pub(crate) fn restrict(info: &ResourceInfo, subresource: Option<&str>, set: FieldSet) -> FieldSet {
    let status = field("status");
    match subresource {
        Some("status") => {
            let mut only = FieldSet::default();
            if let Some(s) = set.children.get(&status) {
                only.children.insert(status, s.clone());
            }
            only
        }
        None if info.has_subresource("status") => {
            let mut set = set;
            set.children.remove(&status);
            set
        }
        _ => set,
    }
}

/// The managers a write starts from (fieldmanager `decodeLiveOrNew`): the new object's entries
/// when it carries some, none when it carries the reset marker `[{}]`, else the old object's.
fn starting_entries(old: Option<&Value>, new: &Value) -> Vec<Entry> {
    match new
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    {
        Some(list) if list.len() == 1 && list[0].as_object().is_some_and(Map::is_empty) => {
            Vec::new()
        }
        Some(list) if !list.is_empty() => {
            let entries = decode(new);
            if entries.is_empty() {
                old.map(decode).unwrap_or_default()
            } else {
                entries
            }
        }
        _ => old.map(decode).unwrap_or_default(),
    }
}

/// Records a non-apply write by `manager` in `new`'s managedFields, as the API server's
/// fieldmanager does: the manager's `Update` entry (per apiVersion and subresource) gains the
/// fields this write added or changed, with `time` set to `now`; every manager loses fields
/// this write changed or removed; empty entries disappear. A write that changes nothing the
/// manager may own leaves the entries as they were.
pub fn record_update(
    info: &ResourceInfo,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    now: &str,
) {
    let mut entries = starting_entries(old, new);
    let before = old.map(without_managed_fields).unwrap_or_else(|| json!({}));
    let after = without_managed_fields(new);
    // Elements without their keys cannot be tracked; validation refuses such objects anyway.
    if let Ok(cmp) = typed::compare(&before, &after, Ty::of(info)) {
        let changed = restrict(info, subresource, strip(&cmp.changed()));
        let mut lost = cmp.changed();
        lost.union(&cmp.removed);
        for e in &mut entries {
            e.fields = e.fields.difference(&lost);
        }
        entries.retain(|e| !e.fields.is_empty());
        if !changed.is_empty() {
            let current = Entry {
                manager: manager.to_string(),
                operation: UPDATE.into(),
                api_version: info.api_version(),
                time: Some(now.to_string()),
                subresource: subresource.map(str::to_string),
                fields: changed,
            };
            match entries.iter_mut().find(|e| e.same_manager(&current)) {
                Some(e) => {
                    e.fields.union(&current.fields);
                    e.time = current.time;
                }
                None => entries.push(current),
            }
        }
    }
    encode(new, entries);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;

    const T1: &str = "2025-01-01T00:00:00Z";
    const T2: &str = "2025-01-02T00:00:00Z";

    fn deployments() -> &'static ResourceInfo {
        registry::find("apps", "v1", "deployments").unwrap()
    }

    fn deployment(replicas: i64, image: &str) -> Value {
        json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default","labels":{"app":"web"}},
            "spec":{"replicas":replicas,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},
            "spec":{"containers":[{"name":"nginx","image":image}]}}},"status":{"replicas":0}})
    }

    #[test]
    fn create_records_the_creator_exactly_as_kubernetes_writes_it() {
        let mut obj = deployment(1, "nginx:1.25");
        record_update(deployments(), None, &mut obj, "kubectl-create", None, T1);
        assert_eq!(
            serde_json::to_string(&obj["metadata"]["managedFields"]).unwrap(),
            serde_json::to_string(&json!([{"manager":"kubectl-create","operation":"Update","apiVersion":"apps/v1",
                "time":T1,"fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},
                "f:spec":{"f:replicas":{},"f:selector":{},"f:template":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},
                "f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:name":{}}}}}}}}]))
            .unwrap()
        );
    }

    #[test]
    fn scale_moves_ownership_of_replicas_to_the_scaler() {
        let mut created = deployment(1, "nginx:1.25");
        record_update(
            deployments(),
            None,
            &mut created,
            "kubectl-create",
            None,
            T1,
        );
        let mut scaled = created.clone();
        scaled["spec"]["replicas"] = json!(3);
        record_update(
            deployments(),
            Some(&created),
            &mut scaled,
            "kubectl",
            Some("scale"),
            T2,
        );
        let mf = scaled["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(mf.len(), 2);
        assert!(mf[0]["fieldsV1"]["f:spec"].get("f:replicas").is_none());
        assert_eq!(
            mf[1],
            json!({"manager":"kubectl","operation":"Update","apiVersion":"apps/v1","time":T2,"fieldsType":"FieldsV1",
                "fieldsV1":{"f:spec":{"f:replicas":{}}},"subresource":"scale"})
        );
        // Writing the same object again changes nothing, so no entry moves or gets a new time.
        let mut again = scaled.clone();
        record_update(
            deployments(),
            Some(&scaled),
            &mut again,
            "other",
            None,
            "2030-01-01T00:00:00Z",
        );
        assert_eq!(again, scaled);
    }

    #[test]
    fn status_writers_own_only_status_and_reset_marker_clears() {
        let old = deployment(1, "a");
        let mut new = old.clone();
        new["status"]["replicas"] = json!(1);
        new["spec"]["replicas"] = json!(5);
        record_update(
            deployments(),
            Some(&old),
            &mut new,
            "deployment-controller",
            Some("status"),
            T1,
        );
        assert_eq!(
            new["metadata"]["managedFields"][0]["fieldsV1"],
            json!({"f:status":{"f:replicas":{}}})
        );
        let mut reset = new.clone();
        reset["metadata"]["managedFields"] = json!([{}]);
        record_update(deployments(), Some(&new), &mut reset, "x", None, T1);
        assert!(reset["metadata"].get("managedFields").is_none());
    }
}
