//! The Skiff node agent: joins the cluster ([`credentials`]), registers its Node and renews its
//! Lease ([`node_status`]), runs the pods bound to it through the [`skiff_sandbox::PodSandbox`]
//! runtimes it is given ([`pods`]), and serves their logs ([`logs`]).
//!
//! The agent is an API client (the `kube` crate) and nothing else: it never touches the store,
//! and keeps running its pods while the control plane is away.

pub mod command;
pub mod credentials;
pub mod env;
pub mod images;
pub mod logs;
pub mod network;
pub mod node_status;
pub mod objects;
pub mod pods;
pub mod streaming;
pub mod volumes;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use skiff_api::join::JoinToken;
use skiff_sandbox::PodSandbox;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::node_status::{Capacity, NodeIdentity};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Credentials(#[from] credentials::CredentialsError),
    #[error(transparent)]
    Images(#[from] images::ImageError),
    #[error("binding the node server to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Server(#[from] logs::NodeServerError),
}

/// How a node agent runs; `cli` fills it and passes the concrete runtimes.
pub struct NodeConfig {
    /// The API server, `https://host:port`.
    pub server: String,
    pub token: JoinToken,
    pub data_dir: PathBuf,
    pub node_name: String,
    /// The address the control plane reaches this node's server at (`InternalIP`).
    pub node_ip: IpAddr,
    /// Where the node's server (logs, exec) listens.
    pub listen: SocketAddr,
    pub max_pods: u32,
    pub insecure_registries: Vec<String>,
    pub runtimes: Vec<Arc<dyn PodSandbox>>,
    /// Where the CNI plugins are (`/usr/lib/cni`).
    pub cni_bin_dir: PathBuf,
    /// The bridge pods attach to (`skiff0`).
    pub bridge: String,
    /// The node's cgroup, below which pod cgroups go (`skiff`).
    pub cgroup_root: PathBuf,
    /// Processes a pod may have at most (the kubelet's `--pod-max-pids`).
    pub pod_max_pids: Option<u64>,
}

/// Runs the node agent until `shutdown`.
pub async fn run(config: NodeConfig, shutdown: CancellationToken) -> Result<(), NodeError> {
    let mut addresses = vec![config.node_ip];
    let loopback = IpAddr::from([127, 0, 0, 1]);
    if !addresses.contains(&loopback) {
        addresses.push(loopback);
    }
    let creds = credentials::load_or_join(
        &config.data_dir.join("pki"),
        &config.server,
        &config.token,
        &config.node_name,
        &addresses,
    )
    .await?;
    let client = credentials::client(&config.server, &creds, &config.node_name).await?;
    let capacity = Capacity::of_this_machine();
    let identity = NodeIdentity {
        name: config.node_name.clone(),
        address: config.node_ip,
        kubelet_port: config.listen.port(),
        max_pods: config.max_pods,
        runtimes: config
            .runtimes
            .iter()
            .map(|r| (r.handler().to_string(), r.version()))
            .collect(),
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| NodeError::Bind {
            addr: config.listen,
            source,
        })?;

    // The control plane may not be up yet (or be restarting): keep trying to register.
    let node = loop {
        match node_status::register(&client, &identity, capacity).await {
            Ok(node) => break node,
            Err(e) => {
                warn!(node = %identity.name, error = %e, "registering the node failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    };
    let node_uid = node.metadata.uid.clone().unwrap_or_default();
    tokio::spawn(node_status::heartbeat(
        client.clone(),
        identity.clone(),
        capacity,
        node_uid,
        shutdown.clone(),
    ));

    tokio::spawn(volumes::local_path::run(
        client.clone(),
        config.node_name.clone(),
        config.data_dir.join("storage"),
        shutdown.clone(),
    ));

    let images = images::ImageService::new(
        config.data_dir.join("images"),
        config.insecure_registries.clone(),
    )?;
    let (ctx, exits) = pods::context(
        client.clone(),
        config.node_name.clone(),
        config.node_ip.to_string(),
        (capacity.cpu_millis, capacity.memory_bytes),
        &config.data_dir,
        config.runtimes,
        images,
        pods::cgroup::PodCgroups::detect(config.cgroup_root.clone(), config.pod_max_pids),
    );
    let mut network = network::NetworkConfig::new(config.data_dir.join("network"), "");
    network.cni_bin_dir = config.cni_bin_dir.clone();
    network.bridge = config.bridge.clone();
    let network_ready = network_when_ready(
        client,
        config.node_name.clone(),
        network,
        ctx.clone(),
        shutdown.clone(),
    );
    // A node that has its podCIDR (an agent restarting) sets up before any pod is looked at,
    // so the pods it adopts keep their addresses; a new one waits for it in the background.
    if node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_ref())
        .is_some()
    {
        network_ready.await;
    } else {
        tokio::spawn(network_ready);
    }
    let tls = logs::NodeTls {
        cert_pem: creds.serving_cert_pem.clone(),
        key_pem: creds.serving_key_pem.clone(),
        ca_pem: creds.ca_pem.clone(),
    };
    let server = tokio::spawn(logs::serve(
        listener,
        tls,
        Arc::new(pods::Locator(ctx.clone())),
        shutdown.clone(),
    ));
    info!(node = %config.node_name, listen = %config.listen, "node agent running");
    pods::run(ctx, exits, shutdown).await;
    match server.await {
        Ok(result) => result?,
        Err(e) => warn!(error = %e, "node server task failed"),
    }
    Ok(())
}

/// Waits for the control plane to give this Node its podCIDR, then sets up the pod network
/// configuration; pods that need a network wait until then.
async fn network_when_ready(
    client: kube::Client,
    node_name: String,
    mut config: network::NetworkConfig,
    ctx: Arc<pods::Context>,
    shutdown: CancellationToken,
) {
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
    let mut waited = 0u32;
    let pod_cidr = loop {
        let cidr = nodes
            .get_opt(&node_name)
            .await
            .ok()
            .flatten()
            .and_then(|n| n.spec?.pod_cidr)
            .filter(|c| !c.is_empty());
        if let Some(cidr) = cidr {
            break cidr;
        }
        waited += 1;
        if waited.is_multiple_of(20) {
            warn!(node = %node_name, "still waiting for the node's podCIDR");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    };
    config.pod_cidr = pod_cidr;
    let readiness =
        match tokio::task::spawn_blocking(move || network::PodNetwork::new(config)).await {
            Ok(Ok(network)) => {
                info!(pod_cidr = %network.config().pod_cidr, "pod network ready");
                let network = Arc::new(network);
                network.keep_warm();
                pods::sandbox::NetworkReadiness::Ready(network)
            }
            Ok(Err(e)) => {
                warn!(error = %e, "pods cannot get a network");
                pods::sandbox::NetworkReadiness::Failed(e.to_string())
            }
            Err(e) => pods::sandbox::NetworkReadiness::Failed(e.to_string()),
        };
    ctx.set_network(readiness);
}
