//! `RedbStore`: the embedded default [`Store`], one redb file (`DATA_DIR/store.redb`).
//!
//! Layout: table `kv` maps each key to a record (`create_revision`, `mod_revision`, value); table
//! `meta` holds the global revision, written in the same transaction as every change, so a read
//! transaction sees a revision consistent with its data (that is `ListResult::revision`).
//!
//! Writes go to one writer thread that applies everything pending in one transaction and commits
//! it once, durably (group commit, `writer.rs`). Reads run on tokio's blocking pool against redb's
//! MVCC snapshots and never wait for the writer. Watches are served from an in-memory window of
//! recent events (`events.rs`), which starts empty at the current revision after a restart.

mod events;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc as std_mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ::redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;
use tracing::info;

use self::events::EventLog;
use self::writer::{WriteOp, WriteRequest, Writer};
use super::{KeyValue, ListResult, Store, StoreError, WatchStream};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION_KEY: &str = "revision";
/// A record is `create_revision` and `mod_revision` (little endian), then the value.
const RECORD_HEADER: usize = 16;

#[derive(Debug, Clone)]
pub struct RedbOptions {
    /// How many recent events stay in memory for watches to resume from. The API server's
    /// watch cache keeps its own window, so this one only bridges a watch cache's restart.
    pub retained_events: usize,
    /// Upper bound of redb's page cache: the operating system's page cache serves the rest,
    /// and a small control plane should stay small.
    pub cache_bytes: usize,
    /// Keys under these prefixes are best effort: a group holding only such writes commits
    /// without waiting for the disk (they become durable with the next ordinary commit, and a
    /// crash may lose the last of them). Kubernetes treats Events this way: they are
    /// rate-limited, expire, and are dropped under pressure, so they must never make a pod's
    /// own writes wait for an fsync.
    pub best_effort_prefixes: Vec<String>,
}

impl Default for RedbOptions {
    fn default() -> Self {
        Self {
            retained_events: 1_024,
            cache_bytes: 8 * 1024 * 1024,
            best_effort_prefixes: Vec::new(),
        }
    }
}

