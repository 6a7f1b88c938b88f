//! The contract suite on `RedbStore`, and what only an embedded file store has: restart
//! persistence, `kill -9` durability, the bounded watch buffer.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use super::events::WATCH_BUFFER;
use super::*;
use crate::store::EventType;
use crate::store::contract::{Fixture, next_event, store_contract_tests};

async fn fixture(retained_events: usize) -> Fixture<RedbStore> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let store = RedbStore::open(
        &path,
        RedbOptions {
            retained_events,
            ..RedbOptions::default()
        },
    )
    .unwrap();
    Fixture::new(store, dir)
}

mod contract {
    super::store_contract_tests!(super::fixture);
}

const PODS: &str = "/registry/core/pods/default/";

fn pod(name: &str) -> String {
    format!("{PODS}{name}")
}

#[tokio::test]
async fn restart_keeps_keys_and_continues_revision() {
    let dir = tempfile::tempdir().unwrap();
    // The store's directory is created on open.
    let path = dir.path().join("data").join("store.redb");
    let (created, updated) = {
        let store = RedbStore::open(&path, RedbOptions::default()).unwrap();
        let created = store.create(&pod("a"), b"1".to_vec()).await.unwrap();
        let updated = store
            .update(&pod("a"), b"2".to_vec(), created)
            .await
            .unwrap();
        store.create(&pod("b"), b"1".to_vec()).await.unwrap();
        store.delete(&pod("b"), None).await.unwrap();
        (created, updated)
    };
    assert_eq!((created, updated), (1, 2));

    let store = RedbStore::open(&path, RedbOptions::default()).unwrap();
    assert_eq!(store.current_revision(), 4);
    let a = store.get(&pod("a")).await.unwrap().unwrap();
    assert_eq!(
        (a.value.as_slice(), a.create_revision, a.mod_revision),
        (b"2".as_slice(), 1, 2)
    );
    assert_eq!(store.get(&pod("b")).await.unwrap(), None);
    assert_eq!(store.list(PODS, None, 0, None).await.unwrap().revision, 4);

    // The event window restarts empty at the current revision.
    let err = store.watch(PODS, 3).unwrap_err();
    assert_eq!(
        err.to_string(),
        "revision 3 has been compacted; oldest retained is 5"
    );
    let mut watch = store.watch(PODS, 4).unwrap();
    assert_eq!(store.create(&pod("b"), vec![]).await.unwrap(), 5);
    let event = next_event(&mut watch).await;
    assert_eq!((event.kind, event.revision()), (EventType::Put, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_larger_than_the_live_buffer_is_delivered_whole() {
    let fixture = fixture(10_000).await;
    let store = &fixture.store;
    // Revision 0 would mean "from now".
    let start = store.create("/registry/start", vec![]).await.unwrap();
    let creates = (0..WATCH_BUFFER + 500).map(|i| {
        let key = pod(&format!("p{i:04}"));
        async move { store.create(&key, vec![]).await }
    });
    futures::future::try_join_all(creates).await.unwrap();
    let mut watch = store.watch(PODS, start).unwrap();
    for revision in start + 1..=store.current_revision() {
        assert_eq!(next_event(&mut watch).await.revision(), revision);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_falls_behind_is_closed() {
    let fixture = fixture(10_000).await;
    let store = &fixture.store;
    let mut watch = store.watch(PODS, store.current_revision()).unwrap();
    let creates = (0..=WATCH_BUFFER).map(|i| {
        let key = pod(&format!("p{i:04}"));
        async move { store.create(&key, vec![]).await }
    });
    futures::future::try_join_all(creates).await.unwrap();
    let mut received = 0;
    while watch.recv().await.is_some() {
        received += 1;
    }
    assert_eq!(received, WATCH_BUFFER);
    // The writer went on without it, and a fresh watch works.
    let mut watch = store.watch(PODS, store.current_revision()).unwrap();
    let rev = store.create(&pod("after"), vec![]).await.unwrap();
    assert_eq!(next_event(&mut watch).await.revision(), rev);
}

const KILL9_DIR: &str = "SKIFF_STORE_KILL9_DIR";
const KILL9_AFTER_ACKS: usize = 400;

/// Run only by `kill9_keeps_every_acknowledged_write`, in a child process: writes keys from 8
/// tasks and prints `ACK <key>` for each acknowledged one until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of kill9_keeps_every_acknowledged_write"]
async fn kill9_child() {
    let dir =
        std::env::var_os(KILL9_DIR).expect("only run by kill9_keeps_every_acknowledged_write");
    let path = Path::new(&dir).join("store.redb");
    let store = Arc::new(RedbStore::open(&path, RedbOptions::default()).unwrap());
    for task in 0..8 {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0.. {
                let key = pod(&format!("t{task}-{i}"));
                store.create(&key, key.clone().into_bytes()).await.unwrap();
                let mut out = std::io::stdout().lock();
                writeln!(out, "ACK {key}").unwrap();
                out.flush().unwrap();
            }
        });
    }
    // The parent kills this process long before; the bound only stops an orphan.
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
}

#[test]
fn kill9_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let module = module_path!().split_once("::").unwrap().1;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([&format!("{module}::kill9_child"), "--exact", "--ignored"])
        .args(["--nocapture", "--test-threads=1"])
        .env(KILL9_DIR, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut acked = Vec::new();
    let mut line = Vec::new();
    let mut killed = false;
    loop {
        line.clear();
        if stdout.read_until(b'\n', &mut line).unwrap() == 0 {
            break;
        }
        // A line cut short by the kill is not a complete acknowledgement record.
        if let Some(key) = line
            .strip_prefix(b"ACK ")
            .and_then(|l| l.strip_suffix(b"\n"))
        {
            acked.push(String::from_utf8(key.to_vec()).unwrap());
        }
        if !killed && acked.len() >= KILL9_AFTER_ACKS {
            child.kill().unwrap();
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(killed, "child exited after {} acks: {status}", acked.len());
    assert_eq!(status.signal(), Some(9), "{status}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let path = dir.path().join("store.redb");
        let store = RedbStore::open(&path, RedbOptions::default()).unwrap();
        for key in &acked {
            let kv = store.get(key).await.unwrap();
            assert_eq!(
                kv.map(|kv| kv.value),
                Some(key.clone().into_bytes()),
                "{key}"
            );
        }
        let revision = store.current_revision();
        assert!(revision >= acked.len() as u64);
        let listed = store.list(PODS, None, 0, None).await.unwrap().items.len() as u64;
        assert_eq!(listed, revision, "every committed revision is one create");
        assert_eq!(
            store.create(&pod("after"), vec![]).await.unwrap(),
            revision + 1
        );
    });
}

#[tokio::test]
async fn paged_lists_are_kept_at_their_revision_while_few() {
    let fixture = fixture(1_024).await;
    let store = &fixture.store;
    for i in 0..3 {
        store.create(&pod(&format!("p{i}")), vec![i]).await.unwrap();
    }
    let first = store.list(PODS, None, 1, None).await.unwrap();
    // A revision no page was cut at is not kept, unless nothing was written since.
    store.create(&pod("x"), vec![]).await.unwrap();
    store.create(&pod("y"), vec![]).await.unwrap();
    let unkept = store.list(PODS, None, 0, Some(first.revision + 1)).await;
    assert!(
        matches!(unkept, Err(StoreError::Compacted { .. })),
        "{unkept:?}"
    );
    assert!(
        store
            .list(PODS, None, 0, Some(store.current_revision()))
            .await
            .is_ok()
    );
    // The oldest in-progress list is forgotten once PAGED_SNAPSHOTS newer ones are held.
    for i in 0..PAGED_SNAPSHOTS {
        store.create(&pod(&format!("q{i}")), vec![]).await.unwrap();
        assert!(store.list(PODS, None, 1, None).await.unwrap().more);
        assert!(
            store
                .list(PODS, Some(&pod("p0")), 1, Some(first.revision))
                .await
                .is_ok()
                == (i + 1 < PAGED_SNAPSHOTS),
            "after {i} newer lists"
        );
    }
}
