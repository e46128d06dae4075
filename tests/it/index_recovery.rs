//! The index is a cache of the log: after a crash it resumes, and when it is damaged,
//! missing, or of another (or an older) log it is rebuilt, and in every case it ends equal
//! to an index rebuilt from scratch.

use std::collections::BTreeSet;
use std::path::Path;

use kappalog::index::check::Stale;
use kappalog::index::{self, index_path, IndexDb, IndexState, INDEX_DIR};
use kappalog::node::Node;
use kappalog::store::StoreReader;

use crate::common;
use crate::common::index::{copy_store, eventually, expected, feed, table, wait_covered};

/// A data dir whose log holds two foreign feeds and `own` own entries (no index yet).
async fn filled(dir: &Path, own: i64) {
    let (node, _) = Node::open_with_identity(dir, common::identity(1)).unwrap();
    node.offer_entries(common::entries(&feed(&common::identity(20), 40, "a")))
        .await
        .unwrap();
    node.offer_entries(common::entries(&feed(&common::identity(21), 25, "b")))
        .await
        .unwrap();
    for v in 0..own {
        node.append(v, String::new()).await.unwrap();
    }
    node.shutdown().await.unwrap();
}

fn reader(dir: &Path) -> StoreReader {
    StoreReader::open_read_only(dir).unwrap().0
}

/// Opens the index of `dir` as its node would, catches up with the whole log, and returns
/// why it was rebuilt, if it was; `close` says whether to close it cleanly or leave it as a
/// crash does.
fn open_and_catch_up(dir: &Path, close: bool) -> Option<Stale> {
    let reader = reader(dir);
    let (mut db, stale) = IndexDb::open(dir, &common::identity(1).author(), &reader).unwrap();
    let pass = db
        .catch_up(&reader, &BTreeSet::new(), &|| false, &mut |_, _| {})
        .unwrap();
    assert!(!pass.stopped);
    assert_eq!(db.coverage().covered, reader.committed_end());
    if close {
        db.close().unwrap();
    }
    stale
}

/// The rows a fresh rebuild of `dir`'s log holds.
fn rebuilt(dir: &Path) -> Vec<Vec<rusqlite::types::Value>> {
    let copy = tempfile::tempdir().unwrap();
    copy_store(dir, copy.path());
    let reader = reader(copy.path());
    let done = index::rebuild(
        copy.path(),
        &common::identity(1).author(),
        &reader,
        &BTreeSet::new(),
        &kappalog::progress::NoProgress,
    )
    .unwrap();
    assert_eq!(done.read, reader.len());
    let rows = table(copy.path());
    assert_eq!(rows, expected(&reader, &BTreeSet::new()));
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_left_open_by_a_crash_is_checked_and_resumed() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 5).await;
    assert_eq!(open_and_catch_up(dir.path(), false), Some(Stale::Missing));
    // More entries while the index lies unclosed, then the next open.
    filled(dir.path(), 7).await;
    assert_eq!(open_and_catch_up(dir.path(), true), None);
    assert_eq!(table(dir.path()), rebuilt(dir.path()));
    // Closed cleanly: resumed again, nothing to do.
    assert_eq!(open_and_catch_up(dir.path(), true), None);
}

