//! The single writer thread of `RedbStore` and its group commit.
//!
//! Every write is a [`WriteRequest`] on a channel. The writer takes all pending requests (up to
//! [`MAX_GROUP`]), applies each in one redb transaction with its own compare-and-swap check (a
//! failed check fails only that request and takes no revision), commits once with
//! `Durability::Immediate`, and only then publishes the events and answers the callers: an
//! acknowledged write is on disk. One fsync thus serves every concurrent writer, which is what
//! lets the store keep up with many concurrent API requests on a slow disk. Groups made only of
//! best-effort keys (Events) skip the fsync; the next ordinary commit carries them to disk.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc as std_mpsc};

use ::redb::{Database, Durability, ReadableTable, Table};
use tokio::sync::oneshot;
use tracing::{debug, error, trace};

use super::events::EventLog;
use super::{KV, META, REVISION_KEY, RedbError, decode_record, encode_record};
use crate::store::{Event, EventType, KeyValue, StoreError};

/// Bounds one transaction, so a burst cannot delay its first caller indefinitely.
const MAX_GROUP: usize = 1024;

pub(super) enum WriteOp {
    Create { value: Vec<u8> },
    Update { value: Vec<u8>, expected: u64 },
    Delete { expected: Option<u64> },
}

pub(super) struct WriteRequest {
    pub key: String,
    pub op: WriteOp,
    /// Answered with the written key-value (for a delete, the last value at the deleting
    /// revision) once the transaction is durable.
    pub reply: oneshot::Sender<Result<KeyValue, StoreError>>,
}

pub(super) struct Writer {
    db: Arc<Database>,
    requests: std_mpsc::Receiver<WriteRequest>,
    /// The last committed revision.
    revision: u64,
    published: Arc<AtomicU64>,
    events: Arc<Mutex<EventLog>>,
    /// See `RedbOptions::best_effort_prefixes`.
    best_effort: Vec<String>,
}

impl Writer {
    pub fn new(
        db: Arc<Database>,
        requests: std_mpsc::Receiver<WriteRequest>,
        revision: u64,
        published: Arc<AtomicU64>,
        events: Arc<Mutex<EventLog>>,
        best_effort: Vec<String>,
    ) -> Self {
        Self {
            db,
            requests,
            revision,
            published,
            events,
            best_effort,
        }
    }

    /// Serves requests until every sender is gone (the store was dropped).
    pub fn run(mut self) {
        while let Ok(first) = self.requests.recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match self.requests.try_recv() {
                    Ok(request) => group.push(request),
                    Err(_) => break,
                }
            }
            self.commit_group(group);
        }
        debug!("store writer stopped");
    }

    fn commit_group(&mut self, group: Vec<WriteRequest>) {
        let size = group.len();
        let (callers, writes): (Vec<_>, Vec<_>) = group
            .into_iter()
            .map(|request| (request.reply, (request.key, request.op)))
            .unzip();
        let mut outcomes = Vec::with_capacity(size);
        let mut events = Vec::with_capacity(size);
        match self.apply(writes, &mut outcomes, &mut events) {
            Ok(revision) => {
                trace!(size, revision, "group committed");
                self.revision = revision;
                self.published.store(revision, Ordering::Release);
                if !events.is_empty() {
                    self.events
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .publish(events);
                }
                for (caller, outcome) in callers.into_iter().zip(outcomes) {
                    // The caller may have given up waiting; the write stands regardless.
                    let _ = caller.send(outcome);
                }
            }
            Err(err) => {
                error!(size, error = %err, "store group commit failed");
                let err = Arc::new(err);
                for caller in callers {
                    let _ = caller.send(Err(RedbError::Redb(err.clone()).into()));
                }
            }
        }
    }

    /// Applies the group in one transaction and commits it; returns the new revision. A redb
    /// error poisons the transaction, so it fails the whole group (nothing is written).
    fn apply(
        &self,
        writes: Vec<(String, WriteOp)>,
        outcomes: &mut Vec<Result<KeyValue, StoreError>>,
        events: &mut Vec<Event>,
    ) -> Result<u64, ::redb::Error> {
        let relaxed = writes
            .iter()
            .all(|(key, _)| self.best_effort.iter().any(|p| key.starts_with(p.as_str())));
        let mut txn = self.db.begin_write()?;
        txn.set_durability(if relaxed {
            Durability::None
        } else {
            Durability::Immediate
        })?;
        let mut revision = self.revision;
        {
            let mut kv = txn.open_table(KV)?;
            for (key, op) in writes {
                let outcome = apply_one(&mut kv, key, op, revision + 1)?.map(|event| {
                    revision += 1;
                    let written = event.kv.clone();
                    events.push(event);
                    written
                });
                outcomes.push(outcome);
            }
            if revision != self.revision {
                txn.open_table(META)?.insert(REVISION_KEY, revision)?;
            }
        }
        if revision == self.revision {
            // Every request was refused: nothing to make durable.
            txn.abort()?;
        } else {
            txn.commit()?;
        }
        Ok(revision)
    }
}

/// Applies one write at `revision`. The outer error is redb's (fatal to the group); the inner one
/// is this request's refusal (not found, exists, conflict), which leaves the table untouched.
fn apply_one(
    kv: &mut Table<&str, &[u8]>,
    key: String,
    op: WriteOp,
    revision: u64,
) -> Result<Result<Event, StoreError>, ::redb::StorageError> {
    let current = match kv.get(key.as_str())? {
        Some(record) => match decode_record(&key, record.value()) {
            Ok(current) => Some(current),
            Err(corrupt) => return Ok(Err(corrupt)),
        },
        None => None,
    };
    let event = match (op, current) {
        (WriteOp::Create { .. }, Some(_)) => return Ok(Err(StoreError::AlreadyExists { key })),
        (WriteOp::Update { .. } | WriteOp::Delete { .. }, None) => {
            return Ok(Err(StoreError::NotFound { key }));
        }
        (
            WriteOp::Update { expected, .. }
            | WriteOp::Delete {
                expected: Some(expected),
            },
            Some(current),
        ) if current.mod_revision != expected => {
            return Ok(Err(StoreError::Conflict {
                key,
                expected,
                actual: current.mod_revision,
            }));
        }
        (WriteOp::Create { value }, None) => Event {
            kind: EventType::Put,
            kv: KeyValue {
                key,
                value,
                create_revision: revision,
                mod_revision: revision,
            },
            prev: None,
        },
        (WriteOp::Update { value, .. }, Some(current)) => Event {
            kind: EventType::Put,
            kv: KeyValue {
                key,
                value,
                create_revision: current.create_revision,
                mod_revision: revision,
            },
            prev: Some(current),
        },
        (WriteOp::Delete { .. }, Some(current)) => Event {
            kind: EventType::Delete,
            kv: KeyValue {
                mod_revision: revision,
                ..current.clone()
            },
            prev: Some(current),
        },
    };
    match event.kind {
        EventType::Put => {
            let record = encode_record(event.kv.create_revision, revision, &event.kv.value);
            kv.insert(event.kv.key.as_str(), record.as_slice())?;
        }
        EventType::Delete => {
            kv.remove(event.kv.key.as_str())?;
        }
    }
    Ok(Ok(event))
}
