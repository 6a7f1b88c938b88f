//! The node's own API objects: its Node (registered at start, status kept current) and its Lease
//! in `kube-node-lease`, renewed every [`LEASE_RENEW`] — the heartbeat the control plane's node
//! lifecycle controller watches.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeRuntimeHandler,
    NodeRuntimeHandlerFeatures, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// How often the Lease is renewed, as the kubelet does.
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
/// `leaseDurationSeconds`: the control plane's grace period before it calls the node unreachable.
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// How often the Node's conditions are re-posted when nothing changed.
const STATUS_REPORT: Duration = Duration::from_secs(60);
const LEASE_NAMESPACE: &str = "kube-node-lease";

/// Everything the Node object says about this machine.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub name: String,
    pub address: IpAddr,
    pub kubelet_port: u16,
    pub max_pods: u32,
    /// `(handler, version)` of every runtime this node runs.
    pub runtimes: Vec<(String, String)>,
}

/// The machine's cpu and memory, read once.
#[derive(Debug, Clone, Copy)]
pub struct Capacity {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

impl Capacity {
    pub fn of_this_machine() -> Capacity {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        let memory_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .unwrap_or(0);
        Capacity {
            cpu_millis: cpus * 1000,
            memory_bytes: memory_kib * 1024,
        }
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn os_image() -> String {
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".to_string())
}

/// Kubernetes' spelling of the architecture (`GOARCH`).
pub fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "s390x" => "s390x",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn labels(identity: &NodeIdentity) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), identity.name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), architecture().to_string()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        (
            "beta.kubernetes.io/arch".to_string(),
            architecture().to_string(),
        ),
    ])
}

fn condition(kind: &str, status: &str, reason: &str, message: &str) -> NodeCondition {
    let now = Time(Timestamp::now());
    NodeCondition {
        type_: kind.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

/// The Node's status as this agent reports it.
pub fn node_status(identity: &NodeIdentity, capacity: Capacity) -> NodeStatus {
    let resources = BTreeMap::from([
        (
            "cpu".to_string(),
            Quantity(format!("{}m", capacity.cpu_millis)),
        ),
        (
            "memory".to_string(),
            Quantity(format!("{}Ki", capacity.memory_bytes / 1024)),
        ),
        ("pods".to_string(), Quantity(identity.max_pods.to_string())),
    ]);
    let runtime_versions: Vec<&str> = identity.runtimes.iter().map(|(_, v)| v.as_str()).collect();
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".to_string(),
                address: identity.address.to_string(),
            },
            NodeAddress {
                type_: "Hostname".to_string(),
                address: identity.name.clone(),
            },
        ]),
        conditions: Some(vec![
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            condition(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            ),
            condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            condition(
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status",
            ),
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(identity.kubelet_port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: architecture().to_string(),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
            container_runtime_version: runtime_versions.join(", "),
            kernel_version: read_trimmed("/proc/sys/kernel/osrelease"),
            kube_proxy_version: String::new(),
            kubelet_version: format!("v1.33.0-skiff-{}", env!("CARGO_PKG_VERSION")),
            machine_id: read_trimmed("/etc/machine-id"),
            operating_system: "linux".to_string(),
            os_image: os_image(),
            system_uuid: read_trimmed("/sys/class/dmi/id/product_uuid"),
            swap: None,
        }),
        runtime_handlers: Some(
            identity
                .runtimes
                .iter()
                .map(|(handler, _)| NodeRuntimeHandler {
                    name: Some(handler.clone()),
                    features: Some(NodeRuntimeHandlerFeatures {
                        recursive_read_only_mounts: Some(false),
                        user_namespaces: Some(false),
                    }),
                })
                .collect(),
        ),
        ..NodeStatus::default()
    }
}

