//! The `Store` contract suite: one set of cases, generic over `S: Store`, that every backend runs.
//!
//! A backend's tests provide an async fixture `fn(retained_events: usize) -> Fixture<S>` (a fresh,
//! empty store that keeps at least the last `retained_events` events for watches and forgets the
//! ones before them) and invoke [`store_contract_tests!`] with it, which expands to one
//! `#[tokio::test]` per case.
//!
//! The cases assume nothing else writes to the store, so revisions advance by exactly one per
//! successful write.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::{Event, EventType, KeyValue, Store, StoreError, WatchStream};

/// A store under test and whatever must live as long as it (a temp dir, a server).
pub(crate) struct Fixture<S> {
    pub store: Arc<S>,
    _keep: Box<dyn Send + Sync>,
}

impl<S: Store> Fixture<S> {
    pub fn new(store: S, keep: impl Send + Sync + 'static) -> Self {
        Self {
            store: Arc::new(store),
            _keep: Box::new(keep),
        }
    }
}

/// Expands to one test per contract case, each on a fresh store from `$fixture`.
macro_rules! store_contract_tests {
    ($fixture:path) => {
        $crate::store::contract::store_contract_tests!(@cases $fixture, 10_000;
            create_then_get, create_existing_fails, update_checks_revision, delete_semantics,
            revisions_are_never_reused, list_by_prefix, list_pages, list_pages_show_one_revision,
            watch_replays_history,
            watch_streams_live_events_under_prefix, watch_from_zero_starts_now,
            concurrent_creates_get_distinct_revisions, concurrent_updates_one_wins,
            watch_sees_concurrent_writes_in_order);
        $crate::store::contract::store_contract_tests!(@cases $fixture, 4; watch_compacted);
    };
    (@cases $fixture:path, $retained:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = $fixture($retained).await;
                $crate::store::contract::$case(&fixture.store).await;
            }
        )+
    };
}
pub(crate) use store_contract_tests;

const PODS: &str = "/registry/core/pods/default/";

fn pod(name: &str) -> String {
    format!("{PODS}{name}")
}

/// The next event, failing the test if none arrives in time or the stream ended.
pub(crate) async fn next_event(stream: &mut WatchStream) -> Event {
    match tokio::time::timeout(Duration::from_secs(10), stream.recv()).await {
        Ok(Some(event)) => event,
        Ok(None) => panic!("watch stream closed"),
        Err(_) => panic!("no watch event within 10s"),
    }
}

/// Asserts no event is pending (after giving a late one a moment to arrive).
async fn assert_quiet(stream: &mut WatchStream) {
    match tokio::time::timeout(Duration::from_millis(200), stream.recv()).await {
        Err(_) => {}
        Ok(event) => panic!("unexpected watch item {event:?}"),
    }
}

pub(crate) async fn create_then_get<S: Store>(store: &Arc<S>) {
    let before = store.current_revision();
    let rev = store
        .create(&pod("a"), b"{\"v\":1}".to_vec())
        .await
        .unwrap();
    assert_eq!(rev, before + 1);
    assert_eq!(store.current_revision(), rev);
    let kv = store.get(&pod("a")).await.unwrap();
    assert_eq!(
        kv,
        Some(KeyValue {
            key: pod("a"),
            value: b"{\"v\":1}".to_vec(),
            create_revision: rev,
            mod_revision: rev,
        })
    );
    assert_eq!(store.get(&pod("missing")).await.unwrap(), None);
}

pub(crate) async fn create_existing_fails<S: Store>(store: &Arc<S>) {
    let rev = store.create(&pod("a"), b"1".to_vec()).await.unwrap();
    let err = store.create(&pod("a"), b"2".to_vec()).await.unwrap_err();
    assert!(matches!(&err, StoreError::AlreadyExists { key } if *key == pod("a")));
    assert_eq!(
        err.to_string(),
        "key /registry/core/pods/default/a already exists"
    );
    // A refused write takes no revision and changes nothing.
    assert_eq!(store.current_revision(), rev);
    assert_eq!(store.get(&pod("a")).await.unwrap().unwrap().value, b"1");
}

pub(crate) async fn update_checks_revision<S: Store>(store: &Arc<S>) {
    let created = store.create(&pod("a"), b"1".to_vec()).await.unwrap();
    let updated = store
        .update(&pod("a"), b"2".to_vec(), created)
        .await
        .unwrap();
    assert_eq!(updated, created + 1);
    let kv = store.get(&pod("a")).await.unwrap().unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.create_revision, kv.mod_revision),
        (b"2".as_slice(), created, updated)
    );

    let err = store
        .update(&pod("a"), b"3".to_vec(), created)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { key, expected, actual }
            if *key == pod("a") && *expected == created && *actual == updated),
        "{err:?}"
    );
    assert_eq!(store.get(&pod("a")).await.unwrap().unwrap().value, b"2");

    let err = store
        .update(&pod("nope"), b"3".to_vec(), 1)
        .await
        .unwrap_err();
    assert!(matches!(&err, StoreError::NotFound { key } if *key == pod("nope")));
    assert_eq!(store.current_revision(), updated);
}

