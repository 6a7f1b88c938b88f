//! `skiff bench scheduler`: how fast the scheduler binds a backlog of pending pods across many
//! registered nodes (fake Node objects, each with a Lease so the node lifecycle controller
//! leaves them Ready).
//!
//! The nodes are registered first. The pods are created next, naming a RuntimeClass that does
//! not exist yet, so the scheduler finds each one unschedulable; the clock starts once it has,
//! with the create of that RuntimeClass: one change that makes every pod schedulable on every
//! node at once. Creating the pods while they could be bound would time pod creates and binds
//! together on the same two cores, and releasing them node by node would time the nodes'
//! registration; this way the figure is binds alone: from the RuntimeClass create to the watch
//! showing the last pod's `spec.nodeName`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use serde::Serialize;
use serde_json::json;

use super::api::{client_for, wait_ready};
use super::process::start_skiff_as;

/// Requests in flight while creating objects.
const CONCURRENCY: usize = 64;
const RUN_LABEL: &str = "skiff.dev/bench-scheduler-run";
const SETTLE_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Serialize)]
pub struct SchedulerReport {
    pub nodes: usize,
    pub pods: usize,
    pub binds_per_s: f64,
}

impl SchedulerReport {
    pub fn print(&self) {
        println!(
            "skiff bench scheduler: {} pending pods across {} nodes",
            self.pods, self.nodes
        );
        println!("  binds/s  {:>10.0}   (target >= 5000)", self.binds_per_s);
    }
}

/// Against a fresh `skiff control`.
pub async fn run(nodes: usize, pods: usize) -> anyhow::Result<SchedulerReport> {
    let skiff = start_skiff_as("control", &[])?;
    let client = client_for(&skiff).await?;
    wait_ready(&client).await?;
    let binds_per_s = binds_per_second(client, nodes, pods).await?;
    Ok(SchedulerReport {
        nodes,
        pods,
        binds_per_s,
    })
}

/// Registers `nodes` fake Nodes, creates `pods` pods held back by a missing RuntimeClass, then
/// creates it and returns binds per second; removes everything it created (its namespace,
/// RuntimeClass, Nodes and Leases).
pub async fn binds_per_second(
    client: kube::Client,
    nodes: usize,
    pods: usize,
) -> anyhow::Result<f64> {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let run = format!("{}-{}", std::process::id(), started.as_secs());
    let namespace = format!("bench-scheduler-{}", std::process::id());
    let result = measure(&client, &run, &namespace, nodes, pods).await;
    cleanup(&client, &run, &namespace, nodes).await;
    result
}

async fn measure(
    client: &kube::Client,
    run: &str,
    namespace: &str,
    nodes: usize,
    pods: usize,
) -> anyhow::Result<f64> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    create_each(&leases, nodes, |i| lease(run, i))
        .await
        .context("creating leases")?;
    let node_api: Api<Node> = Api::all(client.clone());
    create_each(&node_api, nodes, |i| node(run, i))
        .await
        .context("creating nodes")?;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
    namespaces
        .create(&PostParams::default(), &serde_json::from_value(ns)?)
        .await
        .with_context(|| format!("creating namespace {namespace}"))?;
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    create_each(&pod_api, pods, |i| pod(run, i))
        .await
        .context("creating pods")?;
    let resource_version = wait_all_attempted(&pod_api, pods).await?;
    // Past the scheduler's 1 s back-off after a failed attempt (a long-standing backlog is), and
    // past the trailing FailedScheduling events.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let watch = client
        .request_events::<PodPlacement>(
            kube::core::Request::new(format!("/api/v1/namespaces/{namespace}/pods"))
                .watch(&WatchParams::default().timeout(290), &resource_version)?,
        )
        .await?;
    let runtime_classes: Api<RuntimeClass> = Api::all(client.clone());
    let start = Instant::now();
    runtime_classes
        .create(&PostParams::default(), &runtime_class(run)?)
        .await
        .context("creating the RuntimeClass that releases the pods")?;
    let mut bound = HashSet::new();
    let mut watch = std::pin::pin!(watch);
    while bound.len() < pods {
        let event = tokio::time::timeout(SETTLE_TIMEOUT, watch.try_next())
            .await
            .context("no pod was bound for 300 s")??;
        match event {
            Some(WatchEvent::Added(p) | WatchEvent::Modified(p)) => {
                if p.spec.node_name.is_some() {
                    bound.insert(p.metadata.name);
                }
            }
            Some(WatchEvent::Error(e)) => bail!("pod watch failed: {e}"),
            Some(_) => {}
            None => bail!("pod watch ended with {} of {pods} pods bound", bound.len()),
        }
    }
    Ok(pods as f64 / start.elapsed().as_secs_f64())
}

