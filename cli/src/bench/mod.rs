//! `skiff bench`: performance figures measured against real processes, each beside a peer
//! measured in the same run. Figures, never pass/fail assertions.

mod api;
mod process;

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
