//! Printers of `apps/v1`: deployments, replica sets, stateful sets, daemon sets and controller
//! revisions, after `printDeployment`, `printReplicaSet`, ... in Kubernetes' `printers.go`.

use serde_json::Value;

use super::format::{
    age, arr_at, controller_row, format_label_selector, format_labels, int_at,
    label_selector_string, name, replica_counts, spec_replicas, str_at,
};
use super::{AGE, CONTAINERS, ColumnDef, Doc, IMAGES, NAME, Printer, col, selector_col};

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

fn selector(obj: &Value) -> &Value {
    obj.pointer("/spec/selector").unwrap_or(&Value::Null)
}

/// The `Ready` column of deployments and stateful sets: ready of desired replicas.
const READY: ColumnDef = col(
    "Ready",
    "string",
    Doc::Text("Number of the pod with ready state"),
);

fn ready(obj: &Value) -> Value {
    format!(
        "{}/{}",
        int_at(obj, "/status/readyReplicas"),
        spec_replicas(obj)
    )
    .into()
}

const DEPLOYMENT: Printer = Printer::new(
    &[
        NAME,
        READY,
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
        selector_col("io.k8s.api.apps.v1.DeploymentSpec"),
    ],
    |d, now| {
        // Unlike the other workloads, an empty selector prints as "" rather than <none>.
        let selector = label_selector_string(selector(d)).unwrap_or_else(|()| "<invalid>".into());
        let counts = [
            ready(d),
            int_at(d, "/status/updatedReplicas").into(),
            int_at(d, "/status/availableReplicas").into(),
        ];
        controller_row(d, now, counts, Some(selector))
    },
);

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
        selector_col("io.k8s.api.apps.v1.ReplicaSetSpec"),
    ],
    |rs, now| {
        let selector = format_label_selector(selector(rs));
        controller_row(rs, now, replica_counts(rs), Some(selector))
    },
);

const STATEFUL_SET: Printer = Printer::new(&[NAME, READY, AGE, CONTAINERS, IMAGES], |sts, now| {
    controller_row(sts, now, [ready(sts)], None)
});

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
        selector_col("io.k8s.api.apps.v1.DaemonSetSpec"),
    ],
    |ds, now| {
        let node_selector = ds
            .pointer("/spec/template/spec/nodeSelector")
            .unwrap_or(&Value::Null);
        let own = [
            int_at(ds, "/status/desiredNumberScheduled").into(),
            int_at(ds, "/status/currentNumberScheduled").into(),
            int_at(ds, "/status/numberReady").into(),
            int_at(ds, "/status/updatedNumberScheduled").into(),
            int_at(ds, "/status/numberAvailable").into(),
            format_labels(node_selector).into(),
        ];
        let selector = format_label_selector(selector(ds));
        controller_row(ds, now, own, Some(selector))
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
