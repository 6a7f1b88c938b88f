//! Rows of the leases, endpoint slices, runtime classes, networking and RBAC printers.

use serde_json::json;

use super::super::tests::{columns_of, row};

fn meta(name: &str) -> serde_json::Value {
    json!({"name": name, "creationTimestamp": "2025-01-01T11:00:00Z"})
}

#[test]
fn lease_runtime_class_and_network_policy() {
    let lease = json!({"metadata": meta("node-1"), "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40}});
    assert_eq!(row("leases", &lease), json!(["node-1", "node-1", "60m"]));
    assert_eq!(
        row("leases", &json!({"metadata": meta("free"), "spec": {}})),
        json!(["free", "", "60m"])
    );
    let rc = json!({"metadata": meta("wasm"), "handler": "wasmtime"});
    assert_eq!(
        row("runtimeclasses", &rc),
        json!(["wasm", "wasmtime", "60m"])
    );
    let np = json!({"metadata": meta("deny"), "spec": {"podSelector": {}}});
    assert_eq!(
        row("networkpolicies", &np),
        json!(["deny", "<none>", "60m"])
    );
    let np =
        json!({"metadata": meta("web"), "spec": {"podSelector": {"matchLabels": {"app": "web"}}}});
    assert_eq!(row("networkpolicies", &np)[1], json!("app=web"));
}

#[test]
fn endpoint_slice_rows() {
    let es = json!({"metadata": meta("web-abcde"), "addressType": "IPv4",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "metrics", "protocol": "TCP"}, {}, {"port": 9}],
        "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2", "10.0.0.3"]}]});
    assert_eq!(
        row("endpointslices", &es),
        json!([
            "web-abcde",
            "IPv4",
            "80,metrics,* + 1 more...",
            "10.0.0.1,10.0.0.2,10.0.0.3",
            "60m"
        ])
    );
    let empty = json!({"metadata": meta("e"), "addressType": "IPv6", "endpoints": []});
    assert_eq!(
        row("endpointslices", &empty),
        json!(["e", "IPv6", "<unset>", "<unset>", "60m"])
    );
}

#[test]
fn ingress_and_ingress_class_rows() {
    let ing = json!({"metadata": meta("web"), "spec": {"ingressClassName": "nginx",
        "rules": [{"http": {}}, {"host": "a.example.com"}, {"host": "b.example.com"}, {"host": "c.example.com"}, {"host": "d.example.com"}],
        "tls": [{"hosts": ["a.example.com"]}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}});
    assert_eq!(
        row("ingresses", &ing),
        json!([
            "web",
            "nginx",
            "a.example.com,b.example.com,c.example.com + 2 more...",
            "192.0.2.1",
            "80, 443",
            "60m"
        ])
    );
    let catch_all = json!({"metadata": meta("all"), "spec": {"defaultBackend": {}}});
    assert_eq!(
        row("ingresses", &catch_all),
        json!(["all", "<none>", "*", "", "80", "60m"])
    );
    assert_eq!(
        columns_of("ingresses"),
        ["Name", "Class", "Hosts", "Address", "Ports", "Age"]
    );
    let class = json!({"metadata": meta("nginx"), "spec": {"controller": "k8s.io/ingress-nginx",
        "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external-lb"}}});
    assert_eq!(
        row("ingressclasses", &class),
        json!([
            "nginx",
            "k8s.io/ingress-nginx",
            "IngressParameters.k8s.example.com/external-lb",
            "60m"
        ])
    );
}

#[test]
fn role_binding_rows() {
    let rb = json!({"metadata": meta("admins"), "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "ops"}, {"kind": "User", "name": "bob"},
                     {"kind": "ServiceAccount", "name": "ci", "namespace": "tools"}]});
    assert_eq!(
        row("rolebindings", &rb),
        json!([
            "admins",
            "ClusterRole/admin",
            "60m",
            "alice, bob",
            "ops",
            "tools/ci"
        ])
    );
    assert_eq!(
        row("clusterrolebindings", &rb)[1],
        json!("ClusterRole/admin")
    );
    assert_eq!(
        columns_of("clusterrolebindings"),
        ["Name", "Role", "Age", "Users", "Groups", "ServiceAccounts"]
    );
}

#[test]
fn storage_class_rows_mark_the_default() {
    let local = json!({"metadata": {"name": "local-path", "creationTimestamp": "2025-01-01T11:00:00Z",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer"});
    assert_eq!(
        row("storageclasses", &local),
        json!([
            "local-path (default)",
            "rancher.io/local-path",
            "Delete",
            "WaitForFirstConsumer",
            false,
            "60m"
        ])
    );
    let bare = json!({"metadata": meta("fast"), "provisioner": "example.com/ssd",
        "allowVolumeExpansion": true});
    assert_eq!(
        row("storageclasses", &bare),
        json!([
            "fast",
            "example.com/ssd",
            "Delete",
            "Immediate",
            true,
            "60m"
        ])
    );
    assert_eq!(
        columns_of("storageclasses"),
        [
            "Name",
            "Provisioner",
            "ReclaimPolicy",
            "VolumeBindingMode",
            "AllowVolumeExpansion",
            "Age"
        ]
    );
}
