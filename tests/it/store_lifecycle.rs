//! The store's lifecycle: one owner stops the writer with `shutdown().await`, which answers
//! everything queued before it and returns with the directory lock released; requests after
//! it are answered `Closed`; dropping the owner or the last handle never waits for the
//! writer, on any runtime.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::held_io::HeldIo;
use crate::common::{identity, DEADLINE};
use kappalog::hash::Hash;
use kappalog::store::{AppendError, OpenReport, Store, StoreError, StoreOptions};

const APPENDERS: u64 = 64;

/// Every entry hash in the log in `dir`, read through a fresh writable open (which must
/// succeed: the lock is free), and what the open found.
fn held_hashes(dir: &std::path::Path) -> (BTreeSet<Hash>, OpenReport) {
    let (store, owner, report) = Store::open(dir, None, None).unwrap();
    let mut held = BTreeSet::new();
    store
        .reader()
        .for_each_in_log_order(|_, hash| {
            held.insert(*hash);
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    owner.shutdown_blocking().unwrap();
    (held, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_64_appenders_keeps_every_acknowledged_entry_and_frees_the_dir() {
    let dir = tempfile::tempdir().unwrap();
    let (store, owner, _) = Store::open(dir.path(), Some(identity(1)), None).unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..APPENDERS)
        .map(|t| {
            let (store, acked) = (store.clone(), acked.clone());
            tokio::spawn(async move {
                // Appends until the store says it is closed; any other answer is a bug.
                for i in 0.. {
                    let value = i64::try_from(t * 1_000_000 + i).unwrap();
                    match store.append_own(value, String::new()).await {
                        Ok((_, hash)) => acked.lock().unwrap().push(hash),
                        Err(AppendError::Closed) => return,
                        Err(e) => panic!("appender {t}: {e}"),
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + DEADLINE;
    while acked.lock().unwrap().len() < 2_000 {
        assert!(Instant::now() < deadline, "appends never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    owner.shutdown().await.unwrap();
    // The lock is released when shutdown returns: the directory opens at once.
    let (held, report) = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || held_hashes(&dir)
    })
    .await
    .unwrap();

    // Every appender ends on `Closed` (the loop panics on anything else).
    for task in tasks {
        tokio::time::timeout(DEADLINE, task)
            .await
            .expect("an appender never heard that the store closed")
            .unwrap();
    }
    let acked: BTreeSet<Hash> = acked.lock().unwrap().iter().copied().collect();
    assert_eq!(
        report.truncated_bytes, 0,
        "a clean shutdown leaves no torn tail"
    );
    assert_eq!(
        held, acked,
        "the log holds exactly the acknowledged entries: each request queued before the shutdown was written and answered, each after it answered Closed and not written"
    );
    // Requests after the shutdown, from a handle that outlived it.
    assert!(matches!(
        store.append_own(1, String::new()).await,
        Err(AppendError::Closed)
    ));
    assert!(matches!(
        store.append_own(1, String::new()).wait(),
        Err(AppendError::Closed)
    ));
}

#[tokio::test(flavor = "current_thread")]
async fn dropping_the_owner_and_last_handle_on_a_current_thread_runtime_never_waits() {
    let dir = tempfile::tempdir().unwrap();
    let io = Arc::new(HeldIo::default());
    // No idle markers: the only sync after the append is the closing marker's.
    let options = StoreOptions {
        io: io.clone(),
        idle_marker_delay: None,
        ..StoreOptions::default()
    };
    let (store, owner, _) =
        Store::open_with_options(dir.path(), &options, Some(identity(1)), None).unwrap();
    store.append_own(1, String::new()).await.unwrap();

    io.hold();
    drop(owner);
    // The writer is now inside its closing sync, held; we are past the drop.
    io.wait_until_held();
    drop(store);
    // The runtime's one thread is free: another task runs to completion.
    assert_eq!(tokio::spawn(async { 7 }).await.unwrap(), 7);
    // Nobody waited for the writer: it still holds the lock.
    assert!(matches!(
        Store::open(dir.path(), None, None),
        Err(StoreError::Locked { .. })
    ));

    io.release();
    // Once the held sync returns, the writer finishes and frees the directory by itself.
    let deadline = Instant::now() + DEADLINE;
    loop {
        match Store::open(dir.path(), None, None) {
            Ok((_, owner, report)) => {
                assert_eq!(report.entries, 1);
                owner.shutdown().await.unwrap();
                break;
            }
            Err(StoreError::Locked { .. }) => {
                assert!(
                    Instant::now() < deadline,
                    "the writer never released the lock"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn a_second_shutdown_path_is_harmless_and_the_blocking_one_frees_the_dir() {
    let dir = tempfile::tempdir().unwrap();
    let (store, owner, _) = Store::open(dir.path(), Some(identity(1)), None).unwrap();
    let (_, hash) = store.append_own(1, String::new()).wait().unwrap();
    owner.shutdown_blocking().unwrap();
    assert!(matches!(
        store.append_own(2, String::new()).wait(),
        Err(AppendError::Closed)
    ));
    assert_eq!(held_hashes(dir.path()).0, BTreeSet::from([hash]));
}

#[test]
fn a_fork_proof_that_does_not_check_never_reaches_the_forks_file() {
    let dir = tempfile::tempdir().unwrap();
    let (store, owner, _) = Store::open(dir.path(), None, None).unwrap();
    let proof = common::fork_proof(9);
    let entries = proof.entries().unwrap();
    let swapped = kappalog::fork::ForkProof::Entries(kappalog::fork::EntryFork {
        a: entries.b.clone(),
        b: entries.a.clone(),
    });
    assert!(matches!(
        store.record_fork_proof(swapped).wait(),
        Err(AppendError::InvalidProof(_))
    ));
    assert!(store.record_fork_proof(proof.clone()).wait().unwrap());
    assert!(
        !store.record_fork_proof(proof.clone()).wait().unwrap(),
        "kept once"
    );
    assert!(store.forked().contains(&proof.author()));
    owner.shutdown_blocking().unwrap();
    let set = kappalog::store::fork_log::read_set(dir.path()).unwrap();
    assert_eq!(set.len(), 1);
    let (store, owner, report) = Store::open(dir.path(), None, None).unwrap();
    assert_eq!(report.forks.proofs, 1);
    assert!(
        report.fork_notes.contains(&proof.author()),
        "noted in the log"
    );
    assert!(store.forked().contains(&proof.author()));
    owner.shutdown_blocking().unwrap();
}
