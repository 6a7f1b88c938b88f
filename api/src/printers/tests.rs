//! Table-level tests (shape, includeObject, fallbacks, every registered resource) and the helpers
//! the per-group printer tests share.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::*;
use crate::registry::{self, ResourceInfo};

/// The fixed "now" of every printer test.
pub(super) fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-01-01T12:00:00Z")
        .expect("valid time")
        .with_timezone(&Utc)
}

/// The first served resource with this plural (core wins for `events`).
pub(super) fn info(plural: &str) -> &'static ResourceInfo {
    registry::all()
        .iter()
        .find(|r| r.plural == plural)
        .unwrap_or_else(|| panic!("no resource {plural}"))
}

/// One object's cells, as a JSON array for compact assertions.
pub(super) fn row(plural: &str, obj: &Value) -> Value {
    Value::Array(cells(info(plural), obj, now()))
}

/// Cells `range` of a row, for assertions on a few columns.
pub(super) fn part(row: Value, range: std::ops::Range<usize>) -> Value {
    Value::Array(row.as_array().map_or(&[][..], Vec::as_slice)[range].to_vec())
}

pub(super) fn columns_of(plural: &str) -> Vec<&'static str> {
    columns(info(plural)).iter().map(|c| c.name).collect()
}

/// A custom resource (`widgets.example.com`): served untyped, as a CRD's resources are.
pub(crate) fn custom_resource() -> ResourceInfo {
    ResourceInfo {
        group: Cow::Borrowed("example.com"),
        version: Cow::Borrowed("v1"),
        kind: Cow::Borrowed("Widget"),
        plural: Cow::Borrowed("widgets"),
        singular: Cow::Borrowed("widget"),
        namespaced: true,
        short_names: Cow::Borrowed(&[]),
        categories: Cow::Borrowed(&[]),
        verbs: Cow::Borrowed(registry::ALL_VERBS),
        subresources: Cow::Borrowed(&[]),
        typed: None,
    }
}

#[test]
fn every_resource_has_a_name_column_and_one_cell_per_column() {
    let garbage = json!({"metadata": 5, "spec": "x", "status": [], "subsets": {"a": 1}});
    let mut resources: Vec<ResourceInfo> = registry::all().to_vec();
    resources.push(custom_resource());
    for r in &resources {
        let cols = columns(r);
        let name = cols
            .iter()
            .find(|c| c.name == "Name")
            .expect("a Name column");
        assert_eq!(name.format, "name", "{r:?}");
        assert!(
            cols.iter()
                .all(|c| ["string", "integer", "number", "boolean", "date"].contains(&c.type_)),
            "{r:?}"
        );
        for obj in [
            json!({}),
            garbage.clone(),
            json!({"metadata": {"name": "x"}}),
        ] {
            assert_eq!(cells(r, &obj, now()).len(), cols.len(), "{r:?} {obj}");
        }
    }
}

#[test]
fn descriptions_come_from_the_openapi_docs() {
    for r in registry::all() {
        for c in columns(r) {
            // Kubernetes itself documents RuntimeClass' Handler column with a missing doc key.
            if r.kind == "RuntimeClass" && c.name == "Handler" {
                assert_eq!(c.description, "");
                continue;
            }
            assert!(!c.description.is_empty(), "{r:?} column {}", c.name);
        }
    }
    let pods = columns(info("pods"));
    assert!(
        pods[0]
            .description
            .starts_with("Name must be unique within a namespace.")
    );
    assert!(
        pods[4]
            .description
            .starts_with("CreationTimestamp is a timestamp")
    );
    assert_eq!(
        pods.iter()
            .map(|c| (c.name, c.priority))
            .collect::<Vec<_>>(),
        [
            ("Name", 0),
            ("Ready", 0),
            ("Status", 0),
            ("Restarts", 0),
            ("Age", 0),
            ("IP", 1),
            ("Node", 1),
            ("Nominated Node", 1),
            ("Readiness Gates", 1)
        ]
    );
}

#[test]
fn kinds_without_a_printer_show_their_creation_date() {
    for plural in [
        "roles",
        "clusterroles",
        "limitranges",
        "customresourcedefinitions",
    ] {
        let cols = columns(info(plural));
        assert_eq!(
            cols.iter().map(|c| (c.name, c.type_)).collect::<Vec<_>>(),
            [("Name", "string"), ("Created At", "date")],
            "{plural}"
        );
    }
    let role = json!({"metadata": {"name": "reader", "creationTimestamp": "2024-06-01T08:30:00Z"}});
    assert_eq!(
        row("roles", &role),
        json!(["reader", "2024-06-01T08:30:00Z"])
    );
    assert_eq!(
        row("roles", &json!({})),
        json!(["", "0001-01-01T00:00:00Z"])
    );
}

