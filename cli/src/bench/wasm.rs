//! `skiff bench wasm`: Wasm pod start latency (create request → `Running`/`Succeeded` seen on a
//! watch) beside plain wasmtime running the same module in a loop; density (sleeping pods on one
//! node and the node agent's resident memory per pod); and scheduler throughput.
//!
//! The control plane and the node agent run as separate processes (`skiff control`, `skiff node`)
//! so that the memory measured is the agent's alone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use serde::Serialize;
use serde_json::json;
use tokio::sync::{Mutex, oneshot};

use super::api::{client_for, wait_ready};
use super::percentile_ms;
use super::process::{join_node, start_registry, start_skiff_as};

#[derive(Debug, Serialize)]
pub struct WasmReport {
    pub start_pods: usize,
    pub start_p50_ms: f64,
    pub start_p99_ms: f64,
    pub raw_wasmtime_run_us: f64,
    pub density_pods: usize,
    pub density_seconds: f64,
    pub rss_per_pod_kib: f64,
    pub agent_rss_idle_mib: f64,
    pub agent_rss_loaded_mib: f64,
    pub binds_per_s: f64,
}

impl WasmReport {
    pub fn print(&self) {
        println!(
            "Wasm pod start, {} pods one after another (create → Running/Succeeded on a watch):",
            self.start_pods
        );
        println!(
            "  p50 {:.2} ms   p99 {:.2} ms   (target p99 ≤ 20 ms)",
            self.start_p50_ms, self.start_p99_ms
        );
        println!(
            "  plain wasmtime, same module, instantiate + run: {:.0} µs (the floor)",
            self.raw_wasmtime_run_us
        );
        println!(
            "Density: {} sleeping pods Running in {:.1} s",
            self.density_pods, self.density_seconds
        );
        println!(
            "  node agent RSS {:.1} MiB idle → {:.1} MiB loaded: {:.0} KiB per pod (target ≤ 256 KiB)",
            self.agent_rss_idle_mib, self.agent_rss_loaded_mib, self.rss_per_pod_kib
        );
        println!(
            "Scheduler: {:.0} binds/s (target ≥ 5,000)",
            self.binds_per_s
        );
    }
}

pub struct WasmBench {
    pub samples: PathBuf,
    pub start_pods: usize,
    pub density_pods: usize,
    pub sched_nodes: usize,
    pub sched_pods: usize,
}

fn pod(name: &str, image: &str, restart: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "runtimeClassName": "wasmtime",
            "restartPolicy": restart,
            "containers": [{"name": "app", "image": image}],
        }
    }))
    .expect("a well-formed pod")
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Watches `namespace` and reports each pod's first `Running`/`Succeeded`.
pub(super) struct StartWatch {
    waiters: Arc<Mutex<HashMap<String, oneshot::Sender<Instant>>>>,
    started: Arc<Mutex<HashMap<String, Instant>>>,
}

impl StartWatch {
    pub(super) fn spawn(api: Api<Pod>) -> StartWatch {
        let waiters: Arc<Mutex<HashMap<String, oneshot::Sender<Instant>>>> = Arc::default();
        let started: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let (w, s) = (waiters.clone(), started.clone());
        tokio::spawn(async move {
            let mut events = watcher::watcher(api, watcher::Config::default()).boxed();
            while let Ok(Some(event)) = events.try_next().await {
                let (Event::Apply(p) | Event::InitApply(p)) = event else {
                    continue;
                };
                if matches!(phase(&p), "Running" | "Succeeded") {
                    let now = Instant::now();
                    let name = p.name_any();
                    let mut s = s.lock().await;
                    if s.contains_key(&name) {
                        continue;
                    }
                    s.insert(name.clone(), now);
                    if let Some(tx) = w.lock().await.remove(&name) {
                        let _ = tx.send(now);
                    }
                }
            }
        });
        StartWatch { waiters, started }
    }

    pub(super) async fn wait(&self, name: &str) -> oneshot::Receiver<Instant> {
        let (tx, rx) = oneshot::channel();
        if let Some(at) = self.started.lock().await.get(name) {
            let _ = tx.send(*at);
        } else {
            self.waiters.lock().await.insert(name.to_string(), tx);
        }
        rx
    }

    async fn count(&self) -> usize {
        self.started.lock().await.len()
    }
}

pub(super) async fn namespace(client: &kube::Client, name: &str) -> anyhow::Result<Api<Pod>> {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(Api::namespaced(client.clone(), name))
}

