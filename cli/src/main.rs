//! `skiff`: one binary for the control plane, node agents and tools.

use std::net::SocketAddr;
use std::path::PathBuf;

mod agent;
mod bench;
mod push;

use anyhow::Context;
use clap::{Parser, Subcommand};
use skiff_control::{ControlPlane, ControlPlaneConfig};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "skiff",
    version,
    about = "A Kubernetes-compatible orchestrator for containers and WebAssembly"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct ControlArgs {
    /// Where the store, PKI and admin kubeconfig live.
    #[arg(long, default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// Address the API server listens on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// The range pod addresses come from; each node gets a /24 of it.
    #[arg(long, default_value = skiff_control::controllers::node_ipam::DEFAULT_CLUSTER_CIDR)]
    cluster_cidr: skiff_control::controllers::node_ipam::ClusterCidr,
}

#[derive(clap::Args, Clone)]
struct UpArgs {
    #[command(flatten)]
    control: ControlArgs,
    #[command(flatten)]
    node: agent::NodeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Control plane and a local node in one process: the way to start.
    Up(UpArgs),
    /// The control plane alone.
    Control(ControlArgs),
    /// A node agent joining a running control plane.
    Node(agent::JoinArgs),
    /// Publish a WebAssembly module to an OCI registry as a Wasm artifact.
    Push(push::PushArgs),
    /// Measure performance against real processes and peers.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Print the version.
    Version,
    /// Supervise one container (started by the node agent, not by hand).
    #[command(hide = true)]
    Shim {
        /// The container's directory; without it, a spare shim reads it from stdin.
        dir: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Every TLS client and server in Skiff uses ring; with more than one provider compiled in,
    // rustls needs the choice made once for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG")
                // A joining node fetches the CA once without verifying it (the token pins its hash),
                // which kube's client reports as a warning on every start.
                .unwrap_or_else(|_| "info,kube_client::client::tls=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Version => {
            println!("skiff {} (Kubernetes API v1.33)", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Up(args) => run_control_plane(args.control, Some(args.node)),
        Command::Control(args) => run_control_plane(args, None),
        Command::Node(args) => block_on(async move {
            let shutdown = CancellationToken::new();
            spawn_signal_handler(shutdown.clone());
            agent::run(args.server, &args.token, args.data_dir, args.node, shutdown).await
        }),
        Command::Push(args) => push::run(args),
        Command::Shim { dir: Some(dir) } => skiff_runtime_oci::shim::run(&dir)
            .with_context(|| format!("shim for {}", dir.display())),
        Command::Shim { dir: None } => skiff_runtime_oci::shim::run_spare().context("spare shim"),
        Command::Bench(cmd) => bench::run(cmd),
    }
}

fn block_on<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(work)
}

/// The control plane, and with `node` a local node agent joined to it over loopback with the
/// cluster's own join token: the same path as any other node.
fn run_control_plane(args: ControlArgs, node: Option<agent::NodeArgs>) -> anyhow::Result<()> {
    block_on(async {
        let shutdown = CancellationToken::new();
        spawn_signal_handler(shutdown.clone());
        let config = ControlPlaneConfig {
            cluster_cidr: args.cluster_cidr,
            data_dir: args.data_dir,
            listen: args.listen,
        };
        let agent_shutdown = shutdown.clone();
        let mut agent = None;
        ControlPlane::run(config, shutdown, |config, token| {
            println!(
                "Skiff is ready. To use it:\n  export KUBECONFIG={}",
                config.kubeconfig_path().display()
            );
            println!(
                "To join another node:\n  skiff node --server {} --token {token} --data-dir /var/lib/skiff-node",
                config.server_url()
            );
            if let Some(node) = node {
                let server = config.server_url();
                let token = token.to_string();
                let data_dir = config.data_dir.join("node");
                agent = Some(tokio::spawn(async move {
                    if let Err(e) = agent::run(server, &token, data_dir, node, agent_shutdown).await {
                        tracing::error!(error = format!("{e:#}"), "the local node agent stopped");
                    }
                }));
            }
        })
        .await
        .context("control plane")?;
        if let Some(agent) = agent {
            let _ = agent.await;
        }
        Ok(())
    })
}

/// First SIGINT/SIGTERM: graceful shutdown. Second: exit at once.
fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        for attempt in 0.. {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            if attempt == 0 {
                tracing::info!("shutting down (signal again to force)");
                shutdown.cancel();
            } else {
                std::process::exit(130);
            }
        }
    });
}
