//! The one table of per-field merge strategies that strategic merge patch and server-side apply
//! share, and [`Ty`], a cursor over an object's schema that answers "how does this position merge".
//!
//! Facts come from the Kubernetes OpenAPI extensions as `k8s-openapi` 0.29 records them in its
//! `DeepMerge` impls (`x-kubernetes-patch-merge-key` where present, else `x-kubernetes-list-type`
//! and `x-kubernetes-list-map-keys`), plus `x-kubernetes-map-type`/`structType: atomic`. Lists not
//! in the table are atomic (server-side apply) and replaced whole (strategic merge).

use serde_json::Value;

use crate::registry::ResourceInfo;
use crate::schema::{self, Node};

/// How a field merges, when it is not the default (granular object, atomic list).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Strategy {
    /// A list of objects merged element by element. `patch_key` is the strategic merge key
    /// (`patchMergeKey`), `None` where Kubernetes has only a list type (the list is then replaced
    /// by strategic merge); `apply_keys` are the `x-kubernetes-list-map-keys` apply uses.
    MapList {
        patch_key: Option<&'static str>,
        apply_keys: &'static [&'static str],
    },
    /// A list of scalars kept as a set; `patch_merge` where strategic merge merges it too
    /// (`patchStrategy: merge` on a primitive list, e.g. finalizers).
    SetList { patch_merge: bool },
    /// A map owned and replaced as a whole by apply (`x-kubernetes-map-type: atomic`).
    AtomicMap,
}

const fn by_key(key: &'static str, apply_keys: &'static [&'static str]) -> Strategy {
    Strategy::MapList {
        patch_key: Some(key),
        apply_keys,
    }
}

const fn list_map(apply_keys: &'static [&'static str]) -> Strategy {
    Strategy::MapList {
        patch_key: None,
        apply_keys,
    }
}

const NAME: &[&str] = &["name"];
const TYPE: &[&str] = &["type"];
const IP: &[&str] = &["ip"];
const MOUNT_PATH: &[&str] = &["mountPath"];
const DEVICE_PATH: &[&str] = &["devicePath"];
const CONTAINER_PORT: &[&str] = &["containerPort", "protocol"];
const SET: Strategy = Strategy::SetList { patch_merge: false };
const MERGED_SET: Strategy = Strategy::SetList { patch_merge: true };
const ATOMIC_MAP: Strategy = Strategy::AtomicMap;