pub(crate) async fn delete_semantics<S: Store>(store: &Arc<S>) {
    let created = store.create(&pod("a"), b"1".to_vec()).await.unwrap();
    let updated = store
        .update(&pod("a"), b"2".to_vec(), created)
        .await
        .unwrap();

    let err = store.delete(&pod("a"), Some(created)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { expected, actual, .. }
        if expected == created && actual == updated));
    assert!(store.get(&pod("a")).await.unwrap().is_some());

    let deleted = store.delete(&pod("a"), Some(updated)).await.unwrap();
    assert_eq!(
        deleted,
        KeyValue {
            key: pod("a"),
            value: b"2".to_vec(),
            create_revision: created,
            mod_revision: updated + 1,
        }
    );
    assert_eq!(store.current_revision(), updated + 1);
    assert_eq!(store.get(&pod("a")).await.unwrap(), None);
    let err = store.delete(&pod("a"), None).await.unwrap_err();
    assert!(matches!(&err, StoreError::NotFound { key } if *key == pod("a")));

    // Without a precondition any revision goes.
    store.create(&pod("b"), b"1".to_vec()).await.unwrap();
    let deleted = store.delete(&pod("b"), None).await.unwrap();
    assert_eq!(deleted.mod_revision, store.current_revision());
}

pub(crate) async fn revisions_are_never_reused<S: Store>(store: &Arc<S>) {
    let first = store.create(&pod("a"), b"1".to_vec()).await.unwrap();
    let deleted = store.delete(&pod("a"), None).await.unwrap().mod_revision;
    let again = store.create(&pod("a"), b"1".to_vec()).await.unwrap();
    assert!(
        first < deleted && deleted < again,
        "{first} {deleted} {again}"
    );
    let kv = store.get(&pod("a")).await.unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision), (again, again));
}

pub(crate) async fn list_by_prefix<S: Store>(store: &Arc<S>) {
    for key in [
        "/registry/core/pods/ns1/b",
        "/registry/core/pods/ns1/a",
        "/registry/core/pods/ns10/a",
        "/registry/core/pods/ns0/z",
        "/registry/core/services/ns1/a",
    ] {
        store.create(key, key.as_bytes().to_vec()).await.unwrap();
    }
    let list = store
        .list("/registry/core/pods/ns1/", None, 0, None)
        .await
        .unwrap();
    let keys: Vec<_> = list.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        ["/registry/core/pods/ns1/a", "/registry/core/pods/ns1/b"]
    );
    assert_eq!(list.items[0].value, b"/registry/core/pods/ns1/a");
    assert!(!list.more);
    assert_eq!(list.revision, store.current_revision());

    let all_pods = store
        .list("/registry/core/pods/", None, 0, None)
        .await
        .unwrap();
    assert_eq!(all_pods.items.len(), 4);
    let none = store.list("/registry/apps/", None, 0, None).await.unwrap();
    assert!(none.items.is_empty() && !none.more);
    assert_eq!(none.revision, store.current_revision());
}

pub(crate) async fn list_pages<S: Store>(store: &Arc<S>) {
    for i in 0..7 {
        store.create(&pod(&format!("p{i}")), vec![i]).await.unwrap();
    }
    store
        .create("/registry/core/pods/other/x", vec![])
        .await
        .unwrap();
    let names = |items: &[KeyValue]| -> Vec<String> {
        items
            .iter()
            .map(|kv| kv.key[PODS.len()..].to_owned())
            .collect()
    };

    let page = store.list(PODS, None, 3, None).await.unwrap();
    assert_eq!(
        (names(&page.items), page.more),
        (vec!["p0".into(), "p1".into(), "p2".into()], true)
    );
    let revision = page.revision;
    let page = store.list(PODS, Some(&pod("p2")), 3, None).await.unwrap();
    assert_eq!(
        (names(&page.items), page.more),
        (vec!["p3".into(), "p4".into(), "p5".into()], true)
    );
    let page = store.list(PODS, Some(&pod("p5")), 3, None).await.unwrap();
    assert_eq!(
        (names(&page.items), page.more),
        (vec!["p6".to_owned()], false)
    );
    // A limit that exactly fits the rest leaves nothing more.
    let page = store.list(PODS, Some(&pod("p3")), 3, None).await.unwrap();
    assert_eq!(page.items.len(), 3);
    assert!(!page.more);
    // `start_after` need not exist, and one before the prefix starts at the prefix.
    let page = store.list(PODS, Some(&pod("p35")), 0, None).await.unwrap();
    assert_eq!(names(&page.items), ["p4", "p5", "p6"]);
    let page = store
        .list(PODS, Some("/registry/a"), 2, None)
        .await
        .unwrap();
    assert_eq!(names(&page.items), ["p0", "p1"]);
    assert_eq!(revision, store.current_revision());
}

