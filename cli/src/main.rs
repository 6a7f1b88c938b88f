//! `skiff`: one binary for the control plane, node agents and tools.

use std::net::SocketAddr;
use std::path::PathBuf;

mod bench;

use anyhow::Context;
use clap::{Parser, Subcommand};
use skiff_control::{ControlPlane, ControlPlaneConfig};
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
}

#[derive(Subcommand)]
enum Command {
    /// Control plane and a local node in one process: the way to start.
    Up(ControlArgs),
    /// The control plane alone.
    Control(ControlArgs),
    /// Measure performance against real processes and peers.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Print the version.
    Version,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Version => {
            println!("skiff {} (Kubernetes API v1.33)", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Up(args) | Command::Control(args) => run_control_plane(args),
        Command::Bench(cmd) => bench::run(cmd),
    }
}

fn run_control_plane(args: ControlArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        spawn_signal_handler(shutdown.clone());
        let config = ControlPlaneConfig {
            data_dir: args.data_dir,
            listen: args.listen,
        };
        ControlPlane::run(config, shutdown, |config| {
            println!(
                "Skiff is ready. To use it:\n  export KUBECONFIG={}",
                config.kubeconfig_path().display()
            );
        })
        .await
        .context("control plane")
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