/// (definition, field, strategy), sorted by definition then field for binary search.
static FIELDS: &[(&str, &str, Strategy)] = &[
    (
        "io.k8s.api.apps.v1.DaemonSetStatus",
        "conditions",
        by_key("type", TYPE),
    ),
    (
        "io.k8s.api.apps.v1.DeploymentStatus",
        "conditions",
        by_key("type", TYPE),
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "conditions",
        by_key("type", TYPE),
    ),
    (
        "io.k8s.api.apps.v1.StatefulSetStatus",
        "conditions",
        by_key("type", TYPE),
    ),
    (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus",
        "conditions",
        by_key("type", TYPE),
    ),
    (
        "io.k8s.api.batch.v1.JobStatus",
        "conditions",
        by_key("type", TYPE),
    ),
    (
        "io.k8s.api.batch.v1.PodFailurePolicyOnExitCodesRequirement",
        "values",
        SET,
    ),
    ("io.k8s.api.batch.v1.UncountedTerminatedPods", "failed", SET),
    (
        "io.k8s.api.batch.v1.UncountedTerminatedPods",
        "succeeded",
        SET,
    ),
    (
        "io.k8s.api.core.v1.ComponentStatus",
        "conditions",
        by_key("type", TYPE),
    ),
    ("io.k8s.api.core.v1.Container", "env", by_key("name", NAME)),
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        by_key("containerPort", CONTAINER_PORT),
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        by_key("devicePath", DEVICE_PATH),
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        by_key("mountPath", MOUNT_PATH),
    ),
    (
        "io.k8s.api.core.v1.ContainerStatus",
        "allocatedResourcesStatus",
        list_map(NAME),
    ),
    (
        "io.k8s.api.core.v1.ContainerStatus",
        "volumeMounts",
        list_map(MOUNT_PATH),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "env",
        by_key("name", NAME),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "ports",
        by_key("containerPort", CONTAINER_PORT),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeDevices",
        by_key("devicePath", DEVICE_PATH),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeMounts",
        by_key("mountPath", MOUNT_PATH),
    ),
    (
        "io.k8s.api.core.v1.NamespaceStatus",
        "conditions",
        by_key("type", TYPE),
    ),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", MERGED_SET),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "addresses",
        by_key("type", TYPE),
    ),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "conditions",
        by_key("type", TYPE),
    ),
    (
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "conditions",
        by_key("type", TYPE),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "containers",
        by_key("name", NAME),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "ephemeralContainers",
        by_key("name", NAME),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "hostAliases",
        by_key("ip", IP),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "imagePullSecrets",
        by_key("name", NAME),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "initContainers",
        by_key("name", NAME),
    ),
    ("io.k8s.api.core.v1.PodSpec", "nodeSelector", ATOMIC_MAP),
    (
        "io.k8s.api.core.v1.PodSpec",
        "resourceClaims",
        by_key("name", NAME),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "schedulingGates",
        by_key("name", NAME),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        by_key("topologyKey", &["topologyKey", "whenUnsatisfiable"]),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "volumes",
        by_key("name", NAME),
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "conditions",
        by_key("type", TYPE),
    ),
    ("io.k8s.api.core.v1.PodStatus", "hostIPs", by_key("ip", IP)),
    ("io.k8s.api.core.v1.PodStatus", "podIPs", by_key("ip", IP)),
    (
        "io.k8s.api.core.v1.PodStatus",
        "resourceClaimStatuses",
        by_key("name", NAME),
    ),
    (
        "io.k8s.api.core.v1.ReplicationControllerSpec",
        "selector",
        ATOMIC_MAP,
    ),
    (
        "io.k8s.api.core.v1.ReplicationControllerStatus",
        "conditions",
        by_key("type", TYPE),
    ),
    (
        "io.k8s.api.core.v1.ResourceRequirements",
        "claims",
        list_map(NAME),
    ),
    (
        "io.k8s.api.core.v1.ResourceStatus",
        "resources",
        list_map(&["resourceID"]),
    ),
    (
        "io.k8s.api.core.v1.ServiceAccount",
        "secrets",
        by_key("name", NAME),
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        by_key("port", &["port", "protocol"]),
    ),
    ("io.k8s.api.core.v1.ServiceSpec", "selector", ATOMIC_MAP),
    (
        "io.k8s.api.core.v1.ServiceStatus",
        "conditions",
        by_key("type", TYPE),
    ),
    ("io.k8s.api.discovery.v1.Endpoint", "addresses", SET),
    (
        "io.k8s.api.networking.v1.ServiceCIDRStatus",
        "conditions",
        by_key("type", TYPE),
    ),
    ("io.k8s.api.node.v1.Scheduling", "nodeSelector", ATOMIC_MAP),
    (
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus",
        "conditions",
        list_map(TYPE),
    ),
    (
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps",
        "x-kubernetes-validations",
        by_key("rule", &["rule"]),
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        MERGED_SET,
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        by_key("uid", &["uid"]),
    ),
];

/// Structs apply owns as a whole (`+structType=atomic`).
static ATOMIC_STRUCTS: &[&str] = &[
    "io.k8s.api.core.v1.ConfigMapKeySelector",
    "io.k8s.api.core.v1.LocalObjectReference",
    "io.k8s.api.core.v1.NodeSelector",
    "io.k8s.api.core.v1.NodeSelectorTerm",
    "io.k8s.api.core.v1.ObjectFieldSelector",
    "io.k8s.api.core.v1.ObjectReference",
    "io.k8s.api.core.v1.ResourceFieldSelector",
    "io.k8s.api.core.v1.ScopeSelector",
    "io.k8s.api.core.v1.SecretKeySelector",
    "io.k8s.api.core.v1.SecretReference",
    "io.k8s.api.core.v1.TopologySelectorTerm",
    "io.k8s.api.core.v1.TypedLocalObjectReference",
    "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
];

/// Struct fields that Go always serializes (value structs and required fields): they count as
/// present in an object that lacks them, so creating them does not mark the field itself as
/// added in managedFields (`f:spec` carries no `.`), exactly as the Go zero object behaves.
const ALWAYS_PRESENT: &[&str] = &[
    "metadata",
    "spec",
    "status",
    "template",
    "strategy",
    "updateStrategy",
];

fn lookup(definition: &str, field: &str) -> Option<Strategy> {
    FIELDS
        .binary_search_by(|(d, f, _)| (*d, *f).cmp(&(definition, field)))
        .ok()
        .map(|i| FIELDS[i].2)
}

/// The apply default of a list-map key the element omits (`protocol` defaults to `TCP`).
pub(crate) fn key_default(key: &str) -> Option<Value> {
    (key == "protocol").then(|| Value::String("TCP".into()))
}

/// How strategic merge treats a list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum PatchList {
    /// The patch's list replaces the original (no `patchStrategy`).
    Replace,
    /// Merged: objects by the key, scalars as a set when the key is `None`.
    Merge(Option<&'static str>),
}