pub(crate) async fn list_pages_show_one_revision<S: Store>(store: &Arc<S>) {
    for i in 0..4 {
        store.create(&pod(&format!("p{i}")), vec![i]).await.unwrap();
    }
    let first = store.list(PODS, None, 2, None).await.unwrap();
    assert!(first.more);
    let at = first.revision;
    // Changes after the first page, before and after where it stopped.
    let p0 = store.get(&pod("p0")).await.unwrap().unwrap();
    store
        .update(&pod("p0"), b"new".to_vec(), p0.mod_revision)
        .await
        .unwrap();
    let p2 = store.get(&pod("p2")).await.unwrap().unwrap();
    store
        .update(&pod("p2"), b"new".to_vec(), p2.mod_revision)
        .await
        .unwrap();
    store.delete(&pod("p3"), None).await.unwrap();
    store.create(&pod("p4"), vec![4]).await.unwrap();

    let rest = store
        .list(PODS, Some(&pod("p1")), 0, Some(at))
        .await
        .unwrap();
    assert_eq!(rest.revision, at);
    let values: Vec<(&str, &[u8])> = rest
        .items
        .iter()
        .map(|kv| (&kv.key[PODS.len()..], kv.value.as_slice()))
        .collect();
    assert_eq!(values, [("p2", &[2u8][..]), ("p3", &[3u8][..])]);
    // A fresh list shows the changes.
    let latest = store.list(PODS, Some(&pod("p1")), 0, None).await.unwrap();
    assert_eq!(latest.revision, store.current_revision());
    assert_eq!(latest.items.len(), 2);
    assert_eq!(latest.items[0].value, b"new");
}

pub(crate) async fn watch_replays_history<S: Store>(store: &Arc<S>) {
    // Revision 0 would mean "from now".
    let start = store.create("/registry/start", vec![]).await.unwrap();
    let a1 = store.create(&pod("a"), b"a1".to_vec()).await.unwrap();
    store
        .create("/registry/core/pods/other/x", vec![])
        .await
        .unwrap();
    let b1 = store.create(&pod("b"), b"b1".to_vec()).await.unwrap();
    let a2 = store.update(&pod("a"), b"a2".to_vec(), a1).await.unwrap();
    let b_gone = store.delete(&pod("b"), None).await.unwrap();

    let mut watch = store.watch(PODS, start).unwrap();
    let event = next_event(&mut watch).await;
    assert_eq!(
        (event.kind, event.kv.key.as_str(), event.revision()),
        (EventType::Put, pod("a").as_str(), a1)
    );
    assert_eq!(event.prev, None);
    let event = next_event(&mut watch).await;
    assert_eq!(
        (event.kind, event.revision(), event.kv.value.as_slice()),
        (EventType::Put, b1, b"b1".as_slice())
    );
    let event = next_event(&mut watch).await;
    assert_eq!(event.kv.value, b"a2");
    assert_eq!((event.kv.create_revision, event.kv.mod_revision), (a1, a2));
    let prev = event.prev.expect("an update carries the previous value");
    assert_eq!(
        (prev.value.as_slice(), prev.mod_revision),
        (b"a1".as_slice(), a1)
    );
    let event = next_event(&mut watch).await;
    assert_eq!(event.kind, EventType::Delete);
    assert_eq!(event.kv, b_gone);
    assert_quiet(&mut watch).await;

    // Resuming from a revision replays only what came after it.
    let mut watch = store.watch(PODS, a2).unwrap();
    assert_eq!(next_event(&mut watch).await.kind, EventType::Delete);
    let mut watch = store.watch(PODS, store.current_revision()).unwrap();
    assert_quiet(&mut watch).await;
}

