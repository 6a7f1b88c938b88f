//! The steps of one pass ([`Step`]) taken against the API, with the StatefulSet controller's
//! events (`stateful_pod_control.go`): a pod's claims before the pod, claims handed to a pod
//! scaled away, deletions.

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::identity::{claims, new_pod, ordinal_of, owner};
use super::plan::Step;
use super::{Context, template};
use crate::controllers::history;
use crate::controllers::ownership::controller_reference;
use crate::controllers::pods;

/// One reconcile's steps on a set.
pub(super) struct Pass<'a> {
    pub ctx: &'a Context,
    pub set: &'a StatefulSet,
    pub key: &'a str,
    pub current: &'a ControllerRevision,
    pub update: &'a ControllerRevision,
}

impl Pass<'_> {
    pub(super) async fn take(&self, step: Step) -> Result<(), kube::Error> {
        match step {
            Step::Create { ordinal, current } => {
                let revision = if current { self.current } else { self.update };
                let template =
                    history::revision_template(revision).unwrap_or_else(|| template(self.set));
                let pod = new_pod(self.set, &template, &revision.name_any(), ordinal);
                self.create(&pod).await
            }
            // Kubernetes 1.31 stopped recording RecreatingFailedPod events: the deletion says it.
            Step::Recreate(pod) | Step::ScaleDown(pod) | Step::Update(pod) => {
                self.delete(&pod).await
            }
            Step::CreateClaims(pod) => self.create_claims(&pod).await,
            Step::HandClaimsTo(pod) => self.hand_claims_to(&pod).await,
        }
    }

    /// Creates the pod's claims, then the pod (`CreateStatefulPod`).
    async fn create(&self, pod: &Pod) -> Result<(), kube::Error> {
        if let Err(e) = self.create_claims(pod).await {
            self.pod_event("create", pod, Some(&e));
            return Err(e);
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.namespace());
        match api.create(&PostParams::default(), pod).await {
            Ok(_) => {
                self.ctx
                    .expectations
                    .expect_created(self.key, pod.name_any());
                self.pod_event("create", pod, None);
                Ok(())
            }
            // Made by an earlier pass the cache has not shown.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => {
                self.pod_event("create", pod, Some(&e));
                Err(e)
            }
        }
    }

    async fn delete(&self, pod: &Pod) -> Result<(), kube::Error> {
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.namespace());
        self.ctx
            .expectations
            .expect_deleted(self.key, pod.name_any());
        match api.delete(&pod.name_any(), &DeleteParams::default()).await {
            Ok(_) => {
                self.pod_event("delete", pod, None);
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => {
                self.ctx.expectations.forget(self.key, &pod.name_any());
                self.pod_event("delete", pod, Some(&e));
                Err(e)
            }
        }
    }

    /// Creates those of the pod's claims that do not exist (`createPersistentVolumeClaims`).
    async fn create_claims(&self, pod: &Pod) -> Result<(), kube::Error> {
        let Some(ordinal) = ordinal_of(self.set, pod) else {
            return Ok(());
        };
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(self.ctx.client.clone(), &self.namespace());
        for claim in claims(self.set, ordinal) {
            if api.get_opt(&claim.name_any()).await?.is_some() {
                continue;
            }
            match api.create(&PostParams::default(), &claim).await {
                Ok(_) => self.claim_event(pod, &claim, None),
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => {
                    self.claim_event(pod, &claim, Some(&e));
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Makes a condemned pod the owner of its claims (and the set no longer), so the garbage
    /// collector deletes them once the pod is gone (`updateClaimOwnerRefForSetAndPod`).
    async fn hand_claims_to(&self, pod: &Pod) -> Result<(), kube::Error> {
        let Some(ordinal) = ordinal_of(self.set, pod) else {
            return Ok(());
        };
        let pod_uid = pod.uid().unwrap_or_default();
        let set_uid = self.set.uid().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(self.ctx.client.clone(), &self.namespace());
        for claim in claims(self.set, ordinal) {
            let Some(existing) = api.get_opt(&claim.name_any()).await? else {
                continue;
            };
            let mut refs: Vec<_> = existing
                .owner_references()
                .iter()
                .filter(|r| r.uid != set_uid)
                .cloned()
                .collect();
            if refs.iter().any(|r| r.uid == pod_uid)
                && refs.len() == existing.owner_references().len()
            {
                continue;
            }
            if !refs.iter().any(|r| r.uid == pod_uid) {
                refs.push(owner(controller_reference(pod)));
            }
            let patch = json!({"metadata": {
                "ownerReferences": refs,
                "resourceVersion": existing.resource_version(),
            }});
            api.patch(
                &claim.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await?;
        }
        Ok(())
    }

    fn namespace(&self) -> String {
        self.set.namespace().unwrap_or_default()
    }

    /// `recordPodEvent`: "create Pod web-0 in StatefulSet web successful".
    fn pod_event(&self, verb: &str, pod: &Pod, error: Option<&kube::Error>) {
        let (pod, set) = (pod.name_any(), self.set.name_any());
        match error {
            None => self.ctx.recorder.normal(
                self.set,
                &format!("Successful{}", title(verb)),
                format!("{verb} Pod {pod} in StatefulSet {set} successful"),
            ),
            Some(e) => self.ctx.recorder.warning(
                self.set,
                &format!("Failed{}", title(verb)),
                format!(
                    "{verb} Pod {pod} in StatefulSet {set} failed error: {}",
                    pods::reason(e)
                ),
            ),
        }
    }

    /// `recordClaimEvent`: "create Claim data-web-0 Pod web-0 in StatefulSet web success".
    fn claim_event(&self, pod: &Pod, claim: &PersistentVolumeClaim, error: Option<&kube::Error>) {
        let (pod, claim, set) = (pod.name_any(), claim.name_any(), self.set.name_any());
        match error {
            None => self.ctx.recorder.normal(
                self.set,
                "SuccessfulCreate",
                format!("create Claim {claim} Pod {pod} in StatefulSet {set} success"),
            ),
            Some(e) => self.ctx.recorder.warning(
                self.set,
                "FailedCreate",
                format!(
                    "create Claim {claim} for Pod {pod} in StatefulSet {set} failed error: {}",
                    pods::reason(e)
                ),
            ),
        }
    }
}

fn title(verb: &str) -> String {
    let mut chars = verb.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
