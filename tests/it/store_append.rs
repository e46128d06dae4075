//! Appending own and foreign entries, and the outcome of each kind of offered entry.

use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use crate::common::{entries, feed, identity};
use kappalog::entry::{Entry, UnsignedEntry};
use kappalog::hash::Hash;
use kappalog::signature::SignatureError;
use kappalog::store::{AppendError, CommitObserver, Outcome, Store, StoreReader};
use kappalog::validate::ValidationError;

fn log_order(reader: &StoreReader) -> Vec<(Entry, Hash)> {
    let mut out = Vec::new();
    reader
        .for_each_in_log_order(|e, h| {
            out.push((e.clone(), *h));
            ControlFlow::Continue(())
        })
        .unwrap();
    out
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Hash>>);
impl CommitObserver for Recorder {
    fn committed(&self, entries: Vec<(Entry, Hash)>, _offsets: Vec<u64>) {
        self.0
            .lock()
            .unwrap()
            .extend(entries.iter().map(|(_, h)| *h));
    }
}

#[test]
fn own_and_foreign_entries_survive_reopen_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let me = identity(1);
    let other = identity(2);
    let theirs = feed(&other, 3);
    let recorder = Arc::new(Recorder::default());
    let (store, owner, report) =
        Store::open(dir.path(), Some(me.clone()), Some(recorder.clone())).unwrap();
    assert_eq!(report.entries, 0);
    let (a1, h1) = store.append_own(10, "first".into()).wait().unwrap();
    let outcomes = store.append_entries(entries(&theirs)).wait().unwrap();
    assert_eq!(
        outcomes,
        theirs
            .iter()
            .map(|(_, h)| Outcome::Added(*h))
            .collect::<Vec<_>>()
    );
    let (a2, h2) = store.append_own(20, String::new()).wait().unwrap();
    assert_eq!((a1.seq, a2.seq), (1, 2));
    assert_eq!(a2.prev, Some(h1));
    assert!(a2.timestamp >= a1.timestamp);
    let expected = vec![h1, theirs[0].1, theirs[1].1, theirs[2].1, h2];
    assert_eq!(*recorder.0.lock().unwrap(), expected);
    owner.shutdown_blocking().unwrap();

    let (store, _owner, report) = Store::open(dir.path(), Some(me.clone()), None).unwrap();
    assert_eq!(
        (report.entries, report.feeds, report.truncated_bytes),
        (5, 2, 0)
    );
    let reader = store.reader();
    let hashes: Vec<Hash> = log_order(&reader).iter().map(|(_, h)| *h).collect();
    assert_eq!(hashes, expected);
    assert_eq!(reader.get(&me.author(), 2).unwrap().unwrap().1, h2);
    assert_eq!(reader.get(&me.author(), 3).unwrap(), None);
    assert_eq!(
        reader.get_by_hash(&theirs[1].1).unwrap().unwrap().0,
        theirs[1].0
    );
    assert_eq!(reader.get_by_hash(&Hash([9; 32])).unwrap(), None);
    assert_eq!(
        reader.range(&other.author(), 2, 10).unwrap(),
        theirs[1..].to_vec()
    );
    assert_eq!(reader.head(&me.author()).unwrap().hash, h2);
    let feeds = reader.feeds();
    assert_eq!(feeds.len(), 2);
    assert!(feeds[0].author < feeds[1].author);
    let mut sorted = Vec::new();
    reader
        .for_each_sorted(|e, _| {
            sorted.push((e.author, e.seq));
            ControlFlow::Continue(())
        })
        .unwrap();
    let mut want = sorted.clone();
    want.sort();
    assert_eq!(sorted, want);
    assert_eq!(sorted.len(), 5);
    // The own feed continues after reopen.
    let (a3, _) = store.append_own(30, String::new()).wait().unwrap();
    assert_eq!((a3.seq, a3.prev), (3, Some(h2)));
}

#[test]
fn duplicate_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let theirs = feed(&identity(2), 2);
    let (store, _owner, _) = Store::open(dir.path(), None, None).unwrap();
    store.append_entries(entries(&theirs)).wait().unwrap();
    let outcomes = store.append_entries(entries(&theirs[..1])).wait().unwrap();
    assert_eq!(outcomes, vec![Outcome::Duplicate(theirs[0].1)]);
    // Duplicate inside one batch too.
    let outcomes = store
        .append_entries(vec![theirs[1].0.clone(), theirs[1].0.clone()])
        .wait()
        .unwrap();
    assert_eq!(
        outcomes,
        vec![
            Outcome::Duplicate(theirs[1].1),
            Outcome::Duplicate(theirs[1].1)
        ]
    );
    assert_eq!(store.reader().len(), 2);
}

#[test]
fn fork_is_reported_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity(2);
    let theirs = feed(&id, 2);
    let (forked, forked_hash) = UnsignedEntry {
        value: 999,
        ..theirs[1].0.unsigned()
    }
    .sign(&id);
    let (store, _owner, _) = Store::open(dir.path(), None, None).unwrap();
    store.append_entries(entries(&theirs)).wait().unwrap();
    let outcomes = store.append_entries(vec![forked]).wait().unwrap();
    assert_eq!(
        outcomes,
        vec![Outcome::Fork {
            seq: 2,
            held: theirs[1].1,
            offered: forked_hash
        }]
    );
    assert_eq!(store.reader().len(), 2);
    assert_eq!(
        store.reader().get(&id.author(), 2).unwrap().unwrap().1,
        theirs[1].1
    );
}

