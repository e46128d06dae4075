//! A node's indexer follows its log: own appends, entries offered by peers and CSV imports
//! all end up in `entries`, row for row what the log holds; forked feeds leave it.

use std::collections::BTreeSet;

use kappalog::identity::Author;
use kappalog::index::{self, IndexHandle, IndexState};
use kappalog::node::Node;

use kappalog::views::Views;

use crate::common;
use crate::common::index::{eventually, expected, feed, import, rows_of, table, wait_covered};
use crate::common::net;

fn export(node: &Node) -> Vec<u8> {
    let mut out = Vec::new();
    node.export(&mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_holds_exactly_the_logs_entries_whatever_door_they_came_in_by() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = Node::open_with_identity(dir.path(), common::identity(1)).unwrap();
    let index = index::start(
        &node,
        kappalog::views::Views::open(node.data_dir()).unwrap(),
    );
    for v in 0..20 {
        node.append(v, format!("{{\"own\":{v}}}")).await.unwrap();
    }
    let peer = feed(&common::identity(2), 30, "peer");
    node.offer_entries(common::entries(&peer)).await.unwrap();
    // A CSV import of a third author's feed, exported by another node.
    let other_dir = tempfile::tempdir().unwrap();
    let (other, _) = Node::open_with_identity(other_dir.path(), common::identity(3)).unwrap();
    for v in 0..25 {
        other.append(v, "imported".into()).await.unwrap();
    }
    let csv = export(&other);
    other.shutdown().await.unwrap();
    let report = import(&node, csv).await;
    assert_eq!(report.added, 25);

    wait_covered(&index, node.reader()).await;
    let rows = table(dir.path());
    assert_eq!(rows.len(), 75);
    assert_eq!(rows, expected(node.reader(), &BTreeSet::new()));
    assert_eq!(index.state(), IndexState::Ready);
    assert_eq!(index.lag_bytes(), 0);
    // The store's idle commit marker moves the log's end past the last entry and wakes no
    // indexer: the index still lags nothing. (Under load the indexer's last pass may come
    // after the marker and cover it too: so the wait is for the marker, past the last
    // entry's record, not for the end to move past what the index covers.)
    let (_, last_record) = node.reader().end_and_last_entry();
    let (last_offset, _) = last_record.expect("entries stored");
    let (_, _, past_last) = node.reader().record_at(last_offset).unwrap().unwrap();
    eventually("the idle commit marker", || {
        node.reader().committed_end() > past_last
    })
    .await;
    assert_eq!(index.lag_bytes(), 0);
    // `meta`'s last entry is the last one in log order: a cursor the log holds.
    let last = index.covered_now().last.expect("entries indexed");
    assert_eq!(node.reader().end_and_last_entry().1, Some(last));
    node.shutdown().await.unwrap();
}

/// Waits (bounded) for the rows of `forked` to leave the table, then for the index to
/// cover the log, and checks it holds the rest of the log exactly.
async fn rows_leave(dir: &std::path::Path, node: &Node, index: &IndexHandle, forked: &Author) {
    eventually("the forked feed's rows to leave", || {
        rows_of(dir, forked) == 0
    })
    .await;
    wait_covered(index, node.reader()).await;
    assert_eq!(
        table(dir),
        expected(node.reader(), &BTreeSet::from([*forked]))
    );
}

/// Two versions of the feed of `key` (one key appending in two places): a fork at seq 1.
fn forked_pair(key: u8) -> (Vec<kappalog::entry::Entry>, kappalog::entry::Entry) {
    let id = common::identity(key);
    let one = feed(&id, 12, "one");
    let two = feed(&id, 1, "two");
    (common::entries(&one), two[0].0.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_recorded_after_its_feed_was_indexed_takes_its_rows_out() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = Node::open_with_identity(dir.path(), common::identity(1)).unwrap();
    let index = index::start(
        &node,
        kappalog::views::Views::open(node.data_dir()).unwrap(),
    );
    let (feed_one, other_side) = forked_pair(40);
    let forked: Author = feed_one[0].author;
    node.offer_entries(feed_one).await.unwrap();
    node.offer_entries(common::entries(&feed(&common::identity(41), 5, "x")))
        .await
        .unwrap();
    wait_covered(&index, node.reader()).await;
    assert_eq!(rows_of(dir.path(), &forked), 12);

    let report = node.offer_entries(vec![other_side]).await.unwrap();
    assert_eq!(report.forks, 1);
    assert!(node.is_forked(&forked));
    rows_leave(dir.path(), &node, &index, &forked).await;
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_opened_on_a_log_with_a_forked_author_has_none_of_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (feed_one, other_side) = forked_pair(42);
    let forked: Author = feed_one[0].author;
    {
        // Indexed while the feed was sound, then stopped (the index closed cleanly).
        let (node, _) = Node::open_with_identity(dir.path(), common::identity(1)).unwrap();
        let index = index::start(
            &node,
            kappalog::views::Views::open(node.data_dir()).unwrap(),
        );
        node.offer_entries(feed_one).await.unwrap();
        wait_covered(&index, node.reader()).await;
        assert_eq!(rows_of(dir.path(), &forked), 12);
        node.shutdown().await.unwrap();
    }
    {
        // The fork is recorded while no indexer runs.
        let (node, _) = Node::open_with_identity(dir.path(), common::identity(1)).unwrap();
        node.offer_entries(vec![other_side]).await.unwrap();
        assert!(node.is_forked(&forked));
        node.shutdown().await.unwrap();
    }
    let (node, _) = Node::open_with_identity(dir.path(), common::identity(1)).unwrap();
    let index = index::start(
        &node,
        kappalog::views::Views::open(node.data_dir()).unwrap(),
    );
    // The rows were in the file when it opened: only the indexer's open can take them out.
    rows_leave(dir.path(), &node, &index, &forked).await;
    node.shutdown().await.unwrap();

    // Rebuilt from the log with the author already forked: its entries are never written.
    std::fs::remove_dir_all(dir.path().join(index::INDEX_DIR)).unwrap();
    let (node, _) = Node::open_with_identity(dir.path(), common::identity(1)).unwrap();
    let index = index::start(
        &node,
        kappalog::views::Views::open(node.data_dir()).unwrap(),
    );
    wait_covered(&index, node.reader()).await;
    assert_eq!(rows_of(dir.path(), &forked), 0);
    assert_eq!(
        table(dir.path()),
        expected(node.reader(), &BTreeSet::from([forked]))
    );
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_proven_after_indexing_takes_its_rows_out_on_every_node_it_reaches() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    // The feed of key 60 reaches A from its author, and B from A; both index it.
    let (author_node, _) = Node::open_with_identity(dirs[0].path(), common::identity(60)).unwrap();
    for v in 0..5 {
        author_node.append(v, format!("one {v}")).await.unwrap();
    }
    let forked: Author = common::identity(60).author();
    let origin = net::start_with(author_node, &[], net::fast_config()).await;
    let a = net::start(dirs[1].path(), 1, &[origin.addr]).await;
    let b = net::start(dirs[2].path(), 2, &[a.addr]).await;
    let index_a = index::start(&a.node, Views::open(a.node.data_dir()).unwrap());
    let index_b = index::start(&b.node, Views::open(b.node.data_dir()).unwrap());
    for (node, index, dir) in [
        (&a.node, &index_a, dirs[1].path()),
        (&b.node, &index_b, dirs[2].path()),
    ] {
        eventually("the feed to arrive", || {
            node.reader().head(&forked).is_some_and(|h| h.seq == 5)
        })
        .await;
        wait_covered(index, node.reader()).await;
        assert_eq!(rows_of(dir, &forked), 5);
    }

    // The same key signs another seq 1 elsewhere; A is shown it and proves the fork, and the
    // proof travels to B by sync: both take the feed's rows out.
    let entry = common::first_entry(&common::identity(60), 99);
    let report = a.node.offer_entries(vec![entry]).await.unwrap();
    assert_eq!(report.forks, 1);
    rows_leave(dirs[1].path(), &a.node, &index_a, &forked).await;
    eventually("B to learn the fork", || b.node.is_forked(&forked)).await;
    rows_leave(dirs[2].path(), &b.node, &index_b, &forked).await;
    b.stop().await;
    a.stop().await;
    origin.stop().await;
}
