//! ControllerRevisions: the template history of a DaemonSet or a StatefulSet (client-go's
//! `controller/history`). Each revision stores its owner's pod template as the strategic-merge
//! patch that restores it, `{"spec":{"template":{…,"$patch":"replace"}}}`, which is what
//! `kubectl rollout undo` sends back; is named `<owner>-<hash>` after the [`template_hash`] of the
//! template (moved by the owner's `collisionCount` when another template holds the name); carries
//! that hash in its `controller-revision-hash` label; and is numbered by `revision`, the newest
//! highest. A template that comes back (a rollback) renumbers its old revision instead of copying
//! it, so `kubectl rollout history` lists each template once.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

use super::hash::template_hash;
use super::ownership::{Selector, claim, controller_reference};

/// The label naming a pod's (and a revision's) template revision.
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// The data of the revision of `template`: the patch that puts it back.
pub fn revision_data(template: &PodTemplateSpec) -> Value {
    let mut template = serde_json::to_value(template).unwrap_or_default();
    if let Some(t) = template.as_object_mut() {
        t.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

/// The template `revision` restores; `None` for data this module did not write.
pub fn revision_template(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision.data.as_ref()?.0.pointer("/spec/template")?.clone();
    template.as_object_mut()?.remove("$patch");
    serde_json::from_value(template).ok()
}

/// `history.ControllerRevisionName`: the owner's name, cut so that the whole stays a valid name.
pub fn revision_name(owner: &str, hash: &str) -> String {
    let cut = owner
        .char_indices()
        .nth(223)
        .map_or(owner.len(), |(i, _)| i);
    format!("{}-{hash}", &owner[..cut])
}

/// The revisions `owner` controls, oldest first, once the orphans its selector matches are
/// adopted (from `cache`, every ControllerRevision in the cluster).
pub async fn claim_revisions<K: Resource<DynamicType = ()>>(
    client: &Client,
    cache: &Store<ControllerRevision>,
    owner: &K,
    selector: &Selector,
) -> Result<Vec<Arc<ControllerRevision>>, kube::Error> {
    let namespace = owner.namespace().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &namespace);
    let candidates = cache.state_filter(|r| r.namespace().as_deref() == Some(&namespace));
    let mut owned = claim(&api, owner, selector, candidates).await?;
    owned.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
    Ok(owned)
}

/// The revision of `template` and the collision count that named it: the newest of `history`
/// (oldest first) if it holds the template, an older one renumbered to be the newest, or a new
/// one. A name taken by another template moves the hash by one more collision, as
/// `CreateControllerRevision` does; the caller records the count in its owner's status.
pub async fn update_revision<K: Resource<DynamicType = ()>>(
    client: &Client,
    owner: &K,
    template: &PodTemplateSpec,
    history: &[Arc<ControllerRevision>],
    mut collision_count: Option<i32>,
) -> Result<(ControllerRevision, Option<i32>), kube::Error> {
    let api: Api<ControllerRevision> =
        Api::namespaced(client.clone(), &owner.namespace().unwrap_or_default());
    let data = revision_data(template);
    let next = history.last().map_or(1, |r| r.revision + 1);
    match history.iter().rposition(|r| holds(r, &data)) {
        Some(i) if i + 1 == history.len() => return Ok(((*history[i]).clone(), collision_count)),
        Some(i) => {
            // A rollback: the old revision becomes the newest.
            let renumbered = api
                .patch(
                    &history[i].name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"revision": next})),
                )
                .await?;
            return Ok((renumbered, collision_count));
        }
        None => {}
    }
    loop {
        let hash = template_hash(template, collision_count);
        let mut labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(REVISION_HASH_LABEL.into(), hash.clone());
        let revision = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(revision_name(&owner.name_any(), &hash)),
                labels: Some(labels),
                // `kubernetes.io/change-cause` is what `kubectl rollout history` shows.
                annotations: owner.meta().annotations.clone(),
                owner_references: Some(vec![controller_reference(owner)]),
                ..ObjectMeta::default()
            },
            data: Some(RawExtension(data.clone())),
            revision: next,
        };
        match api.create(&PostParams::default(), &revision).await {
            Ok(created) => return Ok((created, collision_count)),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let existing = api.get(&revision.name_any()).await?;
                if holds(&existing, &data) {
                    return Ok((existing, collision_count));
                }
                collision_count = Some(collision_count.unwrap_or(0) + 1);
            }
            Err(e) => return Err(e),
        }
    }
}

fn holds(revision: &ControllerRevision, data: &Value) -> bool {
    revision.data.as_ref().is_some_and(|d| &d.0 == data)
}

/// Of `history` (oldest first), the revisions to delete so that at most `limit` remain that are
/// not `live` (the current ones and those pods still run): the oldest go first.
pub fn surplus(
    history: &[Arc<ControllerRevision>],
    limit: i32,
    live: impl Fn(&ControllerRevision) -> bool,
) -> Vec<Arc<ControllerRevision>> {
    let old: Vec<_> = history.iter().filter(|r| !live(r)).cloned().collect();
    let excess = old.len().saturating_sub(limit.max(0) as usize);
    old.into_iter().take(excess).collect()
}

/// Deletes `revisions`; one already gone is fine.
pub async fn delete_revisions(
    client: &Client,
    revisions: &[Arc<ControllerRevision>],
) -> Result<(), kube::Error> {
    for r in revisions {
        let api: Api<ControllerRevision> =
            Api::namespaced(client.clone(), &r.namespace().unwrap_or_default());
        match api.delete(&r.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": image}]},
        }))
        .unwrap()
    }

    fn revision(name: &str, number: i64, image: &str) -> Arc<ControllerRevision> {
        Arc::new(ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            data: Some(RawExtension(revision_data(&template(image)))),
            revision: number,
        })
    }

    #[test]
    fn the_data_is_a_patch_that_replaces_the_template_and_gives_it_back() {
        let t = template("nginx:1.25");
        let data = revision_data(&t);
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        assert_eq!(
            data["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1.25"
        );
        let r = revision("web-1", 1, "nginx:1.25");
        assert_eq!(revision_template(&r), Some(t));
        assert!(holds(&r, &data));
        assert!(!holds(&r, &revision_data(&template("nginx:1.26"))));
    }

    #[test]
    fn names_are_the_owner_and_the_hash_within_the_name_limit() {
        assert_eq!(revision_name("web", "6c7d8b8f9"), "web-6c7d8b8f9");
        let long = "a".repeat(250);
        assert_eq!(revision_name(&long, "h").len(), 225);
    }

    #[test]
    fn pruning_keeps_live_revisions_and_the_newest_of_the_rest() {
        let history: Vec<_> = (1..=5)
            .map(|n| revision(&format!("web-{n}"), n, &format!("i:{n}")))
            .collect();
        let live = |r: &ControllerRevision| matches!(r.revision, 1 | 5);
        let names =
            |rs: Vec<Arc<ControllerRevision>>| rs.iter().map(|r| r.name_any()).collect::<Vec<_>>();
        assert_eq!(names(surplus(&history, 1, live)), ["web-2", "web-3"]);
        assert_eq!(names(surplus(&history, 3, live)), Vec::<String>::new());
        assert_eq!(
            names(surplus(&history, 0, live)),
            ["web-2", "web-3", "web-4"]
        );
    }
}
