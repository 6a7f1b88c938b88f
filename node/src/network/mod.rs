//! Pod networking: every pod gets its own network namespace (no pause container), bind-mounted
//! at `<data>/network/netns/<pod uid>`, with an address from the node's podCIDR given by the
//! standard CNI plugins (bridge, host-local, loopback, portmap) from a conflist Skiff writes.
//! OCI containers join the namespace by path; Wasm modules make their sockets on a thread that
//! entered it ([`netns::run_in`]).
//!
//! [`PodNetwork`] is the node's service: [`PodNetwork::setup`] (in `setup.rs`),
//! [`PodNetwork::teardown`] (in `teardown.rs`) and [`PodNetwork::status`]. Each pod's CNI
//! configuration and ADD result are kept in `<data>/network/pods/<uid>/cni.json`, so an agent
//! that restarts can report a running pod's address and still DEL exactly what was added.
//! [`cni`] runs the plugins, [`conflist`] writes their configuration, [`netns`] owns the
//! namespaces and [`etc_files`] the pod's `/etc/hosts` and `/etc/resolv.conf`.
//!
//! There is no CNI CHECK of a pod here: the Debian portmap (1.1.1) fails CHECK for an IPv4-only
//! pod with port mappings, looking for IPv6 rules it never made (containernetworking/plugins
//! issue 819). [`cni::CniInvoker::check_list`] exists for plugins that get it right.
//!
//! A side effect to know about: the bridge plugin (`isGateway`) sets
//! `net.ipv4.ip_forward = 1` on the host, and DEL leaves it on; routing pod traffic needs it.

pub mod cni;
pub mod conflist;
pub mod etc_files;
mod masquerade;
pub mod netns;
mod setup;
mod teardown;
#[cfg(test)]
mod tests;
mod warm;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{info, warn};

use cni::{CniInvoker, CniResult, NetworkConfigList, RuntimeConf};
pub use conflist::NetworkConfig;

/// The pod's interface name, as every Kubernetes CNI runtime uses.
pub const POD_INTERFACE: &str = "eth0";

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(
        "CNI plugin \"{plugin}\" not found in {}: install the {} package",
        bin_dir.display(),
        cni::PLUGINS_PACKAGE
    )]
    PluginNotFound { plugin: String, bin_dir: PathBuf },
    #[error("adding the masquerade rule for pods of {pod_cidr}: {output}")]
    Masquerade { pod_cidr: String, output: String },
    #[error(
        "CNI plugin \"{plugin}\" {command} failed (code {code}): {msg}{}",
        with_details(.details)
    )]
    Plugin {
        plugin: String,
        command: &'static str,
        code: u32,
        msg: String,
        details: String,
    },
    #[error("CNI plugin \"{plugin}\" {command} failed ({status}): {output}")]
    PluginExit {
        plugin: String,
        command: &'static str,
        status: ExitStatus,
        /// Its stderr, or stdout when stderr was empty.
        output: String,
    },
    #[error("CNI plugin \"{plugin}\" {command} printed an unreadable result: {source}")]
    PluginOutput {
        plugin: String,
        command: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("CNI plugin \"{plugin}\" {command} did not finish within {timeout:?} and was killed")]
    PluginTimeout {
        plugin: String,
        command: &'static str,
        timeout: Duration,
    },
    #[error("running CNI plugin {}: {source}", path.display())]
    PluginSpawn {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("CNI network \"{network}\": plugin {index} has no usable \"type\"")]
    PluginType { network: String, index: usize },
    #[error("invalid podCIDR \"{cidr}\": want address/prefix, e.g. 10.42.0.0/24")]
    InvalidPodCidr { cidr: String },
    #[error("invalid bridge name \"{bridge}\": 1 to 15 bytes, no '/', ':' or spaces")]
    InvalidBridgeName { bridge: String },
    #[error("invalid pod uid \"{uid}\" for a network namespace name")]
    InvalidPodUid { uid: String },
    #[error("CNI network \"{network}\" gave pod {uid} no address on {POD_INTERFACE}")]
    NoPodAddress { uid: String, network: String },
    #[error("{action} network namespace {}: {source}", path.display())]
    Netns {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("network namespace {} already exists", path.display())]
    NetnsExists { path: PathBuf },
    #[error("the thread working on network namespace {} panicked", path.display())]
    NetnsThread { path: PathBuf },
    #[error("connecting to {addr} in network namespace {}: {source}", netns.display())]
    Connect {
        netns: PathBuf,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading pod network state {}: {source}", path.display())]
    State {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn with_details(details: &str) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(": {details}")
    }
}

/// A hostPort of a pod's container, for portmap (`runtimeConfig.portMappings`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    /// Kubernetes spelling (`TCP`, `UDP`, `SCTP`); lower-cased for CNI.
    pub protocol: String,
    /// The host address to bind; `None` for all.
    pub host_ip: Option<IpAddr>,
}

/// The pod a network is set up for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNetworkRequest {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub port_mappings: Vec<PortMapping>,
}

/// A pod's network as runtimes and status need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNetworkStatus {
    /// The bind-mounted namespace: runc's `linux.namespaces[network].path`.
    pub netns: PathBuf,
    /// The addresses on the pod's `eth0` (its `status.podIPs`).
    pub ips: Vec<IpAddr>,
}

/// What `cni.json` holds for one pod: enough to DEL it with the same configuration, and its
/// ADD result once ADD completed (`None` while it runs, so a crash mid-ADD is still undone).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PodState {
    network: NetworkConfigList,
    loopback: NetworkConfigList,
    /// The `eth0` attachment; `lo` uses the same with no capabilities.
    runtime: RuntimeConf,
    result: Option<Value>,
}

