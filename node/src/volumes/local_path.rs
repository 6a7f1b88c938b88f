//! This node's half of the local-path provisioner ([`skiff_api::storage`] describes the
//! division): it publishes the node's storage directory on its Node
//! ([`STORAGE_DIR_ANNOTATION`]), which the control plane provisions volumes under, and removes
//! the data of this node's local-path volumes once they are `Released` with reclaim policy
//! `Delete`, then the volumes themselves (what K3s's `helper-pod-delete` and provisioner do).
//! Only a directory [`owned_volume_dir`] accepts is ever removed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_api::storage::{
    LOCAL_PATH_PROVISIONER, PROVISIONED_BY_ANNOTATION, STORAGE_DIR_ANNOTATION, owned_volume_dir,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum LocalPathError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("API request: {0}")]
    Api(#[from] kube::Error),
}

struct Context {
    client: Client,
    node_name: String,
    storage_dir: PathBuf,
}

/// Publishes `storage_dir` (created if missing) on this node's Node, then removes released
/// volumes until `shutdown`.
pub async fn run(
    client: Client,
    node_name: String,
    storage_dir: PathBuf,
    shutdown: CancellationToken,
) {
    let storage_dir = loop {
        match publish(&client, &node_name, &storage_dir).await {
            Ok(dir) => break dir,
            Err(e) => {
                warn!(error = %e, "publishing the local-path storage directory failed; retrying")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        node_name,
        storage_dir,
    });
    let controller = Controller::new(
        Api::<PersistentVolume>::all(client),
        watcher::Config::default(),
    )
    .graceful_shutdown_on(shutdown.cancelled_owned())
    .run(reconcile, error_policy, ctx)
    .for_each(|_| async {});
    controller.await;
}

/// Creates the directory and writes its canonical path on the Node; returns that path.
async fn publish(
    client: &Client,
    node_name: &str,
    storage_dir: &Path,
) -> Result<PathBuf, LocalPathError> {
    let io = |source| LocalPathError::Io {
        path: storage_dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(storage_dir).map_err(io)?;
    let dir = std::fs::canonicalize(storage_dir).map_err(io)?;
    let patch = json!({"metadata": {"annotations": {STORAGE_DIR_ANNOTATION: dir}}});
    Api::<Node>::all(client.clone())
        .patch(node_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(dir)
}

/// Whether the volume is a released local-path volume of this node to delete, and its path.
fn to_delete<'a>(pv: &'a PersistentVolume, node_name: &str) -> Option<&'a str> {
    let spec = pv.spec.as_ref()?;
    let released = pv.status.as_ref()?.phase.as_deref() == Some("Released");
    let ours = pv
        .annotations()
        .get(PROVISIONED_BY_ANNOTATION)
        .map(String::as_str)
        == Some(LOCAL_PATH_PROVISIONER);
    let here = spec
        .node_affinity
        .as_ref()
        .and_then(|a| a.required.as_ref())
        .into_iter()
        .flat_map(|r| &r.node_selector_terms)
        .flat_map(|t| t.match_expressions.iter().flatten())
        .any(|e| {
            e.key == "kubernetes.io/hostname"
                && e.operator == "In"
                && e.values.iter().flatten().any(|v| v == node_name)
        });
    let delete = spec.persistent_volume_reclaim_policy.as_deref() == Some("Delete");
    (released && ours && here && delete && pv.metadata.deletion_timestamp.is_none())
        .then_some(spec.host_path.as_ref()?.path.as_str())
}

async fn reconcile(pv: Arc<PersistentVolume>, ctx: Arc<Context>) -> Result<Action, LocalPathError> {
    let Some(path) = to_delete(&pv, &ctx.node_name) else {
        return Ok(Action::await_change());
    };
    let path = PathBuf::from(path);
    let name = pv.name_any();
    if !owned_volume_dir(&ctx.storage_dir, &path, &name) {
        warn!(volume = %name, path = %path.display(), storage = %ctx.storage_dir.display(),
              "not removing a released volume outside the local-path storage directory");
        return Ok(Action::await_change());
    }
    let removed = path.clone();
    tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&removed) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LocalPathError::Io {
            path: removed,
            source: e,
        }),
        _ => Ok(()),
    })
    .await
    .unwrap_or_else(|e| {
        Err(LocalPathError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })
    })?;
    match Api::<PersistentVolume>::all(ctx.client.clone())
        .delete(&name, &DeleteParams::default())
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        other => drop(other?),
    }
    info!(volume = %name, path = %path.display(), "deleted a released local-path volume");
    Ok(Action::await_change())
}

fn error_policy(pv: Arc<PersistentVolume>, err: &LocalPathError, _ctx: Arc<Context>) -> Action {
    warn!(volume = %pv.name_any(), error = %err, "removing a released volume failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(phase: &str, policy: &str, node: &str) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": "pvc-1",
                         "annotations": {"pv.kubernetes.io/provisioned-by": "rancher.io/local-path"}},
            "spec": {"hostPath": {"path": "/s/pvc-1_ns_data", "type": "DirectoryOrCreate"},
                     "persistentVolumeReclaimPolicy": policy,
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}},
            "status": {"phase": phase}}))
        .expect("pv")
    }

    #[test]
    fn only_released_deletable_local_path_volumes_of_this_node_are_removed() {
        assert_eq!(
            to_delete(&pv("Released", "Delete", "a"), "a"),
            Some("/s/pvc-1_ns_data")
        );
        assert_eq!(to_delete(&pv("Bound", "Delete", "a"), "a"), None);
        assert_eq!(to_delete(&pv("Released", "Retain", "a"), "a"), None);
        assert_eq!(to_delete(&pv("Released", "Delete", "b"), "a"), None);
        let mut foreign = pv("Released", "Delete", "a");
        foreign.metadata.annotations = None;
        assert_eq!(to_delete(&foreign, "a"), None);
    }
}
