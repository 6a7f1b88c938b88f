//! The node IPAM controller: every Node without a `spec.podCIDR` gets the lowest free /24 of
//! the cluster CIDR (K3s' default `10.42.0.0/16`), as kube-controller-manager's range allocator
//! assigns them; the node agent gives its pods addresses from it. A Node keeps its range for
//! life, so ranges freed by deleted Nodes are found again by looking at the Nodes there are.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tracing::{info, warn};

/// Each node's range: a /24, room for 254 pods (the kubelet's default max is 110).
pub const NODE_MASK: u8 = 24;
pub const DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";

#[derive(Debug, thiserror::Error)]
pub enum NodeIpamError {
    #[error(
        "invalid cluster CIDR {0:?}: want an IPv4 network of /8 to /{NODE_MASK}, e.g. 10.42.0.0/16"
    )]
    InvalidClusterCidr(String),
    #[error("assigning a podCIDR to node {node}: {source}")]
    Patch {
        node: String,
        #[source]
        source: kube::Error,
    },
}

/// An IPv4 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterCidr {
    base: u32,
    prefix: u8,
}

impl std::str::FromStr for ClusterCidr {
    type Err = NodeIpamError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || NodeIpamError::InvalidClusterCidr(s.to_string());
        let (addr, prefix) = s.split_once('/').ok_or_else(invalid)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| invalid())?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
        if !(8..=NODE_MASK).contains(&prefix) {
            return Err(invalid());
        }
        let mask = u32::MAX << (32 - prefix);
        if u32::from(addr) & !mask != 0 {
            return Err(invalid());
        }
        Ok(ClusterCidr {
            base: u32::from(addr),
            prefix,
        })
    }
}

impl ClusterCidr {
    /// The node ranges, lowest first.
    fn node_ranges(self) -> impl Iterator<Item = String> {
        let count = 1u32 << (NODE_MASK - self.prefix);
        (0..count).map(move |i| {
            let base = Ipv4Addr::from(self.base + (i << (32 - NODE_MASK)));
            format!("{base}/{NODE_MASK}")
        })
    }
}

struct Context {
    client: Client,
    cidr: ClusterCidr,
    nodes: Store<Node>,
    /// Ranges handed out but perhaps not yet seen on the watch.
    assigned: Mutex<HashSet<String>>,
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Context>) -> Result<Action, NodeIpamError> {
    if node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_deref())
        .is_some_and(|c| !c.is_empty())
    {
        return Ok(Action::await_change());
    }
    // Ranges are chosen against every Node: the controller reconciles once its first list is in.
    let chosen = {
        let mut assigned = ctx.assigned.lock().unwrap_or_else(|p| p.into_inner());
        for other in ctx.nodes.state() {
            if let Some(cidr) = other.spec.as_ref().and_then(|s| s.pod_cidr.clone()) {
                assigned.insert(cidr);
            }
        }
        let free = ctx.cidr.node_ranges().find(|r| !assigned.contains(r));
        if let Some(range) = &free {
            assigned.insert(range.clone());
        }
        free
    };
    let Some(range) = chosen else {
        warn!(node = %node.name_any(), "no podCIDR is left in the cluster CIDR");
        return Ok(Action::requeue(Duration::from_secs(30)));
    };
    let api: Api<Node> = Api::all(ctx.client.clone());
    let patch = serde_json::json!({"spec": {"podCIDR": range, "podCIDRs": [range]}});
    let release = || {
        ctx.assigned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&range);
    };
    match api
        .patch(
            &node.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => {}
        // A reconcile that ran before the watch showed an earlier assignment: the Node keeps
        // the range it has (the API refuses a change), and this one goes back to the pool.
        Err(kube::Error::Api(status)) if status.code == 422 => {
            release();
            return Ok(Action::await_change());
        }
        Err(source) => {
            release();
            return Err(NodeIpamError::Patch {
                node: node.name_any(),
                source,
            });
        }
    }
    info!(node = %node.name_any(), pod_cidr = %range, "assigned podCIDR");
    Ok(Action::await_change())
}

fn error_policy(node: Arc<Node>, error: &NodeIpamError, _ctx: Arc<Context>) -> Action {
    warn!(node = %node.name_any(), %error, "podCIDR assignment failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

/// Runs the controller until the stream ends.
pub async fn run(client: Client, cidr: ClusterCidr) {
    let controller = Controller::new(Api::<Node>::all(client.clone()), watcher::Config::default());
    let ctx = Arc::new(Context {
        client,
        cidr,
        nodes: controller.store(),
        assigned: Mutex::default(),
    });
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_cidrs_split_into_node_ranges() {
        let cidr: ClusterCidr = "10.42.0.0/16".parse().expect("cidr");
        let ranges: Vec<String> = cidr.node_ranges().take(3).collect();
        assert_eq!(ranges, ["10.42.0.0/24", "10.42.1.0/24", "10.42.2.0/24"]);
        assert_eq!(cidr.node_ranges().count(), 256);
        assert_eq!(
            "10.42.0.0/24"
                .parse::<ClusterCidr>()
                .expect("one node")
                .node_ranges()
                .count(),
            1
        );
        for bad in [
            "10.42.0.0",
            "10.42.0.1/16",
            "10.42.0.0/25",
            "fd00::/48",
            "x/16",
        ] {
            assert!(bad.parse::<ClusterCidr>().is_err(), "{bad} is refused");
        }
    }
}