pub(crate) async fn watch_streams_live_events_under_prefix<S: Store>(store: &Arc<S>) {
    let mut watch = store.watch(PODS, store.current_revision()).unwrap();
    let mut everything = store.watch("/registry/", store.current_revision()).unwrap();
    store
        .create("/registry/core/pods/default-2/a", vec![])
        .await
        .unwrap();
    store
        .create("/registry/core/services/default/a", vec![])
        .await
        .unwrap();
    let rev = store.create(&pod("a"), b"live".to_vec()).await.unwrap();
    let event = next_event(&mut watch).await;
    assert_eq!(
        (event.kv.key.as_str(), event.revision()),
        (pod("a").as_str(), rev)
    );
    assert_eq!(event.kv.value, b"live");
    let updated = store
        .update(&pod("a"), b"again".to_vec(), rev)
        .await
        .unwrap();
    assert_eq!(next_event(&mut watch).await.revision(), updated);
    assert_quiet(&mut watch).await;

    let mut revisions = Vec::new();
    for _ in 0..4 {
        revisions.push(next_event(&mut everything).await.revision());
    }
    assert_eq!(revisions, [rev - 2, rev - 1, rev, updated]);
}

pub(crate) async fn watch_from_zero_starts_now<S: Store>(store: &Arc<S>) {
    store.create(&pod("old"), vec![]).await.unwrap();
    let mut watch = store.watch(PODS, 0).unwrap();
    let rev = store.create(&pod("new"), vec![]).await.unwrap();
    let event = next_event(&mut watch).await;
    assert_eq!((event.revision(), event.kv.key), (rev, pod("new")));
}

pub(crate) async fn watch_compacted<S: Store>(store: &Arc<S>) {
    // The fixture retains (at least) the last 4 events and no more than a few more.
    let start = store.current_revision();
    for i in 0..40 {
        store
            .create(&pod(&format!("p{i:02}")), vec![])
            .await
            .unwrap();
    }
    let err = store.watch(PODS, start + 1).unwrap_err();
    let newest_kept = store.current_revision() - 3;
    assert!(
        matches!(err, StoreError::Compacted { requested, oldest }
            if requested == start + 1 && oldest > start + 2 && oldest <= newest_kept),
        "{err:?}"
    );
    let mut watch = store.watch(PODS, store.current_revision() - 2).unwrap();
    assert_eq!(next_event(&mut watch).await.kv.key, pod("p38"));
    assert_eq!(next_event(&mut watch).await.kv.key, pod("p39"));
    assert_quiet(&mut watch).await;
}

pub(crate) async fn concurrent_creates_get_distinct_revisions<S: Store>(store: &Arc<S>) {
    const TASKS: usize = 32;
    const EACH: usize = 200;
    let start = store.current_revision();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut revisions = Vec::with_capacity(EACH);
                for i in 0..EACH {
                    let key = pod(&format!("t{t:02}-{i:03}"));
                    revisions.push(store.create(&key, key.clone().into_bytes()).await.unwrap());
                }
                revisions
            })
        })
        .collect();
    let mut revisions = BTreeSet::new();
    for task in tasks {
        for revision in task.await.unwrap() {
            assert!(
                revisions.insert(revision),
                "revision {revision} given twice"
            );
        }
    }
    let total = (TASKS * EACH) as u64;
    assert_eq!(revisions.len() as u64, total);
    assert_eq!(revisions.first(), Some(&(start + 1)));
    assert_eq!(revisions.last(), Some(&(start + total)));
    assert_eq!(store.current_revision(), start + total);
    let list = store.list(PODS, None, 0, None).await.unwrap();
    assert_eq!(list.items.len() as u64, total);
    assert!(list.items.iter().all(|kv| kv.value == kv.key.as_bytes()));
}

pub(crate) async fn concurrent_updates_one_wins<S: Store>(store: &Arc<S>) {
    let rev = store.create(&pod("a"), b"0".to_vec()).await.unwrap();
    let tasks: Vec<_> = (0..16u8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.update(&pod("a"), vec![i], rev).await })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(revision) => winners.push(revision),
            Err(StoreError::Conflict { expected, .. }) => assert_eq!(expected, rev),
            Err(err) => panic!("unexpected {err:?}"),
        }
    }
    assert_eq!(winners, [rev + 1]);
    assert_eq!(store.current_revision(), rev + 1);
}

pub(crate) async fn watch_sees_concurrent_writes_in_order<S: Store>(store: &Arc<S>) {
    let start = store.create("/registry/start", vec![]).await.unwrap();
    let mut watch = store.watch(PODS, start).unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    let key = pod(&format!("w{t}-{i}"));
                    let rev = store.create(&key, vec![]).await.unwrap();
                    store.update(&key, vec![1], rev).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    for expected in start + 1..=start + 800 {
        assert_eq!(next_event(&mut watch).await.revision(), expected);
    }
    assert_quiet(&mut watch).await;
}
