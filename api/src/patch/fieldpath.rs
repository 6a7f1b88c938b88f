//! Field sets: which fields of an object a manager owns, and their `FieldsV1` wire form
//! (structured-merge-diff `fieldpath`): `f:<field>` a struct field or map key, `k:<json>` a
//! list element by its keys, `v:<json>` a set element, `i:<n>` a list index, and `.` the node
//! itself when it is owned as well as some of its children.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// One step of a path. The variant order is the serialization order: fields, keys, values, indices.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum PathElement {
    Field(String),
    /// The element's key fields as compact JSON, fields sorted by name.
    Key(String),
    /// The element's value as compact JSON.
    Value(String),
    Index(usize),
}

impl PathElement {
    fn encode(&self) -> String {
        match self {
            PathElement::Field(f) => format!("f:{f}"),
            PathElement::Key(k) => format!("k:{k}"),
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    fn decode(s: &str) -> Option<Self> {
        let (kind, rest) = s.split_once(':')?;
        Some(match kind {
            "f" => PathElement::Field(rest.to_string()),
            "k" => PathElement::Key(rest.to_string()),
            "v" => PathElement::Value(rest.to_string()),
            "i" => PathElement::Index(rest.parse().ok()?),
            _ => return None,
        })
    }

    /// The form Kubernetes prints in conflicts: `.spec`, `[name="nginx"]`, `[=value]`, `[0]`.
    fn display(&self) -> String {
        match self {
            PathElement::Field(f) => format!(".{f}"),
            PathElement::Key(k) => {
                let fields: Vec<String> = match serde_json::from_str::<Map<String, Value>>(k) {
                    Ok(m) => m.iter().map(|(n, v)| format!("{n}={v}")).collect(),
                    Err(_) => vec![k.clone()],
                };
                format!("[{}]", fields.join(","))
            }
            PathElement::Value(v) => format!("[={v}]"),
            PathElement::Index(i) => format!("[{i}]"),
        }
    }
}

/// A path from the object root.
pub(crate) type Path = Vec<PathElement>;

pub(crate) fn path_string(path: &[PathElement]) -> String {
    path.iter().map(PathElement::display).collect()
}

/// A set of paths, as a tree. `member` says the node's own path is in the set.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FieldSet {
    pub(crate) member: bool,
    pub(crate) children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    /// True when the set holds no path (the root's own flag does not count).
    pub(crate) fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    pub(crate) fn child_mut(&mut self, pe: PathElement) -> &mut FieldSet {
        self.children.entry(pe).or_default()
    }

    pub(crate) fn insert(&mut self, path: &[PathElement]) {
        let mut node = self;
        for pe in path {
            node = node.child_mut(pe.clone());
        }
        node.member = true;
    }

    pub(crate) fn union(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (pe, child) in &other.children {
            self.child_mut(pe.clone()).union(child);
        }
    }

    /// Paths of `self` that are not paths of `other` (membership is per node, not per subtree).
    pub(crate) fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (pe, child) in &self.children {
            let c = match other.children.get(pe) {
                Some(o) => child.difference(o),
                None => child.clone(),
            };
            if c.member || !c.children.is_empty() {
                out.children.insert(pe.clone(), c);
            }
        }
        out
    }

    pub(crate) fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (pe, child) in &self.children {
            if let Some(o) = other.children.get(pe) {
                let c = child.intersection(o);
                if c.member || !c.children.is_empty() {
                    out.children.insert(pe.clone(), c);
                }
            }
        }
        out
    }

    /// Every member path, in serialization order.
    pub(crate) fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            if child.member {
                out.push(prefix.clone());
            }
            child.collect(prefix, out);
            prefix.pop();
        }
    }

    /// The `fieldsV1` JSON of this set.
    pub(crate) fn to_fields_v1(&self) -> Value {
        let mut m = Map::new();
        if self.member && !self.children.is_empty() {
            m.insert(".".into(), Value::Object(Map::new()));
        }
        for (pe, child) in &self.children {
            m.insert(pe.encode(), child.to_fields_v1());
        }
        Value::Object(m)
    }

    /// Parses `fieldsV1`; `None` when it is not a valid field set.
    pub(crate) fn from_fields_v1(v: &Value) -> Option<FieldSet> {
        let mut set = FieldSet::default();
        for (k, child) in v.as_object()? {
            if k == "." {
                set.member = true;
                continue;
            }
            let mut c = FieldSet::from_fields_v1(child)?;
            if c.children.is_empty() {
                c.member = true;
            }
            set.children.insert(PathElement::decode(k)?, c);
        }
        Some(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(s: &str) -> PathElement {
        PathElement::Field(s.into())
    }

    #[test]
    fn fields_v1_roundtrips_in_kubernetes_order() {
        let v = json!({"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:containers":
            {"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:name":{}}},"f:replicas":{}}});
        let set = FieldSet::from_fields_v1(&v).unwrap();
        assert_eq!(set.to_fields_v1(), v);
        assert_eq!(
            serde_json::to_string(&set.to_fields_v1()).unwrap(),
            serde_json::to_string(&v).unwrap()
        );
        let paths: Vec<String> = set.paths().iter().map(|p| path_string(p)).collect();
        assert_eq!(
            paths,
            [
                ".metadata.labels",
                ".metadata.labels.app",
                ".spec.containers[name=\"nginx\"]",
                ".spec.containers[name=\"nginx\"].image",
                ".spec.containers[name=\"nginx\"].name",
                ".spec.replicas"
            ]
        );
        assert!(FieldSet::from_fields_v1(&json!({"x:y": {}})).is_none());
    }

    #[test]
    fn set_algebra_is_per_node() {
        let mut a = FieldSet::default();
        a.insert(&[f("spec"), f("replicas")]);
        a.insert(&[f("spec"), f("paused")]);
        a.insert(&[f("metadata")]);
        a.insert(&[f("metadata"), f("name")]);
        let mut b = FieldSet::default();
        b.insert(&[f("spec"), f("replicas")]);
        b.insert(&[f("metadata")]);
        let d = a.difference(&b);
        assert_eq!(
            d.to_fields_v1(),
            json!({"f:metadata":{"f:name":{}},"f:spec":{"f:paused":{}}})
        );
        assert_eq!(
            a.intersection(&b).to_fields_v1(),
            json!({"f:metadata":{},"f:spec":{"f:replicas":{}}})
        );
        let mut u = d.clone();
        u.union(&b);
        assert_eq!(u, a);
    }
}
