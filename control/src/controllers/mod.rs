//! Controllers of the control plane. Each is an API client (the `kube` crate), never a store
//! caller, so the same code runs in or out of the API server's process; inside it, the client
//! is [`crate::loopback`]'s.

pub mod cron_job;
pub mod daemon_set;
pub mod deployment;
pub mod expectations;
pub mod garbage_collector;
pub mod hash;
pub mod history;
pub mod informer;
pub mod job;
pub mod local_path;
pub mod namespace;
pub mod namespace_defaults;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod ownership;
pub mod persistent_volume;
pub mod pods;
pub mod recorder;
pub mod replica_set;
pub mod stateful_set;
pub mod status;
pub mod ttl_after_finished;
pub mod volume_matching;

use informer::Informer;
use k8s_openapi::api::apps::v1::{ControllerRevision, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod, ReplicationController};
use kube::Client;
use kube::discovery::ApiResource;
use skiff_api::ResourceInfo;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// The dynamic-client description of a registry resource.
pub fn api_resource(info: &ResourceInfo) -> ApiResource {
    ApiResource {
        group: info.group.to_string(),
        version: info.version.to_string(),
        api_version: info.api_version(),
        kind: info.kind.to_string(),
        plural: info.plural.to_string(),
    }
}

/// Runs one controller until `shutdown`.
fn spawn(
    name: &'static str,
    shutdown: CancellationToken,
    controller: impl Future<Output = ()> + Send + 'static,
) {
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = controller => warn!(controller = name, "controller stopped"),
        }
    });
}

/// Starts every controller and the scheduler; each runs until `shutdown`. `ca_pem` is the cluster CA that
/// namespaces publish in their `kube-root-ca.crt` ConfigMap.
pub fn start(
    client: Client,
    ca_pem: &str,
    cluster_cidr: node_ipam::ClusterCidr,
    shutdown: CancellationToken,
) {
    spawn(
        "garbage-collector",
        shutdown.clone(),
        garbage_collector::GarbageCollector::new(client.clone()).run(),
    );
    spawn(
        "namespace",
        shutdown.clone(),
        namespace::run(client.clone()),
    );
    spawn(
        "namespace-defaults",
        shutdown.clone(),
        namespace_defaults::run(client.clone(), ca_pem.to_string()),
    );
    spawn(
        "node-lifecycle",
        shutdown.clone(),
        node_lifecycle::run(client.clone(), node_lifecycle::grace_period_from_env()),
    );
    spawn(
        "node-ipam",
        shutdown.clone(),
        node_ipam::run(client.clone(), cluster_cidr),
    );
    // Every workload controller reads its own kind, and what it manages, from shared informers.
    let pods = Informer::<Pod>::start(&client, &shutdown);
    let replica_sets = Informer::<ReplicaSet>::start(&client, &shutdown);
    spawn(
        "deployment",
        shutdown.clone(),
        deployment::run(
            client.clone(),
            Informer::start(&client, &shutdown),
            replica_sets.clone(),
            pods.clone(),
        ),
    );
    spawn(
        "replicaset",
        shutdown.clone(),
        replica_set::run(client.clone(), replica_sets, pods.clone()),
    );
    spawn(
        "replicationcontroller",
        shutdown.clone(),
        replica_set::run::<ReplicationController>(
            client.clone(),
            Informer::start(&client, &shutdown),
            pods.clone(),
        ),
    );
    let jobs = Informer::<Job>::start(&client, &shutdown);
    spawn(
        "job",
        shutdown.clone(),
        job::run(client.clone(), pods.clone(), jobs.clone()),
    );
    spawn(
        "ttl-after-finished",
        shutdown.clone(),
        ttl_after_finished::run(client.clone(), jobs.clone()),
    );
    spawn(
        "cronjob",
        shutdown.clone(),
        cron_job::run(client.clone(), Informer::start(&client, &shutdown), jobs),
    );
    spawn(
        "persistentvolume",
        shutdown.clone(),
        persistent_volume::run(client.clone(), pods.clone(), shutdown.clone()),
    );
    let nodes = Informer::<Node>::start(&client, &shutdown);
    let revisions = Informer::<ControllerRevision>::start(&client, &shutdown);
    spawn(
        "daemonset",
        shutdown.clone(),
        daemon_set::run(
            client.clone(),
            Informer::start(&client, &shutdown),
            pods.clone(),
            nodes,
            revisions.clone(),
        ),
    );
    spawn(
        "statefulset",
        shutdown.clone(),
        stateful_set::run(
            client.clone(),
            Informer::start(&client, &shutdown),
            pods.clone(),
            revisions,
        ),
    );
    spawn("scheduler", shutdown, crate::scheduler::run(client));
}
