//! The Node printer: STATUS from the Ready condition (plus `SchedulingDisabled` when cordoned),
//! ROLES from the `node-role.kubernetes.io/*` and `kubernetes.io/role` labels, and the wide
//! addresses and `nodeInfo` versions, after `printNode` in Kubernetes' `printers.go`.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::super::format::{age, arr_at, name, or_none, str_at};
use super::super::{AGE, Doc, NAME, Printer, col, wide};

pub(super) const NODE: Printer = Printer::new(
    &[
        NAME,
        col("Status", "string", Doc::Text("The status of the node")),
        col("Roles", "string", Doc::Text("The roles of the node")),
        AGE,
        col(
            "Version",
            "string",
            Doc::Field("io.k8s.api.core.v1.NodeSystemInfo", "kubeletVersion"),
        ),
        wide(
            "Internal-IP",
            "string",
            Doc::Field("io.k8s.api.core.v1.NodeStatus", "addresses"),
        ),
        wide(
            "External-IP",
            "string",
            Doc::Field("io.k8s.api.core.v1.NodeStatus", "addresses"),
        ),
        wide(
            "OS-Image",
            "string",
            Doc::Field("io.k8s.api.core.v1.NodeSystemInfo", "osImage"),
        ),
        wide(
            "Kernel-Version",
            "string",
            Doc::Field("io.k8s.api.core.v1.NodeSystemInfo", "kernelVersion"),
        ),
        wide(
            "Container-Runtime",
            "string",
            Doc::Field(
                "io.k8s.api.core.v1.NodeSystemInfo",
                "containerRuntimeVersion",
            ),
        ),
    ],
    node_cells,
);

fn node_cells(node: &Value, now: DateTime<Utc>) -> Vec<Value> {
    // Only the Ready condition decides; a later duplicate wins, as in Go's map.
    let ready = arr_at(node, "/status/conditions")
        .iter()
        .rfind(|c| str_at(c, "/type") == "Ready");
    let mut status = match ready {
        Some(c) if str_at(c, "/status") == "True" => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if node.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles: Vec<&str> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| match k.strip_prefix("node-role.kubernetes.io/") {
            Some(role) if !role.is_empty() => Some(role),
            Some(_) => None,
            None if k == "kubernetes.io/role" => v.as_str().filter(|v| !v.is_empty()),
            None => None,
        })
        .collect();
    roles.sort_unstable();
    roles.dedup();
    let address = |type_: &str| {
        arr_at(node, "/status/addresses")
            .iter()
            .find(|a| str_at(a, "/type") == type_)
            .map_or("<none>", |a| str_at(a, "/address"))
    };
    let info = |field: &str| match str_at(node, &format!("/status/nodeInfo/{field}")) {
        "" => "<unknown>".to_string(),
        v => v.to_string(),
    };
    vec![
        name(node),
        status.into(),
        or_none(&roles.join(",")),
        age(node, now),
        str_at(node, "/status/nodeInfo/kubeletVersion").into(),
        address("InternalIP").into(),
        address("ExternalIP").into(),
        info("osImage").into(),
        info("kernelVersion").into(),
        info("containerRuntimeVersion").into(),
    ]
}