/// Creates the Node if it does not exist (keeping a user's labels and taints if it does) and
/// posts its status.
pub async fn register(
    client: &kube::Client,
    identity: &NodeIdentity,
    capacity: Capacity,
) -> Result<Node, kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(identity.name.clone()),
            labels: Some(labels(identity)),
            ..ObjectMeta::default()
        },
        ..Node::default()
    };
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => info!(node = %identity.name, "registered the node"),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let patch = json!({"metadata": {"labels": labels(identity)}});
            nodes
                .patch(
                    &identity.name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
            debug!(node = %identity.name, "node already registered");
        }
        Err(e) => return Err(e),
    }
    post_status(&nodes, identity, capacity).await
}

async fn post_status(
    nodes: &Api<Node>,
    identity: &NodeIdentity,
    capacity: Capacity,
) -> Result<Node, kube::Error> {
    let patch = json!({"status": node_status(identity, capacity)});
    nodes
        .patch_status(
            &identity.name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
}

/// Renews the Lease every [`LEASE_RENEW`] and re-posts the Node's status whenever it no longer
/// says Ready (the control plane marks it Unknown after a missed grace period) or has not been
/// posted for a while. Failures are retried at the next tick: the node keeps running its pods
/// while the control plane is away.
pub async fn heartbeat(
    client: kube::Client,
    identity: NodeIdentity,
    capacity: Capacity,
    node_uid: String,
    shutdown: CancellationToken,
) {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
    let mut last_status = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(LEASE_RENEW);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if let Err(e) = renew_lease(&leases, &identity.name, &node_uid).await {
            warn!(node = %identity.name, error = %e, "renewing the node lease failed");
            continue;
        }
        let stale = last_status.elapsed() >= STATUS_REPORT;
        let ready = match nodes.get_status(&identity.name).await {
            Ok(node) => is_ready(&node),
            Err(e) => {
                warn!(node = %identity.name, error = %e, "reading the node failed");
                continue;
            }
        };
        if stale || !ready {
            match post_status(&nodes, &identity, capacity).await {
                Ok(_) => last_status = tokio::time::Instant::now(),
                Err(e) => warn!(node = %identity.name, error = %e, "posting node status failed"),
            }
        }
    }
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

async fn renew_lease(leases: &Api<Lease>, node: &str, node_uid: &str) -> Result<(), kube::Error> {
    let now = MicroTime(Timestamp::now());
    let patch = json!({"spec": {"renewTime": now, "holderIdentity": node}});
    match leases
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 404 => {
            // The Lease is owned by the Node, so deleting the Node deletes its Lease.
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(node.to_string()),
                    namespace: Some(LEASE_NAMESPACE.to_string()),
                    owner_references: Some(vec![OwnerReference {
                        api_version: "v1".to_string(),
                        kind: "Node".to_string(),
                        name: node.to_string(),
                        uid: node_uid.to_string(),
                        ..OwnerReference::default()
                    }]),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(node.to_string()),
                    lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                    renew_time: Some(now),
                    ..LeaseSpec::default()
                }),
            };
            leases
                .create(&PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
        other => other.map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reports_resources_runtimes_and_readiness() {
        let identity = NodeIdentity {
            name: "edge-1".into(),
            address: "127.0.0.1".parse().unwrap(),
            kubelet_port: 10250,
            max_pods: 110,
            runtimes: vec![("wasmtime".into(), "wasmtime://48.0.8".into())],
        };
        let status = node_status(
            &identity,
            Capacity {
                cpu_millis: 2000,
                memory_bytes: 4 << 30,
            },
        );
        let alloc = status.allocatable.unwrap();
        assert_eq!(alloc["cpu"].0, "2000m");
        assert_eq!(alloc["memory"].0, "4194304Ki");
        assert_eq!(alloc["pods"].0, "110");
        let info = status.node_info.unwrap();
        assert_eq!(info.container_runtime_version, "wasmtime://48.0.8");
        assert_eq!(info.operating_system, "linux");
        let handlers = status.runtime_handlers.unwrap();
        assert_eq!(handlers[0].name.as_deref(), Some("wasmtime"));
        let ready = status
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("True", Some("KubeletReady"))
        );
        assert_eq!(
            status
                .daemon_endpoints
                .unwrap()
                .kubelet_endpoint
                .unwrap()
                .port,
            10250
        );
    }
}
