//! kube-scheduler's VolumeBinding plugin, for pods with `persistentVolumeClaim` volumes.
//!
//! - PreFilter ([`StorageCache::pod_claims`]): every claim exists and is not being deleted, and
//!   is bound or waits for its first consumer (`WaitForFirstConsumer`); otherwise no node is
//!   looked at.
//! - Filter ([`ClaimFacts::filter`]): a bound claim's volume must exist and its node affinity
//!   match; a waiting claim needs a volume it could bind there, or a class that provisions.
//! - PreBind ([`pre_bind`]): the chosen node goes into each waiting claim's
//!   `volume.kubernetes.io/selected-node`, which the persistent volume controller binds or
//!   provisions on, and the pod is bound once its claims are, so it never reaches a node whose
//!   volumes are not there yet.
//!
//! A pod without claims costs one look at its volumes.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{NodeSelectorTerm, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher::Event;
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_api::storage::SELECTED_NODE_ANNOTATION;

use super::cache::NodeInfo;
use super::filters::{Reason, any_term_matches};
use crate::controllers::volume_matching::{
    claim_class, claim_volume_name, pod_claim_names, volume_fits_claim, volume_node_terms,
};

/// How long PreBind waits for the controller to bind a pod's claims (kube-scheduler's
/// `bindTimeoutSeconds` is 600; provisioning here is an API write, not a cloud disk).
const BIND_TIMEOUT: Duration = Duration::from_secs(60);
/// A class with this provisioner only binds volumes an administrator created.
const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// Why a pod's claims rule out every node at once, worded as kube-scheduler words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("persistentvolumeclaim \"{0}\" not found")]
    NotFound(String),
    #[error("persistentvolumeclaim \"{0}\" is being deleted")]
    Deleting(String),
    #[error("pod has unbound immediate PersistentVolumeClaims")]
    UnboundImmediate,
}

/// Why PreBind failed; the pod is tried again after a back-off.
#[derive(Debug, thiserror::Error)]
pub enum PreBindError {
    #[error("selecting node for claim {namespace}/{name}: {source}")]
    Select {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("binding volumes: claim {namespace}/{name} was not bound within {BIND_TIMEOUT:?}")]
    Timeout { namespace: String, name: String },
}

/// A claim waiting for its first consumer, as the filter reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct DelayedClaim {
    pub namespace: String,
    pub name: String,
    /// The node an earlier pod's scheduling chose: only that one will do.
    pub selected: Option<String>,
    /// Its class provisions a volume on whichever node the pod goes to.
    provisions: bool,
    /// Required node affinity of each existing volume it could bind (`None`: any node).
    candidates: Vec<Option<Vec<NodeSelectorTerm>>>,
}

impl DelayedClaim {
    fn fits(&self, node: &NodeInfo) -> bool {
        match &self.selected {
            Some(selected) => *selected == node.name,
            None => {
                self.provisions
                    || self
                        .candidates
                        .iter()
                        .any(|t| t.as_deref().is_none_or(|t| any_term_matches(t, node)))
            }
        }
    }
}

/// What one scheduling attempt needs from a pod's claims.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClaimFacts {
    /// The required node affinity of each bound claim's volume.
    bound: Vec<Vec<NodeSelectorTerm>>,
    /// A bound claim names a volume that does not exist.
    missing_volume: bool,
    pub delayed: Vec<DelayedClaim>,
}

impl ClaimFacts {
    /// The VolumeBinding filter's reasons against `node`.
    pub fn filter(&self, node: &NodeInfo) -> Result<(), Vec<Reason>> {
        let mut reasons = Vec::new();
        if self.missing_volume {
            reasons.push(Reason::VolumeMissing);
        }
        let pinned_elsewhere = self
            .delayed
            .iter()
            .any(|c| c.selected.as_ref().is_some_and(|n| *n != node.name));
        if pinned_elsewhere || self.bound.iter().any(|t| !any_term_matches(t, node)) {
            reasons.push(Reason::VolumeNodeConflict);
        }
        if self
            .delayed
            .iter()
            .any(|c| c.selected.is_none() && !c.fits(node))
        {
            reasons.push(Reason::VolumeBindConflict);
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }
}

/// The claims, volumes and classes the scheduler has seen, by key (`namespace/name` for claims).
#[derive(Default)]
pub struct StorageCache {
    claims: Kind<PersistentVolumeClaim>,
    volumes: Kind<PersistentVolume>,
    classes: Kind<StorageClass>,
}

/// One kind's objects and, while a watch relists, the keys seen since it restarted.
struct Kind<K> {
    objects: HashMap<String, K>,
    seen: HashSet<String>,
}

impl<K> Default for Kind<K> {
    fn default() -> Self {
        Kind {
            objects: HashMap::new(),
            seen: HashSet::new(),
        }
    }
}

fn key<K: ResourceExt>(obj: &K) -> String {
    match obj.namespace() {
        Some(ns) => format!("{ns}/{}", obj.name_any()),
        None => obj.name_any(),
    }
}

impl<K: ResourceExt> Kind<K> {
    fn apply(&mut self, event: Event<K>) {
        match event {
            Event::Init => self.seen.clear(),
            Event::InitApply(obj) | Event::Apply(obj) => {
                let key = key(&obj);
                self.seen.insert(key.clone());
                self.objects.insert(key, obj);
            }
            Event::Delete(obj) => {
                self.objects.remove(&key(&obj));
            }
            Event::InitDone => {
                let seen = &self.seen;
                self.objects.retain(|k, _| seen.contains(k));
            }
        }
    }
}

impl StorageCache {
    pub fn claim_event(&mut self, event: Event<PersistentVolumeClaim>) {
        self.claims.apply(event);
    }

