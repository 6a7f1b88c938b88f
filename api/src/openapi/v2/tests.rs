//! Decodes the bytes back and checks them the way kubectl parses them (kube-openapi
//! `pkg/util/proto/document.go`; kubectl `pkg/util/openapi/openapi.go` for the GVK extension).

use std::collections::BTreeMap;

use serde_json::json;

use super::*;

fn decoded() -> Document {
    let (bytes, _) = v2_protobuf();
    Document::decode(bytes).expect("our own bytes decode")
}

fn definitions(doc: &Document) -> BTreeMap<&str, &Schema> {
    doc.definitions
        .as_ref()
        .expect("definitions")
        .additional_properties
        .iter()
        .map(|n| (n.name.as_str(), n.value.as_ref().expect("schema")))
        .collect()
}

fn property<'a>(schema: &'a Schema, name: &str) -> Option<&'a Schema> {
    schema
        .properties
        .as_ref()?
        .additional_properties
        .iter()
        .find(|p| p.name == name)?
        .value
        .as_ref()
}

fn extension<'a>(schema: &'a Schema, name: &str) -> Option<&'a str> {
    schema
        .vendor_extension
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_ref())
        .map(|v| v.yaml.as_str())
}

fn types(schema: &Schema) -> &[String] {
    schema.r#type.as_ref().map_or(&[], |t| t.value.as_slice())
}

/// kube-openapi's `ParseSchema` refusals, checked at every position: where `path` is the
/// definition and field path its `SchemaError` would name.
fn check(schema: &Schema, path: &str, known: &BTreeMap<&str, &Schema>, errors: &mut Vec<String>) {
    let mut children: Vec<(String, &Schema)> = Vec::new();
    if !schema.reference.is_empty() {
        if schema.properties.is_some() || !types(schema).is_empty() {
            errors.push(format!("{path}: reference with a type or properties"));
        }
        match schema.reference.strip_prefix(DEFINITIONS_PREFIX) {
            Some(name) if known.contains_key(name) => {}
            _ => errors.push(format!("{path}: unresolved {}", schema.reference)),
        }
        return;
    }
    match types(schema) {
        [] => {}
        [t] if t == "array" => match schema.items.as_ref().map(|i| i.schema.as_slice()) {
            Some([item]) => children.push((format!("{path}[]"), item)),
            _ => errors.push(format!("{path}: array without exactly one item schema")),
        },
        [t] if ["object", "string", "integer", "number", "boolean"].contains(&t.as_str()) => {}
        other => errors.push(format!("{path}: type {other:?}")),
    }
    if let Some(AdditionalProperties::Schema(values)) = schema
        .additional_properties
        .as_ref()
        .and_then(|a| a.oneof.as_ref())
    {
        children.push((format!("{path}{{}}"), values));
    }
    for p in schema
        .properties
        .iter()
        .flat_map(|p| &p.additional_properties)
    {
        if let Some(value) = &p.value {
            children.push((format!("{path}.{}", p.name), value));
        }
    }
    for (child_path, child) in children {
        check(child, &child_path, known, errors);
    }
}

#[test]
fn header_and_hash() {
    let doc = decoded();
    assert_eq!(doc.swagger, "2.0");
    assert_eq!(
        doc.info,
        Some(Info {
            title: "Kubernetes".into(),
            version: "v1.33.0".into()
        })
    );
    let (bytes, hash) = v2_protobuf();
    assert_eq!(hash, super::super::hash(bytes));
    // The ETag must not change between calls, or kubectl's cache never hits.
    assert_eq!(v2_protobuf().1, hash);
}

#[test]
fn every_schema_parses_as_kubectl_parses_it() {
    let doc = decoded();
    let known = definitions(&doc);
    assert!(known.len() > 300, "only {} definitions", known.len());
    let mut errors = Vec::new();
    for (name, schema) in &known {
        check(schema, name, &known, &mut errors);
    }
    assert_eq!(errors, Vec::<String>::new());
}