pub(super) async fn wait_node_ready(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let start = Instant::now();
    loop {
        if let Ok(Some(node)) = nodes.get_opt(name).await {
            let ready = node
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if ready {
                return Ok(());
            }
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(60),
            "node {name} not Ready within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Plain wasmtime: the module compiled once, then instantiated and run to completion per
/// iteration with a fresh store and WASI context; the median run in microseconds.
fn raw_wasmtime_us(module: &Path, runs: usize) -> anyhow::Result<f64> {
    raw_wasmtime(module, runs).map_err(|e| anyhow::anyhow!("plain wasmtime: {e:?}"))
}

fn raw_wasmtime(module: &Path, runs: usize) -> wasmtime::Result<f64> {
    use wasmtime::{Engine, Linker, Module, Store};
    use wasmtime_wasi::WasiCtxBuilder;
    use wasmtime_wasi::p1::WasiP1Ctx;
    let engine = Engine::default();
    let module = Module::from_file(&engine, module)?;
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |cx| cx)?;
    let pre = linker.instantiate_pre(&module)?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let wasi = WasiCtxBuilder::new()
            .stdout(std::io::empty())
            .args(&["hello.wasm"])
            .build_p1();
        let mut store = Store::new(&engine, wasi);
        let instance = pre.instantiate(&mut store)?;
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        if let Err(e) = start.call(&mut store, ())
            && e.downcast_ref::<wasmtime_wasi::I32Exit>()
                .is_none_or(|x| x.0 != 0)
        {
            return Err(e);
        }
        times.push(t.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2].as_secs_f64() * 1e6)
}

pub async fn run(bench: WasmBench) -> anyhow::Result<WasmReport> {
    let hello = bench.samples.join("hello.wasm");
    let sleeper = bench.samples.join("sleeper.wasm");
    for m in [&hello, &sleeper] {
        anyhow::ensure!(
            m.exists(),
            "{} is missing: run samples/wasm/build.sh",
            m.display()
        );
    }
    let registry = start_registry()?;
    let hello_image = format!("127.0.0.1:{}/bench/hello:v1", registry.port);
    let sleeper_image = format!("127.0.0.1:{}/bench/sleeper:v1", registry.port);
    skiff_node::images::push_wasm(&hello, &hello_image, &[]).await?;
    skiff_node::images::push_wasm(&sleeper, &sleeper_image, &[]).await?;

    let control = start_skiff_as("control", &[])?;
    let client = client_for(&control).await?;
    wait_ready(&client).await?;
    let max_pods = (bench.density_pods + bench.start_pods + 100) as u32;
    let node = join_node(&control, "bench-node", max_pods, &[])?;
    wait_node_ready(&client, "bench-node").await?;

    // (1) Start latency, one pod after another; one warm-up pod first so the module's compile
    // (once per node, cached by digest) is not counted as a start.
    let pods = namespace(&client, "bench-start").await?;
    let watch = StartWatch::spawn(pods.clone());
    let warm = watch.wait("warm-up").await;
    pods.create(
        &PostParams::default(),
        &pod("warm-up", &hello_image, "Never"),
    )
    .await?;
    tokio::time::timeout(Duration::from_secs(120), warm).await??;
    let mut latencies = Vec::with_capacity(bench.start_pods);
    for i in 0..bench.start_pods {
        let name = format!("hello-{i:05}");
        let started = watch.wait(&name).await;
        let t = Instant::now();
        pods.create(&PostParams::default(), &pod(&name, &hello_image, "Never"))
            .await?;
        let at = tokio::time::timeout(Duration::from_secs(30), started)
            .await
            .with_context(|| format!("pod {name} did not start within 30 s"))??;
        latencies.push(at.saturating_duration_since(t));
    }
    latencies.sort();
    // Plain wasmtime's WASI blocks on its own runtime: run it off this one.
    let module = hello.clone();
    let raw = tokio::task::spawn_blocking(move || raw_wasmtime_us(&module, 1000)).await??;
    pods.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;

    // (2) Density.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = node.rss_mib()?;
    let pods = namespace(&client, "bench-density").await?;
    let watch = StartWatch::spawn(pods.clone());
    let t = Instant::now();
    futures::stream::iter(0..bench.density_pods)
        .map(|i| {
            let pods = pods.clone();
            let image = sleeper_image.clone();
            async move {
                pods.create(
                    &PostParams::default(),
                    &pod(&format!("sleeper-{i:05}"), &image, "Always"),
                )
                .await
            }
        })
        .buffer_unordered(32)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    while watch.count().await < bench.density_pods {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(600),
            "only {} of {} pods Running after 600 s",
            watch.count().await,
            bench.density_pods
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let density_seconds = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let loaded = node.rss_mib()?;
    drop(node);
    drop(control);

    // (3) The scheduler, on a fresh control plane with fake nodes.
    let control = start_skiff_as("control", &[])?;
    let client = client_for(&control).await?;
    wait_ready(&client).await?;
    let binds =
        super::scheduler::binds_per_second(client, bench.sched_nodes, bench.sched_pods).await?;
    drop(registry);

    Ok(WasmReport {
        start_pods: bench.start_pods,
        start_p50_ms: percentile_ms(&latencies, 50.0),
        start_p99_ms: percentile_ms(&latencies, 99.0),
        raw_wasmtime_run_us: raw,
        density_pods: bench.density_pods,
        density_seconds,
        rss_per_pod_kib: (loaded - idle) * 1024.0 / bench.density_pods as f64,
        agent_rss_idle_mib: idle,
        agent_rss_loaded_mib: loaded,
        binds_per_s: binds,
    })
}
