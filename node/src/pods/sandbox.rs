//! What a pod has beyond its containers, made before the first container that needs it and
//! torn down with the pod: its network (namespace, address, `/etc/hosts`, `/etc/resolv.conf`)
//! and its cgroup. A pod whose containers never need them (Wasm modules that cannot open a
//! socket) gets neither, which is what lets a small node run thousands of them.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use skiff_api::events::EventType;
use skiff_sandbox::Mount;
use tracing::warn;

use super::Context;
use super::state::PodState;
use crate::network::{PodNetwork, PodNetworkRequest, PortMapping, etc_files};

/// Whether the node can give pods a network yet.
#[derive(Clone)]
pub enum NetworkReadiness {
    /// The node has no podCIDR yet.
    Waiting,
    Ready(Arc<PodNetwork>),
    /// The CNI plugins are missing or the configuration cannot be written.
    Failed(String),
}

/// A pod's network, once made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetworkInfo {
    /// `None` for `hostNetwork: true`.
    pub netns: Option<PathBuf>,
    pub ips: Vec<IpAddr>,
}

fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// The hostname the pod's containers see: `spec.hostname`, else the pod's name (cut to 63
/// characters, as the kubelet cuts it).
pub(super) fn hostname(pod: &Pod) -> String {
    if host_network(pod) {
        return std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
    }
    let name = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .unwrap_or_else(|| pod.name_any());
    let mut cut: String = name.chars().take(63).collect();
    while cut.ends_with(['-', '.']) {
        cut.pop();
    }
    cut
}

fn port_mappings(pod: &Pod) -> Vec<PortMapping> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            Some(PortMapping {
                host_port: u16::try_from(p.host_port.filter(|h| *h > 0)?).ok()?,
                container_port: u16::try_from(p.container_port).ok()?,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                host_ip: p.host_ip.as_deref().and_then(|ip| ip.parse().ok()),
            })
        })
        .collect()
}

/// Makes the pod's network if it has none yet; `Err` is the message its waiting containers
/// show (the kubelet's `FailedCreatePodSandBox`).
pub(super) async fn ensure_network(
    pod: &Pod,
    state: &mut PodState,
    ctx: &Context,
) -> Result<(), String> {
    if state.network.is_some() {
        return Ok(());
    }
    let info = if host_network(pod) {
        PodNetworkInfo {
            netns: None,
            ips: ctx.host_ip.parse().into_iter().collect(),
        }
    } else {
        let network = match ctx.network() {
            NetworkReadiness::Ready(network) => network,
            NetworkReadiness::Waiting => {
                return Err("network is not ready: the node has no podCIDR yet".into());
            }
            NetworkReadiness::Failed(message) => return Err(message),
        };
        let request = PodNetworkRequest {
            uid: state.uid.clone(),
            namespace: pod.namespace().unwrap_or_default(),
            name: pod.name_any(),
            port_mappings: port_mappings(pod),
        };
        match network.setup(&request).await {
            Ok(status) => PodNetworkInfo {
                netns: Some(status.netns),
                ips: status.ips,
            },
            Err(e) => {
                let message = format!("Failed to create pod sandbox: {e}");
                ctx.events.pod(
                    pod,
                    None,
                    EventType::Warning,
                    "FailedCreatePodSandBox",
                    message.clone(),
                );
                return Err(message);
            }
        }
    };
    write_etc_files(pod, state, &info, ctx).map_err(|e| format!("writing /etc files: {e}"))?;
    state.network = Some(info);
    Ok(())
}

fn etc_dir(ctx: &Context, uid: &str) -> PathBuf {
    ctx.pods_dir.join(uid).join("etc")
}

