//! The `Store` trait: a revisioned key-value store with compare-and-swap writes and watches, the
//! one seam between the API server and its backends (`RedbStore` embedded, later `EtcdStore`).
//!
//! Contract (the suite in `contract.rs` checks every backend against it):
//! - One global revision, incremented by every successful write; a key's `mod_revision` is the
//!   revision of its last write and becomes the object's `resourceVersion`.
//! - `create` fails with `AlreadyExists`; `update`/`delete` with a precondition fail with
//!   `Conflict` when the key's `mod_revision` differs, `NotFound` when it is absent.
//! - A write is acknowledged only once durable: it survives `kill -9` of the process.
//! - `watch(prefix, rev)` delivers, in revision order, every event with revision > `rev` under
//!   `prefix`, then live events. A `rev` older than the retained window fails with `Compacted`.
//!   `rev` 0 means "from now": no replay (the API server resolves resourceVersion "0" itself).
//! - A page cut by `limit` can be continued at its revision for a while after it was read (the
//!   remaining pages show the state the first one did); after that, or at a revision the store
//!   cannot read at, `list` fails with `Compacted`. Without this, a client that pages through a
//!   list and then watches from its revision would miss changes made to the early pages
//!   meanwhile.

#[cfg(test)]
mod contract;
mod redb;

pub use self::redb::{RedbOptions, RedbStore};

use tokio::sync::mpsc;

/// A stored value with its revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created the key.
    pub create_revision: u64,
    /// Revision of the key's last write.
    pub mod_revision: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Put,
    Delete,
}

/// One change. For `Put`, `kv` is the new value and `prev` the old one (absent on create);
/// for `Delete`, `kv.value` is the last value and `kv.mod_revision` the deleting revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventType,
    pub kv: KeyValue,
    pub prev: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> u64 {
        self.kv.mod_revision
    }
}

/// A page of a list.
#[derive(Debug, Clone, Default)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    /// The store revision the list was read at.
    pub revision: u64,
    /// More keys follow the last item (a `limit` cut the page).
    pub more: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    #[error("key {key} not found")]
    NotFound { key: String },
    #[error("key {key} was modified: expected revision {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: u64,
        actual: u64,
    },
    /// `oldest` is the oldest revision whose event can still be delivered, so watching from
    /// `oldest - 1` works. Kubernetes words it "too old resource version: R (oldest - 1)".
    #[error("revision {requested} has been compacted; oldest retained is {oldest}")]
    Compacted { requested: u64, oldest: u64 },
    #[error("store backend: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A live watch: events arrive in revision order; the channel closes if the store shuts down or
/// the watcher falls too far behind (then it must re-list, as after `Compacted`).
pub type WatchStream = mpsc::Receiver<Event>;

/// The storage backend of the API server. All methods are safe to call concurrently.
pub trait Store: Send + Sync + 'static {
    /// The current (latest committed) revision.
    fn current_revision(&self) -> u64;

    fn get(&self, key: &str) -> impl Future<Output = Result<Option<KeyValue>, StoreError>> + Send;

    /// Keys under `prefix` in key order, starting after `start_after` (exclusive) when given,
    /// at most `limit` items when non-zero. Read at the latest revision, or at `revision` when
    /// given: the revision of an earlier page cut by `limit`, so that every page of one list
    /// shows the same state.
    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<u64>,
    ) -> impl Future<Output = Result<ListResult, StoreError>> + Send;

    /// Writes a new key; returns its revision.
    fn create(
        &self,
        key: &str,
        value: Vec<u8>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Replaces a key whose `mod_revision` is `expected_revision`; returns the new revision.
    fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: u64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Removes a key (only if its `mod_revision` matches, when `expected_revision` is given);
    /// returns the deleted value, whose `mod_revision` is the deleting revision.
    fn delete(
        &self,
        key: &str,
        expected_revision: Option<u64>,
    ) -> impl Future<Output = Result<KeyValue, StoreError>> + Send;

    /// Events under `prefix` with revision greater than `after_revision`, then live ones.
    fn watch(&self, prefix: &str, after_revision: u64) -> Result<WatchStream, StoreError>;
}
