//! The garbage collector: keeps a graph of every object's ownerReferences (one watcher per
//! resource) and acts on it, level-triggered, as Kubernetes' garbage collector does:
//! - a dependent whose owners are all gone is deleted (background propagation);
//! - an owner being deleted with the `orphan` finalizer has its references removed from its
//!   dependents, then loses the finalizer;
//! - an owner being deleted with `foregroundDeletion` has its dependents deleted (in the
//!   foreground too), and loses the finalizer once none is left.
//!
//! Owners are matched by uid, so a re-created object with the same name is not an owner.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy};
use kube::core::DynamicResourceScope;
use kube::discovery::ApiResource;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use serde::{Deserialize, Deserializer};
use serde_json::json;
use skiff_api::ResourceInfo;
use tokio::sync::Notify;
use tracing::{Instrument, debug, info_span, warn};

use super::api_resource;

const ORPHAN: &str = "orphan";
const FOREGROUND: &str = "foregroundDeletion";
/// How often the graph is swept even without events (a failed action is retried then).
const RESYNC: Duration = Duration::from_secs(10);

/// What the collector knows of one object.
#[derive(Debug, Clone)]
struct GraphNode {
    info: &'static ResourceInfo,
    namespace: Option<String>,
    name: String,
    resource_version: String,
    owners: Vec<serde_json::Value>,
    finalizers: Vec<String>,
    deleting: bool,
}

#[derive(Default)]
struct Graph {
    /// Every object by uid: an owner exists while its uid is here.
    known: HashMap<String, &'static ResourceInfo>,
    /// Only the objects the collector may act on: those with owners, or being deleted. Sweeps
    /// walk these, so a cluster of many ownerless objects costs nothing per sweep.
    nodes: HashMap<String, GraphNode>,
    /// Resources whose initial list has not arrived: until all have, absence proves nothing.
    unsynced: HashSet<String>,
}

pub struct GarbageCollector {
    client: Client,
    graph: Arc<Mutex<Graph>>,
    changed: Arc<Notify>,
}

/// One step the collector takes.
#[derive(Debug, PartialEq)]
enum Step {
    Delete {
        uid: String,
        foreground: bool,
    },
    SetOwners {
        uid: String,
        owners: Vec<serde_json::Value>,
    },
    RemoveFinalizer {
        uid: String,
        finalizer: &'static str,
    },
}

impl Step {
    fn uid(&self) -> &str {
        match self {
            Step::Delete { uid, .. }
            | Step::SetOwners { uid, .. }
            | Step::RemoveFinalizer { uid, .. } => uid,
        }
    }
}

/// What the collector reads of an object, from a metadata-only watch: the metadata without
/// `managedFields`, which are most of its bytes and which the collector never looks at, so they
/// are skipped while parsing rather than decoded for every change of every object.
#[derive(Debug, Clone)]
struct Ownership {
    metadata: ObjectMeta,
}

impl<'de> Deserialize<'de> for Ownership {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Metadata {
            name: Option<String>,
            namespace: Option<String>,
            uid: Option<String>,
            resource_version: Option<String>,
            owner_references: Option<Vec<OwnerReference>>,
            finalizers: Option<Vec<String>>,
            deletion_timestamp: Option<Time>,
        }
        #[derive(Deserialize)]
        struct PartialObjectMetadata {
            metadata: Metadata,
        }
        let m = PartialObjectMetadata::deserialize(deserializer)?.metadata;
        Ok(Ownership {
            metadata: ObjectMeta {
                name: m.name,
                namespace: m.namespace,
                uid: m.uid,
                resource_version: m.resource_version,
                owner_references: m.owner_references,
                finalizers: m.finalizers,
                deletion_timestamp: m.deletion_timestamp,
                ..ObjectMeta::default()
            },
        })
    }
}

impl Resource for Ownership {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn metadata_api() -> bool {
        true
    }

    fn kind(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.kind.as_str().into()
    }

    fn group(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.group.as_str().into()
    }

    fn version(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.version.as_str().into()
    }

    fn plural(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.plural.as_str().into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl GarbageCollector {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            graph: Arc::new(Mutex::new(Graph::default())),
            changed: Arc::new(Notify::new()),
        }
    }

