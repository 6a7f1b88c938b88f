//! Objects every Kubernetes cluster has from its first start: the namespaces `default`,
//! `kube-system`, `kube-public` and `kube-node-lease`, and the `kubernetes` Service in `default`.

use serde_json::json;
use skiff_api::{ApiError, registry};

use crate::allocators::KUBERNETES_SERVICE_IP;
use crate::apiserver::ApiServer;
use crate::apiserver::rest::ensure_exists;
use crate::store::Store;

pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

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
    ensure_exists(api, services, Some("default"), kubernetes).await
}
