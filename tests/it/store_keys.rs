//! Idempotency keys in the store: keyed records are durable with their entries, survive
//! reopen and crashes, are recovered like any record (torn tails included), upgrade an old
//! file's header, and never let one key append twice.

use std::path::Path;
use std::sync::{Arc, Barrier};

use crate::common;
use crate::common::held_io::HeldIo;
use crate::common::{feed, identity, kappalog};
use kappalog::idempotency::IdempotencyKey;
use kappalog::store::{format, AppendError, OwnAppend, Store, StoreError, StoreOwner};
use kappalog::store::{StoreReader, VerifyReport};

fn key(text: &str) -> Option<IdempotencyKey> {
    Some(text.parse().unwrap())
}

fn log_path(dir: &Path) -> std::path::PathBuf {
    dir.join("entries.log")
}

/// The store format version in the log file's header.
fn header_version(dir: &Path) -> u32 {
    let bytes = std::fs::read(log_path(dir)).unwrap();
    u32::from_le_bytes(bytes[8..12].try_into().unwrap())
}

fn open(dir: &Path) -> (Store, StoreOwner) {
    let (store, owner, _) = Store::open(dir, Some(identity(1)), None).unwrap();
    (store, owner)
}

fn open_with_io(dir: &Path, io: &Arc<HeldIo>) -> (Store, StoreOwner) {
    // No idle commit markers: the tests count fdatasync calls one by one.
    common::open_with_counted_io(dir, io.clone())
}

/// A store whose fsyncs the returned `HeldIo` controls, after one keyed append.
fn open_warm(dir: &Path) -> (Arc<HeldIo>, Store, StoreOwner) {
    let io = Arc::new(HeldIo::default());
    let (store, owner) = open_with_io(dir, &io);
    store
        .append_own_keyed(0, String::new(), key("warm-up"))
        .wait()
        .unwrap();
    (io, store, owner)
}

fn added(append: OwnAppend) -> (u64, kappalog::hash::Hash) {
    match append {
        OwnAppend::Added(entry, hash, _) => (entry.seq, hash),
        other => panic!("expected Added, got {other:?}"),
    }
}

fn replayed(append: OwnAppend) -> (u64, kappalog::hash::Hash) {
    match append {
        OwnAppend::Replayed { seq, hash } => (seq, hash),
        other => panic!("expected Replayed, got {other:?}"),
    }
}

fn verify(dir: &Path) -> VerifyReport {
    StoreReader::open_read_only(dir)
        .unwrap()
        .0
        .verify_all()
        .unwrap()
}

#[test]
fn a_key_appends_once_and_is_remembered_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (store, owner) = open(dir.path());
    let first = added(
        store
            .append_own_keyed(1, "a".into(), key("k-1"))
            .wait()
            .unwrap(),
    );
    assert_eq!(first.0, 1);
    // The same key again appends nothing, whatever it asks for: the store reports the
    // entry; telling a retry from a different request is the node's rule.
    let again = store
        .append_own_keyed(1, "a".into(), key("k-1"))
        .wait()
        .unwrap();
    assert_eq!(replayed(again), first);
    let second = added(
        store
            .append_own_keyed(2, "b".into(), key("k-2"))
            .wait()
            .unwrap(),
    );
    assert_eq!(second.0, 2);
    let (unkeyed, _) = store.append_own(3, String::new()).wait().unwrap();
    assert_eq!(unkeyed.seq, 3);
    assert_eq!(store.reader().len(), 3);
    owner.shutdown_blocking().unwrap();
    assert_eq!(header_version(dir.path()), format::STORE_FORMAT_V4);

    let (store, owner) = open(dir.path());
    assert_eq!(
        replayed(
            store
                .append_own_keyed(9, "x".into(), key("k-1"))
                .wait()
                .unwrap()
        ),
        first
    );
    assert_eq!(
        replayed(
            store
                .append_own_keyed(9, "x".into(), key("k-2"))
                .wait()
                .unwrap()
        ),
        second
    );
    let reader = store.reader();
    assert_eq!(reader.len(), 3, "replays append nothing");
    let (entry, hash) = reader.find_key(&key("k-2").unwrap()).unwrap().unwrap();
    assert_eq!((entry.seq, entry.value, hash), (2, 2, second.1));
    assert_eq!(reader.find_key(&key("k-3").unwrap()).unwrap(), None);
    owner.shutdown_blocking().unwrap();
    assert!(verify(dir.path()).is_ok());
}

#[test]
fn a_new_log_is_version_4() {
    let dir = tempfile::tempdir().unwrap();
    let (store, owner) = open(dir.path());
    assert_eq!(header_version(dir.path()), format::STORE_FORMAT_V4);
    store.append_own(1, String::new()).wait().unwrap();
    owner.shutdown_blocking().unwrap();
    assert_eq!(header_version(dir.path()), format::STORE_FORMAT_V4);
}

