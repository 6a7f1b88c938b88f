//! Writing a workload's status: a merge patch of the status subresource, so a controller never
//! conflicts with spec changes made meanwhile.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Replaces `object`'s status with `status`. A condition list that is now empty is cleared
/// (a merge patch leaves out what is absent); an object deleted meanwhile is not an error.
pub async fn write<K>(
    client: &Client,
    object: &K,
    status: &impl Serialize,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), &object.namespace().unwrap_or_default());
    let mut status = serde_json::to_value(status).unwrap_or_default();
    if let Some(s) = status.as_object_mut() {
        s.entry("conditions").or_insert(Value::Null);
    }
    let patch = Patch::Merge(json!({"status": status}));
    match api
        .patch_status(&object.name_any(), &PatchParams::default(), &patch)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
