//! Server-side printing: the `meta.k8s.io/v1` Table `kubectl get` asks for
//! (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`). Columns and cells follow Kubernetes'
//! own printers (`pkg/printers/internalversion/printers.go`, v1.33), one [`Printer`] per kind,
//! split by group into `pod`, `core`, `events`, `apps`, `batch`, `autoscaling` and `other`. Kinds Kubernetes
//! has no printer for get its default table convertor (`Name`, `Created At`); custom resources
//! get the CRD convertor's default columns (`Name`, `Age`).
//!
//! Like the API server, every row carries the `-o wide` cells too: kubectl hides the
//! priority-1 columns itself unless asked for them.

mod apps;
mod autoscaling;
mod batch;
mod core;
mod events;
mod format;
mod other;
mod pod;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::registry::ResourceInfo;
use crate::schema;
use crate::status::{ApiError, FieldError};

pub use format::human_duration;

/// One `columnDefinitions[]` entry of a Table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// As Kubernetes names it (`Name`, `Nominated Node`); kubectl upper-cases it.
    pub name: &'static str,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: &'static str,
    /// `name` for the column naming the object, else empty.
    pub format: &'static str,
    pub description: &'static str,
    /// 0 for default columns, 1 for those only `-o wide` shows.
    pub priority: i32,
}

/// What each row's `object` carries: `?includeObject=None|Metadata|Object`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    None,
    /// A `PartialObjectMetadata` (the default): enough for `-A`, `--show-labels` and `-L`.
    #[default]
    Metadata,
    /// The whole object, which kubectl asks for with `--sort-by`.
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query parameter; absent or empty means `Metadata`.
    // ApiError is the API server's one error type, large or not.
    pub fn parse(s: Option<&str>) -> Result<Self, ApiError> {
        match s.unwrap_or("") {
            "" | "Metadata" => Ok(Self::Metadata),
            "None" => Ok(Self::None),
            "Object" => Ok(Self::Object),
            other => {
                let cause = FieldError::invalid(
                    "includeObject",
                    &Value::String(other.to_string()),
                    "must be 'Metadata', 'Object', 'None', or empty",
                );
                Err(ApiError::bad_request(format!(
                    "Unable to convert to Table as requested: {}",
                    cause.display()
                )))
            }
        }
    }
}

/// Where a column's description comes from. Kubernetes mostly quotes a field's `SwaggerDoc()`,
/// which is the text of that field's OpenAPI description, so those are read from the schema
/// index rather than copied here.
#[derive(Clone, Copy)]
enum Doc {
    Text(&'static str),
    /// An OpenAPI definition name and one of its properties.
    Field(&'static str, &'static str),
}

/// A column as a printer declares it.
struct ColumnDef {
    name: &'static str,
    type_: &'static str,
    format: &'static str,
    doc: Doc,
    priority: i32,
}

const fn col(name: &'static str, type_: &'static str, doc: Doc) -> ColumnDef {
    ColumnDef {
        name,
        type_,
        format: "",
        doc,
        priority: 0,
    }
}

/// A column only `-o wide` shows.
const fn wide(name: &'static str, type_: &'static str, doc: Doc) -> ColumnDef {
    ColumnDef {
        priority: 1,
        ..col(name, type_, doc)
    }
}

/// The wide `Selector` column of a pod controller, documented by its spec definition's `selector`.
const fn selector_col(spec_definition: &'static str) -> ColumnDef {
    wide(
        "Selector",
        "string",
        Doc::Field(spec_definition, "selector"),
    )
}

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const NAME: ColumnDef = ColumnDef {
    format: "name",
    ..col("Name", "string", Doc::Field(META, "name"))
};
const AGE: ColumnDef = col("Age", "string", Doc::Field(META, "creationTimestamp"));
const CONTAINERS: ColumnDef = wide(
    "Containers",
    "string",
    Doc::Text("Names of each container in the template."),
);
const IMAGES: ColumnDef = wide(
    "Images",
    "string",
    Doc::Text("Images referenced by each container in the template."),
);

/// The printer of one kind: its columns and how one object becomes a row.
struct Printer {
    columns: &'static [ColumnDef],
    /// One cell per column, wide columns included.
    cells: fn(&Value, DateTime<Utc>) -> Vec<Value>,
    /// `rows[].conditions`, which only pods set.
    conditions: Option<fn(&Value) -> Option<Value>>,
}

impl Printer {
    const fn new(
        columns: &'static [ColumnDef],
        cells: fn(&Value, DateTime<Utc>) -> Vec<Value>,
    ) -> Self {
        Self {
            columns,
            cells,
            conditions: None,
        }
    }
}

/// apiserver's `defaultTableConvertor`, for built-in kinds without a printer (Role, LimitRange,
/// CustomResourceDefinition, ...): the creation time as an RFC 3339 date, not an age.
const DEFAULT: Printer = Printer::new(
    &[
        NAME,
        col("Created At", "date", Doc::Field(META, "creationTimestamp")),
    ],
    |obj, _| {
        let created = format::time_at(obj, "/metadata/creationTimestamp").map_or_else(
            || "0001-01-01T00:00:00Z".to_string(),
            |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
        );
        vec![format::name(obj), created.into()]
    },
);

/// The CRD table convertor with no `additionalPrinterColumns`: an `Age` date column, whose
/// cell is null when the object has no creation timestamp and `<invalid>` for a malformed one.
const CUSTOM: Printer = Printer::new(
    &[
        NAME,
        col("Age", "date", Doc::Field(META, "creationTimestamp")),
    ],
    |obj, now| {
        let age = match obj.pointer("/metadata/creationTimestamp") {
            Some(Value::String(s)) if DateTime::parse_from_rfc3339(s).is_err() => {
                "<invalid>".into()
            }
            Some(Value::String(_)) => format::age(obj, now),
            _ => Value::Null,
        };
        vec![format::name(obj), age]
    },
);

fn printer(info: &ResourceInfo) -> &'static Printer {
    if info.typed.is_none() {
        return &CUSTOM;
    }
    let found = match info.group.as_ref() {
        "" => core::printer(&info.kind),
        "apps" => apps::printer(&info.kind),
        "batch" => batch::printer(&info.kind),
        "autoscaling" => autoscaling::printer(&info.kind),
        "events.k8s.io" => events::printer(&info.kind),
        _ => other::printer(&info.group, &info.kind),
    };
    found.unwrap_or(&DEFAULT)
}

