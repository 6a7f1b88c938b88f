//! Printers of `apps/v1`: deployments, replica sets, stateful sets, daemon sets and controller
//! revisions, after `printDeployment`, `printReplicaSet`, ... in Kubernetes' `printers.go`.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::format::{
    age, arr_at, container_cells, format_label_selector, format_labels, int_at,
    label_selector_string, name, spec_replicas, str_at,
};
use super::{AGE, CONTAINERS, Doc, IMAGES, NAME, Printer, col, wide};

pub(super) fn printer(kind: &str) -> Option<&'static Printer> {
    Some(match kind {
        "Deployment" => &DEPLOYMENT,
        "ReplicaSet" => &REPLICA_SET,
        "StatefulSet" => &STATEFUL_SET,
        "DaemonSet" => &DAEMON_SET,
        "ControllerRevision" => &CONTROLLER_REVISION,
        _ => return None,
    })
}

fn template_containers(obj: &Value) -> (Value, Value) {
    container_cells(arr_at(obj, "/spec/template/spec/containers"))
}

fn selector(obj: &Value) -> &Value {
    obj.pointer("/spec/selector").unwrap_or(&Value::Null)
}

const DEPLOYMENT: Printer = Printer::new(
    &[
        NAME,
        col(
            "Ready",
            "string",
            Doc::Text("Number of the pod with ready state"),
        ),
        col(
            "Up-to-date",
            "string",
            Doc::Field("io.k8s.api.apps.v1.DeploymentStatus", "updatedReplicas"),
        ),
        col(
            "Available",
            "string",
            Doc::Field("io.k8s.api.apps.v1.DeploymentStatus", "availableReplicas"),
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        wide(
            "Selector",
            "string",
            Doc::Field("io.k8s.api.apps.v1.DeploymentSpec", "selector"),
        ),
    ],
    deployment_cells,
);

fn deployment_cells(d: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (names, images) = template_containers(d);
    // Unlike the other workloads, an empty selector prints as "" rather than <none>.
    let selector = label_selector_string(selector(d)).unwrap_or_else(|()| "<invalid>".into());
    vec![
        name(d),
        format!(
            "{}/{}",
            int_at(d, "/status/readyReplicas"),
            spec_replicas(d)
        )
        .into(),
        int_at(d, "/status/updatedReplicas").into(),
        int_at(d, "/status/availableReplicas").into(),
        age(d, now),
        names,
        images,
        selector.into(),
    ]
}

const REPLICA_SET: Printer = Printer::new(
    &[
        NAME,
        col(
            "Desired",
            "integer",
            Doc::Field("io.k8s.api.apps.v1.ReplicaSetSpec", "replicas"),
        ),
        col(
            "Current",
            "integer",
            Doc::Field("io.k8s.api.apps.v1.ReplicaSetStatus", "replicas"),
        ),
        col(
            "Ready",
            "integer",
            Doc::Field("io.k8s.api.apps.v1.ReplicaSetStatus", "readyReplicas"),
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        wide(
            "Selector",
            "string",
            Doc::Field("io.k8s.api.apps.v1.ReplicaSetSpec", "selector"),
        ),
    ],
    |rs, now| {
        let (names, images) = template_containers(rs);
        vec![
            name(rs),
            spec_replicas(rs).into(),
            int_at(rs, "/status/replicas").into(),
            int_at(rs, "/status/readyReplicas").into(),
            age(rs, now),
            names,
            images,
            format_label_selector(selector(rs)).into(),
        ]
    },
);

const STATEFUL_SET: Printer = Printer::new(
    &[
        NAME,
        col(
            "Ready",
            "string",
            Doc::Text("Number of the pod with ready state"),
        ),
        AGE,
        CONTAINERS,
        IMAGES,
    ],
    |sts, now| {
        let (names, images) = template_containers(sts);
        let ready = format!(
            "{}/{}",
            int_at(sts, "/status/readyReplicas"),
            spec_replicas(sts)
        );
        vec![name(sts), ready.into(), age(sts, now), names, images]
    },
);

const DAEMON_SET_STATUS: &str = "io.k8s.api.apps.v1.DaemonSetStatus";

const DAEMON_SET: Printer = Printer::new(
    &[
        NAME,
        col(
            "Desired",
            "integer",
            Doc::Field(DAEMON_SET_STATUS, "desiredNumberScheduled"),
        ),
        col(
            "Current",
            "integer",
            Doc::Field(DAEMON_SET_STATUS, "currentNumberScheduled"),
        ),
        col(
            "Ready",
            "integer",
            Doc::Field(DAEMON_SET_STATUS, "numberReady"),
        ),
        col(
            "Up-to-date",
            "integer",
            Doc::Field(DAEMON_SET_STATUS, "updatedNumberScheduled"),
        ),
        col(
            "Available",
            "integer",
            Doc::Field(DAEMON_SET_STATUS, "numberAvailable"),
        ),
        col(
            "Node Selector",
            "string",
            Doc::Field("io.k8s.api.core.v1.PodSpec", "nodeSelector"),
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        wide(
            "Selector",
            "string",
            Doc::Field("io.k8s.api.apps.v1.DaemonSetSpec", "selector"),
        ),
    ],
    |ds, now| {
        let (names, images) = template_containers(ds);
        let node_selector = ds
            .pointer("/spec/template/spec/nodeSelector")
            .unwrap_or(&Value::Null);
        vec![
            name(ds),
            int_at(ds, "/status/desiredNumberScheduled").into(),
            int_at(ds, "/status/currentNumberScheduled").into(),
            int_at(ds, "/status/numberReady").into(),
            int_at(ds, "/status/updatedNumberScheduled").into(),
            int_at(ds, "/status/numberAvailable").into(),
            format_labels(node_selector).into(),
            age(ds, now),
            names,
            images,
            format_label_selector(selector(ds)).into(),
        ]
    },
);

const CONTROLLER_REVISION: Printer = Printer::new(
    &[
        NAME,
        col(
            "Controller",
            "string",
            Doc::Text("Controller of the object"),
        ),
        col(
            "Revision",
            "string",
            Doc::Field("io.k8s.api.apps.v1.ControllerRevision", "revision"),
        ),
        AGE,
    ],
    |cr, now| {
        vec![
            name(cr),
            controller_name(cr).into(),
            int_at(cr, "/revision").into(),
            age(cr, now),
        ]
    },
);

/// The controlling owner as `kind.group/name` (`daemonset.apps/fluentd`), `<none>` without one.
fn controller_name(obj: &Value) -> String {
    let Some(owner) = arr_at(obj, "/metadata/ownerReferences")
        .iter()
        .find(|o| o.get("controller") == Some(&Value::Bool(true)))
    else {
        return "<none>".to_string();
    };
    let group = str_at(owner, "/apiVersion")
        .split_once('/')
        .map_or("", |(g, _)| g);
    let kind = str_at(owner, "/kind");
    let name = str_at(owner, "/name");
    match (kind, group) {
        ("", "") => name.to_string(),
        (kind, "") => format!("{}/{name}", kind.to_lowercase()),
        (kind, group) => format!("{}.{}/{name}", kind.to_lowercase(), group.to_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{columns_of, row};

    fn template() -> serde_json::Value {
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
            {"name": "nginx", "image": "nginx:1.27"}, {"name": "sidecar", "image": "busybox"}]}})
    }

    #[test]
    fn deployment_rows() {
        let d = json!({
            "metadata": {"name": "web", "creationTimestamp": "2025-01-01T09:00:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template()},
            "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
        });
        assert_eq!(
            row("deployments", &d),
            json!([
                "web",
                "2/3",
                3,
                2,
                "3h",
                "nginx,sidecar",
                "nginx:1.27,busybox",
                "app=web"
            ])
        );
        let fresh = json!({"metadata": {"name": "new", "creationTimestamp": "2025-01-01T11:59:50Z"},
                           "spec": {"replicas": 1, "template": {"spec": {"containers": []}}}});
        assert_eq!(
            row("deployments", &fresh),
            json!(["new", "0/1", 0, 0, "10s", "", "", ""])
        );
        assert_eq!(
            columns_of("deployments"),
            [
                "Name",
                "Ready",
                "Up-to-date",
                "Available",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
    }

    #[test]
    fn replica_set_stateful_set_and_daemon_set_rows() {
        let meta = json!({"name": "web-5d9c", "creationTimestamp": "2025-01-01T11:00:00Z"});
        let rs = json!({"metadata": meta, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d9c"}}, "template": template()},
                        "status": {"replicas": 2, "readyReplicas": 1}});
        assert_eq!(
            row("replicasets", &rs),
            json!([
                "web-5d9c",
                2,
                2,
                1,
                "60m",
                "nginx,sidecar",
                "nginx:1.27,busybox",
                "app=web,pod-template-hash=5d9c"
            ])
        );
        let sts = json!({"metadata": meta, "spec": {"replicas": 3, "template": template()}, "status": {"readyReplicas": 3}});
        assert_eq!(
            row("statefulsets", &sts),
            json!([
                "web-5d9c",
                "3/3",
                "60m",
                "nginx,sidecar",
                "nginx:1.27,busybox"
            ])
        );
        let ds = json!({"metadata": meta, "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": template()},
                        "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1, "updatedNumberScheduled": 2, "numberAvailable": 1}});
        assert_eq!(
            row("daemonsets", &ds),
            json!([
                "web-5d9c",
                2,
                2,
                1,
                2,
                1,
                "<none>",
                "60m",
                "nginx,sidecar",
                "nginx:1.27,busybox",
                "app=agent"
            ])
        );
    }

    #[test]
    fn controller_revision_names_its_controller() {
        let cr = json!({"metadata": {"name": "agent-7b", "creationTimestamp": "2025-01-01T11:00:00Z", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": "1", "controller": true}]}, "revision": 2});
        assert_eq!(
            row("controllerrevisions", &cr),
            json!(["agent-7b", "daemonset.apps/agent", 2, "60m"])
        );
        let orphan = json!({"metadata": {"name": "x"}, "revision": 1});
        assert_eq!(
            row("controllerrevisions", &orphan),
            json!(["x", "<none>", 1, "<unknown>"])
        );
    }
}
