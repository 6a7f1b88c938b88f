//! `skiff bench api`: ConfigMap creates against a fresh `skiff up` (throughput, p50/p99 latency),
//! the same payloads put into a real etcd as the peer, and the idle server's resident memory.

use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use futures::StreamExt;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::Serialize;

use super::percentile_ms;
use super::process::{Server, start_etcd, start_skiff_as};

#[derive(Serialize)]
pub struct ApiReport {
    pub count: usize,
    pub concurrency: usize,
    pub creates_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub etcd_puts_per_s: f64,
    pub etcd_p99_ms: f64,
    /// Resident memory of the fresh server after idling `idle_seconds`.
    pub idle_rss_mib: f64,
    /// Resident memory after the creates (holding `count` ConfigMaps).
    pub loaded_rss_mib: f64,
}

impl ApiReport {
    pub fn print(&self) {
        println!(
            "skiff bench api: {} ConfigMaps at concurrency {}",
            self.count, self.concurrency
        );
        println!(
            "  skiff creates/s     {:>10.0}   (target >= 5000)",
            self.creates_per_s
        );
        println!(
            "  skiff p50 / p99 ms  {:>6.2} / {:<6.2} (target p99 <= 20)",
            self.p50_ms, self.p99_ms
        );
        println!(
            "  etcd puts/s         {:>10.0}   (peer, same payloads)",
            self.etcd_puts_per_s
        );
        println!("  etcd p99 ms         {:>10.2}", self.etcd_p99_ms);
        println!(
            "  idle RSS MiB        {:>10.1}   (target <= 40)",
            self.idle_rss_mib
        );
        println!(
            "  loaded RSS MiB      {:>10.1}   (holding {} ConfigMaps)",
            self.loaded_rss_mib, self.count
        );
    }
}

/// The ConfigMap payload both stores get, as the JSON bytes sent on the wire.
fn config_map(i: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": format!("bench-{i:06}"), "namespace": "default", "labels": {"app": "bench"}},
        "data": {"config.yaml": "x".repeat(512), "index": i.to_string()},
    }))
    .unwrap_or_default()
}

pub(super) async fn client_for(server: &Server) -> anyhow::Result<kube::Client> {
    let kubeconfig = Kubeconfig::read_from(server.dir.join("kubeconfig"))?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

pub(super) async fn wait_ready(client: &kube::Client) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let req = http::Request::get("/readyz").body(Vec::new())?;
        if client.request_text(req).await.is_ok() {
            return Ok(());
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(60),
            "skiff did not become ready within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `count` timed operations with `concurrency` in flight; returns (ops/s, sorted latencies).
async fn timed<F, Fut>(
    count: usize,
    concurrency: usize,
    op: F,
) -> anyhow::Result<(f64, Vec<Duration>)>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let start = Instant::now();
    let results: Vec<anyhow::Result<Duration>> = futures::stream::iter(0..count)
        .map(|i| {
            let fut = op(i);
            async move {
                let t = Instant::now();
                fut.await?;
                Ok(t.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = start.elapsed().as_secs_f64();
    let mut latencies = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    latencies.sort();
    Ok((count as f64 / elapsed, latencies))
}

pub async fn run(count: usize, concurrency: usize, idle_seconds: u64) -> anyhow::Result<ApiReport> {
    // The control plane alone: this measures the API server and store (and their idle memory);
    // `bench wasm` measures the node agent.
    let skiff = start_skiff_as("control", &[])?;
    let client = client_for(&skiff).await?;
    wait_ready(&client).await?;
    tokio::time::sleep(Duration::from_secs(idle_seconds)).await;
    let idle_rss_mib = skiff.rss_mib()?;
    // Raw requests through the kube client's connection pool and TLS: the client does no more
    // per create than the etcd peer's (serialize once, read the answer), so the figure is the server's.
    let (creates_per_s, latencies) = timed(count, concurrency, |i| {
        let client = client.clone();
        async move {
            let req = http::Request::post("/api/v1/namespaces/default/configmaps")
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(config_map(i))?;
            client.request_text(req).await.context("create")?;
            Ok(())
        }
    })
    .await?;

    let etcd = start_etcd()?;
    let http = reqwest::Client::new();
    let put_url = format!("http://127.0.0.1:{}/v3/kv/put", etcd.port);
    let start = Instant::now();
    while http.post(&put_url).body("{}").send().await.is_err() {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(30),
            "etcd did not start within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let (etcd_puts_per_s, etcd_latencies) = timed(count, concurrency, |i| {
        let http = http.clone();
        let url = put_url.clone();
        let key = format!("/registry/core/configmaps/default/bench-{i:06}");
        let value = config_map(i);
        let body = serde_json::json!({"key": b64(key.as_bytes()), "value": b64(&value)});
        async move {
            http.post(url)
                .json(&body)
                .send()
                .await?
                .error_for_status()?;
            Ok(())
        }
    })
    .await?;
    drop(etcd);
    let loaded_rss_mib = skiff.rss_mib()?;
    Ok(ApiReport {
        count,
        concurrency,
        creates_per_s,
        p50_ms: percentile_ms(&latencies, 50.0),
        p99_ms: percentile_ms(&latencies, 99.0),
        etcd_puts_per_s,
        etcd_p99_ms: percentile_ms(&etcd_latencies, 99.0),
        idle_rss_mib,
        loaded_rss_mib,
    })
}
