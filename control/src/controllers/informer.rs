//! One watch and cache of a resource kind, shared by every controller that reads it (client-go's
//! shared informer). A workload controller is a `kube_runtime::Controller` over the informer of
//! its own kind ([`Informer::controller`]), reads the objects it manages (pods, replica sets,
//! jobs) from their informers' [`Store`]s, and is triggered by their changes through
//! [`Informer::triggers`]: one pod watch serves the ReplicaSet, DaemonSet, StatefulSet and Job
//! controllers alike.
//!
//! `kube_runtime`'s own shared streams do not report deletions, which is exactly what a
//! ReplicaSet must see to replace a pod; these triggers do, and they report a changed object's
//! previous state too, so a pod that left one owner for another wakes both. After a re-list, the
//! listed objects are reported once the cache holds them, and the objects the list no longer has
//! are reported as deleted (client-go's `Replace`).
//!
//! A controller starts once the informers it reads have synced ([`Informer::synced`], client-go's
//! `WaitForCacheSync`), so its reconciles never wait on a cache. They must not:
//! `Store::wait_until_ready` wakes only the last of several concurrent waiters, and the others
//! would wait forever.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use kube::Client;
use kube::Resource;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::warn;

type Subscribers<K> = Arc<Mutex<Vec<mpsc::UnboundedSender<Arc<K>>>>>;

/// A cache of every `K` in the cluster and the changes to it.
pub struct Informer<K: Resource + 'static>
where
    K::DynamicType: Hash + Eq,
{
    store: Store<K>,
    subscribers: Subscribers<K>,
    /// True from the first complete list on.
    synced: watch::Receiver<bool>,
}

impl<K: Resource + 'static> Clone for Informer<K>
where
    K::DynamicType: Hash + Eq,
{
    fn clone(&self) -> Self {
        Informer {
            store: self.store.clone(),
            subscribers: self.subscribers.clone(),
            synced: self.synced.clone(),
        }
    }
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// Starts watching every `K` in the cluster until `shutdown`.
    pub fn start(client: &Client, shutdown: &CancellationToken) -> Self {
        let shutdown = shutdown.clone();
        let (mut feed, informer) = Feed::new();
        let mut events = watcher::watcher(Api::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .boxed();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    event = events.next() => event,
                };
                match event {
                    Some(Ok(event)) => feed.apply(event),
                    Some(Err(e)) => {
                        warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying")
                    }
                    None => return,
                }
            }
        });
        informer
    }

    /// Waits for the first complete list (client-go's `WaitForCacheSync`); false if the
    /// informer stopped before it.
    pub async fn synced(&self) -> bool {
        self.synced.clone().wait_for(|synced| *synced).await.is_ok()
    }

    /// A controller of this informer's objects: each is reconciled once listed and at every
    /// change, as this cache has it. (A controller's own watch would reconcile the objects of a
    /// re-list before its cache held them, from their stale state, or not at all if new.)
    pub fn controller(&self) -> Controller<K> {
        Controller::for_shared_stream(futures::stream::empty(), self.store())
            .reconcile_on(self.triggers(|obj: &K| Some(ObjectRef::from_obj(obj))))
    }

    /// The cache; empty until the first list has arrived ([`Informer::synced`]).
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// The objects of kind `R` each change concerns: `map` is applied to an object's previous
    /// state and to its new (or, when deleted, last) state.
    pub fn triggers<R, I>(
        &self,
        map: impl Fn(&K) -> I + Send + 'static,
    ) -> impl Stream<Item = ObjectRef<R>> + Send + 'static
    where
        R: Resource + 'static,
        R::DynamicType: Hash + Eq + Clone,
        I: IntoIterator<Item = ObjectRef<R>>,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx);
        tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
            .flat_map(move |obj| futures::stream::iter(map(&obj).into_iter().collect::<Vec<_>>()))
    }
}

/// The informer's side of the cache: applies watch events and reports changes.
struct Feed<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    writer: reflector::store::Writer<K>,
    subscribers: Subscribers<K>,
    synced: watch::Sender<bool>,
    /// The objects of a list in progress: the cache takes them all at its end.
    listed: Vec<Arc<K>>,
}

