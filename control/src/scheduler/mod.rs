//! The scheduler: binds pending pods (`spec.nodeName` empty, `schedulerName`
//! `default-scheduler`, not being deleted) to nodes through the `binding` subresource.
//!
//! One task owns the state: watch events for Nodes, Pods and RuntimeClasses update the
//! [`cache::Cache`] and the [`queue::Queue`], those for claims, volumes and StorageClasses the
//! [`volumes::StorageCache`]; then ready pods are filtered ([`filters`]) and scored
//! ([`scores`]) against every node and bound, after their claims ([`volumes::pre_bind`]). Binds are pipelined (up to
//! [`MAX_BINDS_IN_FLIGHT`]) and assumed at once, so the next pod already sees their requests.
//! Conditions and Events go out through [`report::Reporter`] in the background, after the binds
//! in flight.

pub mod cache;
pub mod filters;
pub mod message;
pub mod queue;
pub mod report;
pub mod scores;
pub mod volumes;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::{FutureExt, Stream, StreamExt, stream};
use k8s_openapi::api::core::v1::{
    Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use cache::{Cache, Placement};
use filters::{MissingRuntimeClass, PodFacts};
use queue::{Queue, State};
use report::{Report, Reporter, SCHEDULER_NAME, pod_ref};
use scores::Candidate;
use volumes::{PreBindError, StorageCache};

/// Binds in flight at once: enough that each of the store's group commits (one fsync) carries
/// many, so a burst is bound at the pace of the CPU rather than of the disk.
pub const MAX_BINDS_IN_FLIGHT: usize = 512;
/// Unschedulable pods are retried this often even if nothing seems to have changed.
const BACKSTOP: Duration = Duration::from_secs(60);
/// Changes that may let unschedulable pods fit (nodes joining, pods ending) come in bursts: one
/// retry wave after the burst, rather than one per change, spares thousands of pods from being
/// tried (and reported unschedulable) against a half-registered cluster.
const RETRY_COALESCE: Duration = Duration::from_millis(100);
/// A pod that stays unschedulable has its verdict re-written at most this often: each write is
/// a pod update and an Event, and a retry storm must not turn into a write storm.
const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Events boxed: a Pod is large, and thousands may wait in the merged stream.
enum Input {
    Node(Box<Event<Node>>),
    Pod(Box<Event<Pod>>),
    RuntimeClass(Box<Event<RuntimeClass>>),
    Claim(Box<Event<PersistentVolumeClaim>>),
    Volume(Box<Event<PersistentVolume>>),
    StorageClass(Box<Event<StorageClass>>),
}

#[derive(Debug, thiserror::Error)]
enum BindError {
    #[error(transparent)]
    Volumes(#[from] PreBindError),
    #[error(transparent)]
    Api(#[from] kube::Error),
}

struct BindResult {
    key: String,
    pod: ObjectReference,
    node: String,
    result: Result<(), BindError>,
}

/// Every event of one resource kind, across namespaces, with watch errors retried and logged.
fn watch<K>(client: &Client, wrap: fn(Event<K>) -> Input) -> impl Stream<Item = Input> + use<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned,
    K: std::fmt::Debug + Send + 'static,
{
    watcher::watcher(Api::<K>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .filter_map(|e| async move {
            e.inspect_err(|e| warn!(error = %e, "scheduler watch failed; retrying"))
                .ok()
        })
        .map(wrap)
}

/// Runs the scheduler until its watches end (they retry forever) or the task is dropped.
pub async fn run(client: Client) {
    let mut inputs = std::pin::pin!(stream::select(
        stream::select(
            watch(&client, |e| Input::Node(Box::new(e))),
            watch(&client, |e| Input::Pod(Box::new(e))),
        ),
        stream::select(
            watch(&client, |e| Input::RuntimeClass(Box::new(e))),
            stream::select(
                watch(&client, |e| Input::Claim(Box::new(e))),
                stream::select(
                    watch(&client, |e| Input::Volume(Box::new(e))),
                    watch(&client, |e| Input::StorageClass(Box::new(e))),
                ),
            ),
        ),
    ));
    let (bind_tx, mut bind_rx) = mpsc::unbounded_channel();
    let (binding, binding_rx) = watch::channel(false);
    let mut scheduler = Scheduler {
        reporter: Reporter::start(client.clone(), binding_rx),
        client,
        cache: Cache::default(),
        queue: Queue::default(),
        runtime_classes: HashMap::new(),
        storage: StorageCache::default(),
        relist: Relist::default(),
        in_flight: 0,
        turn: 0,
        retry: false,
    };
    let mut backstop = tokio::time::interval(BACKSTOP);
    let mut retry_at: Option<Instant> = None;
    loop {
        let wake = match (scheduler.queue.next_wake(), retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            input = inputs.next() => {
                let Some(input) = input else { return };
                scheduler.handle(input);
                // Take in everything already waiting so the cache is current before choosing.
                while let Some(Some(input)) = inputs.next().now_or_never() {
                    scheduler.handle(input);
                }
            }
            Some(bound) = bind_rx.recv() => scheduler.bound(bound),
            _ = async { tokio::time::sleep_until(wake.unwrap_or_else(Instant::now).into()).await },
                if wake.is_some() => {}
            _ = backstop.tick() => scheduler.queue.retry_unschedulable(Instant::now(), BACKSTOP),
        }
        let now = Instant::now();
        if std::mem::take(&mut scheduler.retry) && retry_at.is_none() {
            retry_at = Some(now + RETRY_COALESCE);
        }
        if retry_at.is_some_and(|at| at <= now) {
            retry_at = None;
            scheduler.queue.retry_unschedulable(now, Duration::ZERO);
        }
        scheduler.queue.release_due(now);
        scheduler.schedule_ready(&bind_tx);
        let in_flight = scheduler.in_flight > 0;
        binding.send_if_modified(|b| std::mem::replace(b, in_flight) != in_flight);
    }
}

/// Keys seen since a watch restarted, per resource: what was not seen is gone.
#[derive(Default)]
struct Relist {
    nodes: HashSet<String>,
    pods: HashSet<String>,
    runtime_classes: HashSet<String>,
}

struct Scheduler {
    client: Client,
    reporter: Reporter,
    cache: Cache,
    queue: Queue,
    runtime_classes: HashMap<String, RuntimeClass>,
    storage: StorageCache,
    relist: Relist,
    in_flight: usize,
    turn: usize,
    /// Something changed that may let unschedulable pods fit.
    retry: bool,
}

fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

fn is_terminal(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

impl Scheduler {
    fn handle(&mut self, input: Input) {
        match input {
            Input::Node(event) => match *event {
                Event::Init => self.relist.nodes.clear(),
                Event::InitApply(node) | Event::Apply(node) => {
                    self.relist.nodes.insert(node.name_any());
                    self.retry |= self.cache.set_node(&node);
                }
                Event::Delete(node) => self.cache.remove_node(&node.name_any()),
                Event::InitDone => {
                    let gone: Vec<String> = self
                        .cache
                        .node_names()
                        .filter(|n| !self.relist.nodes.contains(*n))
                        .cloned()
                        .collect();
                    gone.iter().for_each(|n| self.cache.remove_node(n));
                    self.retry = true;
                }
            },
            Input::Pod(event) => match *event {
                Event::Init => self.relist.pods.clear(),
                Event::InitApply(pod) => {
                    self.relist.pods.insert(pod_key(&pod));
                    self.pod_changed(pod);
                }
                Event::Apply(pod) => self.pod_changed(pod),
                Event::Delete(pod) => self.pod_gone(&pod_key(&pod)),
                Event::InitDone => {
                    self.cache.retain_confirmed(&self.relist.pods);
                    self.queue.retain_seen(&self.relist.pods);
                    self.retry = true;
                }
            },
            Input::RuntimeClass(event) => {
                match *event {
                    Event::Init => self.relist.runtime_classes.clear(),
                    Event::InitApply(rc) | Event::Apply(rc) => {
                        self.relist.runtime_classes.insert(rc.name_any());
                        self.runtime_classes.insert(rc.name_any(), rc);
                    }
                    Event::Delete(rc) => {
                        self.runtime_classes.remove(&rc.name_any());
                    }
                    Event::InitDone => {
                        let seen = &self.relist.runtime_classes;
                        self.runtime_classes.retain(|name, _| seen.contains(name));
                    }
                }
                self.retry = true;
            }
            // A claim bound, a volume created, a class added: waiting pods may fit now.
            Input::Claim(event) => {
                self.storage.claim_event(*event);
                self.retry = true;
            }
            Input::Volume(event) => {
                self.storage.volume_event(*event);
                self.retry = true;
            }
            Input::StorageClass(event) => {
                self.storage.class_event(*event);
                self.retry = true;
            }
        }
    }

    fn pod_changed(&mut self, pod: Pod) {
        let key = pod_key(&pod);
        if is_terminal(&pod) {
            return self.pod_gone(&key);
        }
        let spec = pod.spec.as_ref();
        if let Some(node) = spec
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty())
        {
            self.queue.remove(&key);
            if !self.cache.confirm(&key, node) {
                let facts = PodFacts::new(&pod, &self.runtime_classes).unwrap_or_default();
                let placement = Placement {
                    node: node.to_string(),
                    requests: filters::pod_requests(&pod),
                    owner: facts.owner,
                    assumed: false,
                };
                self.cache.place(&key, placement);
            }
            return;
        }
        let ours = spec
            .and_then(|s| s.scheduler_name.as_deref())
            .is_none_or(|n| n.is_empty() || n == SCHEDULER_NAME);
        if !ours || pod.metadata.deletion_timestamp.is_some() {
            self.queue.remove(&key);
            return;
        }
        self.queue.upsert(&key, pod);
    }

    /// A pod deleted or finished: its node has room again.
    fn pod_gone(&mut self, key: &str) {
        self.queue.remove(key);
        self.retry |= self.cache.forget(key);
    }

    fn schedule_ready(&mut self, bind_tx: &mpsc::UnboundedSender<BindResult>) {
        while self.in_flight < MAX_BINDS_IN_FLIGHT {
            let Some(key) = self.queue.pop_active() else {
                return;
            };
            self.schedule_one(key, bind_tx);
        }
    }

    fn schedule_one(&mut self, key: String, bind_tx: &mpsc::UnboundedSender<BindResult>) {
        let Some(pending) = self.queue.get(&key) else {
            return;
        };
        let nodes = self.cache.node_names().count();
        if nodes == 0 {
            return self.unschedulable(&key, message::NO_NODES.to_string());
        }
        let mut facts = match PodFacts::new(&pending.pod, &self.runtime_classes) {
            Ok(facts) => facts,
            Err(MissingRuntimeClass(name)) => {
                let why = message::runtime_class_not_found(&name);
                return self.unschedulable(&key, message::pre_filter_error(nodes, &why));
            }
        };
        match self.storage.pod_claims(&pending.pod) {
            Ok(claims) => facts.claims = claims,
            Err(e) => {
                let why = e.to_string();
                return self.unschedulable(&key, message::pre_filter_error(nodes, &why));
            }
        }
        let mut names = Vec::new();
        let mut candidates = Vec::new();
        let mut rejections = Vec::new();
        for (name, entry) in &self.cache.nodes {
            let Some(info) = &entry.info else { continue };
            match facts.filter(info, &entry.usage) {
                Ok(()) => {
                    names.push(name);
                    candidates.push(Candidate {
                        least_allocated: scores::least_allocated(
                            info,
                            &entry.usage,
                            &facts.requests,
                        ),
                        siblings: facts
                            .owner
                            .as_ref()
                            .and_then(|o| entry.usage.owners.get(o))
                            .copied()
                            .unwrap_or(0),
                    });
                }
                Err(reasons) => rejections.push(reasons),
            }
        }
        self.turn = self.turn.wrapping_add(1);
        let Some(best) = scores::pick(&candidates, self.turn) else {
            return self.unschedulable(&key, message::fit_error(&rejections));
        };
        let node = names[best].clone();
        let delayed = facts.claims.take().map(|c| c.delayed).unwrap_or_default();
        self.storage.assume_selected(&delayed, &node);
        let pod = &pending.pod;
        self.cache.place(
            &key,
            Placement {
                node: node.clone(),
                requests: facts.requests,
                owner: facts.owner,
                assumed: true,
            },
        );
        self.in_flight += 1;
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let name = pod.name_any();
        let binding = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": pod.namespace(), "uid": pod.uid()},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        let tx = bind_tx.clone();
        let pod = pod_ref(pod);
        let client = self.client.clone();
        tokio::spawn(async move {
            let result = async {
                if !delayed.is_empty() {
                    volumes::pre_bind(client, delayed, node.clone()).await?;
                }
                api.create_subresource::<_, serde_json::Value>(
                    "binding",
                    &name,
                    &PostParams::default(),
                    &binding,
                )
                .await?;
                Ok::<_, BindError>(())
            }
            .await;
            let _ = tx.send(BindResult {
                key,
                pod,
                node,
                result,
            });
        });
    }

    fn unschedulable(&mut self, key: &str, message: String) {
        let Some(pending) = self.queue.get_mut(key) else {
            return;
        };
        debug!(pod = %key, %message, "unschedulable");
        let now = Instant::now();
        if pending
            .reported
            .is_none_or(|at| now.duration_since(at) >= REPORT_INTERVAL)
        {
            pending.reported = Some(now);
            self.reporter.send(Report::Unschedulable {
                pod: pod_ref(&pending.pod),
                condition: report::unschedulable_condition(&pending.pod, &message),
                message,
            });
        }
        self.queue.set_state(
            key,
            State::Unschedulable {
                since: Instant::now(),
            },
        );
    }

    fn bound(&mut self, bound: BindResult) {
        self.in_flight -= 1;
        let BindResult {
            key,
            pod,
            node,
            result,
        } = bound;
        let assumed = self.cache.placement(&key).is_some_and(|p| p.assumed);
        match result {
            Ok(()) => {
                self.reporter.send(Report::Scheduled { pod, node });
                self.queue.set_state(&key, State::Bound);
            }
            // Gone, or bound by someone else: the watch has or will have the last word.
            Err(BindError::Api(kube::Error::Api(s))) if s.code == 404 || s.code == 409 => {
                if assumed {
                    self.cache.forget(&key);
                }
                self.queue.remove(&key);
            }
            Err(e) => {
                warn!(pod = %key, %node, error = %e, "binding failed; retrying after back-off");
                if assumed {
                    self.cache.forget(&key);
                }
                self.queue.back_off(&key, Instant::now());
            }
        }
    }
}
