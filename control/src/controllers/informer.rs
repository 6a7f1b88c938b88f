//! One watch and cache of a resource kind, shared by every controller that reads it (client-go's
//! shared informer). A workload controller reconciles its own kind through a
//! `kube_runtime::Controller`, reads the objects it manages (pods, replica sets, jobs) from an
//! informer's [`Store`], and is triggered by the informer's changes through
//! [`Informer::triggers`]: one pod watch serves the ReplicaSet, DaemonSet, StatefulSet and Job
//! controllers alike.
//!
//! `kube_runtime`'s own shared streams do not report deletions, which is exactly what a
//! ReplicaSet must see to replace a pod; these triggers do, and they report a changed object's
//! previous state too, so a pod that left one owner for another wakes both.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
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
}

impl<K: Resource + 'static> Clone for Informer<K>
where
    K::DynamicType: Hash + Eq,
{
    fn clone(&self) -> Self {
        Informer {
            store: self.store.clone(),
            subscribers: self.subscribers.clone(),
        }
    }
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// Starts watching `api` (every namespace) until `shutdown`.
    pub fn start(api: Api<K>, shutdown: CancellationToken) -> Self {
        let (store, mut writer) = reflector::store::<K>();
        let subscribers: Subscribers<K> = Arc::default();
        let informer = Informer {
            store: store.clone(),
            subscribers: subscribers.clone(),
        };
        let mut events = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    event = events.next() => event,
                };
                let event = match event {
                    Some(Ok(event)) => event,
                    Some(Err(e)) => {
                        warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying");
                        continue;
                    }
                    None => return,
                };
                // The previous state is read before the change lands, so that a trigger can
                // map both (a pod whose labels or owner changed concerns both owners).
                let changed = match &event {
                    Event::Apply(obj) | Event::InitApply(obj) | Event::Delete(obj) => {
                        let old = store.get(&ObjectRef::from_obj(obj));
                        let new = Arc::new(obj.clone());
                        Some((old, new))
                    }
                    Event::Init | Event::InitDone => None,
                };
                writer.apply_watcher_event(&event);
                if let Some((old, new)) = changed {
                    notify(&subscribers, old, new);
                }
            }
        });
        informer
    }

    /// The cache; empty until the first list has arrived ([`Store::wait_until_ready`]).
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

fn notify<K>(subscribers: &Subscribers<K>, old: Option<Arc<K>>, new: Arc<K>) {
    let mut subscribers = subscribers.lock().unwrap_or_else(|e| e.into_inner());
    // A subscriber whose controller has stopped is dropped.
    subscribers.retain(|tx| {
        old.as_ref().is_none_or(|old| tx.send(old.clone()).is_ok()) && tx.send(new.clone()).is_ok()
    });
}
