//! `kappalog query` as a user runs it: the real binary over a data directory whose node is
//! open (and could be writing), and over a running node with `--url`.

use std::path::Path;
use std::process::Output;

use kappalog::node::Node;
use kappalog::query::QueryConfig;

use crate::common::query_db::{start_with, IndexDb};
use crate::common::{identity, kappalog};

fn run(args: &[&str]) -> Output {
    kappalog().args(args).output().expect("run kappalog")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// A data directory holding three entries of node 21, indexed; the node stays open.
fn indexed_dir(dir: &Path) -> Node {
    let (node, _) = Node::open_with_identity(dir, identity(21)).unwrap();
    for (value, key) in [(10, "a"), (20, "b"), (30, "a")] {
        node.append_blocking(value, format!(r#"{{"k":"{key}"}}"#))
            .unwrap();
    }
    let mut index = IndexDb::create(dir, &node.author());
    index.index_log(node.reader());
    node
}

#[test]
fn a_data_directory_is_queried_in_each_format_with_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let _node = indexed_dir(dir.path());
    let data_dir = dir.path().to_str().unwrap();
    let statement = "SELECT json_extract(data, '$.k') AS k, sum(value) AS total \
                     FROM entries WHERE value >= :min GROUP BY k ORDER BY k";
    let ask = |format: &str| {
        let out = run(&[
            "--data-dir",
            data_dir,
            "query",
            statement,
            "--format",
            format,
            "--param",
            "min=20",
        ]);
        assert!(out.status.success(), "{format}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).starts_with("as_of "),
            "{}",
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    assert_eq!(ask("csv"), "k,total\na,30\nb,20\n");
    assert_eq!(
        ask("table"),
        "k | total\n--+------\na | 30\nb | 20\n(2 rows)\n"
    );
    let json: serde_json::Value = serde_json::from_str(&ask("json")).unwrap();
    assert_eq!(json["rows"], serde_json::json!([["a", 30], ["b", 20]]));
    assert_eq!(json["digest"].as_str().unwrap().len(), 64);
    assert_eq!(json["as_of"].as_str().unwrap().len(), 48);
}

#[test]
fn a_refused_or_failing_statement_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let _node = indexed_dir(dir.path());
    let data_dir = dir.path().to_str().unwrap();
    for (statement, named) in [
        ("DELETE FROM entries", "refused: DELETE from entries"),
        ("SELECT nope FROM entries", "no such column: nope"),
        ("SELECT :x", "parameter :x has no value"),
    ] {
        let out = run(&["--data-dir", data_dir, "query", statement]);
        assert!(!out.status.success(), "{statement}");
        let stderr = text(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(named), "{statement}: {stderr}");
    }
    let empty = tempfile::tempdir().unwrap();
    let out = run(&[
        "--data-dir",
        empty.path().to_str().unwrap(),
        "query",
        "SELECT 1",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no index"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_node_is_queried_with_url() {
    let mut node = start_with(QueryConfig::default(), |node| {
        node.append_blocking(5, String::new()).unwrap();
    })
    .await;
    node.index.index_log(node.server.node.reader());
    let url = format!("http://{}", node.server.addr);
    let (ok, refused) = tokio::task::spawn_blocking(move || {
        let ok = run(&[
            "query",
            "SELECT value FROM entries WHERE seq = :s",
            "--param",
            "s=1",
            "--url",
            &url,
            "--format",
            "csv",
        ]);
        let refused = run(&["query", "PRAGMA writable_schema = 1", "--url", &url]);
        (ok, refused)
    })
    .await
    .unwrap();
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert_eq!(text(&ok.stdout), "value\n5\n");
    assert!(!refused.status.success());
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("400") && stderr.contains("PRAGMA writable_schema"),
        "{stderr}"
    );
}
