//! What a controller has just created or deleted and its cache has not shown yet (client-go's
//! `ControllerExpectations`). Until the cache catches up, counting pods there would count too few
//! (and create duplicates) or too many (and delete twice), so an owner whose expectations are
//! pending has its status updated but its pods left alone.
//!
//! Unlike client-go, nothing has to report observations: the cache itself is asked whether each
//! created object has appeared and each deleted one has gone. Expectations older than five
//! minutes are dropped, as client-go's are, so a lost watch event cannot stall an owner forever.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const EXPIRY: Duration = Duration::from_secs(5 * 60);

struct Pending {
    created: HashSet<String>,
    deleted: HashSet<String>,
    since: Instant,
}

/// Expectations per owner, keyed by [`owner_key`]; the objects by name.
#[derive(Default)]
pub struct Expectations {
    owners: Mutex<HashMap<String, Pending>>,
}

/// How the cache sees an object a controller wrote.
pub enum Seen {
    /// Not in the cache.
    Absent,
    /// In the cache, being deleted.
    Deleting,
    /// In the cache.
    Present,
}

/// An owner's key: `namespace/name/uid`, so that a re-created owner of the same name starts
/// with no expectations.
pub fn owner_key<K: kube::Resource>(owner: &K) -> String {
    let meta = owner.meta();
    format!(
        "{}/{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
        meta.uid.as_deref().unwrap_or_default()
    )
}

impl Expectations {
    pub fn expect_created(&self, owner: &str, name: String) {
        self.pending(owner, |p| p.created.insert(name));
    }

    pub fn expect_deleted(&self, owner: &str, name: String) {
        self.pending(owner, |p| p.deleted.insert(name));
    }

    /// A write that failed will not show up: stop waiting for it.
    pub fn forget(&self, owner: &str, name: &str) {
        self.pending(owner, |p| p.created.remove(name) | p.deleted.remove(name));
    }

    /// Whether the cache (asked through `seen`) shows every write expected for `owner`; the
    /// writes it shows are forgotten.
    pub fn satisfied(&self, owner: &str, seen: impl Fn(&str) -> Seen) -> bool {
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        let Some(pending) = owners.get_mut(owner) else {
            return true;
        };
        pending
            .created
            .retain(|name| matches!(seen(name), Seen::Absent));
        pending
            .deleted
            .retain(|name| matches!(seen(name), Seen::Present));
        let done = (pending.created.is_empty() && pending.deleted.is_empty())
            || pending.since.elapsed() > EXPIRY;
        if done {
            owners.remove(owner);
        }
        done
    }

    /// The owner is gone: nothing more to wait for.
    pub fn delete(&self, owner: &str) {
        self.owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(owner);
    }

    fn pending<T>(&self, owner: &str, change: impl FnOnce(&mut Pending) -> T) -> T {
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        let pending = owners.entry(owner.to_string()).or_insert_with(|| Pending {
            created: HashSet::new(),
            deleted: HashSet::new(),
            since: Instant::now(),
        });
        change(pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_waits_until_the_cache_shows_its_writes() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/web", |_| Seen::Absent));
        e.expect_created("ns/web", "web-a".into());
        e.expect_deleted("ns/web", "web-b".into());
        assert!(
            !e.satisfied("ns/web", |n| if n == "web-a" {
                Seen::Absent
            } else {
                Seen::Present
            }),
            "web-a not seen yet"
        );
        assert!(
            !e.satisfied("ns/web", |_| Seen::Present),
            "web-b still there"
        );
        // web-a arrived, web-b is being deleted.
        assert!(e.satisfied("ns/web", |n| if n == "web-a" {
            Seen::Present
        } else {
            Seen::Deleting
        }));
    }

    #[test]
    fn a_failed_write_is_forgotten() {
        let e = Expectations::default();
        e.expect_created("ns/web", "web-a".into());
        e.forget("ns/web", "web-a");
        assert!(e.satisfied("ns/web", |_| Seen::Absent));
    }
}