impl PodState {
    fn loopback_runtime(&self) -> RuntimeConf {
        RuntimeConf {
            if_name: "lo".into(),
            capability_args: Default::default(),
            ..self.runtime.clone()
        }
    }

    fn status(&self) -> Option<PodNetworkStatus> {
        let result = CniResult::parse(self.result.as_ref()?).ok()?;
        let ips = result.ips_on(&self.runtime.if_name);
        Some(PodNetworkStatus {
            netns: self.runtime.netns.clone()?,
            ips,
        })
        .filter(|s| !s.ips.is_empty())
    }
}

/// The node's pod networking service. Calls for one pod must not overlap (the pod worker
/// serializes them); calls for different pods may.
#[derive(Debug)]
pub struct PodNetwork {
    config: NetworkConfig,
    invoker: CniInvoker,
    network: NetworkConfigList,
    loopback: NetworkConfigList,
    warm: warm::WarmPool,
}

impl PodNetwork {
    /// Checks that the plugins are installed and writes `net.d/10-skiff.conflist` and
    /// `net.d/99-loopback.conflist` (rewriting them if the settings, e.g. the podCIDR, changed).
    pub fn new(config: NetworkConfig) -> Result<Self, NetworkError> {
        let invoker = CniInvoker::new(&config.cni_bin_dir);
        for plugin in conflist::REQUIRED_PLUGINS {
            invoker.plugin_path(plugin)?;
        }
        let network = conflist::pod_network(&config)?;
        let loopback = conflist::loopback();
        let net_d = config.net_d();
        if conflist::write_if_changed(&net_d.join(conflist::NETWORK_CONFLIST), &network)? {
            info!(
                pod_cidr = %config.pod_cidr,
                bridge = %config.bridge,
                "wrote the pod network configuration"
            );
        }
        conflist::write_if_changed(&net_d.join(conflist::LOOPBACK_CONFLIST), &loopback)?;
        masquerade::ensure(&config.pod_cidr, &config.bridge)?;
        for dir in [config.ipam_dir(), netns_dir(&config), pods_dir(&config)] {
            std::fs::create_dir_all(&dir).map_err(|source| NetworkError::Io {
                action: "creating",
                path: dir.clone(),
                source,
            })?;
        }
        Ok(PodNetwork {
            config,
            invoker,
            network,
            loopback,
            warm: warm::WarmPool::default(),
        })
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// The pod network list a pod runs: portmap only for a pod with hostPorts, since for the
    /// others it would do nothing but cost a plugin run on every ADD and DEL. The list used is
    /// saved with the pod, so its DEL runs the same plugins.
    fn network_for(&self, mappings: &[PortMapping]) -> NetworkConfigList {
        let mut list = self.network.clone();
        if mappings.iter().all(|m| m.host_port == 0) {
            list.plugins.retain(|p| p["type"] != "portmap");
        }
        list
    }

    /// Where the pod's namespace is (or would be) mounted.
    pub fn netns_path(&self, uid: &str) -> PathBuf {
        netns_dir(&self.config).join(uid)
    }

    /// The pod's network from the saved ADD result, if it is set up and its namespace is still
    /// mounted (after a reboot it is not, and the pod needs a new one).
    pub fn status(&self, uid: &str) -> Option<PodNetworkStatus> {
        validate_uid(uid).ok()?;
        let uid = &self.resolve(uid);
        let state = match self.read_state(uid) {
            Ok(state) => state?,
            Err(e) => {
                warn!(pod.uid = %uid, error = %e, "unreadable pod network state");
                return None;
            }
        };
        netns::is_netns(&self.netns_path(uid))
            .then(|| state.status())
            .flatten()
    }

    fn state_dir(&self, uid: &str) -> PathBuf {
        pods_dir(&self.config).join(uid)
    }

    fn state_path(&self, uid: &str) -> PathBuf {
        self.state_dir(uid).join("cni.json")
    }

    fn read_state(&self, uid: &str) -> Result<Option<PodState>, NetworkError> {
        let path = self.state_path(uid);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(NetworkError::Io {
                    action: "reading",
                    path,
                    source,
                });
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| NetworkError::State { path, source })
    }

    /// Writes through a temporary file and a rename: a crash leaves the old state or the new.
    fn write_state(&self, uid: &str, state: &PodState) -> Result<(), NetworkError> {
        let dir = self.state_dir(uid);
        let path = self.state_path(uid);
        let tmp = path.with_extension("tmp");
        let io_err = |path: &PathBuf| {
            let path = path.clone();
            move |source| NetworkError::Io {
                action: "writing",
                path,
                source,
            }
        };
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let bytes = serde_json::to_vec_pretty(state).unwrap_or_default();
        std::fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))
    }
}

fn netns_dir(config: &NetworkConfig) -> PathBuf {
    config.data_dir.join("netns")
}

fn pods_dir(config: &NetworkConfig) -> PathBuf {
    config.data_dir.join("pods")
}

/// The uid names files and is the CNI container ID (which allows `[A-Za-z0-9_.-]`); a
/// Kubernetes uid is a UUID.
fn validate_uid(uid: &str) -> Result<(), NetworkError> {
    let ok = !uid.is_empty()
        && uid.len() <= 128
        && !uid.starts_with('.')
        && uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(NetworkError::InvalidPodUid { uid: uid.into() })
    }
}