#[test]
fn kinds_carry_their_gvk_as_yaml() {
    let doc = decoded();
    let defs = definitions(&doc);
    let gvk = |name: &str| extension(defs[name], "x-kubernetes-group-version-kind");
    assert_eq!(
        gvk("io.k8s.api.apps.v1.Deployment"),
        Some("- group: apps\n  kind: Deployment\n  version: v1\n")
    );
    assert_eq!(
        gvk("io.k8s.api.core.v1.ConfigMap"),
        Some("- group: ''\n  kind: ConfigMap\n  version: v1\n")
    );
    assert_eq!(
        gvk("io.k8s.api.core.v1.ConfigMapList"),
        Some("- group: ''\n  kind: ConfigMapList\n  version: v1\n")
    );
    assert_eq!(gvk("io.k8s.api.core.v1.PodSpec"), None);
    // Every served built-in kind is findable by its GVK.
    for r in crate::registry::all() {
        let Some(name) = components::definition_of(r) else {
            continue;
        };
        let yaml = gvk(&name).unwrap_or_else(|| panic!("{name} has no GVK"));
        let parsed: Value = serde_yaml_ng::from_str(yaml).expect("YAML");
        assert_eq!(
            parsed,
            json!([{"group": r.group, "kind": r.kind, "version": r.version}])
        );
    }
}

#[test]
fn references_replace_lone_all_of() {
    let doc = decoded();
    let defs = definitions(&doc);
    let pod = defs["io.k8s.api.core.v1.Pod"];
    let spec = property(pod, "spec").expect("Pod.spec");
    assert_eq!(spec.reference, "#/definitions/io.k8s.api.core.v1.PodSpec");
    assert!(
        spec.description
            .starts_with("Specification of the desired behavior")
    );
    assert!(spec.r#type.is_none() && spec.properties.is_none());
    assert!(!pod.required.contains(&"metadata".to_string()));
    let containers =
        property(defs["io.k8s.api.core.v1.PodSpec"], "containers").expect("containers");
    assert_eq!(types(containers), ["array"]);
    let items = &containers.items.as_ref().expect("items").schema;
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0].reference,
        "#/definitions/io.k8s.api.core.v1.Container"
    );
}

#[test]
fn maps_and_free_form_values() {
    let doc = decoded();
    let defs = definitions(&doc);
    let data = property(defs["io.k8s.api.core.v1.ConfigMap"], "data").expect("data");
    assert_eq!(types(data), ["object"]);
    let Some(AdditionalProperties::Schema(values)) = data
        .additional_properties
        .as_ref()
        .and_then(|a| a.oneof.as_ref())
    else {
        panic!("data has no value schema");
    };
    assert_eq!(types(values), ["string"]);
    let int_or_string = defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
    assert!(int_or_string.r#type.is_none());
    assert_eq!(
        extension(int_or_string, "x-kubernetes-int-or-string"),
        Some("true\n")
    );
    // oneOf has no Swagger 2.0 form: the CRD schema unions become free-form.
    let or_bool =
        defs["io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool"];
    assert!(or_bool.r#type.is_none() && or_bool.reference.is_empty());
}

#[test]
fn converts_every_keyword_the_index_uses() {
    // A keyword added to the index but not converted would silently loosen kubectl's checks.
    fn keywords(value: &Value, out: &mut Vec<String>) {
        let Some(map) = value.as_object() else {
            return;
        };
        for (key, child) in map {
            out.push(key.clone());
            match key.as_str() {
                "properties" => child
                    .as_object()
                    .into_iter()
                    .flat_map(Map::values)
                    .for_each(|p| keywords(p, out)),
                "allOf" | "oneOf" => child
                    .as_array()
                    .into_iter()
                    .flatten()
                    .for_each(|s| keywords(s, out)),
                "items" | "additionalProperties" => keywords(child, out),
                _ => {}
            }
        }
    }
    let mut found = Vec::new();
    for schema in components::definitions().values() {
        keywords(schema, &mut found);
    }
    let converted = [
        "$ref",
        "allOf",
        "oneOf",
        "description",
        "format",
        "type",
        "items",
        "properties",
        "additionalProperties",
        "required",
    ];
    let missed: Vec<&String> = found
        .iter()
        .filter(|k| !converted.contains(&k.as_str()) && !k.starts_with("x-"))
        .collect();
    assert_eq!(missed, Vec::<&String>::new());
}