    pub async fn run(self) {
        for info in skiff_api::registry::all()
            .iter()
            .filter(|r| r.supports("watch"))
        {
            let key = info.group_version_resource();
            self.graph
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .unsynced
                .insert(key.clone());
            let api: Api<Ownership> = Api::all_with(self.client.clone(), &api_resource(info));
            let graph = self.graph.clone();
            let changed = self.changed.clone();
            tokio::spawn(
                async move {
                    // Metadata is all the collector reads.
                    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
                    let mut listing: HashSet<String> = HashSet::new();
                    while let Some(ev) = stream.next().await {
                        match ev {
                            Ok(ev) => {
                                apply_event(&graph, info, &key, ev, &mut listing);
                                changed.notify_one();
                            }
                            Err(e) => {
                                debug!(error = %e, "watch failed; the watcher retries");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                    }
                }
                .instrument(info_span!("gc_watch", resource = %info.group_version_resource())),
            );
        }
        loop {
            let _ = tokio::time::timeout(RESYNC, self.changed.notified()).await;
            // Let a burst of events land before sweeping.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let (steps, nodes) = {
                let graph = self.graph.lock().unwrap_or_else(|p| p.into_inner());
                if !graph.unsynced.is_empty() {
                    continue;
                }
                let steps = plan(&graph.nodes, &graph.known);
                let targets: HashMap<String, GraphNode> = steps
                    .iter()
                    .filter_map(|s| graph.nodes.get_key_value(s.uid()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                (steps, targets)
            };
            for step in steps {
                if let Err(e) = self.take(&step, &nodes).await {
                    warn!(?step, error = %e, "garbage collection step failed; retrying later");
                }
            }
        }
    }

    async fn take(
        &self,
        step: &Step,
        nodes: &HashMap<String, GraphNode>,
    ) -> Result<(), kube::Error> {
        let uid = step.uid();
        let Some(node) = nodes.get(uid) else {
            return Ok(());
        };
        let ar = api_resource(node.info);
        let api: Api<DynamicObject> = match &node.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        };
        let result = match step {
            Step::Delete { foreground, .. } => {
                let mut dp = DeleteParams {
                    propagation_policy: Some(if *foreground {
                        PropagationPolicy::Foreground
                    } else {
                        PropagationPolicy::Background
                    }),
                    ..Default::default()
                };
                dp.preconditions = Some(kube::api::Preconditions {
                    uid: Some(uid.to_string()),
                    resource_version: None,
                });
                api.delete(&node.name, &dp).await.map(|_| ())
            }
            Step::SetOwners { owners, .. } => {
                // An empty list is no list, as Kubernetes serialises it.
                let owners = if owners.is_empty() {
                    serde_json::Value::Null
                } else {
                    json!(owners)
                };
                let patch = json!({"metadata": {"ownerReferences": owners, "resourceVersion": node.resource_version}});
                api.patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
            Step::RemoveFinalizer { finalizer, .. } => {
                let rest: Vec<&String> =
                    node.finalizers.iter().filter(|f| f != finalizer).collect();
                let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": node.resource_version}});
                api.patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
        };
        match result {
            // Gone or changed meanwhile: the next sweep sees the new state.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            other => other,
        }
    }
}

fn node_of(info: &'static ResourceInfo, meta: &ObjectMeta) -> Option<(String, GraphNode)> {
    let uid = meta.uid.clone()?;
    let owners = meta
        .owner_references
        .iter()
        .flatten()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect();
    Some((
        uid,
        GraphNode {
            info,
            namespace: meta.namespace.clone(),
            name: meta.name.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            owners,
            finalizers: meta.finalizers.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
        },
    ))
}

fn apply_event(
    graph: &Mutex<Graph>,
    info: &'static ResourceInfo,
    key: &str,
    ev: Event<Ownership>,
    listing: &mut HashSet<String>,
) {
    let mut graph = graph.lock().unwrap_or_else(|p| p.into_inner());
    match ev {
        Event::Apply(obj) | Event::InitApply(obj) => {
            if let Some((uid, node)) = node_of(info, &obj.metadata) {
                listing.insert(uid.clone());
                graph.known.insert(uid.clone(), info);
                if node.owners.is_empty() && !node.deleting {
                    graph.nodes.remove(&uid);
                } else {
                    graph.nodes.insert(uid, node);
                }
            }
        }
        Event::Delete(obj) => {
            if let Some(uid) = obj.metadata.uid {
                listing.remove(&uid);
                graph.known.remove(&uid);
                graph.nodes.remove(&uid);
            }
        }
        Event::Init => listing.clear(),
        Event::InitDone => {
            // Objects of this resource not in the fresh list were deleted while unwatched.
            let gvr = info.group_version_resource();
            graph
                .known
                .retain(|uid, i| i.group_version_resource() != gvr || listing.contains(uid));
            let Graph { known, nodes, .. } = &mut *graph;
            nodes.retain(|uid, _| known.contains_key(uid));
            graph.unsynced.remove(key);
        }
    }
}

/// The steps the graph calls for. Pure, so the policy is tested without a cluster.
fn plan(
    nodes: &HashMap<String, GraphNode>,
    known: &HashMap<String, &'static ResourceInfo>,
) -> Vec<Step> {
    let mut dependents: HashMap<&str, Vec<&str>> = HashMap::new();
    for (uid, node) in nodes {
        for owner in &node.owners {
            if let Some(owner_uid) = owner["uid"].as_str() {
                dependents.entry(owner_uid).or_default().push(uid);
            }
        }
    }
    let mut steps = Vec::new();
    for (uid, node) in nodes {
        // Dependents: drop references to owners that are gone, or go with them.
        if !node.owners.is_empty() {
            let live: Vec<serde_json::Value> = node
                .owners
                .iter()
                .filter(|o| o["uid"].as_str().is_some_and(|u| known.contains_key(u)))
                .cloned()
                .collect();
            if live.is_empty() {
                if !node.deleting {
                    steps.push(Step::Delete {
                        uid: uid.clone(),
                        foreground: false,
                    });
                }
                continue;
            }
            if live.len() < node.owners.len() {
                steps.push(Step::SetOwners {
                    uid: uid.clone(),
                    owners: live,
                });
            }
        }
        // Owners being deleted with a propagation finalizer.
        if !node.deleting {
            continue;
        }
        let deps = dependents
            .get(uid.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if node.finalizers.iter().any(|f| f == ORPHAN) {
            for dep in deps {
                let remaining: Vec<serde_json::Value> = nodes[*dep]
                    .owners
                    .iter()
                    .filter(|o| o["uid"].as_str() != Some(uid))
                    .cloned()
                    .collect();
                steps.push(Step::SetOwners {
                    uid: dep.to_string(),
                    owners: remaining,
                });
            }
            if deps.is_empty() {
                steps.push(Step::RemoveFinalizer {
                    uid: uid.clone(),
                    finalizer: ORPHAN,
                });
            }
        } else if node.finalizers.iter().any(|f| f == FOREGROUND) {
            for dep in deps {
                if !nodes[*dep].deleting {
                    steps.push(Step::Delete {
                        uid: dep.to_string(),
                        foreground: true,
                    });
                }
            }
            if deps.is_empty() {
                steps.push(Step::RemoveFinalizer {
                    uid: uid.clone(),
                    finalizer: FOREGROUND,
                });
            }
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known_of(nodes: &HashMap<String, GraphNode>) -> HashMap<String, &'static ResourceInfo> {
        nodes.iter().map(|(uid, n)| (uid.clone(), n.info)).collect()
    }

    fn node(owners: &[&str], finalizers: &[&str], deleting: bool) -> GraphNode {
        GraphNode {
            info: skiff_api::registry::find("", "v1", "configmaps").unwrap(),
            namespace: Some("default".into()),
            name: "x".into(),
            resource_version: "1".into(),
            owners: owners
                .iter()
                .map(|u| json!({"uid": u, "name": "o", "kind": "ConfigMap", "apiVersion": "v1"}))
                .collect(),
            finalizers: finalizers.iter().map(|s| s.to_string()).collect(),
            deleting,
        }
    }

    #[test]
    fn orphans_lose_their_owner_and_dangling_dependents_go() {
        let mut nodes = HashMap::new();
        nodes.insert("dep-of-gone".to_string(), node(&["gone"], &[], false));
        nodes.insert("owner".to_string(), node(&[], &[], false));
        nodes.insert("dep".to_string(), node(&["owner", "gone"], &[], false));
        let steps = plan(&nodes, &known_of(&nodes));
        assert!(steps.contains(&Step::Delete {
            uid: "dep-of-gone".into(),
            foreground: false
        }));
        assert!(steps.iter().any(
            |s| matches!(s, Step::SetOwners { uid, owners } if uid == "dep" && owners.len() == 1)
        ));
    }

    #[test]
    fn orphan_and_foreground_finalizers() {
        let mut nodes = HashMap::new();
        nodes.insert("o1".to_string(), node(&[], &[ORPHAN], true));
        nodes.insert("d1".to_string(), node(&["o1"], &[], false));
        nodes.insert("o2".to_string(), node(&[], &[FOREGROUND], true));
        nodes.insert("d2".to_string(), node(&["o2"], &[], false));
        let steps = plan(&nodes, &known_of(&nodes));
        assert!(steps.contains(&Step::SetOwners {
            uid: "d1".into(),
            owners: vec![]
        }));
        assert!(steps.contains(&Step::Delete {
            uid: "d2".into(),
            foreground: true
        }));
        assert!(
            !steps
                .iter()
                .any(|s| matches!(s, Step::RemoveFinalizer { .. }))
        );
        nodes.remove("d1");
        nodes.remove("d2");
        let steps = plan(&nodes, &known_of(&nodes));
        assert!(steps.contains(&Step::RemoveFinalizer {
            uid: "o1".into(),
            finalizer: ORPHAN
        }));
        assert!(steps.contains(&Step::RemoveFinalizer {
            uid: "o2".into(),
            finalizer: FOREGROUND
        }));
    }
}
