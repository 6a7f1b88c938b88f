//! `components.schemas` of the `/openapi/v3` documents: the schema index's definitions plus the
//! types operations refer to (Scale, Eviction, TokenRequest, Status, DeleteOptions, Patch), a
//! `<Kind>List` per resource, shaped as Kubernetes publishes them: each kind tagged with its
//! `x-kubernetes-group-version-kind` (kubectl explain finds a kind by it) and `metadata` never
//! required. [`closure`] picks what one document references.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use k8s_openapi::api::{authentication, autoscaling, policy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

use crate::registry::{self, ResourceInfo};
use crate::schema::{self, REF_PREFIX};

/// A kind an operation answers with that is not itself a served resource.
pub(super) struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub definition: &'static str,
}

impl Kind {
    pub fn gvk(&self) -> Value {
        gvk(self.group, self.version, self.kind)
    }
}

pub(super) const SCALE: Kind = Kind {
    group: "autoscaling",
    version: "v1",
    kind: "Scale",
    definition: "io.k8s.api.autoscaling.v1.Scale",
};
pub(super) const EVICTION: Kind = Kind {
    group: "policy",
    version: "v1",
    kind: "Eviction",
    definition: "io.k8s.api.policy.v1.Eviction",
};
pub(super) const TOKEN_REQUEST: Kind = Kind {
    group: "authentication.k8s.io",
    version: "v1",
    kind: "TokenRequest",
    definition: "io.k8s.api.authentication.v1.TokenRequest",
};
pub(super) const BINDING: Kind = Kind {
    group: "",
    version: "v1",
    kind: "Binding",
    definition: "io.k8s.api.core.v1.Binding",
};
pub(super) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub(super) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(super) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const OBJECT_META_REF: &str =
    "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// `{"group", "kind", "version"}`: exactly these keys, since kubectl compares the objects whole.
pub(super) fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

/// The definition name of a resource's object, `None` for custom resources.
pub(super) fn definition_of(r: &ResourceInfo) -> Option<String> {
    r.typed.map(|t| (t.schema_name)().into_owned())
}

pub(super) fn list_definition_of(r: &ResourceInfo) -> Option<String> {
    definition_of(r).map(|d| format!("{d}List"))
}

fn register<T: JsonSchema>(generator: &mut SchemaGenerator) {
    generator.subschema_for::<T>();
}

/// Every definition any document may reference, built once.
pub(super) fn definitions() -> &'static Map<String, Value> {
    static DEFINITIONS: OnceLock<Map<String, Value>> = OnceLock::new();
    DEFINITIONS.get_or_init(|| {
        let mut defs = schema::index().definitions().clone();
        let mut generator = SchemaSettings::openapi3().into_generator();
        let extras: [fn(&mut SchemaGenerator); 7] = [
            register::<autoscaling::v1::Scale>,
            register::<policy::v1::Eviction>,
            register::<authentication::v1::TokenRequest>,
            register::<meta::Status>,
            register::<meta::DeleteOptions>,
            register::<meta::Patch>,
            register::<meta::ListMeta>,
        ];
        for extra in extras {
            extra(&mut generator);
        }
        for (name, def) in generator.take_definitions(true) {
            defs.entry(name).or_insert(def);
        }
        for r in registry::all() {
            let (Some(def), Some(list)) = (definition_of(r), list_definition_of(r)) else {
                continue;
            };
            let Some(item) = defs.get_mut(&def) else {
                continue;
            };
            tag_kind(item, gvk(&r.group, &r.version, &r.kind));
            let list_schema = list_definition(r, &def, item);
            defs.insert(list, list_schema);
        }
        for extra in [SCALE, EVICTION, TOKEN_REQUEST] {
            if let Some(def) = defs.get_mut(extra.definition) {
                tag_kind(def, extra.gvk());
            }
        }
        for def in defs.values_mut() {
            drop_required_metadata(def);
        }
        defs
    })
}

fn tag_kind(definition: &mut Value, gvk: Value) {
    if let Some(obj) = definition.as_object_mut() {
        obj.insert("x-kubernetes-group-version-kind".into(), json!([gvk]));
    }
}

/// k8s-openapi requires `metadata` (its field is not optional in Rust); the API server does not.
fn drop_required_metadata(definition: &mut Value) {
    let refs_object_meta = definition
        .pointer("/properties/metadata")
        .is_some_and(|m| references(m).any(|r| r == OBJECT_META_REF));
    if !refs_object_meta {
        return;
    }
    let Some(obj) = definition.as_object_mut() else {
        return;
    };
    if let Some(Value::Array(required)) = obj.get_mut("required") {
        required.retain(|f| f != "metadata");
        if required.is_empty() {
            obj.remove("required");
        }
    }
}

/// `<Kind>List`, as Kubernetes' generated list types read; k8s-openapi's generic `List<T>`
/// carries no schema.
fn list_definition(r: &ResourceInfo, item_definition: &str, item: &Value) -> Value {
    let property = |name: &str| item.pointer(&format!("/properties/{name}")).cloned();
    json!({
        "description": format!("{}List is a list of {} objects.", r.kind, r.kind),
        "type": "object",
        "properties": {
            "apiVersion": property("apiVersion").unwrap_or_else(|| json!({"type": "string"})),
            "items": {
                "description": format!("List of {}.", r.plural),
                "type": "array",
                "items": {"$ref": format!("{REF_PREFIX}{item_definition}")},
            },
            "kind": property("kind").unwrap_or_else(|| json!({"type": "string"})),
            "metadata": {
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
                "allOf": [{"$ref": format!("{REF_PREFIX}{LIST_META}")}],
            },
        },
        "required": ["items"],
        "x-kubernetes-group-version-kind": [gvk(&r.group, &r.version, &r.list_kind())],
    })
}

/// Every `$ref` string anywhere inside `value`.
pub(super) fn references(value: &Value) -> Box<dyn Iterator<Item = &str> + '_> {
    match value {
        Value::Object(map) => Box::new(map.iter().flat_map(|(k, v)| {
            let own = (k == "$ref").then(|| v.as_str()).flatten();
            own.into_iter().chain(references(v))
        })),
        Value::Array(items) => Box::new(items.iter().flat_map(references)),
        _ => Box::new(std::iter::empty()),
    }
}

/// The definitions `root` references, directly or through other definitions, sorted by name.
pub(super) fn closure(root: &Value) -> Map<String, Value> {
    let all = definitions();
    let mut found: BTreeMap<&str, &Value> = BTreeMap::new();
    let mut pending: Vec<&str> = references(root).collect();
    while let Some(reference) = pending.pop() {
        let name = reference.strip_prefix(REF_PREFIX).unwrap_or(reference);
        let Some((name, def)) = all.get_key_value(name) else {
            continue;
        };
        if found.insert(name, def).is_none() {
            pending.extend(references(def));
        }
    }
    found
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}
