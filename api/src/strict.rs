//! Strict field validation (`?fieldValidation=Strict`, what `kubectl apply` and `create` ask for):
//! the fields an object carries that its kind's schema does not declare ([`unknown_fields`]), and
//! the keys a request body repeats ([`duplicate_fields`]), both as the paths Kubernetes' strict
//! decoder (sigs.k8s.io/json) prints: `spec.template.spec.containers[0].imagee`, map keys joined
//! with `.` like fields. The API server turns them into the 400 `strict decoding error: unknown
//! field "spec.foo", duplicate field "metadata.name"`.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::registry::ResourceInfo;
use crate::schema::{self, Node};

/// Fields of `obj` the kind's schema does not declare, in document order. Maps (`metadata.labels`)
/// take any key; free-form values (IntOrString, Quantity, RawExtension, JSON) take anything, as
/// they do in Go, where their own decoders skip strict checks. Resources without a built-in
/// schema (custom resources) report nothing here.
pub fn unknown_fields(info: &ResourceInfo, obj: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(root) = schema::index().root(info) {
        walk(root, obj, "", &mut out);
    }
    out
}

fn walk(node: Node<'_>, value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) if node.properties().is_some() => {
            for (key, child) in map {
                let child_path = join(path, key);
                match node.property(key) {
                    Some(field) => walk(field, child, &child_path, out),
                    None => out.push(child_path),
                }
            }
        }
        Value::Object(map) => {
            if let Some(values) = node.additional_properties() {
                for (key, child) in map {
                    walk(values, child, &join(path, key), out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = node.items() {
                for (i, child) in items.iter().enumerate() {
                    walk(item, child, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Keys repeated within one object of the raw request body (JSON, or YAML for
/// `application/apply-patch+yaml`), each path once, in document order. `serde_json` keeps the
/// last of duplicate keys silently, so this reads the bytes themselves. A body that does not
/// parse reports what was found before the syntax error; the decode error is reported elsewhere.
pub fn duplicate_fields(body: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let seed = Scan {
        path: String::new(),
        out: &mut out,
    };
    let is_json = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| matches!(b, b'{' | b'['));
    // Syntax errors are the decoder's to report; the duplicates found before one still count.
    if is_json {
        let _ = seed.deserialize(&mut serde_json::Deserializer::from_slice(body));
    } else {
        let _ = seed.deserialize(serde_yaml_ng::Deserializer::from_slice(body));
    }
    out
}

/// Walks any self-describing input, recording repeated keys under `path`.
struct Scan<'a> {
    path: String,
    out: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for Scan<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scan<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(Key(key)) = map.next_key()? {
            let path = join(&self.path, &key);
            if !seen.insert(key) && !self.out.contains(&path) {
                self.out.push(path.clone());
            }
            map.next_value_seed(Scan {
                path,
                out: &mut *self.out,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq
            .next_element_seed(Scan {
                path: format!("{}[{i}]", self.path),
                out: &mut *self.out,
            })?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A mapping key as text: JSON keys are strings; YAML keys may be any scalar (`1: x`, `true: y`).
struct Key(String);

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a scalar mapping key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Key, E> {
        Ok(Key(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
        Ok(Key("null".to_string()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::registry;

    fn deployments() -> &'static ResourceInfo {
        registry::find("apps", "v1", "deployments").expect("deployments")
    }

    #[test]
    fn unknown_fields_are_reported_with_kubernetes_paths() {
        let obj = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"any-key": "ok"}, "bogus": 1},
            "spec": {
                "foo": true,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [
                        {"name": "a", "image": "nginx"},
                        {"name": "b", "imagee": "nginx", "resources": {"limits": {"cpu": "100m"}},
                         "ports": [{"containerPort": 80, "hostPortt": 1}]}
                    ]}
                }
            }
        });
        assert_eq!(
            unknown_fields(deployments(), &obj),
            [
                "metadata.bogus",
                "spec.foo",
                "spec.template.spec.containers[1].imagee",
                "spec.template.spec.containers[1].ports[0].hostPortt",
            ]
        );
    }

    #[test]
    fn free_form_values_and_maps_accept_anything() {
        let crds = registry::find("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .expect("crds");
        let crd = json!({
            "metadata": {"name": "foos.example.com", "annotations": {"x/y": "z"}},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "foos", "kind": "Foo"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object",
                        "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                            "default": {"anything": ["goes", {"here": 1}]}}}}}}]}
        });
        assert_eq!(unknown_fields(crds, &crd), Vec::<String>::new());
        let revisions = registry::find("apps", "v1", "controllerrevisions").expect("revisions");
        let revision =
            json!({"metadata": {"name": "r"}, "revision": 1, "data": {"free": {"form": 1}}});
        assert_eq!(unknown_fields(revisions, &revision), Vec::<String>::new());
    }

    #[test]
    fn crd_schema_typos_are_unknown_fields() {
        let crds = registry::find("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .expect("crds");
        let crd = json!({"spec": {"versions": [{"schema": {"openAPIV3Schema": {
            "properties": {"spec": {"typo": "object"}}}}}]}});
        assert_eq!(
            unknown_fields(crds, &crd),
            ["spec.versions[0].schema.openAPIV3Schema.properties.spec.typo"]
        );
    }

    #[test]
    fn duplicate_fields_in_json() {
        let body = br#"{"metadata": {"name": "a", "labels": {"x": "1", "x": "2"}, "name": "b", "name": "c"},
            "spec": {"containers": [{"name": "c"}, {"name": "c", "image": "i", "image": "j"}]}}"#;
        assert_eq!(
            duplicate_fields(body),
            [
                "metadata.labels.x",
                "metadata.name",
                "spec.containers[1].image"
            ]
        );
        assert_eq!(
            duplicate_fields(br#"{"a": 1, "b": {"a": 2}}"#),
            Vec::<String>::new()
        );
    }

    #[test]
    fn duplicate_fields_in_yaml() {
        let body = b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  name: b\nspec:\n  containers:\n  - name: c\n    image: x\n    image: y\n";
        assert_eq!(
            duplicate_fields(body),
            ["metadata.name", "spec.containers[0].image"]
        );
    }

    #[test]
    fn duplicates_before_a_syntax_error_are_kept() {
        assert_eq!(
            duplicate_fields(br#"{"kind": "Pod", "kind": "Pod", "#),
            ["kind"]
        );
    }
}