/// Failures of the redb backend, boxed into [`StoreError::Backend`].
#[derive(Debug, thiserror::Error)]
enum RedbError {
    /// Shared because one failed group commit fails every write in it.
    #[error("redb: {0}")]
    Redb(#[source] Arc<::redb::Error>),
    #[error("record of key {key} is corrupt ({len} bytes)")]
    CorruptRecord { key: String, len: usize },
    #[error("the store's writer thread has stopped")]
    WriterStopped,
    #[error("creating directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("starting the store's writer thread: {0}")]
    SpawnWriter(#[source] std::io::Error),
    #[error("store read task failed: {0}")]
    ReadTask(#[source] tokio::task::JoinError),
}

impl From<RedbError> for StoreError {
    fn from(err: RedbError) -> Self {
        StoreError::Backend(Box::new(err))
    }
}

fn db_err(err: impl Into<::redb::Error>) -> StoreError {
    RedbError::Redb(Arc::new(err.into())).into()
}

fn encode_record(create_revision: u64, mod_revision: u64, value: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(RECORD_HEADER + value.len());
    record.extend_from_slice(&create_revision.to_le_bytes());
    record.extend_from_slice(&mod_revision.to_le_bytes());
    record.extend_from_slice(value);
    record
}

fn decode_record(key: &str, record: &[u8]) -> Result<KeyValue, StoreError> {
    let corrupt = || RedbError::CorruptRecord {
        key: key.to_owned(),
        len: record.len(),
    };
    let (header, value) = record.split_at_checked(RECORD_HEADER).ok_or_else(corrupt)?;
    let (create, modified) = header.split_at(8);
    let revision = |bytes: &[u8]| {
        bytes
            .try_into()
            .map(u64::from_le_bytes)
            .map_err(|_| corrupt())
    };
    Ok(KeyValue {
        key: key.to_owned(),
        value: value.to_vec(),
        create_revision: revision(create)?,
        mod_revision: revision(modified)?,
    })
}

/// The embedded store. Dropping it stops the writer thread (after its current group commit) and
/// closes the file; open watch streams end.
pub struct RedbStore {
    db: Arc<Database>,
    /// `None` only while dropping, so the writer sees its channel close before it is joined.
    writes: Option<std_mpsc::Sender<WriteRequest>>,
    writer: Option<JoinHandle<()>>,
    revision: Arc<AtomicU64>,
    events: Arc<Mutex<EventLog>>,
    paged_snapshots: Arc<Mutex<PagedSnapshots>>,
}

impl RedbStore {
    /// Opens (or creates) the store file at `path`, creating its directory if needed. Blocking:
    /// call it at startup, not on a busy runtime.
    pub fn open(path: &Path, options: RedbOptions) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| RedbError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let db = Arc::new(
            Database::builder()
                .set_cache_size(options.cache_bytes)
                .create(path)
                .map_err(db_err)?,
        );
        let revision = init_tables(&db)?;
        info!(path = %path.display(), revision, "opened redb store");

        let current = Arc::new(AtomicU64::new(revision));
        let events = Arc::new(Mutex::new(EventLog::new(revision, options.retained_events)));
        let (writes, requests) = std_mpsc::channel();
        let writer = Writer::new(
            db.clone(),
            requests,
            revision,
            current.clone(),
            events.clone(),
            options.best_effort_prefixes.clone(),
        );
        let writer = std::thread::Builder::new()
            .name("skiff-store-writer".into())
            .spawn(move || writer.run())
            .map_err(RedbError::SpawnWriter)?;
        Ok(Self {
            db,
            writes: Some(writes),
            writer: Some(writer),
            revision: current,
            events,
            paged_snapshots: Arc::default(),
        })
    }

    async fn write(&self, key: &str, op: WriteOp) -> Result<KeyValue, StoreError> {
        let (reply, answer) = oneshot::channel();
        let request = WriteRequest {
            key: key.to_owned(),
            op,
            reply,
        };
        self.writes
            .as_ref()
            .ok_or(RedbError::WriterStopped)?
            .send(request)
            .map_err(|_| RedbError::WriterStopped)?;
        answer.await.map_err(|_| RedbError::WriterStopped)?
    }

    /// Runs a read on the blocking pool: redb reads are synchronous file I/O.
    async fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || read(&db))
            .await
            .map_err(RedbError::ReadTask)?
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        self.writes = None;
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("the store's writer thread panicked");
        }
    }
}

/// Creates the tables on first use and returns the persisted revision.
fn init_tables(db: &Database) -> Result<u64, StoreError> {
    let txn = db.begin_write().map_err(db_err)?;
    let revision = {
        txn.open_table(KV).map_err(db_err)?;
        let meta = txn.open_table(META).map_err(db_err)?;
        read_revision(&meta)?
    };
    txn.commit().map_err(db_err)?;
    Ok(revision)
}

fn read_revision(meta: &impl ReadableTable<&'static str, u64>) -> Result<u64, StoreError> {
    Ok(meta
        .get(REVISION_KEY)
        .map_err(db_err)?
        .map_or(0, |revision| revision.value()))
}

fn get_at(db: &Database, key: &str) -> Result<Option<KeyValue>, StoreError> {
    let txn = db.begin_read().map_err(db_err)?;
    let kv = txn.open_table(KV).map_err(db_err)?;
    let record = kv.get(key).map_err(db_err)?;
    record
        .map(|record| decode_record(key, record.value()))
        .transpose()
}

/// Read transactions kept open for paginated lists: redb's MVCC snapshots are what let the next
/// page show the state the first one did. Each one pins the pages of its revision, so they are
/// few and short-lived.
#[derive(Default)]
struct PagedSnapshots {
    /// Oldest first.
    held: VecDeque<(u64, Instant, Arc<ReadTransaction>)>,
}