#[test]
fn custom_resources_show_name_and_age() {
    let cr = custom_resource();
    let cols = columns(&cr);
    assert_eq!(
        cols.iter().map(|c| (c.name, c.type_)).collect::<Vec<_>>(),
        [("Name", "string"), ("Age", "date")]
    );
    let obj = json!({"metadata": {"name": "w1", "creationTimestamp": "2025-01-01T11:59:00Z"}});
    assert_eq!(cells(&cr, &obj, now()), vec![json!("w1"), json!("60s")]);
    assert_eq!(
        cells(&cr, &json!({"metadata": {"name": "w2"}}), now()),
        vec![json!("w2"), Value::Null]
    );
    let bad = json!({"metadata": {"name": "w3", "creationTimestamp": "yesterday"}});
    assert_eq!(
        cells(&cr, &bad, now()),
        vec![json!("w3"), json!("<invalid>")]
    );
}

fn configmap() -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cfg", "namespace": "dev", "labels": {"app": "web"},
                     "creationTimestamp": "2025-01-01T11:00:00Z", "resourceVersion": "42"},
        "data": {"a": "1", "b": "2"},
    })
}

#[test]
fn table_with_partial_object_metadata() {
    let t = table(
        info("configmaps"),
        &[configmap()],
        IncludeObject::Metadata,
        true,
        json!({"resourceVersion": "42"}),
        now(),
    );
    let keys: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "kind",
            "apiVersion",
            "metadata",
            "columnDefinitions",
            "rows"
        ]
    );
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(t["metadata"], json!({"resourceVersion": "42"}));
    let first = &t["columnDefinitions"][0];
    assert_eq!(first["name"], "Name");
    assert_eq!(first["type"], "string");
    assert_eq!(first["format"], "name");
    assert_eq!(first["priority"], 0);
    assert!(
        first["description"]
            .as_str()
            .unwrap()
            .starts_with("Name must be unique")
    );
    assert_eq!(
        t["rows"],
        json!([{
            "cells": ["cfg", 2, "60m"],
            "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                       "metadata": configmap()["metadata"]},
        }])
    );
}

#[test]
fn table_object_and_none_and_headerless() {
    let objects = [configmap()];
    let info = info("configmaps");
    let full = table(
        info,
        &objects,
        IncludeObject::Object,
        false,
        json!({}),
        now(),
    );
    assert!(full.get("columnDefinitions").is_none());
    assert_eq!(full["rows"][0]["object"], configmap());
    let none = table(info, &objects, IncludeObject::None, true, json!({}), now());
    assert_eq!(none["rows"], json!([{"cells": ["cfg", 2, "60m"]}]));
    let empty = table(
        info,
        &[],
        IncludeObject::Metadata,
        true,
        json!({"resourceVersion": "7"}),
        now(),
    );
    assert_eq!(empty["rows"], json!([]));
}

#[test]
fn finished_pod_rows_carry_conditions() {
    let pod = json!({"metadata": {"name": "done"}, "spec": {"containers": []}, "status": {"phase": "Failed"}});
    let t = table(
        info("pods"),
        &[pod],
        IncludeObject::None,
        false,
        json!({}),
        now(),
    );
    assert_eq!(
        t["rows"][0]["conditions"],
        json!([{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}])
    );
}

#[test]
fn include_object_parsing() {
    assert_eq!(IncludeObject::parse(None), Ok(IncludeObject::Metadata));
    assert_eq!(IncludeObject::parse(Some("")), Ok(IncludeObject::Metadata));
    assert_eq!(
        IncludeObject::parse(Some("Metadata")),
        Ok(IncludeObject::Metadata)
    );
    assert_eq!(
        IncludeObject::parse(Some("Object")),
        Ok(IncludeObject::Object)
    );
    assert_eq!(IncludeObject::parse(Some("None")), Ok(IncludeObject::None));
    let err = IncludeObject::parse(Some("Everything")).unwrap_err();
    assert_eq!(err.code, 400);
    assert_eq!(err.reason, "BadRequest");
    assert_eq!(
        err.message,
        "Unable to convert to Table as requested: includeObject: Invalid value: \"Everything\": must be 'Metadata', 'Object', 'None', or empty"
    );
}