fn describe(doc: Doc) -> &'static str {
    match doc {
        Doc::Text(text) => text,
        Doc::Field(definition, property) => schema::index()
            .definition(definition)
            .and_then(|d| {
                d.schema
                    .get("properties")?
                    .get(property)?
                    .get("description")
            })
            .and_then(Value::as_str)
            .unwrap_or(""),
    }
}

/// The columns of a resource's Table, wide ones included.
pub fn columns(info: &ResourceInfo) -> Vec<Column> {
    printer(info)
        .columns
        .iter()
        .map(|c| Column {
            name: c.name,
            type_: c.type_,
            format: c.format,
            description: describe(c.doc),
            priority: c.priority,
        })
        .collect()
}

/// The cells of one object's row, one per column of [`columns`].
pub fn cells(info: &ResourceInfo, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    (printer(info).cells)(obj, now)
}

/// A whole Table. `list_metadata` is `{resourceVersion, continue?}`. Without `with_columns` the
/// `columnDefinitions` are omitted (watch events after the first carry none).
pub fn table(
    info: &ResourceInfo,
    objects: &[Value],
    include: IncludeObject,
    with_columns: bool,
    list_metadata: Value,
    now: DateTime<Utc>,
) -> Value {
    let p = printer(info);
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array((p.cells)(obj, now)));
            if let Some(conditions) = p.conditions.and_then(|f| f(obj)) {
                row.insert("conditions".into(), conditions);
            }
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    let metadata = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
                    row.insert(
                        "object".into(),
                        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata}),
                    );
                }
                IncludeObject::Object => {
                    row.insert("object".into(), obj.clone());
                }
            }
            Value::Object(row)
        })
        .collect();
    let mut t = Map::new();
    t.insert("kind".into(), "Table".into());
    t.insert("apiVersion".into(), "meta.k8s.io/v1".into());
    t.insert("metadata".into(), list_metadata);
    if with_columns {
        let defs = columns(info)
            .into_iter()
            .map(|c| {
                json!({"name": c.name, "type": c.type_, "format": c.format,
                       "description": c.description, "priority": c.priority})
            })
            .collect();
        t.insert("columnDefinitions".into(), Value::Array(defs));
    }
    t.insert("rows".into(), Value::Array(rows));
    Value::Object(t)
}

#[cfg(test)]
pub(crate) mod tests;
