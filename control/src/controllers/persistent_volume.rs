//! The persistent volume controller (kube-controller-manager's `persistentvolume-binder` and
//! `pvc-protection`, `pkg/controller/volume/persistentvolume/pv_controller.go`), as two
//! reconcilers:
//!
//! - claims ([`reconcile_claim`]): an unbound claim binds the best fitting volume
//!   ([`super::volume_matching`]); a class that waits for its first consumer waits for the scheduler's
//!   selected node (event `WaitForFirstConsumer`); the `local-path` class provisions
//!   ([`super::local_path`]). Binding writes the volume's `claimRef` and phase `Bound`, then the
//!   claim's `volumeName`, annotations and status. A claim being deleted loses its
//!   `kubernetes.io/pvc-protection` finalizer once no pod uses it.
//! - volumes ([`reconcile_volume`]): `Available` while free, `Bound` while their claim is, and
//!   `Released` once it is gone. A released local-path volume with reclaim policy `Delete` is
//!   removed by the node that holds its data; other `Delete` volumes fail, having no deleter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use skiff_api::storage::LOCAL_PATH_PROVISIONER;
use tokio_util::sync::CancellationToken;
use tracing::warn;

mod claim;
mod volume;

use super::informer::Informer;
use super::local_path::ProvisionError;
use super::recorder::Recorder;
use super::volume_matching::{claim_volume_name, pod_claim_names};
use claim::reconcile_claim;
use volume::reconcile_volume;

#[derive(Debug, thiserror::Error)]
pub enum PersistentVolumeError {
    #[error("API request: {0}")]
    Api(#[from] kube::Error),
    #[error("provisioning: {0}")]
    Provision(#[from] ProvisionError),
}

struct Context {
    client: Client,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    pods: Store<Pod>,
    recorder: Recorder,
    provisioner: Recorder,
    /// The last event each claim (by uid) was given while it waits: told once, not at every
    /// change of a pod that uses it.
    told: Mutex<HashMap<String, String>>,
}

/// Runs both reconcilers until their watches end.
pub async fn run(client: Client, pods: Informer<Pod>, shutdown: CancellationToken) {
    let volumes = Informer::<PersistentVolume>::start(&client, &shutdown);
    let claims = Informer::<PersistentVolumeClaim>::start(&client, &shutdown);
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), "persistentvolume-controller"),
        provisioner: Recorder::new(client.clone(), LOCAL_PATH_PROVISIONER),
        claims: claims.store(),
        volumes: volumes.store(),
        pods: pods.store(),
        client: client.clone(),
        told: Mutex::default(),
    });
    let claim_store = ctx.claims.clone();
    let claim_controller = Controller::new(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    )
    .reconcile_on(volumes.triggers(move |pv: &PersistentVolume| claims_of_volume(pv, &claim_store)))
    .reconcile_on(pods.triggers(claims_of_pod));
    let volume_store = ctx.volumes.clone();
    let volume_controller = Controller::new(
        Api::<PersistentVolume>::all(client),
        watcher::Config::default(),
    )
    .reconcile_on(
        claims.triggers(move |c: &PersistentVolumeClaim| volumes_of_claim(c, &volume_store)),
    );
    if !(claims.synced().await && volumes.synced().await && pods.synced().await) {
        return;
    }
    futures::future::join(
        claim_controller
            .run(reconcile_claim, error_policy, ctx.clone())
            .for_each(|_| async {}),
        volume_controller
            .run(reconcile_volume, error_policy, ctx)
            .for_each(|_| async {}),
    )
    .await;
}

/// The claim a volume is bound or reserved to; for a free volume, every claim still unbound
/// (one of them may take it).
fn claims_of_volume(
    pv: &PersistentVolume,
    claims: &Store<PersistentVolumeClaim>,
) -> Vec<ObjectRef<PersistentVolumeClaim>> {
    match pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
        Some(r) => vec![
            ObjectRef::new(r.name.as_deref().unwrap_or_default())
                .within(r.namespace.as_deref().unwrap_or_default()),
        ],
        None => claims
            .state()
            .iter()
            .filter(|c| claim_volume_name(c).is_none())
            .map(|c| ObjectRef::from_obj(c.as_ref()))
            .collect(),
    }
}

fn claims_of_pod(pod: &Pod) -> Vec<ObjectRef<PersistentVolumeClaim>> {
    let namespace = pod.namespace().unwrap_or_default();
    pod_claim_names(pod)
        .map(|name| ObjectRef::new(name).within(&namespace))
        .collect()
}

/// The volume a claim names and every volume reserved for it.
fn volumes_of_claim(
    claim: &PersistentVolumeClaim,
    volumes: &Store<PersistentVolume>,
) -> Vec<ObjectRef<PersistentVolume>> {
    let named = claim_volume_name(claim).map(ObjectRef::new);
    let reserved = volumes.state().into_iter().filter(|pv| {
        let r = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        r.is_some_and(|r| {
            r.name.as_deref() == Some(claim.name_any().as_str()) && r.namespace == claim.namespace()
        })
    });
    named
        .into_iter()
        .chain(reserved.map(|pv| ObjectRef::from_obj(pv.as_ref())))
        .collect()
}

impl Context {
    /// Records why `claim` still waits, unless it was told so last time.
    fn tell(&self, claim: &PersistentVolumeClaim, warning: bool, reason: &str, message: String) {
        let uid = claim.uid().unwrap_or_default();
        let mut told = self.told.lock().unwrap_or_else(|e| e.into_inner());
        if told.get(&uid).map(String::as_str) == Some(reason) {
            return;
        }
        told.insert(uid, reason.to_string());
        if warning {
            self.recorder.warning(claim, reason, message);
        } else {
            self.recorder.normal(claim, reason, message);
        }
    }

    fn forget(&self, claim: &PersistentVolumeClaim) {
        let uid = claim.uid().unwrap_or_default();
        self.told
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&uid);
    }
}

fn error_policy<K: ResourceExt>(
    obj: Arc<K>,
    err: &PersistentVolumeError,
    _ctx: Arc<Context>,
) -> Action {
    warn!(name = %obj.name_any(), error = %err, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(2))
}
