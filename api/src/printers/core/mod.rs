//! Printers of the core (`v1`) group: the dispatch for every core kind, and the small ones
//! (namespaces, config maps, secrets, service accounts, resource quotas, replication
//! controllers). Nodes, services and endpoints, and volumes have their own files; pods and
//! events are `super::pod` and `super::events`. Each follows its `print*` function in
//! Kubernetes' `printers.go`.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::format::{
    age, arr_at, controller_row, format_labels, map_len, name, replica_counts, str_at,
};
use super::{AGE, CONTAINERS, Doc, IMAGES, NAME, Printer, col, events, pod, selector_col};

pub(super) use network::load_balancer_addresses;

pub(super) fn printer(kind: &str) -> Option<&'static Printer> {
    Some(match kind {
        "Pod" => &pod::POD,
        "Event" => &events::CORE_EVENT,
        "Node" => &node::NODE,
        "Service" => &network::SERVICE,
        "Endpoints" => &network::ENDPOINTS,
        "Namespace" => &NAMESPACE,
        "ConfigMap" => &CONFIG_MAP,
        "Secret" => &SECRET,
        "ServiceAccount" => &SERVICE_ACCOUNT,
        "ResourceQuota" => &RESOURCE_QUOTA,
        "PersistentVolume" => &storage::PERSISTENT_VOLUME,
        "PersistentVolumeClaim" => &storage::PERSISTENT_VOLUME_CLAIM,
        "ReplicationController" => &REPLICATION_CONTROLLER,
        _ => return None,
    })
}

const NAMESPACE: Printer = Printer::new(
    &[
        NAME,
        col("Status", "string", Doc::Text("The status of the namespace")),
        AGE,
    ],
    |ns, now| vec![name(ns), str_at(ns, "/status/phase").into(), age(ns, now)],
);

const CONFIG_MAP: Printer = Printer::new(
    &[
        NAME,
        col(
            "Data",
            "string",
            Doc::Field("io.k8s.api.core.v1.ConfigMap", "data"),
        ),
        AGE,
    ],
    |cm, now| {
        let data = map_len(cm, "/data") + map_len(cm, "/binaryData");
        vec![name(cm), data.into(), age(cm, now)]
    },
);

const SECRET: Printer = Printer::new(
    &[
        NAME,
        col(
            "Type",
            "string",
            Doc::Field("io.k8s.api.core.v1.Secret", "type"),
        ),
        col(
            "Data",
            "string",
            Doc::Field("io.k8s.api.core.v1.Secret", "data"),
        ),
        AGE,
    ],
    |s, now| {
        vec![
            name(s),
            str_at(s, "/type").into(),
            map_len(s, "/data").into(),
            age(s, now),
        ]
    },
);

const SERVICE_ACCOUNT: Printer = Printer::new(
    &[
        NAME,
        col(
            "Secrets",
            "string",
            Doc::Field("io.k8s.api.core.v1.ServiceAccount", "secrets"),
        ),
        AGE,
    ],
    |sa, now| vec![name(sa), arr_at(sa, "/secrets").len().into(), age(sa, now)],
);

const RESOURCE_QUOTA: Printer = Printer::new(
    &[
        NAME,
        col(
            "Request",
            "string",
            Doc::Text(
                "Request represents a minimum amount of cpu/memory that a container may consume.",
            ),
        ),
        col(
            "Limit",
            "string",
            Doc::Text(
                "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
            ),
        ),
        AGE,
    ],
    quota_cells,
);

fn quota_cells(quota: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut resources: Vec<(&String, &Value)> = quota
        .pointer("/status/hard")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .collect();
    resources.sort_by(|a, b| a.0.cmp(b.0));
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for (resource, hard) in resources {
        let used = quota
            .pointer("/status/used")
            .and_then(|u| u.get(resource.as_str()))
            .and_then(Value::as_str)
            .unwrap_or("0");
        let entry = format!("{resource}: {used}/{}", hard.as_str().unwrap_or("0"));
        match resource.split_once('.') {
            Some(("limits", _)) => limits.push(entry),
            _ => requests.push(entry),
        }
    }
    vec![
        name(quota),
        requests.join(", ").into(),
        limits.join(", ").into(),
        age(quota, now),
    ]
}

/// `printReplicationController`: a replica set's columns, its selector a plain label map.
const REPLICATION_CONTROLLER: Printer = Printer::new(
    &[
        NAME,
        col(
            "Desired",
            "integer",
            Doc::Field("io.k8s.api.core.v1.ReplicationControllerSpec", "replicas"),
        ),
        col(
            "Current",
            "integer",
            Doc::Field("io.k8s.api.core.v1.ReplicationControllerStatus", "replicas"),
        ),
        col(
            "Ready",
            "integer",
            Doc::Field(
                "io.k8s.api.core.v1.ReplicationControllerStatus",
                "readyReplicas",
            ),
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        selector_col("io.k8s.api.core.v1.ReplicationControllerSpec"),
    ],
    |rc, now| {
        let selector = format_labels(rc.pointer("/spec/selector").unwrap_or(&Value::Null));
        controller_row(rc, now, replica_counts(rc), Some(selector))
    },
);

mod network;
mod node;
mod storage;

#[cfg(test)]
mod tests;