/// The pod's `/etc/hosts` and `/etc/resolv.conf`, as the kubelet and containerd write them.
fn write_etc_files(
    pod: &Pod,
    state: &PodState,
    info: &PodNetworkInfo,
    ctx: &Context,
) -> std::io::Result<()> {
    let dir = etc_dir(ctx, &state.uid);
    std::fs::create_dir_all(&dir)?;
    let spec = pod.spec.clone().unwrap_or_default();
    let namespace = pod.namespace().unwrap_or_default();
    let hosts = if host_network(pod) {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        let domain = spec
            .subdomain
            .as_deref()
            .map(|sub| etc_files::host_domain(sub, &namespace, etc_files::DEFAULT_CLUSTER_DOMAIN));
        let aliases: Vec<(String, Vec<String>)> = spec
            .host_aliases
            .iter()
            .flatten()
            .map(|a| (a.ip.clone(), a.hostnames.clone().unwrap_or_default()))
            .collect();
        etc_files::hosts_file(&info.ips, &hostname(pod), domain.as_deref(), &aliases)
    };
    std::fs::write(dir.join("hosts"), hosts)?;
    std::fs::write(dir.join("resolv.conf"), resolv_conf(pod))?;
    std::fs::write(dir.join("hostname"), format!("{}\n", hostname(pod)))
}

/// The pod's resolv.conf. Skiff serves no cluster DNS yet, so ClusterFirst falls back to the
/// node's own resolvers as the kubelet does without `--cluster-dns`; `dnsConfig` is merged in.
fn resolv_conf(pod: &Pod) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let (mut nameservers, mut searches, mut options) = (Vec::new(), Vec::new(), Vec::new());
    if policy != "None" {
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        for line in host.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => nameservers.extend(words.map(String::from)),
                Some("search") => searches.extend(words.map(String::from)),
                Some("options") => options.extend(words.map(String::from)),
                _ => {}
            }
        }
    }
    if let Some(config) = spec.dns_config.as_ref() {
        nameservers.extend(config.nameservers.iter().flatten().cloned());
        searches.extend(config.searches.iter().flatten().cloned());
        for option in config.options.iter().flatten() {
            let Some(name) = option.name.as_deref() else {
                continue;
            };
            options.retain(|o| o.split(':').next() != Some(name));
            options.push(match &option.value {
                Some(value) => format!("{name}:{value}"),
                None => name.to_string(),
            });
        }
    }
    etc_files::resolv_conf(&nameservers, &searches, &options)
}

/// The pod's `/etc` files as mounts for a container that runs as a process.
pub(super) fn etc_mounts(ctx: &Context, uid: &str) -> Vec<Mount> {
    let dir = etc_dir(ctx, uid);
    ["hosts", "resolv.conf", "hostname"]
        .into_iter()
        .map(|file| Mount {
            host_path: dir.join(file),
            container_path: format!("/etc/{file}"),
            read_only: false,
        })
        .collect()
}

/// Makes the next pods' networks ahead, once this pod's containers have started (not while
/// they start: on a small node the plugins would compete with them for the CPU).
pub(super) fn warm_networks(state: &PodState, ctx: &Context) {
    if state.network.as_ref().is_some_and(|n| n.netns.is_some())
        && let NetworkReadiness::Ready(network) = ctx.network()
    {
        network.refill();
    }
}

/// Makes the pod's cgroup if it has none yet.
pub(super) fn ensure_cgroup(pod: &Pod, state: &mut PodState, ctx: &Context) -> Result<(), String> {
    if state.cgroup.is_some() {
        return Ok(());
    }
    match ctx.cgroups.ensure(pod) {
        Ok(path) => {
            state.cgroup = Some(path);
            Ok(())
        }
        Err(e) => Err(format!("creating the pod cgroup: {e}")),
    }
}

/// Tears down the pod's network and cgroup; what is gone already is fine. Runs whether or not
/// this agent made them: one that restarted knows the pod only by its UID.
pub(super) async fn teardown(uid: &str, ctx: &Context) {
    if let NetworkReadiness::Ready(network) = ctx.network()
        && let Err(e) = network.teardown(uid).await
    {
        warn!(uid, error = %e, "tearing down the pod network failed");
    }
    ctx.cgroups.remove(uid);
}