/// A file written by a version 1 kappalog (built here byte by byte as it wrote them) opens,
/// takes keyed appends after its entries (its header upgraded to 4 before the first write,
/// its records untouched), and verifies.
#[test]
fn a_version_1_file_opens_and_accepts_keyed_appends() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = format::MAGIC.to_vec();
    bytes.extend_from_slice(&1u32.to_le_bytes());
    let old = feed(&identity(1), 3);
    for (entry, _) in &old {
        format::encode_keyed_record(entry, None, &mut bytes);
    }
    std::fs::write(log_path(dir.path()), &bytes).unwrap();

    let (store, owner, report) = Store::open(dir.path(), Some(identity(1)), None).unwrap();
    assert_eq!(report.entries, 3);
    let (entry, hash) = match store
        .append_own_keyed(4, String::new(), key("k"))
        .wait()
        .unwrap()
    {
        OwnAppend::Added(entry, hash, _) => (entry, hash),
        other => panic!("{other:?}"),
    };
    assert_eq!((entry.seq, entry.prev), (4, Some(old[2].1)));
    owner.shutdown_blocking().unwrap();
    assert_eq!(header_version(dir.path()), format::STORE_FORMAT_V4);
    let after = std::fs::read(log_path(dir.path())).unwrap();
    assert_eq!(
        &after[12..bytes.len()],
        &bytes[12..],
        "old records untouched"
    );

    let (store, owner) = open(dir.path());
    assert_eq!(
        replayed(
            store
                .append_own_keyed(4, String::new(), key("k"))
                .wait()
                .unwrap()
        ),
        (4, hash)
    );
    owner.shutdown_blocking().unwrap();
    let report = verify(dir.path());
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.entries, 4);
}

#[test]
fn a_header_version_from_a_newer_kappalog_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = format::file_header().to_vec();
    bytes[8..].copy_from_slice(&(format::STORE_FORMAT_VERSION + 1).to_le_bytes());
    std::fs::write(log_path(dir.path()), &bytes).unwrap();
    match Store::open(dir.path(), None, None) {
        Err(StoreError::BadHeader { reason, .. }) => {
            assert!(reason.contains("newer kappalog"), "{reason}")
        }
        Err(other) => panic!("expected BadHeader, got {other}"),
        Ok(_) => panic!("expected BadHeader, the open succeeded"),
    }
    assert_eq!(std::fs::read(log_path(dir.path())).unwrap(), bytes);
}

/// A crash in the middle of writing a keyed record leaves a torn tail, cut like any other:
/// the entries before it and their keys remain; the torn record's key was never
/// acknowledged and is free again.
#[test]
fn a_torn_keyed_record_at_the_tail_is_truncated_at_every_byte() {
    let src = tempfile::tempdir().unwrap();
    let (store, owner) = open(src.path());
    let first = added(
        store
            .append_own_keyed(1, "one".into(), key("first"))
            .wait()
            .unwrap(),
    );
    store
        .append_own_keyed(2, "two".into(), key("second-key"))
        .wait()
        .unwrap();
    owner.shutdown_blocking().unwrap();
    let bytes = std::fs::read(log_path(src.path())).unwrap();
    // The second entry's record: the last record that is not a commit marker.
    let (rec_at, rec_end) = common::log_records(&bytes)
        .into_iter()
        .filter(|&(_, _, marker)| !marker)
        .map(|(at, end, _)| (at, end))
        .next_back()
        .unwrap();
    for cut in rec_at + 1..rec_end {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(log_path(dir.path()), &bytes[..cut as usize]).unwrap();
        let (reader, report) = StoreReader::open_read_only(dir.path()).unwrap();
        assert_eq!(
            (reader.len(), report.truncated_at),
            (1, Some(rec_at)),
            "cut {cut}"
        );
        let (store, owner, report) = Store::open(dir.path(), Some(identity(1)), None).unwrap();
        assert_eq!(
            (report.entries, report.truncated_bytes),
            (1, cut - rec_at),
            "cut {cut}"
        );
        assert_eq!(
            replayed(
                store
                    .append_own_keyed(1, "one".into(), key("first"))
                    .wait()
                    .unwrap()
            ),
            first,
            "cut {cut}"
        );
        let again = store
            .append_own_keyed(2, "two".into(), key("second-key"))
            .wait()
            .unwrap();
        assert_eq!(added(again).0, 2, "cut {cut}: the torn key appends anew");
        owner.shutdown_blocking().unwrap();
    }
}

