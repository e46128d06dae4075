//! One writer per directory; read-only opens take no lock.

use crate::common::identity;
use kappalog::store::{Store, StoreError, StoreReader};

#[test]
fn second_writer_gets_locked_naming_the_dir() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, owner, _) = Store::open(dir.path(), Some(identity(1)), None).unwrap();
    let err = Store::open(dir.path(), None, None).err().unwrap();
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
    assert!(matches!(err, StoreError::Locked { dir: ref d } if d == dir.path()));
    owner.shutdown_blocking().unwrap();
    // Released once the shutdown returns.
    let (_store, owner, _) = Store::open(dir.path(), None, None).unwrap();
    owner.shutdown_blocking().unwrap();
}

#[test]
fn read_only_open_works_while_a_writer_runs_and_sees_committed_entries() {
    let dir = tempfile::tempdir().unwrap();
    let me = identity(1);
    let (store, _owner, _) = Store::open(dir.path(), Some(me.clone()), None).unwrap();
    let (_, h1) = store.append_own(1, String::new()).wait().unwrap();
    let (reader, report) = StoreReader::open_read_only(dir.path()).unwrap();
    assert_eq!((report.entries, report.truncated_bytes), (1, 0));
    assert_eq!(reader.head(&me.author()).unwrap().hash, h1);
    store.append_own(2, String::new()).wait().unwrap();
    // A read-only view is a snapshot of the open; a fresh one sees the new entry.
    assert_eq!(reader.len(), 1);
    let (reader, _) = StoreReader::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.len(), 2);
    assert_eq!(reader.verify_all().unwrap().problems, vec![]);
}

#[test]
fn read_only_open_of_a_missing_store_fails() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        StoreReader::open_read_only(&dir.path().join("nope")),
        Err(StoreError::Io { .. })
    ));
}
