//! The scheduler's view of the cluster: each Node's scheduling-relevant fields ([`NodeInfo`],
//! precomputed once per Node change) and what the pods placed on it use ([`Usage`]).
//!
//! Placements are assumed the moment a bind is sent and confirmed when the pod's watch event
//! shows its `spec.nodeName`, as kube-scheduler's cache does, so binds in flight already count
//! against their node. Usage is kept apart from the Node so that pods bound to a Node the
//! scheduler has not seen yet still count once it appears.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Node, Taint};

use super::filters::{PodRequests, Resources};

/// A Node as the filters and scores read it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Only `NoSchedule` and `NoExecute` taints: `PreferNoSchedule` never filters.
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub runtime_handlers: Vec<String>,
    pub allocatable: Resources,
    pub allocatable_pods: i64,
}

fn allocatable(node: &Node, key: &str, milli: bool) -> i64 {
    let q = node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()))
        .and_then(|a| a.get(key))
        .and_then(|q| q.0.parse::<skiff_api::quantity::Quantity>().ok());
    q.map(|q| if milli { q.as_millis() } else { q.as_bytes() })
        .map(|v| i64::try_from(v).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl NodeInfo {
    pub fn from_node(node: &Node) -> NodeInfo {
        let spec = node.spec.as_ref();
        NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints: spec
                .and_then(|s| s.taints.as_ref())
                .into_iter()
                .flatten()
                .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
                .map(|t| Taint {
                    time_added: None,
                    ..t.clone()
                })
                .collect(),
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            runtime_handlers: node
                .status
                .as_ref()
                .and_then(|s| s.runtime_handlers.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|h| h.name.clone())
                .collect(),
            allocatable: Resources {
                milli_cpu: allocatable(node, "cpu", true),
                memory: allocatable(node, "memory", false),
            },
            allocatable_pods: allocatable(node, "pods", false),
        }
    }
}

/// What the pods placed on one node use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub requested: Resources,
    pub nonzero_requested: Resources,
    pub pods: i64,
    /// Pods per controller owner uid, for spreading a ReplicaSet's pods.
    pub owners: HashMap<String, u32>,
}

impl Usage {
    fn is_empty(&self) -> bool {
        self.pods == 0
    }
}

/// One pod counted against a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub node: String,
    pub requests: PodRequests,
    pub owner: Option<String>,
    /// Bound by this scheduler, not yet seen bound on the watch.
    pub assumed: bool,
}

#[derive(Debug, Default)]
pub struct NodeEntry {
    /// `None` while pods name a node the scheduler has not seen (or that was deleted).
    pub info: Option<NodeInfo>,
    pub usage: Usage,
}

/// Pods are keyed `namespace/name`.
#[derive(Debug, Default)]
pub struct Cache {
    pub nodes: BTreeMap<String, NodeEntry>,
    placements: HashMap<String, Placement>,
}

impl Cache {
    /// Adds or updates a Node; true when something a filter or score reads changed, which is
    /// when unschedulable pods deserve another attempt (status heartbeats change nothing).
    pub fn set_node(&mut self, node: &Node) -> bool {
        let info = NodeInfo::from_node(node);
        let entry = self.nodes.entry(info.name.clone()).or_default();
        if entry.info.as_ref() == Some(&info) {
            return false;
        }
        entry.info = Some(info);
        true
    }

    pub fn remove_node(&mut self, name: &str) {
        if let Some(entry) = self.nodes.get_mut(name) {
            entry.info = None;
            if entry.usage.is_empty() {
                self.nodes.remove(name);
            }
        }
    }

    pub fn node_names(&self) -> impl Iterator<Item = &String> {
        self.nodes
            .iter()
            .filter(|(_, e)| e.info.is_some())
            .map(|(n, _)| n)
    }

    pub fn placement(&self, key: &str) -> Option<&Placement> {
        self.placements.get(key)
    }

    /// Counts `key` against `placement.node`, replacing any earlier placement of the same pod.
    pub fn place(&mut self, key: &str, placement: Placement) {
        self.forget(key);
        let usage = &mut self.nodes.entry(placement.node.clone()).or_default().usage;
        usage.requested.add(placement.requests.exact);
        usage.nonzero_requested.add(placement.requests.nonzero);
        usage.pods += 1;
        if let Some(owner) = &placement.owner {
            *usage.owners.entry(owner.clone()).or_default() += 1;
        }
        self.placements.insert(key.to_string(), placement);
    }

