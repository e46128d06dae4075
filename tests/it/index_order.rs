//! The index depends on the set of entries held, never on their arrival: two nodes that got
//! the same entries in different orders hold byte-identical tables, and answer the worked
//! example views with byte-identical rows and digests, whether or not they hold the views'
//! indexes.

use std::collections::BTreeSet;

use kappalog::index;
use kappalog::node::Node;

use crate::common;
use kappalog::query::{self, QueryConfig, QueryConnection, QueryEngine, Statement};

use crate::common::index::{docs_views, eventually, expected, feed, import, table, wait_covered};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_offers_and_a_sorted_import_give_identical_tables() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, _) = Node::open_with_identity(dir_a.path(), common::identity(1)).unwrap();
    // Node A keeps the docs' worked-example views (their indexes built as it goes); node B
    // keeps none, so the two answer through different plans.
    let views_a = kappalog::views::Views::open(a.data_dir()).unwrap();
    let vetter = QueryEngine::new(query::index_path(a.data_dir()), QueryConfig::default());
    for (name, body) in docs_views() {
        let request: kappalog::views::ViewRequest = serde_json::from_value(body).unwrap();
        views_a
            .put(vetter.vet(&name, &request).await.unwrap())
            .unwrap();
    }
    let index_a = index::start(&a, views_a.clone());
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

    eventually("node A's views ready", || {
        views_a
            .list()
            .iter()
            .all(|(_, state)| *state == kappalog::views::ViewState::Ready)
    })
    .await;
    let run = |dir: &std::path::Path, sql: &str, params: &[(String, String)]| {
        let path = query::index_path(dir);
        let mut connection = QueryConnection::open(&path, &QueryConfig::default()).unwrap();
        let statement = Statement {
            sql: sql.to_owned(),
            params: params.to_vec(),
        };
        connection.run(&statement).unwrap()
    };
    for (name, body) in docs_views() {
        let sql = body["sql"].as_str().unwrap();
        let params: Vec<(String, String)> = body["params"]
            .as_object()
            .map(|p| {
                p.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let (answer_a, answer_b) = (
            run(dir_a.path(), sql, &params),
            run(dir_b.path(), sql, &params),
        );
        assert!(!answer_a.rows.is_empty(), "{name} answers nothing");
        assert_eq!(answer_a.rows, answer_b.rows, "{name}");
        assert_eq!(answer_a.digest, answer_b.digest, "{name}");
    }
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
