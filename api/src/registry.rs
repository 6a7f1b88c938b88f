//! The resource registry: every resource the API server serves, with what discovery says of it
//! (group, version, kind, plural, scope, verbs, short names, categories, subresources) and the
//! `k8s-openapi` type behind it, which gives the schema (`/openapi/v3`, strict decoding) and the
//! typed round trip. Custom resources join through [`ResourceInfo`] values built at run time.

use std::borrow::Cow;

use k8s_openapi::api::{
    apps::v1 as apps, autoscaling::v2 as autoscaling, batch::v1 as batch,
    coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery,
    events::v1 as events, networking::v1 as networking, node::v1 as node, rbac::v1 as rbac,
    storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::status::ObjectRef;

/// The Kubernetes type behind a built-in resource, as plain function pointers so the registry
/// stays a static table.
#[derive(Clone, Copy)]
pub struct TypedKind {
    /// The OpenAPI definition name, e.g. `io.k8s.api.core.v1.Pod`.
    pub schema_name: fn() -> Cow<'static, str>,
    /// Registers the type (and everything it references) with a generator, returning a `$ref`.
    pub subschema: fn(&mut SchemaGenerator) -> Schema,
    /// Decodes into the typed struct and encodes back: normalises the object the way a Go
    /// API server's decode/encode does, and fails on wrong value types.
    pub roundtrip: fn(&Value) -> Result<Value, serde_json::Error>,
}

fn subschema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

fn roundtrip<T: Serialize + DeserializeOwned>(v: &Value) -> Result<Value, serde_json::Error> {
    let typed: T = serde_json::from_value(v.clone())?;
    serde_json::to_value(typed)
}

const fn typed<T: JsonSchema + Serialize + DeserializeOwned>() -> TypedKind {
    TypedKind {
        schema_name: <T as JsonSchema>::schema_name,
        subschema: subschema::<T>,
        roundtrip: roundtrip::<T>,
    }
}

/// Every verb a normal, fully served resource answers.
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// One served resource.
#[derive(Clone)]
pub struct ResourceInfo {
    /// `""` for the core group.
    pub group: Cow<'static, str>,
    pub version: Cow<'static, str>,
    pub kind: Cow<'static, str>,
    pub plural: Cow<'static, str>,
    pub singular: Cow<'static, str>,
    pub namespaced: bool,
    pub short_names: Cow<'static, [&'static str]>,
    pub categories: Cow<'static, [&'static str]>,
    pub verbs: Cow<'static, [&'static str]>,
    /// Subresources by name: `status`, `scale`, `binding`, `log`, `exec`, ...
    pub subresources: Cow<'static, [&'static str]>,
    /// `None` for resources without a `k8s-openapi` type (custom resources).
    pub typed: Option<TypedKind>,
}

impl std::fmt::Debug for ResourceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.group_version_resource())
    }
}

impl ResourceInfo {
    /// `v1` for core, `apps/v1` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn group_version_resource(&self) -> String {
        format!("{}/{}", self.api_version(), self.plural)
    }

    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.contains(&name)
    }

    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    /// The reference error messages and Status details use.
    pub fn object_ref(&self, name: &str) -> ObjectRef {
        ObjectRef {
            group: self.group.to_string(),
            resource: self.plural.to_string(),
            kind: self.kind.to_string(),
            name: name.to_string(),
        }
    }

    /// The store key prefix of this resource: `/registry/<group>/<resource>/`. The core group's
    /// segment is `core` so that no prefix is a prefix of another group's.
    pub fn key_prefix(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        format!("/registry/{group}/{}/", self.plural)
    }

    /// The store key of one object; `namespace` is ignored for cluster-scoped resources.
    pub fn key(&self, namespace: &str, name: &str) -> String {
        if self.namespaced {
            format!("{}{namespace}/{name}", self.key_prefix())
        } else {
            format!("{}{name}", self.key_prefix())
        }
    }

    /// The key prefix that lists one namespace (or everything, for `None`).
    pub fn list_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/", self.key_prefix()),
            _ => self.key_prefix(),
        }
    }
}

