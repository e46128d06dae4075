//! Concurrent appenders share one group-committing writer: distinct seqs, one valid chain,
//! everything durable after reopen.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use crate::common;
use crate::common::identity;
use kappalog::store::Store;

#[test]
fn concurrent_own_appends_form_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let me = identity(1);
    let (store, owner, _) = Store::open(dir.path(), Some(me.clone()), None).unwrap();
    let threads = 16;
    let per_thread = 25;
    let seqs: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let store = store.clone();
                s.spawn(move || {
                    (0..per_thread)
                        .map(|i| {
                            store
                                .append_own(t * 1000 + i, String::new())
                                .wait()
                                .unwrap()
                                .0
                                .seq
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let total = (threads * per_thread) as u64;
    let distinct: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(distinct, (1..=total).collect());
    owner.shutdown_blocking().unwrap();

    let (store, _owner, report) = Store::open(dir.path(), Some(me.clone()), None).unwrap();
    assert_eq!(report.entries, total);
    let reader = store.reader();
    let verify = reader.verify_all().unwrap();
    assert_eq!((verify.entries, verify.problems.len()), (total, 0));
    let mut prev = None;
    let mut last_ts = 0;
    reader
        .for_each_sorted(|e, h| {
            assert_eq!(e.prev, prev);
            assert!(e.timestamp >= last_ts);
            last_ts = e.timestamp;
            prev = Some(*h);
            ControlFlow::Continue(())
        })
        .unwrap();
}

#[test]
fn concurrent_foreign_and_own_appends() {
    let dir = tempfile::tempdir().unwrap();
    let (store, owner, _) = Store::open(dir.path(), Some(identity(1)), None).unwrap();
    let feeds: Vec<_> = (2..6).map(|s| common::feed(&identity(s), 40)).collect();
    std::thread::scope(|s| {
        for f in &feeds {
            let store = store.clone();
            s.spawn(move || {
                for chunk in f.chunks(7) {
                    store.append_entries(common::entries(chunk)).wait().unwrap();
                }
            });
        }
        let store = store.clone();
        s.spawn(move || {
            for i in 0..40 {
                store.append_own(i, String::new()).wait().unwrap();
            }
        });
    });
    owner.shutdown_blocking().unwrap();
    let (store, _owner, report) = Store::open(dir.path(), None, None).unwrap();
    assert_eq!((report.entries, report.feeds), (200, 5));
    assert!(store.reader().verify_all().unwrap().is_ok());
}