/// How long a paginated list can be continued (Kubernetes keeps etcd's history for 5 minutes;
/// a client reading its pages back to back needs far less).
const PAGED_SNAPSHOT_TTL: Duration = Duration::from_secs(60);
/// How many paginated lists can be in progress at different revisions at once.
const PAGED_SNAPSHOTS: usize = 16;

impl PagedSnapshots {
    fn get(&mut self, revision: u64) -> Option<Arc<ReadTransaction>> {
        self.expire();
        self.held
            .iter()
            .find(|(r, _, _)| *r == revision)
            .map(|(_, _, txn)| txn.clone())
    }

    fn hold(&mut self, revision: u64, txn: Arc<ReadTransaction>) {
        self.expire();
        if self.held.iter().any(|(r, _, _)| *r == revision) {
            return;
        }
        if self.held.len() == PAGED_SNAPSHOTS {
            self.held.pop_front();
        }
        self.held.push_back((revision, Instant::now(), txn));
    }

    fn expire(&mut self) {
        while self
            .held
            .front()
            .is_some_and(|(_, at, _)| at.elapsed() > PAGED_SNAPSHOT_TTL)
        {
            self.held.pop_front();
        }
    }
}

fn list_at(
    db: &Database,
    snapshots: &Mutex<PagedSnapshots>,
    prefix: &str,
    start_after: Option<&str>,
    limit: usize,
    at: Option<u64>,
) -> Result<ListResult, StoreError> {
    use std::ops::Bound;

    let held = at.and_then(|revision| {
        snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(revision)
    });
    let txn = match held {
        Some(txn) => txn,
        None => Arc::new(db.begin_read().map_err(db_err)?),
    };
    let revision = read_revision(&txn.open_table(META).map_err(db_err)?)?;
    // Nothing written since the requested revision also shows its state.
    if let Some(requested) = at.filter(|r| *r != revision) {
        return Err(StoreError::Compacted {
            requested,
            oldest: revision,
        });
    }
    let kv = txn.open_table(KV).map_err(db_err)?;
    let start = match start_after {
        Some(after) if after >= prefix => Bound::Excluded(after),
        _ => Bound::Included(prefix),
    };
    let mut result = ListResult {
        revision,
        ..ListResult::default()
    };
    for entry in kv
        .range::<&str>((start, Bound::Unbounded))
        .map_err(db_err)?
    {
        let (key, record) = entry.map_err(db_err)?;
        let key = key.value();
        if !key.starts_with(prefix) {
            break;
        }
        if limit != 0 && result.items.len() == limit {
            result.more = true;
            break;
        }
        result.items.push(decode_record(key, record.value())?);
    }
    if result.more {
        snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .hold(revision, txn);
    }
    Ok(result)
}

impl Store for RedbStore {
    fn current_revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        // A point read is a few B-tree pages, almost always in redb's or the kernel's cache:
        // running it in place costs less than the two thread hand-offs of the blocking pool.
        get_at(&self.db, key)
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<u64>,
    ) -> Result<ListResult, StoreError> {
        let prefix = prefix.to_owned();
        let start_after = start_after.map(str::to_owned);
        let snapshots = self.paged_snapshots.clone();
        self.read(move |db| {
            list_at(
                db,
                &snapshots,
                &prefix,
                start_after.as_deref(),
                limit,
                revision,
            )
        })
        .await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<u64, StoreError> {
        let kv = self.write(key, WriteOp::Create { value }).await?;
        Ok(kv.mod_revision)
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: u64,
    ) -> Result<u64, StoreError> {
        let op = WriteOp::Update {
            value,
            expected: expected_revision,
        };
        Ok(self.write(key, op).await?.mod_revision)
    }

    async fn delete(
        &self,
        key: &str,
        expected_revision: Option<u64>,
    ) -> Result<KeyValue, StoreError> {
        let op = WriteOp::Delete {
            expected: expected_revision,
        };
        self.write(key, op).await
    }

    fn watch(&self, prefix: &str, after_revision: u64) -> Result<WatchStream, StoreError> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .watch(prefix, after_revision)
    }
}