/// How server-side apply identifies list elements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ApplyList {
    Atomic,
    Map(&'static [&'static str]),
    Set,
}

/// A position in an object's type: the schema there (if known) and the strategy its parent's
/// table entry gives it. Without a schema (custom resources) objects are granular maps and
/// lists atomic, as structured-merge-diff's deduced schema treats them.
#[derive(Clone, Copy)]
pub(crate) struct Ty<'a> {
    node: Option<Node<'a>>,
    strategy: Option<Strategy>,
}

impl<'a> Ty<'a> {
    pub(crate) fn of(info: &ResourceInfo) -> Ty<'static> {
        Ty {
            node: schema::index().root(info),
            strategy: None,
        }
    }

    /// The type of field or map entry `key` of an object at this position.
    pub(crate) fn field(&self, key: &str) -> Ty<'a> {
        let Some(node) = self.node else {
            return Ty {
                node: None,
                strategy: None,
            };
        };
        let child = node.property(key).or_else(|| node.additional_properties());
        let strategy = node.definition.and_then(|d| lookup(d, key));
        Ty {
            node: child,
            strategy,
        }
    }

    /// The element type of a list at this position.
    pub(crate) fn item(&self) -> Ty<'a> {
        Ty {
            node: self.node.and_then(|n| n.items()),
            strategy: None,
        }
    }

    /// True when `key` is a declared struct field (not a map entry or an unknown key).
    pub(crate) fn declares(&self, key: &str) -> bool {
        self.node
            .and_then(|n| n.properties())
            .is_some_and(|p| p.contains_key(key))
    }

    /// True when Go would serialize struct field `key` even when empty (see [`ALWAYS_PRESENT`]).
    pub(crate) fn always_present(&self, key: &str) -> bool {
        if !self.declares(key) {
            return false;
        }
        let required = self
            .node
            .and_then(|n| n.schema.get("required"))
            .and_then(Value::as_array)
            .is_some_and(|r| r.iter().any(|f| f == key));
        required || ALWAYS_PRESENT.contains(&key)
    }

    pub(crate) fn patch_list(&self) -> PatchList {
        match self.strategy {
            Some(Strategy::MapList {
                patch_key: Some(k), ..
            }) => PatchList::Merge(Some(k)),
            Some(Strategy::SetList { patch_merge: true }) => PatchList::Merge(None),
            _ => PatchList::Replace,
        }
    }

    pub(crate) fn apply_list(&self) -> ApplyList {
        match self.strategy {
            Some(Strategy::MapList { apply_keys, .. }) => ApplyList::Map(apply_keys),
            Some(Strategy::SetList { .. }) => ApplyList::Set,
            _ => ApplyList::Atomic,
        }
    }

    /// True when apply owns an object at this position as a whole.
    pub(crate) fn atomic_object(&self) -> bool {
        self.strategy == Some(Strategy::AtomicMap)
            || self
                .node
                .and_then(|n| n.definition)
                .is_some_and(|d| ATOMIC_STRUCTS.contains(&d))
    }

    /// The definition name, for error messages.
    pub(crate) fn name(&self) -> &'a str {
        self.node.and_then(|n| n.definition).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;

    #[test]
    fn table_is_sorted_and_unique() {
        for pair in FIELDS.windows(2) {
            assert!(
                (pair[0].0, pair[0].1) < (pair[1].0, pair[1].1),
                "{:?}",
                pair[1]
            );
        }
    }

    #[test]
    fn walks_deployment_to_container_ports() {
        let deploy = registry::find("apps", "v1", "deployments").unwrap();
        let containers = Ty::of(deploy)
            .field("spec")
            .field("template")
            .field("spec")
            .field("containers");
        assert_eq!(containers.patch_list(), PatchList::Merge(Some("name")));
        assert_eq!(containers.apply_list(), ApplyList::Map(&["name"]));
        let ports = containers.item().field("ports");
        assert_eq!(ports.patch_list(), PatchList::Merge(Some("containerPort")));
        assert_eq!(
            ports.apply_list(),
            ApplyList::Map(&["containerPort", "protocol"])
        );
        let spec = Ty::of(deploy).field("spec");
        assert!(spec.field("selector").atomic_object());
        assert_eq!(
            spec.field("template")
                .field("spec")
                .field("tolerations")
                .patch_list(),
            PatchList::Replace
        );
        let meta = Ty::of(deploy).field("metadata");
        assert_eq!(
            meta.field("finalizers").patch_list(),
            PatchList::Merge(None)
        );
        assert!(meta.declares("labels"));
        assert!(!meta.field("labels").declares("app"));
        assert!(Ty::of(deploy).always_present("spec"));
        assert!(!spec.always_present("paused"));
    }
}
