//! Controller references (`ownerReferences` with `controller: true`) and the claiming of
//! dependents by label selector, as client-go's `ControllerRefManager` does it: an owner adopts
//! orphans its selector matches and releases what it owns that its selector no longer matches;
//! what another controller owns it leaves alone.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use skiff_api::selectors::LabelSelector as Requirements;
use tracing::debug;

/// A selector of dependents by their labels.
#[derive(Debug, Clone)]
pub struct Selector(Requirements);

impl Selector {
    /// A `metav1.LabelSelector`; one the API would have refused (it never stores one) selects
    /// nothing.
    pub fn new(selector: Option<&LabelSelector>) -> Selector {
        let value = serde_json::to_value(selector).unwrap_or_default();
        Selector(
            Requirements::from_object(&value, "spec.selector")
                .unwrap_or_else(|_| Requirements::nothing()),
        )
    }

    /// A set-based selector of exactly these labels (a ReplicationController's `spec.selector`).
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Selector {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        Selector(Requirements::from_labels(&labels))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0
            .matches_lookup(|key| labels.get(key).map(String::as_str))
    }

    /// Selects everything: Kubernetes refuses to act on such an owner.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The reference a controller puts on what it creates or adopts.
pub fn controller_reference<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.name_any(),
        uid: owner.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The object's managing controller, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_deref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Whether `meta`'s controller is the object with `uid`.
pub fn is_controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_of(meta).is_some_and(|r| r.uid == uid)
}

/// The owners of kind `K` a dependent's change concerns (to map an informer's changes to the
/// owners to reconcile): its controller if that is a `K`; if it has none, every `K` in its
/// namespace whose `selector` matches it, since one of them may adopt it.
pub fn owners_of<K>(
    dependent: &ObjectMeta,
    owners: &Store<K>,
    selector: impl Fn(&K) -> Selector,
) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let namespace = dependent.namespace.clone().unwrap_or_default();
    let labels = dependent.labels.clone().unwrap_or_default();
    match controller_of(dependent) {
        Some(r) if r.kind == K::kind(&()) => vec![ObjectRef::new(&r.name).within(&namespace)],
        Some(_) => Vec::new(),
        None => owners
            .state()
            .iter()
            .filter(|o| o.namespace().as_deref() == Some(&namespace))
            .filter(|o| {
                let s = selector(o);
                !s.is_empty() && s.matches(&labels)
            })
            .map(|o| ObjectRef::from_obj(o.as_ref()))
            .collect(),
    }
}

/// Claims `candidates` (every object of the kind in the owner's namespace) for `owner`: returns
/// those it controls once orphans it selects are adopted and those it no longer selects are
/// released. An owner being deleted adopts nothing and releases nothing, as Kubernetes does.
pub async fn claim<K, C>(
    api: &Api<C>,
    owner: &K,
    selector: &Selector,
    candidates: impl IntoIterator<Item = Arc<C>>,
) -> Result<Vec<Arc<C>>, kube::Error>
where
    K: Resource<DynamicType = ()>,
    C: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let uid = owner.uid().unwrap_or_default();
    let deleting = owner.meta().deletion_timestamp.is_some();
    let mut claimed = Vec::new();
    for child in candidates {
        let meta = child.meta();
        let selected = selector.matches(child.labels());
        match controller_of(meta) {
            Some(r) if r.uid != uid => continue,
            Some(_) if selected || deleting => claimed.push(child),
            Some(_) => release(api, &uid, &child).await?,
            None if selected && !deleting && meta.deletion_timestamp.is_none() => {
                if let Some(adopted) = adopt(api, owner, &child).await? {
                    claimed.push(Arc::new(adopted));
                }
            }
            None => {}
        }
    }
    Ok(claimed)
}

async fn adopt<K, C>(api: &Api<C>, owner: &K, child: &C) -> Result<Option<C>, kube::Error>
where
    K: Resource<DynamicType = ()>,
    C: Resource + Clone + DeserializeOwned + Debug,
{
    set_owner_references(api, child, json!([controller_reference(owner)])).await
}

async fn release<C>(api: &Api<C>, owner_uid: &str, child: &C) -> Result<(), kube::Error>
where
    C: Resource + Clone + DeserializeOwned + Debug,
{
    let delete = json!([{"$patch": "delete", "uid": owner_uid}]);
    set_owner_references(api, child, delete).await.map(drop)
}

/// Strategic-merges `references` into the child's `ownerReferences` (merged by uid). The
/// child's own uid in the patch makes it fail rather than touch a re-created namesake; a child
/// gone or changed under us is skipped (`None`): the next reconcile sees the truth.
async fn set_owner_references<C>(
    api: &Api<C>,
    child: &C,
    references: serde_json::Value,
) -> Result<Option<C>, kube::Error>
where
    C: Resource + Clone + DeserializeOwned + Debug,
{
    let patch = json!({"metadata": {"ownerReferences": references, "uid": child.meta().uid}});
    match api
        .patch(
            &child.name_any(),
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await
    {
        Ok(patched) => Ok(Some(patched)),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 || e.code == 422 => {
            debug!(child = %child.name_any(), reason = %e.message, "ownerReferences not changed");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}
