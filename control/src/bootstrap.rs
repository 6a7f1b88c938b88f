//! Objects every Kubernetes cluster has from its first start: the namespaces `default`,
//! `kube-system`, `kube-public` and `kube-node-lease`, the `kubernetes` Service in `default`, and
//! the `cluster-admin` ClusterRole bound to the `system:masters` group (the admin kubeconfig's), and
//! the RuntimeClasses `wasmtime` and `runc` naming Skiff's two runtime handlers, and the default
//! StorageClass `local-path`, as K3s ships it (`manifests/local-storage.yaml`).

use serde_json::json;
use skiff_api::storage::{DEFAULT_CLASS_ANNOTATION, LOCAL_PATH_CLASS, LOCAL_PATH_PROVISIONER};
use skiff_api::{ApiError, registry};

use crate::allocators::KUBERNETES_SERVICE_IP;
use crate::apiserver::ApiServer;
use crate::apiserver::rest::ensure_exists;
use crate::store::Store;

pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// The runtime handlers a Skiff node offers; each has a RuntimeClass of the same name.
pub const RUNTIME_HANDLERS: [&str; 2] = ["wasmtime", "runc"];

pub async fn run<S: Store>(api: &ApiServer<S>) -> Result<(), ApiError> {
    let find = |g: &str, v: &str, p: &str| {
        registry::find(g, v, p)
            .ok_or_else(|| ApiError::internal(format!("resource {p} is not registered")))
    };
    let namespaces = find("", "v1", "namespaces")?;
    for ns in SYSTEM_NAMESPACES {
        ensure_exists(
            api,
            namespaces,
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await?;
    }
    let services = find("", "v1", "services")?;
    let kubernetes = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "clusterIP": KUBERNETES_SERVICE_IP.to_string(),
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
        },
    });
    ensure_exists(api, services, Some("default"), kubernetes).await?;

    let bootstrap_meta = |name: &str| {
        json!({"name": name,
               "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
               "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}})
    };
    let cluster_roles = find("rbac.authorization.k8s.io", "v1", "clusterroles")?;
    let cluster_admin = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": bootstrap_meta("cluster-admin"),
        "rules": [
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
            {"nonResourceURLs": ["*"], "verbs": ["*"]},
        ],
    });
    ensure_exists(api, cluster_roles, None, cluster_admin).await?;
    let bindings = find("rbac.authorization.k8s.io", "v1", "clusterrolebindings")?;
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": bootstrap_meta("cluster-admin"),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters"}],
    });
    ensure_exists(api, bindings, None, binding).await?;

    // Created only if missing, so a user's edits (scheduling, overhead) survive restarts.
    let runtime_classes = find("node.k8s.io", "v1", "runtimeclasses")?;
    for handler in RUNTIME_HANDLERS {
        let class = json!({
            "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
            "metadata": {"name": handler}, "handler": handler,
        });
        ensure_exists(api, runtime_classes, None, class).await?;
    }
    let storage_classes = find("storage.k8s.io", "v1", "storageclasses")?;
    let local_path = json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": LOCAL_PATH_CLASS,
                     "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
        "provisioner": LOCAL_PATH_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    });
    ensure_exists(api, storage_classes, None, local_path).await?;
    Ok(())
}
