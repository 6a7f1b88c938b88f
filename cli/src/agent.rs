//! `skiff node` and the local node of `skiff up`: the node agent's flags, and the wiring of the
//! concrete runtimes it runs pods with.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use skiff_api::join::JoinToken;
use skiff_node::NodeConfig;
use skiff_runtime_oci::{RuncConfig, RuncSandbox};
use skiff_runtime_wasm::{WasmtimeConfig, WasmtimeSandbox};
use skiff_sandbox::PodSandbox;
use tokio_util::sync::CancellationToken;

/// Flags every node agent takes, whether joined (`skiff node`) or local (`skiff up`).
#[derive(clap::Args, Clone, Debug)]
pub struct NodeArgs {
    /// The Node's name (default: this machine's hostname).
    #[arg(long)]
    pub node_name: Option<String>,
    /// The address the control plane reaches this node at (default: the address of the
    /// interface that routes outward, else 127.0.0.1).
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// Port of the node's server (logs, exec), the kubelet's 10250.
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// Pods this node accepts at most.
    #[arg(long, default_value_t = 10_000)]
    pub max_pods: u32,
    /// A registry (host or host:port) to pull from over plain HTTP; loopback registries always are.
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// Where the CNI plugins are (Debian's containernetworking-plugins package).
    #[arg(long, default_value = "/usr/lib/cni")]
    pub cni_bin_dir: PathBuf,
    /// The Linux bridge pods attach to.
    #[arg(long, default_value = "skiff0")]
    pub bridge: String,
    /// The cgroup, below each hierarchy's root, that pod cgroups go in.
    #[arg(long, default_value = "skiff")]
    pub cgroup_root: PathBuf,
    /// Processes a pod may have at most; 0 for no limit.
    #[arg(long, default_value_t = 4096)]
    pub pod_max_pids: u64,
    /// The runc binary that runs containers.
    #[arg(long, default_value = "runc")]
    pub runc: PathBuf,
}

/// `skiff node`: a node agent joining a running control plane.
#[derive(clap::Args, Clone, Debug)]
pub struct JoinArgs {
    /// The API server, `https://host:port`.
    #[arg(long)]
    pub server: String,
    /// The join token `skiff up` printed (also in the control plane's DATA_DIR/token).
    #[arg(long, env = "SKIFF_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Where the node keeps its credentials, images, pods and logs.
    #[arg(long, default_value = "/var/lib/skiff-node")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub node: NodeArgs,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The source address of the outward route. Connecting a UDP socket sends nothing.
fn outward_ip() -> IpAddr {
    UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| {
            s.connect((Ipv4Addr::new(192, 0, 2, 1), 9))?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// The runtimes this build of Skiff runs pods with. Without runc the node still runs Wasm
/// pods; container pods then wait with the reason.
fn runtimes(data_dir: &Path, args: &NodeArgs) -> anyhow::Result<Vec<Arc<dyn PodSandbox>>> {
    let wasm = WasmtimeSandbox::new(WasmtimeConfig {
        cache_dir: data_dir.join("wasm-cache"),
        max_instances: args.max_pods,
    })
    .context("starting the wasmtime runtime")?;
    let mut runtimes: Vec<Arc<dyn PodSandbox>> = vec![Arc::new(wasm)];
    let shim = std::env::current_exe().context("finding the skiff binary for the shim")?;
    match RuncSandbox::new(RuncConfig {
        root: data_dir.join("oci"),
        runc: args.runc.clone(),
        shim: vec![shim.into_os_string(), "shim".into()],
    }) {
        Ok(runc) => runtimes.push(Arc::new(runc)),
        Err(e) => tracing::warn!(error = %e, "container pods cannot run on this node"),
    }
    Ok(runtimes)
}

/// Every running container holds its log file open, so a node of thousands of pods needs more
/// descriptors than the usual soft limit: raise it to the hard limit, as container runtimes do.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::warn!("could not raise the open-files limit");
            }
        }
    }
}

/// Runs a node agent until `shutdown`.
pub async fn run(
    server: String,
    token: &str,
    data_dir: PathBuf,
    args: NodeArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let token = JoinToken::parse(token)?;
    raise_open_files_limit();
    let node_ip = args.node_ip.unwrap_or_else(outward_ip);
    let runtimes = runtimes(&data_dir, &args)?;
    let config = NodeConfig {
        server,
        token,
        node_name: args.node_name.unwrap_or_else(hostname),
        node_ip,
        listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), args.kubelet_port),
        max_pods: args.max_pods,
        runtimes,
        insecure_registries: args.insecure_registries,
        cni_bin_dir: args.cni_bin_dir,
        bridge: args.bridge,
        cgroup_root: args.cgroup_root,
        pod_max_pids: (args.pod_max_pids > 0).then_some(args.pod_max_pids),
        data_dir,
    };
    skiff_node::run(config, shutdown)
        .await
        .context("node agent")
}
