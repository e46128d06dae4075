//! The index depends on the set of entries held, never on their arrival: two nodes that got
//! the same entries in different orders hold byte-identical tables.

use std::collections::BTreeSet;

use kappalog::index;
use kappalog::node::Node;

use crate::common;
use crate::common::index::{expected, feed, import, table, wait_covered};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_offers_and_a_sorted_import_give_identical_tables() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, _) = Node::open_with_identity(dir_a.path(), common::identity(1)).unwrap();
    let index_a = index::start(&a, kappalog::views::Views::open(a.data_dir()).unwrap());
    let feeds: Vec<_> = (10..14)
        .map(|key| feed(&common::identity(key), 40 + u64::from(key), "order"))
        .collect();
    // Node A: its own appends between chunks of several authors' feeds, offered in a mixed
    // order (each feed in seq order, as any sender must, the feeds interleaved unevenly).
    let mut next = vec![0usize; feeds.len()];
    let mut round = 0usize;
    while next.iter().zip(&feeds).any(|(n, f)| *n < f.len()) {
        for (i, f) in feeds.iter().enumerate().rev() {
            let take = 1 + (round * 7 + i * 3) % 9;
            let end = (next[i] + take).min(f.len());
            if next[i] < end {
                a.offer_entries(common::entries(&f[next[i]..end]))
                    .await
                    .unwrap();
                next[i] = end;
            }
        }
        a.append(
            i64::try_from(round).unwrap(),
            format!("{{\"round\":{round}}}"),
        )
        .await
        .unwrap();
        round += 1;
    }
    wait_covered(&index_a, a.reader()).await;

    // Node B: the same entries from A's CSV export, which the import sorts.
    let mut csv = Vec::new();
    a.export(&mut csv).unwrap();
    let (b, _) = Node::open_with_identity(dir_b.path(), common::identity(2)).unwrap();
    let index_b = index::start(&b, kappalog::views::Views::open(b.data_dir()).unwrap());
    let report = import(&b, csv).await;
    assert_eq!(report.added, a.reader().len());
    wait_covered(&index_b, b.reader()).await;

    let (rows_a, rows_b) = (table(dir_a.path()), table(dir_b.path()));
    assert_eq!(rows_a.len() as u64, a.reader().len());
    assert_eq!(rows_a, rows_b);
    assert_eq!(rows_a, expected(a.reader(), &BTreeSet::new()));
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
