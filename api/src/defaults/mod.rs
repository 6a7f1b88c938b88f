//! Defaulting of new and updated objects, as the Kubernetes v1.33 API server applies it: the
//! `SetDefaults_*` functions of `pkg/apis/*/v1/defaults.go`, the create strategies' derived
//! fields (Job selectors, Pod status) and the admission plugins that
//! always run (ServiceAccount, Priority, DefaultTolerationSeconds).
//!
//! [`apply`] runs after the server has set `metadata.name` (from `generateName`), `namespace`,
//! `uid` and `creationTimestamp`, works on the wire JSON, and is idempotent: it fills only what
//! is absent, so running it on a stored object changes nothing. (A Namespace's `kubernetes`
//! finalizer is set by the API server on create only: it must stay removed once finalized.)

mod core;
mod pod;
mod storage;
mod workloads;

use serde_json::{Map, Value};

use crate::registry::ResourceInfo;

pub fn apply(info: &ResourceInfo, obj: &mut Value) {
    if !obj.is_object() {
        return;
    }
    match (info.group.as_ref(), info.kind.as_ref()) {
        ("", "Pod") => pod::pod(obj),
        ("", "ReplicationController") => workloads::replication_controller(obj),
        ("", "Service") => core::service(obj),
        ("", "Secret") => core::secret(obj),
        ("", "Namespace") => core::namespace(obj),
        ("", "Node") => core::node(obj),
        ("", "PersistentVolume") => storage::persistent_volume(obj),
        ("", "PersistentVolumeClaim") => storage::persistent_volume_claim(obj),
        ("storage.k8s.io", "StorageClass") => storage::storage_class(obj),
        ("apps", "Deployment") => workloads::deployment(obj),
        ("apps", "ReplicaSet") => workloads::replica_set(obj),
        ("apps", "DaemonSet") => workloads::daemon_set(obj),
        ("apps", "StatefulSet") => workloads::stateful_set(obj),
        ("batch", "Job") => workloads::job(obj),
        ("batch", "CronJob") => workloads::cron_job(obj),
        _ => {}
    }
}

/// The object at `key`, created empty when absent or null. `v` must be an object (or null,
/// which becomes one): every caller walks down from the object checked in [`apply`].
fn child<'a>(v: &'a mut Value, key: &str) -> &'a mut Value {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    let Value::Object(m) = v else {
        unreachable!("just made an object")
    };
    let c = m.entry(key).or_insert(Value::Null);
    if !c.is_object() {
        *c = Value::Object(Map::new());
    }
    c
}

/// Sets `key` when absent, null or an empty string (Go's zero value for strings).
fn default(v: &mut Value, key: &str, value: Value) {
    let Some(m) = v.as_object_mut() else { return };
    let unset = match m.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    };
    if unset {
        m.insert(key.to_string(), value);
    }
}

/// Every element of the array at `key`, mutably.
fn each<'a>(v: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    v.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter(|e| e.is_object())
}

#[cfg(test)]
mod tests;