/// The moment between commit and response, made exact: the keyed record is synced and the
/// sync is held before the writer answers. A copy of the file taken then is what a crash at
/// that moment leaves; a store opened on it knows the key.
#[test]
fn a_key_is_recovered_from_the_log_after_a_crash_between_commit_and_response() {
    let dir = tempfile::tempdir().unwrap();
    let (io, store, owner) = open_warm(dir.path());
    io.hold();
    let appender = {
        let store = store.clone();
        std::thread::spawn(move || {
            store
                .append_own_keyed(7, "x".into(), key("order-42"))
                .wait()
        })
    };
    io.wait_until_held();
    let crashed = tempfile::tempdir().unwrap();
    std::fs::copy(log_path(dir.path()), log_path(crashed.path())).unwrap();
    assert!(!appender.is_finished(), "no answer while the sync is held");
    io.release();
    let answered = added(appender.join().unwrap().unwrap());
    owner.shutdown_blocking().unwrap();

    let (recovered, _recovered_owner) = open(crashed.path());
    assert_eq!(recovered.reader().len(), 2);
    let retry = recovered
        .append_own_keyed(7, "x".into(), key("order-42"))
        .wait()
        .unwrap();
    assert_eq!(replayed(retry), answered);
    assert_eq!(recovered.reader().len(), 2);
}

#[test]
fn concurrent_appends_with_one_key_append_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (io, store, _owner) = open_warm(dir.path());
    // Hold the first append's sync so the others arrive while its key is in flight (or,
    // for any that arrive after the release, once it is durable): either way none appends.
    io.hold();
    let first = {
        let store = store.clone();
        std::thread::spawn(move || store.append_own_keyed(5, "same".into(), key("dup")).wait())
    };
    io.wait_until_held();
    let racers = 16;
    let barrier = Arc::new(Barrier::new(racers));
    let threads: Vec<_> = (0..racers)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                store.append_own_keyed(5, "same".into(), key("dup")).wait()
            })
        })
        .collect();
    io.release();
    let first = added(first.join().unwrap().unwrap());
    for t in threads {
        assert_eq!(replayed(t.join().unwrap().unwrap()), first);
    }
    assert_eq!(store.reader().len(), 2, "the warm-up and one entry");
}

/// An injected failing fdatasync: the append is answered with an error, a request with the
/// same key waiting for it gets the error too, and neither entry is in the log after reopen,
/// so the key is free for a retry that appends it.
#[test]
fn a_failed_sync_appends_nothing_and_says_so_to_every_waiter() {
    let dir = tempfile::tempdir().unwrap();
    let (io, store, owner) = open_warm(dir.path());
    let size = std::fs::metadata(log_path(dir.path())).unwrap().len();
    io.fail_call(io.calls() + 1);
    io.hold();
    let first = {
        let store = store.clone();
        std::thread::spawn(move || store.append_own_keyed(1, String::new(), key("k")).wait())
    };
    io.wait_until_held();
    let second = {
        let store = store.clone();
        std::thread::spawn(move || store.append_own_keyed(1, String::new(), key("k")).wait())
    };
    io.release();
    assert!(matches!(first.join().unwrap(), Err(AppendError::Io(_))));
    // The second either waited for the first (and shares its error) or reached the writer
    // after the failure, when the key was free again, and appended: both are the truth.
    let second = match second.join().unwrap() {
        Err(AppendError::Io(_)) => None,
        Ok(OwnAppend::Added(entry, hash, _)) => Some((entry.seq, hash)),
        other => panic!("unexpected {other:?}"),
    };
    if second.is_none() {
        // The failed write was cut back: the file is as before it.
        assert_eq!(std::fs::metadata(log_path(dir.path())).unwrap().len(), size);
    }
    owner.shutdown_blocking().unwrap();

    let (store, _owner) = open(dir.path());
    let held = store.reader().len();
    let retry = store
        .append_own_keyed(1, String::new(), key("k"))
        .wait()
        .unwrap();
    match second {
        None => {
            assert_eq!(held, 1, "nothing of the failure is in the log");
            assert_eq!(added(retry).0, 2, "the key is free: the retry appends");
        }
        Some(appended) => {
            assert_eq!(appended.0, 2, "the failed entry left no seq behind");
            assert_eq!(replayed(retry), appended);
        }
    }
}

/// The CLI's read-only commands on a log with keyed records: `verify` passes, `export`
/// carries the entries and none of the keys (local metadata, never exported).
#[test]
fn verify_and_export_work_on_a_log_with_keyed_records() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (store, owner) = open(&data);
    for i in 0..5 {
        let k = format!("secret-key-{i}");
        store
            .append_own_keyed(i, format!("d{i}"), key(&k))
            .wait()
            .unwrap();
        store.append_own(100 + i, String::new()).wait().unwrap();
    }
    owner.shutdown_blocking().unwrap();
    let run = |args: &[&str]| {
        let out = kappalog()
            .arg("--data-dir")
            .arg(&data)
            .arg("--key")
            .arg(dir.path().join("cli.key"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let verified = run(&["verify"]);
    assert!(verified.starts_with("ok: 10 entries"), "{verified}");
    let export = run(&["export"]);
    assert_eq!(export.lines().count(), 11, "a header and 10 rows");
    assert!(!export.contains("secret-key"), "{export}");
}