    /// The pod was seen bound to `node`: an assumption becomes fact.
    pub fn confirm(&mut self, key: &str, node: &str) -> bool {
        match self.placements.get_mut(key) {
            Some(p) if p.node == node => {
                p.assumed = false;
                true
            }
            _ => false,
        }
    }

    /// Stops counting `key`; true when it was counted somewhere.
    pub fn forget(&mut self, key: &str) -> bool {
        let Some(p) = self.placements.remove(key) else {
            return false;
        };
        if let Some(entry) = self.nodes.get_mut(&p.node) {
            let usage = &mut entry.usage;
            usage.requested.sub(p.requests.exact);
            usage.nonzero_requested.sub(p.requests.nonzero);
            usage.pods -= 1;
            if let Some(owner) = &p.owner
                && let Some(n) = usage.owners.get_mut(owner)
            {
                *n -= 1;
                if *n == 0 {
                    usage.owners.remove(owner);
                }
            }
            if entry.info.is_none() && usage.is_empty() {
                self.nodes.remove(&p.node);
            }
        }
        true
    }

    /// Confirmed placements not in `seen` (a relist dropped them): forgotten. Assumed ones
    /// stay, their bind's answer decides.
    pub fn retain_confirmed(&mut self, seen: &std::collections::HashSet<String>) {
        let gone: Vec<String> = self
            .placements
            .iter()
            .filter(|(k, p)| !p.assumed && !seen.contains(*k))
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            self.forget(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn node(name: &str) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some(name.into());
        n.status = Some(NodeStatus {
            allocatable: Some(BTreeMap::from([
                ("cpu".into(), Quantity("2".into())),
                ("memory".into(), Quantity("4Gi".into())),
                ("pods".into(), Quantity("110".into())),
            ])),
            ..Default::default()
        });
        n
    }

    fn placement(node: &str, cpu: i64) -> Placement {
        let r = Resources {
            milli_cpu: cpu,
            memory: 0,
        };
        Placement {
            node: node.into(),
            requests: PodRequests {
                exact: r,
                nonzero: r,
            },
            owner: Some("rs-1".into()),
            assumed: true,
        }
    }

    #[test]
    fn allocatable_is_read_in_millicores_bytes_and_pods() {
        let info = NodeInfo::from_node(&node("a"));
        assert_eq!(info.allocatable.milli_cpu, 2000);
        assert_eq!(info.allocatable.memory, 4 << 30);
        assert_eq!(info.allocatable_pods, 110);
    }

    #[test]
    fn heartbeat_only_changes_are_not_scheduling_changes() {
        let mut cache = Cache::default();
        let mut n = node("a");
        assert!(cache.set_node(&n));
        n.metadata.resource_version = Some("7".into());
        assert!(!cache.set_node(&n), "nothing a filter reads changed");
        n.spec = Some(NodeSpec {
            unschedulable: Some(true),
            ..Default::default()
        });
        assert!(cache.set_node(&n), "cordoning is a change");
    }

    #[test]
    fn assumed_placements_count_until_forgotten_and_move_with_rebinds() {
        let mut cache = Cache::default();
        cache.set_node(&node("a"));
        cache.place("ns/p", placement("a", 500));
        assert_eq!(cache.nodes["a"].usage.requested.milli_cpu, 500);
        assert_eq!(cache.nodes["a"].usage.owners["rs-1"], 1);
        assert!(cache.confirm("ns/p", "a"));
        assert!(
            !cache.confirm("ns/p", "b"),
            "bound elsewhere is not a confirmation"
        );
        // The pod turned up on a node the scheduler has not seen yet: counted there instead.
        cache.place("ns/p", placement("b", 500));
        assert_eq!(cache.nodes["a"].usage, Usage::default());
        assert_eq!(cache.nodes["b"].usage.pods, 1);
        assert_eq!(cache.node_names().collect::<Vec<_>>(), ["a"]);
        assert!(cache.forget("ns/p"));
        assert!(
            !cache.nodes.contains_key("b"),
            "an unseen node without pods is dropped"
        );
        assert!(!cache.forget("ns/p"));
    }

    #[test]
    fn relist_drops_confirmed_placements_it_did_not_see() {
        let mut cache = Cache::default();
        cache.place("ns/gone", placement("a", 100));
        cache.confirm("ns/gone", "a");
        cache.place("ns/in-flight", placement("a", 100));
        cache.retain_confirmed(&Default::default());
        assert!(cache.placement("ns/gone").is_none());
        assert!(cache.placement("ns/in-flight").is_some());
    }
}