/// Overwrites `len` bytes of the index file at `at` with 0xa5.
fn garble(dir: &Path, at: u64, len: usize) {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(index_path(dir))
        .unwrap();
    file.seek(SeekFrom::Start(at)).unwrap();
    file.write_all(&vec![0xa5; len]).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_index_is_rebuilt_equal_to_a_fresh_one() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 3).await;
    let fresh = rebuilt(dir.path());

    // Its last page cut, after a clean close: the header counts more pages than the file
    // holds, which SQLite reports as malformed.
    open_and_catch_up(dir.path(), true);
    let cut = |dir: &Path, keep: fn(u64) -> u64| {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(index_path(dir))
            .unwrap();
        let len = file.metadata().unwrap().len();
        file.set_len(keep(len)).unwrap();
    };
    cut(dir.path(), |len| len - 4096);
    let stale = open_and_catch_up(dir.path(), true);
    assert!(matches!(stale, Some(Stale::Unreadable(_))), "{stale:?}");
    assert_eq!(table(dir.path()), fresh);
    // Cut to half: SQLite finds it malformed itself.
    cut(dir.path(), |len| len / 2);
    let stale = open_and_catch_up(dir.path(), true);
    assert!(
        matches!(stale, Some(Stale::Damaged(_) | Stale::Unreadable(_))),
        "{stale:?}"
    );
    assert_eq!(table(dir.path()), fresh);

    // Another build's layout.
    rusqlite::Connection::open(index_path(dir.path()))
        .unwrap()
        .pragma_update(None, "user_version", 7)
        .unwrap();
    let stale = open_and_catch_up(dir.path(), true);
    assert_eq!(stale, Some(Stale::Layout { found: 7 }));
    assert_eq!(table(dir.path()), fresh);

    // Its header garbled: not a database any more.
    garble(dir.path(), 0, 64);
    assert!(matches!(
        open_and_catch_up(dir.path(), true),
        Some(Stale::Unreadable(_))
    ));
    assert_eq!(table(dir.path()), fresh);

    // One page of `entries` garbled in a file a crash left open: `meta` (page 3) and the
    // schema (page 1) read fine, only the quick check finds it.
    open_and_catch_up(dir.path(), false);
    let len = std::fs::metadata(index_path(dir.path())).unwrap().len();
    assert!(
        len >= 6 * 4096,
        "too few pages to garble one in the middle: {len}"
    );
    garble(dir.path(), 4 * 4096, 4096);
    let stale = open_and_catch_up(dir.path(), true);
    assert!(matches!(stale, Some(Stale::Damaged(_))), "{stale:?}");
    assert_eq!(table(dir.path()), fresh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_of_an_older_or_another_log_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 3).await;
    let older = tempfile::tempdir().unwrap();
    copy_store(dir.path(), older.path());
    filled(dir.path(), 4).await;
    let newer = tempfile::tempdir().unwrap();
    copy_store(dir.path(), newer.path());
    assert_eq!(open_and_catch_up(dir.path(), true), Some(Stale::Missing));

    // The log restored from the older copy, the newer index kept: it covers past the end.
    std::fs::copy(
        older.path().join("entries.log"),
        dir.path().join("entries.log"),
    )
    .unwrap();
    assert!(matches!(
        open_and_catch_up(dir.path(), true),
        Some(Stale::PastEnd { .. })
    ));
    assert_eq!(table(dir.path()), rebuilt(dir.path()));

    // The newer log back: the index of the older one is of its prefix, and resumed.
    copy_store(newer.path(), dir.path());
    assert_eq!(open_and_catch_up(dir.path(), true), None);
    assert_eq!(table(dir.path()), rebuilt(dir.path()));

    // Another log of the same node that went on from the older copy differently (and
    // longer): the entry `meta` names is not where it says.
    let other = tempfile::tempdir().unwrap();
    copy_store(older.path(), other.path());
    filled(other.path(), 30).await;
    std::fs::copy(
        other.path().join("entries.log"),
        dir.path().join("entries.log"),
    )
    .unwrap();
    let stale = open_and_catch_up(dir.path(), true);
    assert!(matches!(stale, Some(Stale::OtherLog { .. })), "{stale:?}");
    assert_eq!(table(dir.path()), rebuilt(dir.path()));

    // Another node's index.
    let (db, stale) = IndexDb::open(
        dir.path(),
        &common::identity(9).author(),
        &reader(dir.path()),
    )
    .unwrap();
    assert!(matches!(stale, Some(Stale::OtherNode { .. })));
    db.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_index_comes_back_identical_and_a_clean_one_is_resumed() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 6).await;
    let run = || async {
        let (node, _) = Node::open_with_identity(dir.path(), common::identity(1)).unwrap();
        let index = index::start(
            &node,
            kappalog::views::Views::open(node.data_dir()).unwrap(),
        );
        wait_covered(&index, node.reader()).await;
        eventually("the index to be ready", || {
            index.state() == IndexState::Ready
        })
        .await;
        node.shutdown().await.unwrap();
    };
    run().await;
    let before = table(dir.path());
    assert_eq!(before.len(), 71);
    // Shut down with its node: closed cleanly.
    assert_eq!(open_and_catch_up(dir.path(), true), None);

    std::fs::remove_dir_all(dir.path().join(INDEX_DIR)).unwrap();
    run().await;
    assert_eq!(table(dir.path()), before);
}
