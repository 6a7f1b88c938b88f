//! Rows of the core printers for realistic objects.

use serde_json::json;

use super::super::tests::{columns_of, part, row};

fn meta(name: &str) -> serde_json::Value {
    json!({"name": name, "creationTimestamp": "2024-12-31T12:00:00Z"})
}

#[test]
fn node_rows() {
    let node = json!({
        "metadata": {"name": "node-1", "creationTimestamp": "2024-12-31T12:00:00Z",
                     "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/": "",
                                "kubernetes.io/role": "worker", "kubernetes.io/hostname": "node-1"}},
        "spec": {"unschedulable": true},
        "status": {
            "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
            "addresses": [{"type": "Hostname", "address": "node-1"}, {"type": "InternalIP", "address": "192.168.1.10"}],
            "nodeInfo": {"kubeletVersion": "v1.33.0-skiff", "osImage": "Debian GNU/Linux 12", "kernelVersion": "6.1.0",
                         "containerRuntimeVersion": ""},
        },
    });
    assert_eq!(
        row("nodes", &node),
        json!([
            "node-1",
            "Ready,SchedulingDisabled",
            "control-plane,worker",
            "24h",
            "v1.33.0-skiff",
            "192.168.1.10",
            "<none>",
            "Debian GNU/Linux 12",
            "6.1.0",
            "<unknown>"
        ])
    );
    let new = json!({"metadata": meta("node-2"), "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
    assert_eq!(
        row("nodes", &new),
        json!([
            "node-2",
            "NotReady",
            "<none>",
            "24h",
            "",
            "<none>",
            "<none>",
            "<unknown>",
            "<unknown>",
            "<unknown>"
        ])
    );
    let bare = json!({"metadata": meta("node-3")});
    assert_eq!(row("nodes", &bare)[1], json!("Unknown"));
    assert_eq!(
        columns_of("nodes"),
        [
            "Name",
            "Status",
            "Roles",
            "Age",
            "Version",
            "Internal-IP",
            "External-IP",
            "OS-Image",
            "Kernel-Version",
            "Container-Runtime"
        ]
    );
}

#[test]
fn service_rows_by_type() {
    let svc = |spec: serde_json::Value, status: serde_json::Value| json!({"metadata": meta("web"), "spec": spec, "status": status});
    let cluster_ip = svc(
        json!({"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "selector": {"app": "web"},
               "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}, {"port": 53, "protocol": "UDP"}]}),
        json!({}),
    );
    assert_eq!(
        row("services", &cluster_ip),
        json!([
            "web",
            "ClusterIP",
            "10.96.0.10",
            "<none>",
            "80/TCP,53/UDP",
            "24h",
            "app=web"
        ])
    );
    let headless = svc(
        json!({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"]}),
        json!({}),
    );
    assert_eq!(
        row("services", &headless),
        json!([
            "web",
            "ClusterIP",
            "None",
            "<none>",
            "<none>",
            "24h",
            "<none>"
        ])
    );
    let node_port = svc(
        json!({"type": "NodePort", "clusterIPs": ["10.96.1.1"], "externalIPs": ["1.2.3.4"],
               "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}),
        json!({}),
    );
    assert_eq!(
        part(row("services", &node_port), 2..5),
        json!(["10.96.1.1", "1.2.3.4", "80:30080/TCP"])
    );
    let pending = svc(
        json!({"type": "LoadBalancer", "clusterIPs": ["10.96.2.2"], "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]}),
        json!({}),
    );
    assert_eq!(row("services", &pending)[3], json!("<pending>"));
    let lb = svc(
        json!({"type": "LoadBalancer", "clusterIPs": ["10.96.2.2"], "externalIPs": ["9.9.9.9"]}),
        json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}, {"hostname": "lb.example.com"}, {"ip": "203.0.113.7"}]}}),
    );
    assert_eq!(
        row("services", &lb)[3],
        json!("203.0.113.7,lb.example.com,9.9.9.9")
    );
    let external = svc(
        json!({"type": "ExternalName", "externalName": "db.example.com"}),
        json!({}),
    );
    assert_eq!(
        part(row("services", &external), 1..4),
        json!(["ExternalName", "<none>", "db.example.com"])
    );
}

#[test]
fn endpoints_rows() {
    let ep = json!({"metadata": meta("web"), "subsets": [
        {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 8080}, {"port": 9090}]},
        {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]});
    assert_eq!(
        row("endpoints", &ep),
        json!([
            "web",
            "10.0.0.1:8080,10.0.0.2:8080,10.0.0.1:9090 + 2 more...",
            "24h"
        ])
    );
    let headless = json!({"metadata": meta("db"), "subsets": [{"addresses": [{"ip": "fd00::2"}]}]});
    assert_eq!(row("endpoints", &headless)[1], json!("fd00::2"));
    let v6 = json!({"metadata": meta("v6"), "subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]});
    assert_eq!(row("endpoints", &v6)[1], json!("[fd00::1]:80"));
    assert_eq!(
        row("endpoints", &json!({"metadata": meta("none")}))[1],
        json!("<none>")
    );
}

#[test]
fn small_core_kinds() {
    let ns = json!({"metadata": meta("dev"), "status": {"phase": "Active"}});
    assert_eq!(row("namespaces", &ns), json!(["dev", "Active", "24h"]));
    let cm = json!({"metadata": meta("cfg"), "data": {"a": "1"}, "binaryData": {"b": "AA=="}});
    assert_eq!(row("configmaps", &cm), json!(["cfg", 2, "24h"]));
    let secret = json!({"metadata": meta("tls"), "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
    assert_eq!(
        row("secrets", &secret),
        json!(["tls", "kubernetes.io/tls", 2, "24h"])
    );
    let sa = json!({"metadata": meta("default")});
    assert_eq!(row("serviceaccounts", &sa), json!(["default", 0, "24h"]));
    assert_eq!(columns_of("secrets"), ["Name", "Type", "Data", "Age"]);
}

#[test]
fn resource_quota_splits_requests_and_limits() {
    let quota = json!({"metadata": meta("compute"), "status": {
        "hard": {"requests.cpu": "2", "pods": "10", "limits.memory": "4Gi", "limits.cpu": "4"},
        "used": {"requests.cpu": "500m", "pods": "3", "limits.cpu": "1"}}});
    assert_eq!(
        row("resourcequotas", &quota),
        json!([
            "compute",
            "pods: 3/10, requests.cpu: 500m/2",
            "limits.cpu: 1/4, limits.memory: 0/4Gi",
            "24h"
        ])
    );
}

#[test]
fn volumes_and_claims() {
    let pv = json!({"metadata": meta("pv-1"), "spec": {
        "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"],
        "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "standard",
        "claimRef": {"namespace": "dev", "name": "data"}}, "status": {"phase": "Bound"}});
    assert_eq!(
        row("persistentvolumes", &pv),
        json!([
            "pv-1", "10Gi", "RWO,RWX", "Retain", "Bound", "dev/data", "standard", "<unset>", "",
            "24h", "<unset>"
        ])
    );
    let pending = json!({"metadata": {"name": "data", "creationTimestamp": "2024-12-31T12:00:00Z",
                         "annotations": {"volume.beta.kubernetes.io/storage-class": "fast"}},
                         "spec": {"storageClassName": "standard", "volumeMode": "Filesystem"}, "status": {"phase": "Pending"}});
    assert_eq!(
        row("persistentvolumeclaims", &pending),
        json!([
            "data",
            "Pending",
            "",
            "",
            "",
            "fast",
            "<unset>",
            "24h",
            "Filesystem"
        ])
    );
    let mut bound = pending.clone();
    bound["spec"]["volumeName"] = json!("pv-1");
    bound["status"] = json!({"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"]});
    bound["metadata"]["deletionTimestamp"] = json!("2025-01-01T11:00:00Z");
    assert_eq!(
        part(row("persistentvolumeclaims", &bound), 1..5),
        json!(["Terminating", "pv-1", "10Gi", "RWO"])
    );
}

#[test]
fn replication_controller_row() {
    let rc = json!({"metadata": meta("legacy"), "spec": {"replicas": 2, "selector": {"app": "legacy"},
                    "template": {"spec": {"containers": [{"name": "app", "image": "nginx"}]}}},
                    "status": {"replicas": 2, "readyReplicas": 1}});
    assert_eq!(
        row("replicationcontrollers", &rc),
        json!(["legacy", 2, 2, 1, "24h", "app", "nginx", "app=legacy"])
    );
}