impl<K> Feed<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    fn new() -> (Self, Informer<K>) {
        let (store, writer) = reflector::store::<K>();
        let (synced_tx, synced) = watch::channel(false);
        let feed = Feed {
            store: store.clone(),
            writer,
            subscribers: Subscribers::default(),
            synced: synced_tx,
            listed: Vec::new(),
        };
        let informer = Informer {
            store,
            subscribers: feed.subscribers.clone(),
            synced,
        };
        (feed, informer)
    }

    fn apply(&mut self, event: Event<K>) {
        match &event {
            Event::Init => self.listed.clear(),
            Event::InitApply(obj) => self.listed.push(Arc::new(obj.clone())),
            // The previous state is read before the change lands, so that a trigger can map both
            // (a pod whose labels or owner changed concerns both owners).
            Event::Apply(obj) | Event::Delete(obj) => {
                let old = self.store.get(&ObjectRef::from_obj(obj));
                self.writer.apply_watcher_event(&event);
                notify(&self.subscribers, old, Arc::new(obj.clone()));
                return;
            }
            Event::InitDone => {
                let mut before: HashMap<ObjectRef<K>, Arc<K>> = self
                    .store
                    .state()
                    .into_iter()
                    .map(|obj| (ObjectRef::from_obj(obj.as_ref()), obj))
                    .collect();
                self.writer.apply_watcher_event(&event);
                self.synced.send_replace(true);
                for obj in std::mem::take(&mut self.listed) {
                    let old = before.remove(&ObjectRef::from_obj(obj.as_ref()));
                    notify(&self.subscribers, old, obj);
                }
                // Deleted while the watch was down: reported in their last known state.
                for (_, gone) in before {
                    notify(&self.subscribers, None, gone);
                }
                return;
            }
        }
        self.writer.apply_watcher_event(&event);
    }
}

fn notify<K>(subscribers: &Subscribers<K>, old: Option<Arc<K>>, new: Arc<K>) {
    let mut subscribers = subscribers.lock().unwrap_or_else(|e| e.into_inner());
    // A subscriber whose controller has stopped is dropped.
    subscribers.retain(|tx| {
        old.as_ref().is_none_or(|old| tx.send(old.clone()).is_ok()) && tx.send(new.clone()).is_ok()
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use kube::ResourceExt;
    use serde_json::json;

    fn pod(name: &str, image: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": image}]},
        }))
        .unwrap()
    }

    fn image(pod: &Pod) -> &str {
        pod.spec.as_ref().unwrap().containers[0]
            .image
            .as_deref()
            .unwrap()
    }

    /// The states reported so far, as `name:image`.
    fn reported(rx: &mut mpsc::UnboundedReceiver<Arc<Pod>>) -> Vec<String> {
        let mut changes = Vec::new();
        while let Ok(pod) = rx.try_recv() {
            changes.push(format!("{}:{}", pod.name_any(), image(&pod)));
        }
        changes
    }

    fn list(feed: &mut Feed<Pod>, pods: &[Pod]) {
        feed.apply(Event::Init);
        for pod in pods {
            feed.apply(Event::InitApply(pod.clone()));
        }
        feed.apply(Event::InitDone);
    }

    #[tokio::test]
    async fn every_waiter_wakes_when_the_first_list_is_in() {
        let (mut feed, informer) = Feed::<Pod>::new();
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let informer = informer.clone();
                tokio::spawn(async move { informer.synced().await })
            })
            .collect();
        // Every waiter is parked before the list completes.
        tokio::task::yield_now().await;
        list(&mut feed, &[pod("a", "v1")]);
        for waiter in waiters {
            let synced = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
                .await
                .expect("a waiter was never woken")
                .unwrap();
            assert!(synced);
        }
        assert_eq!(informer.store().state().len(), 1);
    }

    #[tokio::test]
    async fn a_stopped_informer_is_never_synced() {
        let (feed, informer) = Feed::<Pod>::new();
        drop(feed);
        assert!(!informer.synced().await);
    }

    #[test]
    fn a_relist_reports_listed_objects_once_cached_and_vanished_ones_as_deleted() {
        let (mut feed, informer) = Feed::<Pod>::new();
        let (tx, mut rx) = mpsc::unbounded_channel();
        informer.subscribers.lock().unwrap().push(tx);
        list(&mut feed, &[pod("a", "v1"), pod("b", "v1")]);
        assert_eq!(reported(&mut rx), ["a:v1", "b:v1"]);

        // The watch broke; meanwhile a changed and b was deleted.
        feed.apply(Event::Init);
        feed.apply(Event::InitApply(pod("a", "v2")));
        assert_eq!(
            reported(&mut rx),
            Vec::<String>::new(),
            "reported before cached"
        );
        feed.apply(Event::InitDone);
        assert_eq!(reported(&mut rx), ["a:v1", "a:v2", "b:v1"]);
        let cached: Vec<String> = informer
            .store()
            .state()
            .iter()
            .map(|p| format!("{}:{}", p.name_any(), image(p)))
            .collect();
        assert_eq!(cached, ["a:v2"]);

        feed.apply(Event::Apply(pod("c", "v1")));
        feed.apply(Event::Delete(pod("c", "v1")));
        assert_eq!(reported(&mut rx), ["c:v1", "c:v1", "c:v1"]);
    }
}
