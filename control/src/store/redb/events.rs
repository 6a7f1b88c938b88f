//! The watch window of `RedbStore`: the last `retained_events` events in revision order (a ring)
//! and the live watchers they fan out to.
//!
//! The writer publishes each committed group here before answering its callers, and `watch`
//! replays and registers under the same lock, so a watcher started at any revision the store has
//! acknowledged misses nothing and sees nothing twice. Delivery never blocks the writer: a watcher
//! whose channel is full is dropped (its stream ends) and must re-list.

use std::collections::VecDeque;

use tokio::sync::mpsc::{self, error::TrySendError};
use tracing::warn;

use crate::store::{Event, StoreError, WatchStream};

/// Live events a watcher may fall behind by before it is dropped (on top of its replay).
pub(super) const WATCH_BUFFER: usize = 1024;

pub(super) struct EventLog {
    ring: VecDeque<Event>,
    capacity: usize,
    /// Every event with a revision above this is in the ring (or yet to happen).
    window_start: u64,
    /// The revision of the last published event (the revision at open before any).
    last: u64,
    watchers: Vec<Watcher>,
}

struct Watcher {
    prefix: String,
    /// Events up to this revision were replayed or are not wanted.
    after: u64,
    sender: mpsc::Sender<Event>,
}

impl Watcher {
    /// Offers one event; returns whether the watcher stays registered.
    fn offer(&self, event: &Event) -> bool {
        if self.sender.is_closed() {
            return false;
        }
        if event.revision() <= self.after || !event.kv.key.starts_with(&self.prefix) {
            return true;
        }
        match self.sender.try_send(event.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                warn!(
                    prefix = %self.prefix,
                    revision = event.revision(),
                    "watcher fell behind; closing its stream"
                );
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

impl EventLog {
    /// An empty window starting at `revision`: only later events can be watched.
    pub fn new(revision: u64, capacity: usize) -> Self {
        Self {
            ring: VecDeque::with_capacity(capacity.min(WATCH_BUFFER)),
            capacity,
            window_start: revision,
            last: revision,
            watchers: Vec::new(),
        }
    }

    /// Appends committed events (in revision order) and delivers them to the watchers.
    pub fn publish(&mut self, events: Vec<Event>) {
        for event in events {
            self.watchers.retain(|watcher| watcher.offer(&event));
            self.last = event.revision();
            self.ring.push_back(event);
            while self.ring.len() > self.capacity {
                if let Some(evicted) = self.ring.pop_front() {
                    self.window_start = evicted.revision();
                }
            }
        }
    }

    /// Replays retained events under `prefix` with revision > `after` (0: none, from now on)
    /// into a new stream and registers it for live ones.
    pub fn watch(&mut self, prefix: &str, after: u64) -> Result<WatchStream, StoreError> {
        let after = if after == 0 { self.last } else { after };
        if after < self.window_start {
            return Err(StoreError::Compacted {
                requested: after,
                oldest: self.window_start + 1,
            });
        }
        let first = self.ring.partition_point(|event| event.revision() <= after);
        let replay: Vec<&Event> = self
            .ring
            .range(first..)
            .filter(|event| event.kv.key.starts_with(prefix))
            .collect();
        let (sender, receiver) = mpsc::channel(replay.len() + WATCH_BUFFER);
        for event in replay {
            // Cannot fail: the channel is sized for the replay and its receiver is in hand.
            let _ = sender.try_send(event.clone());
        }
        self.watchers.push(Watcher {
            prefix: prefix.to_owned(),
            after,
            sender,
        });
        Ok(receiver)
    }
}