#[test]
fn gap_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let theirs = feed(&identity(2), 3);
    let (store, _owner, _) = Store::open(dir.path(), None, None).unwrap();
    let outcomes = store
        .append_entries(vec![theirs[0].0.clone(), theirs[2].0.clone()])
        .wait()
        .unwrap();
    assert_eq!(
        outcomes,
        vec![Outcome::Added(theirs[0].1), Outcome::Gap { next: 2 }]
    );
    assert_eq!(store.reader().len(), 1);
}

#[test]
fn bad_signature_is_rejected_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let theirs = feed(&identity(2), 2);
    let mut bad = theirs[0].0.clone();
    bad.signature.0[40] ^= 1;
    let (store, owner, _) = Store::open(dir.path(), None, None).unwrap();
    let outcomes = store
        .append_entries(vec![bad, theirs[1].0.clone()])
        .wait()
        .unwrap();
    assert_eq!(
        outcomes[0],
        Outcome::Rejected(ValidationError::BadSignature(SignatureError::Mismatch))
    );
    // The second entry now has no predecessor in the store.
    assert_eq!(outcomes[1], Outcome::Gap { next: 1 });
    assert!(store.reader().is_empty());
    owner.shutdown_blocking().unwrap();
    let len = std::fs::metadata(dir.path().join("entries.log"))
        .unwrap()
        .len();
    assert_eq!(len, 12);
}

#[test]
fn prev_mismatch_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity(2);
    let theirs = feed(&id, 2);
    let (wrong, _) = UnsignedEntry {
        prev: Some(Hash([5; 32])),
        ..theirs[1].0.unsigned()
    }
    .sign(&id);
    let (store, _owner, _) = Store::open(dir.path(), None, None).unwrap();
    let outcomes = store
        .append_entries(vec![theirs[0].0.clone(), wrong])
        .wait()
        .unwrap();
    assert_eq!(
        outcomes[1],
        Outcome::Rejected(ValidationError::PrevMismatch {
            expected: theirs[0].1,
            found: Hash([5; 32])
        })
    );
}

#[test]
fn own_append_needs_identity_and_short_data() {
    let dir = tempfile::tempdir().unwrap();
    let (store, owner, _) = Store::open(dir.path(), None, None).unwrap();
    assert!(matches!(
        store.append_own(1, String::new()).wait(),
        Err(AppendError::NoIdentity)
    ));
    owner.shutdown_blocking().unwrap();
    let (store, _owner, _) = Store::open(dir.path(), Some(identity(1)), None).unwrap();
    assert!(matches!(
        store.append_own(1, "x".repeat(4097)).wait(),
        Err(AppendError::DataTooLong { len: 4097 })
    ));
}

/// A value-only entry is 166 bytes on disk; each write adds one 16-byte commit marker
/// before its records, and an idle or closing store one after the last write.
#[test]
fn value_only_entry_takes_166_bytes_and_a_write_16_more_for_its_marker() {
    let dir = tempfile::tempdir().unwrap();
    let (store, owner, _) = Store::open(dir.path(), Some(identity(1)), None).unwrap();
    let before = std::fs::metadata(dir.path().join("entries.log"))
        .unwrap()
        .len();
    assert_eq!(before, 12, "a new log is its header");
    let id = identity(2);
    let mut prev = None;
    let batch: Vec<Entry> = (1..=100u64)
        .map(|seq| {
            let (entry, hash) = UnsignedEntry {
                author: id.author(),
                seq,
                timestamp: seq,
                prev,
                value: 1,
                data: String::new(),
            }
            .sign(&id);
            prev = Some(hash);
            entry
        })
        .collect();
    store.append_entries(batch).wait().unwrap();
    owner.shutdown_blocking().unwrap();
    let after = std::fs::metadata(dir.path().join("entries.log"))
        .unwrap()
        .len();
    // The first entry has no `prev`: 32 bytes shorter.
    assert_eq!(after - before, 16 + (166 - 32) + 99 * 166 + 16);
}

#[test]
fn closed_store_refuses_appends() {
    let dir = tempfile::tempdir().unwrap();
    let (store, owner, _) = Store::open(dir.path(), Some(identity(1)), None).unwrap();
    let clone = store.clone();
    owner.shutdown_blocking().unwrap();
    assert!(matches!(
        clone.append_own(1, String::new()).wait(),
        Err(AppendError::Closed)
    ));
}

#[tokio::test]
async fn async_appends() {
    let dir = tempfile::tempdir().unwrap();
    let theirs = feed(&identity(2), 2);
    let (store, _owner, _) = Store::open(dir.path(), Some(identity(1)), None).unwrap();
    let (e, _) = store.append_own(5, "a".into()).await.unwrap();
    assert_eq!(e.seq, 1);
    let outcomes = store.append_entries(entries(&theirs)).await.unwrap();
    assert_eq!(outcomes[1], Outcome::Added(theirs[1].1));
}