/// What the bench reads of a pod on its watch: decoding whole Pods would take the bench's
/// share of the two cores out of the scheduler's.
#[derive(Clone, serde::Deserialize)]
struct PodPlacement {
    metadata: PlacementMetadata,
    #[serde(default)]
    spec: PlacementSpec,
}

#[derive(Clone, serde::Deserialize)]
struct PlacementMetadata {
    name: String,
}

#[derive(Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlacementSpec {
    node_name: Option<String>,
}

/// Waits until the scheduler has tried (and failed) to place every pod, so that its first
/// attempts are not timed; returns the list's resourceVersion to watch from.
async fn wait_all_attempted(api: &Api<Pod>, pods: usize) -> anyhow::Result<String> {
    let start = Instant::now();
    loop {
        let list = api.list(&ListParams::default()).await?;
        let attempted = list
            .items
            .iter()
            .filter(|p| {
                let conditions = p.status.as_ref().and_then(|s| s.conditions.as_ref());
                conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "PodScheduled"))
            })
            .count();
        if attempted >= pods {
            return list
                .metadata
                .resource_version
                .context("pod list without resourceVersion");
        }
        if start.elapsed() > SETTLE_TIMEOUT {
            bail!("the scheduler tried only {attempted} of {pods} pods in 300 s: is it running?");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Creates `count` objects, `make(i)` for each index, `CONCURRENCY` at a time.
async fn create_each<K>(
    api: &Api<K>,
    count: usize,
    make: impl Fn(usize) -> anyhow::Result<K>,
) -> anyhow::Result<()>
where
    K: Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    futures::stream::iter(0..count)
        .map(|i| {
            let object = make(i);
            async move {
                api.create(&PostParams::default(), &object?).await?;
                Ok(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<()>()
        .await
}

fn node_name(run: &str, i: usize) -> String {
    format!("bench-{run}-{i:03}")
}

/// Named after the run, like the nodes: only this run's pods use it.
fn runtime_class_name(run: &str) -> String {
    format!("bench-{run}")
}

fn runtime_class(run: &str) -> anyhow::Result<RuntimeClass> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
        "metadata": {"name": runtime_class_name(run)},
        "handler": "wasmtime",
    }))?)
}

fn pod(run: &str, i: usize) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("bench-{i:05}")},
        "spec": {
            "nodeSelector": {RUN_LABEL: run},
            "runtimeClassName": runtime_class_name(run),
            "containers": [{"name": "c", "image": "bench.invalid/pause:1",
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}],
        },
    }))?)
}

/// Room for 250 pods each (a common `--max-pods`).
fn node(run: &str, i: usize) -> anyhow::Result<Node> {
    let name = node_name(run, i);
    let resources = json!({"cpu": "64", "memory": "256Gi", "pods": "250"});
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            RUN_LABEL: run, "kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
        "status": {
            "capacity": resources, "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "fake node for skiff bench scheduler"}],
            "runtimeHandlers": [{"name": "wasmtime"}, {"name": "runc"}],
        },
    }))?)
}

fn lease(run: &str, i: usize) -> anyhow::Result<Lease> {
    let now = k8s_openapi::jiff::Timestamp::now();
    Ok(serde_json::from_value(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": node_name(run, i), "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": node_name(run, i), "leaseDurationSeconds": 40,
                 "renewTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(now)},
    }))?)
}

async fn cleanup(client: &kube::Client, run: &str, namespace: &str, nodes: usize) {
    let dp = DeleteParams::background();
    let _ = Api::<Namespace>::all(client.clone())
        .delete(namespace, &dp)
        .await;
    let _ = Api::<RuntimeClass>::all(client.clone())
        .delete(&runtime_class_name(run), &dp)
        .await;
    let node_api: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    for i in 0..nodes {
        let _ = node_api.delete(&node_name(run, i), &dp).await;
        let _ = leases.delete(&node_name(run, i), &dp).await;
    }
}
