//! The watch cache: one store watch per resource, fanned out in memory to every client watching
//! that resource, with a window of recent events so clients can resume from a resourceVersion.
//!
//! Guarantees: a subscriber sees every event after its starting revision exactly once, in order
//! (replay and live subscription happen under one lock with publishing). A revision older than the
//! window is refused with [`WatchError::Expired`], which the API server turns into 410.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::apiserver::{objects, stored};
use crate::store::{self, Store, StoreError};

/// Events kept per resource for clients resuming a watch (Kubernetes' default is 100; clients
/// resuming from older revisions re-list after a 410).
const WINDOW: usize = 256;
/// Live events buffered per subscriber before it is cut off (it must then re-watch, and usually
/// re-list). The ring is allocated up front for every resource, so its size is idle memory:
/// 1,024 slots, not 4,096, keep the control plane under 40 MiB.
const SUBSCRIBER_BUFFER: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change of one object, shared by every subscriber. Most watchers send the object as it
/// is, so it is kept as JSON (its resourceVersion stamped without a parse) and decoded only for
/// those that filter by selectors or print Tables, once for all of them.
#[derive(Debug)]
pub struct CachedEvent {
    pub kind: EventType,
    pub revision: u64,
    /// The object with `metadata.resourceVersion` set (for deletes: the deleting revision).
    stamped: stored::Stamped,
    object: OnceLock<Value>,
    /// The stored object before this change, decoded on first use: only watchers with
    /// selectors look at it (to see an object start or stop matching).
    prev: Option<store::KeyValue>,
    prev_object: OnceLock<Option<Value>>,
}

impl CachedEvent {
    /// The object as JSON.
    pub fn json(&self) -> &[u8] {
        &self.stamped.json
    }

    /// Its metadata as JSON.
    pub fn metadata_json(&self) -> &[u8] {
        &self.stamped.json[self.stamped.metadata.clone()]
    }

    pub fn namespace(&self) -> Option<&str> {
        self.stamped.namespace.as_deref()
    }

    /// The object decoded.
    pub fn object(&self) -> &Value {
        self.object.get_or_init(|| {
            serde_json::from_slice(&self.stamped.json).unwrap_or_else(|e| {
                warn!(revision = self.revision, error = %e, "cached object does not decode");
                Value::Null
            })
        })
    }

    /// The object before this change (absent on create).
    pub fn prev(&self) -> Option<&Value> {
        self.prev_object
            .get_or_init(|| self.prev.as_ref().and_then(|p| decode(p, p.mod_revision)))
            .as_ref()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("too old resource version: {requested} ({oldest})")]
    Expired { requested: u64, oldest: u64 },
    #[error("no watch cache for {0}")]
    UnknownResource(String),
}

struct Window {
    events: VecDeque<Arc<CachedEvent>>,
    /// Every event with a revision above this is in `events` (or still to arrive).
    complete_after: u64,
    sender: broadcast::Sender<Arc<CachedEvent>>,
}

struct ResourceCache {
    window: Mutex<Window>,
}

/// A subscription: the replayed events, then live ones from `live`.
pub struct Subscription {
    pub replay: Vec<Arc<CachedEvent>>,
    pub live: broadcast::Receiver<Arc<CachedEvent>>,
}

#[derive(Clone, Default)]
pub struct WatchCache {
    resources: Arc<HashMap<String, Arc<ResourceCache>>>,
}

impl WatchCache {
    /// Starts one store watch per key prefix, from the store's current revision.
    pub fn start<S: Store>(
        store: Arc<S>,
        prefixes: impl IntoIterator<Item = String>,
        shutdown: CancellationToken,
    ) -> Self {
        let start = store.current_revision();
        let mut resources = HashMap::new();
        for prefix in prefixes {
            let (sender, _) = broadcast::channel(SUBSCRIBER_BUFFER);
            let cache = Arc::new(ResourceCache {
                window: Mutex::new(Window {
                    events: VecDeque::with_capacity(64),
                    complete_after: start,
                    sender,
                }),
            });
            tokio::spawn(feed(
                store.clone(),
                prefix.clone(),
                cache.clone(),
                start,
                shutdown.clone(),
            ));
            resources.insert(prefix, cache);
        }
        Self {
            resources: Arc::new(resources),
        }
    }

    /// Events under `prefix` after `after_revision`, then live ones.
    pub fn subscribe(&self, prefix: &str, after_revision: u64) -> Result<Subscription, WatchError> {
        let cache = self
            .resources
            .get(prefix)
            .ok_or_else(|| WatchError::UnknownResource(prefix.to_string()))?;
        let window = cache.window.lock().unwrap_or_else(|p| p.into_inner());
        if after_revision < window.complete_after {
            return Err(WatchError::Expired {
                requested: after_revision,
                oldest: window.complete_after + 1,
            });
        }
        let replay = window
            .events
            .iter()
            .filter(|e| e.revision > after_revision)
            .cloned()
            .collect();
        Ok(Subscription {
            replay,
            live: window.sender.subscribe(),
        })
    }
}

fn decode(kv: &store::KeyValue, revision: u64) -> Option<Value> {
    objects::decode_stored(&kv.value, revision).ok()
}

fn to_cached(ev: store::Event) -> Option<CachedEvent> {
    let revision = ev.revision();
    let kind = match ev.kind {
        store::EventType::Put if ev.prev.is_some() => EventType::Modified,
        store::EventType::Put => EventType::Added,
        store::EventType::Delete => EventType::Deleted,
    };
    let stamped = match stored::stamp_stored(&ev.kv.value, revision) {
        Some(stamped) => stamped,
        // Not what the scan expects: decode it, then stamp its re-encoding.
        None => {
            let json = serde_json::to_vec(&decode(&ev.kv, revision)?).ok()?;
            stored::stamp_stored(&json, revision)?
        }
    };
    Some(CachedEvent {
        kind,
        revision,
        stamped,
        object: OnceLock::new(),
        prev: ev.prev,
        prev_object: OnceLock::new(),
    })
}

async fn feed<S: Store>(
    store: Arc<S>,
    prefix: String,
    cache: Arc<ResourceCache>,
    mut from: u64,
    shutdown: CancellationToken,
) {
    loop {
        let mut stream = match store.watch(&prefix, from) {
            Ok(s) => s,
            Err(StoreError::Compacted { .. }) => {
                // Events were lost: clients resuming from before now must re-list, and so must
                // those watching now (a new sender ends their streams), or they would wait on
                // past the gap.
                let now = store.current_revision();
                let mut window = cache.window.lock().unwrap_or_else(|p| p.into_inner());
                window.events.clear();
                window.complete_after = now;
                window.sender = broadcast::channel(SUBSCRIBER_BUFFER).0;
                from = now;
                continue;
            }
            Err(e) => {
                warn!(%prefix, error = %e, "store watch failed; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            let ev = tokio::select! {
                _ = shutdown.cancelled() => return,
                ev = stream.recv() => ev,
            };
            let Some(ev) = ev else {
                debug!(%prefix, "store watch closed; resuming");
                break;
            };
            from = ev.revision();
            let Some(cached) = to_cached(ev) else {
                warn!(%prefix, revision = from, "undecodable object in store; skipped");
                continue;
            };
            let cached = Arc::new(cached);
            let mut window = cache.window.lock().unwrap_or_else(|p| p.into_inner());
            if window.events.len() == WINDOW
                && let Some(old) = window.events.pop_front()
            {
                window.complete_after = old.revision;
            }
            window.events.push_back(cached.clone());
            // No receivers is fine: nobody is watching right now.
            let _ = window.sender.send(cached);
        }
    }
}
