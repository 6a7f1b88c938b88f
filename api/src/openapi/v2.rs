//! `/openapi/v2`: the Swagger 2.0 document kubectl validates manifests against when it cannot
//! leave validation to the server (a `kind: List` is never sent with `fieldValidation`).
//! client-go decodes it only as protobuf, the gnostic `openapi.v2.Document` message
//! (google/gnostic `openapiv2/OpenAPIv2.proto`), so [`v2_protobuf`] encodes the subset of that
//! message kubectl reads (kube-openapi `pkg/util/proto/document.go`, `NewOpenAPIData`): the
//! definitions, converted from the v3 documents' schemas ([`super::components`]), with each
//! kind's `x-kubernetes-group-version-kind` as a vendor extension. `paths` stay empty: kubectl
//! finds a kind's model by that extension, never through paths.

use std::sync::OnceLock;

use prost::Message;
use serde_json::{Map, Value};

use super::components;
use crate::schema::reference;

const DEFINITIONS_PREFIX: &str = "#/definitions/";

#[derive(Clone, PartialEq, Message)]
struct Document {
    #[prost(string, tag = "1")]
    swagger: String,
    #[prost(message, optional, tag = "2")]
    info: Option<Info>,
    #[prost(message, optional, tag = "8")]
    paths: Option<Paths>,
    #[prost(message, optional, tag = "9")]
    definitions: Option<Definitions>,
}

#[derive(Clone, PartialEq, Message)]
struct Info {
    #[prost(string, tag = "1")]
    title: String,
    #[prost(string, tag = "2")]
    version: String,
}

#[derive(Clone, PartialEq, Message)]
struct Paths {}

#[derive(Clone, PartialEq, Message)]
struct Definitions {
    #[prost(message, repeated, tag = "1")]
    additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, Message)]
struct NamedSchema {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<Schema>,
}

/// gnostic's `Schema`, with the fields our definitions use.
#[derive(Clone, PartialEq, Message)]
struct Schema {
    #[prost(string, tag = "1")]
    reference: String,
    #[prost(string, tag = "2")]
    format: String,
    #[prost(string, tag = "4")]
    description: String,
    #[prost(string, repeated, tag = "19")]
    required: Vec<String>,
    #[prost(message, optional, tag = "21")]
    additional_properties: Option<AdditionalPropertiesItem>,
    #[prost(message, optional, tag = "22")]
    r#type: Option<TypeItem>,
    #[prost(message, optional, tag = "23")]
    items: Option<ItemsItem>,
    #[prost(message, optional, tag = "25")]
    properties: Option<Properties>,
    #[prost(message, repeated, tag = "31")]
    vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
struct AdditionalPropertiesItem {
    #[prost(oneof = "AdditionalProperties", tags = "1, 2")]
    oneof: Option<AdditionalProperties>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum AdditionalProperties {
    #[prost(message, tag = "1")]
    Schema(Box<Schema>),
    #[prost(bool, tag = "2")]
    Boolean(bool),
}

#[derive(Clone, PartialEq, Message)]
struct TypeItem {
    #[prost(string, repeated, tag = "1")]
    value: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct ItemsItem {
    #[prost(message, repeated, tag = "1")]
    schema: Vec<Schema>,
}

#[derive(Clone, PartialEq, Message)]
struct Properties {
    #[prost(message, repeated, tag = "1")]
    additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, Message)]
struct NamedAny {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<Any>,
}

/// gnostic's `Any`: kubectl reads only `yaml` (field 1, a `google.protobuf.Any`, stays unset).
#[derive(Clone, PartialEq, Message)]
struct Any {
    #[prost(string, tag = "2")]
    yaml: String,
}

/// The Content-Type of [`v2_protobuf`], as kube-openapi's handler sends it. kubectl asks with
/// `Accept: …spec.v2@v1.0+protobuf`, but client-go parses the response type with Go's
/// `mime.ParseMediaType`, which rejects the `@` ("unexpected content after media subtype").
pub const V2_PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The `/openapi/v2` document as gnostic protobuf bytes, built once, and its ETag hash.
pub fn v2_protobuf() -> (&'static [u8], &'static str) {
    static DOCUMENT: OnceLock<(Vec<u8>, String)> = OnceLock::new();
    let (bytes, hash) = DOCUMENT.get_or_init(|| {
        let bytes = build().encode_to_vec();
        let hash = super::hash(&bytes);
        (bytes, hash)
    });
    (bytes, hash)
}

fn build() -> Document {
    Document {
        swagger: "2.0".into(),
        info: Some(Info {
            title: "Kubernetes".into(),
            version: "v1.33.0".into(),
        }),
        paths: Some(Paths {}),
        definitions: Some(Definitions {
            additional_properties: named(components::definitions()),
        }),
    }
}

fn named(schemas: &Map<String, Value>) -> Vec<NamedSchema> {
    schemas
        .iter()
        .map(|(name, schema)| NamedSchema {
            name: name.clone(),
            value: Some(convert(schema)),
        })
        .collect()
}

/// One OpenAPI 3 schema as Swagger 2.0. `oneOf` (only the CRD `JSONSchemaPropsOr…` types use
/// it) has no Swagger form and is dropped, which leaves those types free-form, as Kubernetes
/// publishes them.
fn convert(schema: &Value) -> Schema {
    let text = |key: &str| {
        schema
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let vendor_extension = vendor_extensions(schema);
    if let Some(reference) = reference(schema) {
        // kubectl rejects a reference that also has a type or properties.
        return Schema {
            reference: format!("{DEFINITIONS_PREFIX}{reference}"),
            description: text("description"),
            vendor_extension,
            ..Schema::default()
        };
    }
    let r#type = schema.get("type").and_then(Value::as_str);
    let items = match schema.get("items") {
        Some(items) => Some(convert(items)),
        // kubectl rejects an array without exactly one item schema: leave the items free-form.
        None if r#type == Some("array") => Some(Schema::default()),
        None => None,
    };
    Schema {
        format: text("format"),
        description: text("description"),
        required: schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default(),
        additional_properties: schema.get("additionalProperties").map(|a| {
            AdditionalPropertiesItem {
                oneof: Some(match a {
                    Value::Bool(b) => AdditionalProperties::Boolean(*b),
                    other => AdditionalProperties::Schema(Box::new(convert(other))),
                }),
            }
        }),
        r#type: r#type.map(|t| TypeItem {
            value: vec![t.to_string()],
        }),
        items: items.map(|s| ItemsItem { schema: vec![s] }),
        properties: schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| Properties {
                additional_properties: named(p),
            }),
        vendor_extension,
        ..Schema::default()
    }
}

/// `x-…` keys as gnostic `NamedAny`s, their values as YAML, the form kubectl parses them from.
fn vendor_extensions(schema: &Value) -> Vec<NamedAny> {
    let Some(map) = schema.as_object() else {
        return Vec::new();
    };
    map.iter()
        .filter(|(key, _)| key.starts_with("x-"))
        .filter_map(|(key, value)| {
            // A JSON value always has a YAML form; skipping is only for the impossible case.
            let yaml = serde_yaml_ng::to_string(value).ok()?;
            Some(NamedAny {
                name: key.clone(),
                value: Some(Any { yaml }),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
