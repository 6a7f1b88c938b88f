//! `skiff bench workloads`: a Deployment of Wasm replicas from create to all Available, then a
//! rolling update of all of them (maxSurge 25 %, maxUnavailable 25 %) to completion as
//! `kubectl rollout status` judges it. The peer, in the same run on the same node: as many bare
//! pods created directly (no controllers) until all are Running.
//!
//! The control plane and the node agent are separate processes (`skiff control`, `skiff node`),
//! as in a cluster.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde::Serialize;
use serde_json::json;

use super::api::{client_for, wait_ready};
use super::process::{join_node, start_registry, start_skiff_as};
use super::wasm::{StartWatch, namespace, wait_node_ready};

const TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Serialize)]
pub struct WorkloadsReport {
    pub replicas: usize,
    pub deploy_1000_ready_s: f64,
    pub rollout_1000_s: f64,
    pub bare_pods_running_s: f64,
}

impl WorkloadsReport {
    pub fn print(&self) {
        println!("Deployment of {} Wasm replicas:", self.replicas);
        println!(
            "  create → all Available:        {:.2} s   (target ≤ 3 s)",
            self.deploy_1000_ready_s
        );
        println!(
            "  rolling update to completion:  {:.2} s   (target ≤ 6 s)",
            self.rollout_1000_s
        );
        println!(
            "  peer: {} bare pods → Running:  {:.2} s",
            self.replicas, self.bare_pods_running_s
        );
    }
}

fn deployment(replicas: usize, image: &str) -> anyhow::Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bench"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "bench"}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "bench"}},
                "spec": {
                    "runtimeClassName": "wasmtime",
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "app", "image": image}],
                },
            },
        },
    }))?)
}

fn pod(name: &str, image: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "runtimeClassName": "wasmtime",
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "app", "image": image}],
        },
    }))?)
}

/// Whether the rollout is complete as `kubectl rollout status` judges it: the latest spec
/// observed, every replica updated and available, no old replica left.
fn complete(d: &Deployment, replicas: i32) -> bool {
    let Some(status) = d.status.as_ref() else {
        return false;
    };
    status.observed_generation >= d.metadata.generation
        && status.updated_replicas == Some(replicas)
        && status.replicas == Some(replicas)
        && status.available_replicas == Some(replicas)
}

/// Waits on a watch until the Deployment is complete at `generation` or later.
async fn wait_complete(
    api: &Api<Deployment>,
    replicas: i32,
    generation: i64,
) -> anyhow::Result<()> {
    let config = watcher::Config::default().fields("metadata.name=bench");
    let mut events = watcher::watcher(api.clone(), config).boxed();
    let wait = async {
        while let Some(event) = events.try_next().await? {
            if let Event::Apply(d) | Event::InitApply(d) = event
                && d.metadata.generation >= Some(generation)
                && complete(&d, replicas)
            {
                return Ok(());
            }
        }
        anyhow::bail!("the watch ended")
    };
    tokio::time::timeout(TIMEOUT, wait)
        .await
        .context("the Deployment did not complete in time")?
}

/// Deletes everything in `namespace` and waits until its pods are gone.
async fn empty(client: &Client, namespace: &str) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    deployments
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    pods.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    let t = Instant::now();
    while !pods
        .list_metadata(&ListParams::default())
        .await?
        .items
        .is_empty()
    {
        anyhow::ensure!(
            t.elapsed() < TIMEOUT,
            "pods of {namespace} not gone in time"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

pub async fn run(samples: &std::path::Path, replicas: usize) -> anyhow::Result<WorkloadsReport> {
    let module = samples.join("sleeper.wasm");
    anyhow::ensure!(
        module.exists(),
        "{} is missing: run samples/wasm/build.sh",
        module.display()
    );
    let registry = start_registry()?;
    let v1 = format!("127.0.0.1:{}/bench/sleeper:v1", registry.port);
    let v2 = format!("127.0.0.1:{}/bench/sleeper:v2", registry.port);
    for image in [&v1, &v2] {
        skiff_node::images::push_wasm(&module, image, &[]).await?;
    }
    let control = start_skiff_as("control", &[])?;
    let client = client_for(&control).await?;
    wait_ready(&client).await?;
    let max_pods = (replicas * 2 + 100) as u32;
    let _node = join_node(&control, "bench-node", max_pods, &[])?;
    wait_node_ready(&client, "bench-node").await?;

    // Both tags resolved and the module compiled once before anything is timed.
    let pods = namespace(&client, "bench-workloads").await?;
    let watch = StartWatch::spawn(pods.clone());
    for (name, image) in [("warm-v1", &v1), ("warm-v2", &v2)] {
        let started = watch.wait(name).await;
        pods.create(&PostParams::default(), &pod(name, image)?)
            .await?;
        tokio::time::timeout(Duration::from_secs(120), started).await??;
    }
    empty(&client, "bench-workloads").await?;

    // The peer: bare pods.
    let peer = namespace(&client, "bench-bare").await?;
    let watch = StartWatch::spawn(peer.clone());
    let t = Instant::now();
    let names: Vec<String> = (0..replicas).map(|i| format!("bare-{i:05}")).collect();
    let waits = futures::future::join_all(names.iter().map(|n| watch.wait(n))).await;
    futures::stream::iter(names.iter())
        .map(|name| {
            let peer = peer.clone();
            let image = v1.clone();
            async move {
                peer.create(&PostParams::default(), &pod(name, &image)?)
                    .await
                    .map_err(anyhow::Error::from)
            }
        })
        .buffer_unordered(32)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    for started in waits {
        tokio::time::timeout(TIMEOUT, started).await??;
    }
    let bare_pods_running_s = t.elapsed().as_secs_f64();
    empty(&client, "bench-bare").await?;

    // The Deployment.
    let api: Api<Deployment> = Api::namespaced(client.clone(), "bench-workloads");
    let t = Instant::now();
    let created = api
        .create(&PostParams::default(), &deployment(replicas, &v1)?)
        .await?;
    wait_complete(
        &api,
        replicas as i32,
        created.metadata.generation.unwrap_or(1),
    )
    .await?;
    let deploy_1000_ready_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": v2}]}}}});
    let updated = api
        .patch("bench", &PatchParams::default(), &Patch::Strategic(patch))
        .await?;
    wait_complete(
        &api,
        replicas as i32,
        updated.metadata.generation.unwrap_or(2),
    )
    .await?;
    let rollout_1000_s = t.elapsed().as_secs_f64();
    drop(registry);

    Ok(WorkloadsReport {
        replicas,
        deploy_1000_ready_s,
        rollout_1000_s,
        bare_pods_running_s,
    })
}