macro_rules! builtin {
    ($group:literal, $version:literal, $ty:ty, $kind:literal, $plural:literal, $namespaced:literal,
     short: [$($short:literal),*], cat: [$($cat:literal),*], verbs: $verbs:expr, sub: [$($sub:literal),*]) => {
        ResourceInfo {
            group: Cow::Borrowed($group),
            version: Cow::Borrowed($version),
            kind: Cow::Borrowed($kind),
            plural: Cow::Borrowed($plural),
            singular: Cow::Borrowed(singular_of($kind)),
            namespaced: $namespaced,
            short_names: Cow::Borrowed(&[$($short),*]),
            categories: Cow::Borrowed(&[$($cat),*]),
            verbs: Cow::Borrowed($verbs),
            subresources: Cow::Borrowed(&[$($sub),*]),
            typed: Some(typed::<$ty>()),
        }
    };
}

/// Lowercased kind, as Kubernetes derives `singularName`. Only ASCII kinds exist here, and the
/// table below is static, so the leaked strings are bounded.
fn singular_of(kind: &'static str) -> &'static str {
    Box::leak(kind.to_ascii_lowercase().into_boxed_str())
}

fn builtins() -> Vec<ResourceInfo> {
    const READ_CREATE: &[&str] = &["create"];
    vec![
        // core/v1
        builtin!("", "v1", core::Namespace, "Namespace", "namespaces", false,
            short: ["ns"], cat: [], verbs: &["create", "delete", "get", "list", "patch", "update", "watch"], sub: ["status", "finalize"]),
        builtin!("", "v1", core::Pod, "Pod", "pods", true,
            short: ["po"], cat: ["all"], verbs: ALL_VERBS,
            sub: ["status", "binding", "eviction", "log", "exec", "attach", "portforward", "ephemeralcontainers"]),
        builtin!("", "v1", core::Binding, "Binding", "bindings", true,
            short: [], cat: [], verbs: READ_CREATE, sub: []),
        builtin!("", "v1", core::Node, "Node", "nodes", false,
            short: ["no"], cat: [], verbs: ALL_VERBS, sub: ["status"]),
        builtin!("", "v1", core::Service, "Service", "services", true,
            short: ["svc"], cat: ["all"], verbs: &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"], sub: ["status"]),
        builtin!("", "v1", core::Endpoints, "Endpoints", "endpoints", true,
            short: ["ep"], cat: [], verbs: ALL_VERBS, sub: []),
        builtin!("", "v1", core::ConfigMap, "ConfigMap", "configmaps", true,
            short: ["cm"], cat: [], verbs: ALL_VERBS, sub: []),
        builtin!("", "v1", core::Secret, "Secret", "secrets", true,
            short: [], cat: [], verbs: ALL_VERBS, sub: []),
        builtin!("", "v1", core::ServiceAccount, "ServiceAccount", "serviceaccounts", true,
            short: ["sa"], cat: [], verbs: ALL_VERBS, sub: ["token"]),
        builtin!("", "v1", core::Event, "Event", "events", true,
            short: ["ev"], cat: [], verbs: ALL_VERBS, sub: []),
        builtin!("", "v1", core::ResourceQuota, "ResourceQuota", "resourcequotas", true,
            short: ["quota"], cat: [], verbs: ALL_VERBS, sub: ["status"]),
        builtin!("", "v1", core::LimitRange, "LimitRange", "limitranges", true,
            short: ["limits"], cat: [], verbs: ALL_VERBS, sub: []),
        builtin!("", "v1", core::PersistentVolume, "PersistentVolume", "persistentvolumes", false,
            short: ["pv"], cat: [], verbs: ALL_VERBS, sub: ["status"]),
        builtin!("", "v1", core::PersistentVolumeClaim, "PersistentVolumeClaim", "persistentvolumeclaims", true,
            short: ["pvc"], cat: [], verbs: ALL_VERBS, sub: ["status"]),
        builtin!("", "v1", core::ReplicationController, "ReplicationController", "replicationcontrollers", true,
            short: ["rc"], cat: ["all"], verbs: ALL_VERBS, sub: ["status", "scale"]),
        // apps/v1
        builtin!("apps", "v1", apps::Deployment, "Deployment", "deployments", true,
            short: ["deploy"], cat: ["all"], verbs: ALL_VERBS, sub: ["status", "scale"]),
        builtin!("apps", "v1", apps::ReplicaSet, "ReplicaSet", "replicasets", true,
            short: ["rs"], cat: ["all"], verbs: ALL_VERBS, sub: ["status", "scale"]),
        builtin!("apps", "v1", apps::DaemonSet, "DaemonSet", "daemonsets", true,
            short: ["ds"], cat: ["all"], verbs: ALL_VERBS, sub: ["status"]),
        builtin!("apps", "v1", apps::StatefulSet, "StatefulSet", "statefulsets", true,
            short: ["sts"], cat: ["all"], verbs: ALL_VERBS, sub: ["status", "scale"]),
        builtin!("apps", "v1", apps::ControllerRevision, "ControllerRevision", "controllerrevisions", true,
            short: [], cat: [], verbs: ALL_VERBS, sub: []),
        // batch/v1
        builtin!("batch", "v1", batch::Job, "Job", "jobs", true,
            short: [], cat: ["all"], verbs: ALL_VERBS, sub: ["status"]),
        builtin!("batch", "v1", batch::CronJob, "CronJob", "cronjobs", true,
            short: ["cj"], cat: ["all"], verbs: ALL_VERBS, sub: ["status"]),
        // autoscaling/v2
        builtin!("autoscaling", "v2", autoscaling::HorizontalPodAutoscaler, "HorizontalPodAutoscaler", "horizontalpodautoscalers", true,
            short: ["hpa"], cat: ["all"], verbs: ALL_VERBS, sub: ["status"]),
        // coordination.k8s.io/v1
        builtin!("coordination.k8s.io", "v1", coordination::Lease, "Lease", "leases", true,
            short: [], cat: [], verbs: ALL_VERBS, sub: []),
        // discovery.k8s.io/v1
        builtin!("discovery.k8s.io", "v1", discovery::EndpointSlice, "EndpointSlice", "endpointslices", true,
            short: [], cat: [], verbs: ALL_VERBS, sub: []),
        // node.k8s.io/v1
        builtin!("node.k8s.io", "v1", node::RuntimeClass, "RuntimeClass", "runtimeclasses", false,
            short: [], cat: [], verbs: ALL_VERBS, sub: []),
        // networking.k8s.io/v1
        builtin!("networking.k8s.io", "v1", networking::Ingress, "Ingress", "ingresses", true,
            short: ["ing"], cat: [], verbs: ALL_VERBS, sub: ["status"]),
        builtin!("networking.k8s.io", "v1", networking::IngressClass, "IngressClass", "ingressclasses", false,
            short: [], cat: [], verbs: ALL_VERBS, sub: []),
        builtin!("networking.k8s.io", "v1", networking::NetworkPolicy, "NetworkPolicy", "networkpolicies", true,
            short: ["netpol"], cat: [], verbs: ALL_VERBS, sub: []),
        // rbac.authorization.k8s.io/v1
        builtin!("rbac.authorization.k8s.io", "v1", rbac::Role, "Role", "roles", true,
            short: [], cat: [], verbs: ALL_VERBS, sub: []),
        builtin!("rbac.authorization.k8s.io", "v1", rbac::RoleBinding, "RoleBinding", "rolebindings", true,
            short: [], cat: [], verbs: ALL_VERBS, sub: []),
        builtin!("rbac.authorization.k8s.io", "v1", rbac::ClusterRole, "ClusterRole", "clusterroles", false,
            short: [], cat: [], verbs: ALL_VERBS, sub: []),
        builtin!("rbac.authorization.k8s.io", "v1", rbac::ClusterRoleBinding, "ClusterRoleBinding", "clusterrolebindings", false,
            short: [], cat: [], verbs: ALL_VERBS, sub: []),
        // storage.k8s.io/v1
        builtin!("storage.k8s.io", "v1", storage::StorageClass, "StorageClass", "storageclasses", false,
            short: ["sc"], cat: [], verbs: ALL_VERBS, sub: []),
        // events.k8s.io/v1
        builtin!("events.k8s.io", "v1", events::Event, "Event", "events", true,
            short: ["ev"], cat: [], verbs: ALL_VERBS, sub: []),
        // apiextensions.k8s.io/v1
        builtin!("apiextensions.k8s.io", "v1", apiextensions::CustomResourceDefinition, "CustomResourceDefinition", "customresourcedefinitions", false,
            short: ["crd", "crds"], cat: ["api-extensions"], verbs: ALL_VERBS, sub: ["status"]),
        // metrics.k8s.io/v1beta1: read-only, filled by node agents' resource usage (`kubectl top`).
        metrics("PodMetrics", "pods", true),
        metrics("NodeMetrics", "nodes", false),
    ]
}

/// A `metrics.k8s.io` resource: computed, never written by clients, and with no `k8s-openapi` type.
fn metrics(kind: &'static str, plural: &'static str, namespaced: bool) -> ResourceInfo {
    ResourceInfo {
        group: Cow::Borrowed("metrics.k8s.io"),
        version: Cow::Borrowed("v1beta1"),
        kind: Cow::Borrowed(kind),
        plural: Cow::Borrowed(plural),
        singular: Cow::Borrowed(""),
        namespaced,
        short_names: Cow::Borrowed(&[]),
        categories: Cow::Borrowed(&[]),
        verbs: Cow::Borrowed(&["get", "list"]),
        subresources: Cow::Borrowed(&[]),
        typed: None,
    }
}

/// The built-in resources, in discovery order.
pub fn all() -> &'static [ResourceInfo] {
    static TABLE: std::sync::OnceLock<Vec<ResourceInfo>> = std::sync::OnceLock::new();
    TABLE.get_or_init(builtins)
}

/// A built-in resource by group, version and plural.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    all()
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// A built-in resource by group and kind (any served version).
pub fn find_kind(group: &str, kind: &str) -> Option<&'static ResourceInfo> {
    all().iter().find(|r| r.group == group && r.kind == kind)
}

