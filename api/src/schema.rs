//! One index of the OpenAPI schemas of every built-in kind, generated once from `k8s-openapi`'s
//! `schemars` impls, and a way to walk it field by field. `/openapi/v3`, strict field validation
//! and strategic merge / server-side apply all read types through this one index.

use std::sync::OnceLock;

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value};

use crate::registry::{self, ResourceInfo};

/// Definitions keyed by their OpenAPI name (`io.k8s.api.core.v1.Pod`).
pub struct SchemaIndex {
    definitions: Map<String, Value>,
}

/// Where `$ref`s point inside [`SchemaIndex`] definitions.
/// Where `$ref`s point: the OpenAPI 3 layout, so definitions serve `/openapi/v3` as they are.
pub const REF_PREFIX: &str = "#/components/schemas/";

/// The index of every built-in kind, built on first use.
pub fn index() -> &'static SchemaIndex {
    static INDEX: OnceLock<SchemaIndex> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut generator = SchemaSettings::openapi3().into_generator();
        for r in registry::all() {
            if let Some(t) = r.typed {
                (t.subschema)(&mut generator);
            }
        }
        let definitions = generator.take_definitions(true).into_iter().collect();
        SchemaIndex { definitions }
    })
}

impl SchemaIndex {
    pub fn definitions(&self) -> &Map<String, Value> {
        &self.definitions
    }

    /// The schema of a resource's object, if it is a built-in kind.
    pub fn root(&self, info: &ResourceInfo) -> Option<Node<'_>> {
        let name = (info.typed?.schema_name)();
        self.definition(&name)
    }

    pub fn definition(&self, name: &str) -> Option<Node<'_>> {
        let (key, schema) = self.definitions.get_key_value(name)?;
        Some(Node {
            index: self,
            definition: Some(key.as_str()),
            schema,
        })
    }

    /// Follows a reference (see [`reference`]); anything else is its own node.
    fn resolve<'a>(&'a self, schema: &'a Value) -> Node<'a> {
        reference(schema)
            .and_then(|name| self.definition(name))
            .unwrap_or(Node {
                index: self,
                definition: None,
                schema,
            })
    }
}

/// The definition name a schema refers to: `$ref`, or a lone `allOf: [{$ref}]` (the OpenAPI 3
/// way of giving a reference its own description).
pub fn reference(schema: &Value) -> Option<&str> {
    let reference = schema.get("$ref").or_else(|| {
        match schema
            .get("allOf")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
        {
            Some([only]) => only.get("$ref"),
            _ => None,
        }
    })?;
    let reference = reference.as_str()?;
    Some(reference.strip_prefix(REF_PREFIX).unwrap_or(reference))
}

/// One schema position; `definition` names the type when the position is a named definition.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    index: &'a SchemaIndex,
    pub definition: Option<&'a str>,
    pub schema: &'a Value,
}

impl<'a> Node<'a> {
    /// The schema of property `key` of an object.
    pub fn property(&self, key: &str) -> Option<Node<'a>> {
        let s = self.schema.get("properties")?.get(key)?;
        Some(self.index.resolve(s))
    }

    /// The declared properties of an object (empty for maps and scalars).
    pub fn properties(&self) -> Option<&'a Map<String, Value>> {
        self.schema.get("properties").and_then(Value::as_object)
    }

    /// The element schema of an array.
    pub fn items(&self) -> Option<Node<'a>> {
        let s = self.schema.get("items")?;
        Some(self.index.resolve(s))
    }

    /// The value schema of a map (`additionalProperties`).
    pub fn additional_properties(&self) -> Option<Node<'a>> {
        let s = self.schema.get("additionalProperties")?;
        if s.is_boolean() {
            return None;
        }
        Some(self.index.resolve(s))
    }

    /// `object`, `array`, `string`, ... or `None` for free-form values (`x-kubernetes-preserve-unknown-fields`,
    /// IntOrString, Quantity, RawExtension).
    pub fn type_name(&self) -> Option<&'a str> {
        self.schema.get("type").and_then(Value::as_str)
    }

    /// True where any value is allowed: no declared type, properties or items.
    pub fn is_free_form(&self) -> bool {
        self.type_name().is_none()
            || (self.type_name() == Some("object")
                && self.properties().is_none()
                && self.additional_properties().is_none())
    }
}

/// Drops empty lists and maps from optional fields, as Go's `omitempty` does when the API
/// server encodes an object: `labels: {}` left after removing the last label reads back as no
/// labels at all, and `ownerReferences: []` as no owner references. Required fields keep theirs.
pub fn omit_empty(root: Node<'_>, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(values) = root.additional_properties() {
                for v in map.values_mut() {
                    omit_empty(values, v);
                }
                return;
            }
            let required: Vec<&str> = root
                .schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            map.retain(|key, v| {
                let Some(field) = root.property(key) else {
                    return true;
                };
                omit_empty(field, v);
                let collection =
                    field.type_name() == Some("array") || field.additional_properties().is_some();
                let empty = matches!(v, Value::Array(a) if a.is_empty())
                    || matches!(v, Value::Object(o) if o.is_empty());
                !(collection && empty && !required.contains(&key.as_str()))
            });
        }
        Value::Array(items) => {
            if let Some(item) = root.items() {
                for v in items {
                    omit_empty(item, v);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_from_pod_to_container_fields() {
        let idx = index();
        let pods = registry::find("", "v1", "pods").unwrap();
        let pod = idx.root(pods).expect("pod schema");
        assert_eq!(pod.definition, Some("io.k8s.api.core.v1.Pod"));
        let containers = pod
            .property("spec")
            .unwrap()
            .property("containers")
            .unwrap();
        assert_eq!(containers.type_name(), Some("array"));
        let c = containers.items().unwrap();
        assert_eq!(c.definition, Some("io.k8s.api.core.v1.Container"));
        assert!(c.property("image").is_some());
        assert!(c.property("nonsense").is_none());
        let labels = pod
            .property("metadata")
            .unwrap()
            .property("labels")
            .unwrap();
        assert_eq!(
            labels.additional_properties().unwrap().type_name(),
            Some("string")
        );
    }
}