    pub fn volume_event(&mut self, event: Event<PersistentVolume>) {
        self.volumes.apply(event);
    }

    pub fn class_event(&mut self, event: Event<StorageClass>) {
        self.classes.apply(event);
    }

    /// PreFilter: what the pod's claims ask of a node; `None` for a pod without claims.
    pub fn pod_claims(&self, pod: &Pod) -> Result<Option<ClaimFacts>, ClaimError> {
        let mut names = pod_claim_names(pod).peekable();
        if names.peek().is_none() {
            return Ok(None);
        }
        let namespace = pod.namespace().unwrap_or_default();
        let mut facts = ClaimFacts::default();
        for name in names {
            let claim = self
                .claims
                .objects
                .get(&format!("{namespace}/{name}"))
                .ok_or_else(|| ClaimError::NotFound(name.to_string()))?;
            if claim.metadata.deletion_timestamp.is_some() {
                return Err(ClaimError::Deleting(name.to_string()));
            }
            // A claim naming its volume counts as bound, as in kube-scheduler.
            match claim_volume_name(claim) {
                Some(volume) => match self.volumes.objects.get(volume) {
                    None => facts.missing_volume = true,
                    Some(pv) => facts.bound.extend(volume_node_terms(pv).map(<[_]>::to_vec)),
                },
                None => facts.delayed.push(self.delayed(claim, &namespace, name)?),
            }
        }
        Ok(Some(facts))
    }

    fn delayed(
        &self,
        claim: &PersistentVolumeClaim,
        namespace: &str,
        name: &str,
    ) -> Result<DelayedClaim, ClaimError> {
        // A claim without a class, or whose class is gone, binds at once (`IsDelayBindingMode`).
        let class = self.classes.objects.get(claim_class(claim));
        let waits =
            class.is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"));
        let (Some(class), true) = (class, waits) else {
            return Err(ClaimError::UnboundImmediate);
        };
        let candidates = self
            .volumes
            .objects
            .values()
            .filter(|pv| volume_fits_claim(pv, claim))
            .map(|pv| volume_node_terms(pv).map(<[_]>::to_vec))
            .collect();
        Ok(DelayedClaim {
            namespace: namespace.to_string(),
            name: name.to_string(),
            selected: claim
                .annotations()
                .get(SELECTED_NODE_ANNOTATION)
                .filter(|n| !n.is_empty())
                .cloned(),
            provisions: class.provisioner != NO_PROVISIONER,
            candidates,
        })
    }

    /// Assumes the selections PreBind is about to write, so that the next pod sharing a claim
    /// goes to the same node before the claim's watch event arrives.
    pub fn assume_selected(&mut self, claims: &[DelayedClaim], node: &str) {
        for c in claims.iter().filter(|c| c.selected.is_none()) {
            if let Some(claim) = self
                .claims
                .objects
                .get_mut(&format!("{}/{}", c.namespace, c.name))
            {
                claim
                    .annotations_mut()
                    .insert(SELECTED_NODE_ANNOTATION.to_string(), node.to_string());
            }
        }
    }
}

/// PreBind: selects `node` for the claims that have none yet, then waits until every claim is
/// bound.
pub async fn pre_bind(
    client: Client,
    claims: Vec<DelayedClaim>,
    node: String,
) -> Result<(), PreBindError> {
    for c in claims.iter().filter(|c| c.selected.is_none()) {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &c.namespace);
        let patch = json!({"metadata": {"annotations": {SELECTED_NODE_ANNOTATION: node}}});
        api.patch(&c.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| PreBindError::Select {
                namespace: c.namespace.clone(),
                name: c.name.clone(),
                source,
            })?;
    }
    for c in &claims {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &c.namespace);
        let bound = |claim: Option<&PersistentVolumeClaim>| {
            claim.is_some_and(|claim| claim_volume_name(claim).is_some())
        };
        let waited = tokio::time::timeout(
            BIND_TIMEOUT,
            kube::runtime::wait::await_condition(api, &c.name, bound),
        )
        .await;
        if !matches!(waited, Ok(Ok(Some(_)))) {
            return Err(PreBindError::Timeout {
                namespace: c.namespace.clone(),
                name: c.name.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "volumes_tests.rs"]
mod tests;