/// Served group-versions in discovery order, core (`""`, `v1`) first.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in all() {
        let (Cow::Borrowed(g), Cow::Borrowed(v)) = (&r.group, &r.version) else {
            continue;
        };
        if !out.contains(&(*g, *v)) {
            out.push((g, v));
        }
    }
    out
}

/// The `(group, version)` of an `apiVersion` string: `v1` → `("", "v1")`, `apps/v1` → `("apps", "v1")`.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_resources_and_builds_keys() {
        let pods = find("", "v1", "pods").expect("pods");
        assert_eq!(pods.kind, "Pod");
        assert_eq!(pods.singular, "pod");
        assert_eq!(
            pods.key("default", "web"),
            "/registry/core/pods/default/web"
        );
        assert_eq!(pods.list_prefix(Some("ns1")), "/registry/core/pods/ns1/");
        let nodes = find("", "v1", "nodes").expect("nodes");
        assert_eq!(nodes.key("ignored", "n1"), "/registry/core/nodes/n1");
        let deploy = find_kind("apps", "Deployment").expect("deployments");
        assert_eq!(deploy.api_version(), "apps/v1");
        assert!(deploy.has_subresource("scale"));
        assert_eq!(group_versions()[0], ("", "v1"));
    }

    #[test]
    fn every_builtin_has_a_schema_name_and_roundtrips_an_empty_object() {
        for r in all().iter().filter(|r| r.group != "metrics.k8s.io") {
            let t = r.typed.expect("built-ins are typed");
            assert!((t.schema_name)().starts_with("io.k8s."), "{r:?}");
            let obj = serde_json::json!({"apiVersion": r.api_version(), "kind": r.kind, "metadata": {"name": "x"}});
            // Some kinds have required fields (e.g. Binding.target); those may fail, but none may panic.
            let _ = (t.roundtrip)(&obj);
        }
    }
}
