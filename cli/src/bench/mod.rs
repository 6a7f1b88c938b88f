//! `skiff bench`: performance figures measured against real processes, each beside a peer
//! measured in the same run. Figures, never pass/fail assertions.

mod api;
mod oci;
mod process;
pub mod scheduler;
mod wasm;
mod workloads;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// API write throughput and latency against a fresh `skiff up`, etcd puts as the peer, and idle memory.
    Api {
        /// Print one JSON object instead of a report.
        #[arg(long)]
        json: bool,
        /// ConfigMaps to create.
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// Requests in flight.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Seconds the server idles before its memory is read.
        #[arg(long, default_value_t = 30)]
        idle_seconds: u64,
    },
    /// Container pod start latency on a fresh control plane and node, beside plain `runc run`.
    Oci {
        /// Print one JSON object (`oci_start_p50_ms`, `oci_start_p99_ms`, `runc_run_p50_ms`, ...).
        #[arg(long)]
        json: bool,
        /// Busybox pods created one after another.
        #[arg(long, default_value_t = 100)]
        pods: usize,
    },
    /// Scheduler throughput against a fresh `skiff control`: pending pods bound across fake nodes.
    Scheduler {
        /// Print one JSON object (`binds_per_s`, ...) instead of a report.
        #[arg(long)]
        json: bool,
        /// Fake Nodes to register.
        #[arg(long, default_value_t = 100)]
        nodes: usize,
        /// Pending pods to bind.
        #[arg(long, default_value_t = 5_000)]
        pods: usize,
    },
    /// Wasm pod start latency beside plain wasmtime, density on one node, scheduler binds/s.
    Wasm {
        /// Print one JSON object instead of a report.
        #[arg(long)]
        json: bool,
        /// Where the built sample modules are (hello.wasm, sleeper.wasm).
        #[arg(long, default_value = "samples/wasm/out")]
        samples: std::path::PathBuf,
        /// Pods created one after another for the start latency.
        #[arg(long, default_value_t = 1_000)]
        pods: usize,
        /// Sleeping pods for the density figure.
        #[arg(long, default_value_t = 10_000)]
        density: usize,
        /// Fake nodes the scheduler binds across.
        #[arg(long, default_value_t = 100)]
        nodes: usize,
        /// Pending pods the scheduler binds.
        #[arg(long, default_value_t = 5_000)]
        pending: usize,
    },
    /// A Deployment of Wasm replicas to all Available, then a rolling update of all of them,
    /// beside as many bare pods created directly.
    Workloads {
        /// Print one JSON object (`deploy_1000_ready_s`, `rollout_1000_s`, ...).
        #[arg(long)]
        json: bool,
        /// Where the built sample modules are (sleeper.wasm).
        #[arg(long, default_value = "samples/wasm/out")]
        samples: std::path::PathBuf,
        /// Replicas of the Deployment.
        #[arg(long, default_value_t = 1_000)]
        replicas: usize,
    },
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cmd {
        BenchCommand::Api {
            json,
            count,
            concurrency,
            idle_seconds,
        } => {
            let report = runtime.block_on(api::run(count, concurrency, idle_seconds))?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                report.print();
            }
            Ok(())
        }
        BenchCommand::Oci { json, pods } => {
            let report = runtime.block_on(oci::run(pods))?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                report.print();
            }
            Ok(())
        }
        BenchCommand::Scheduler { json, nodes, pods } => {
            let report = runtime.block_on(scheduler::run(nodes, pods))?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                report.print();
            }
            Ok(())
        }
        BenchCommand::Workloads {
            json,
            samples,
            replicas,
        } => {
            let report = runtime.block_on(workloads::run(&samples, replicas))?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                report.print();
            }
            Ok(())
        }
        BenchCommand::Wasm {
            json,
            samples,
            pods,
            density,
            nodes,
            pending,
        } => {
            let report = runtime.block_on(wasm::run(wasm::WasmBench {
                samples,
                start_pods: pods,
                density_pods: density,
                sched_nodes: nodes,
                sched_pods: pending,
            }))?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                report.print();
            }
            Ok(())
        }
    }
}

/// The p-th percentile (0-100) of sorted latencies, in milliseconds.
fn percentile_ms(sorted: &[std::time::Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}
