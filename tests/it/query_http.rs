//! `GET /query` and `POST /query` answering over real HTTP: the answer's forms (JSON, CSV),
//! the digest's worked example and its independence from insertion order, named
//! parameters, and read-your-writes with `after=CURSOR`.

use std::net::SocketAddr;
use std::time::Duration;

use kappalog::query::QueryConfig;

use crate::common::query_db::{encode, start, start_indexed, QueryNode};
use crate::common::{feed, finish_request, get, http, identity, post, wait_until, HttpResponse};

/// docs/QUERY.md's worked example of the digest, as SQL.
const WORKED_EXAMPLE_SQL: &str =
    "SELECT 1 AS k, 2.5 AS v UNION ALL SELECT NULL, 'hi' UNION ALL SELECT x'00ff', -0.0";
/// Its digest, printed in docs/QUERY.md (and pinned in `query::digest`'s unit test).
const WORKED_EXAMPLE_DIGEST: &str =
    "d6c8338625d0d9f3feb5e2e5f88d637d2aab16d7edb9ea3ebcc7163c03bb07e7";

async fn query(addr: SocketAddr, path_and_query: String) -> HttpResponse {
    tokio::task::spawn_blocking(move || get(addr, &path_and_query))
        .await
        .unwrap()
}

fn sql(text: &str) -> String {
    format!("/query?sql={}", encode(text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worked_example_answers_its_documented_digest_in_json_and_csv() {
    let node = start(QueryConfig::default()).await;
    let addr = node.server.addr;
    let response = query(addr, sql(WORKED_EXAMPLE_SQL)).await;
    assert_eq!(response.status, 200, "{response:?}");
    let answer = response.json();
    assert_eq!(answer["columns"], serde_json::json!(["k", "v"]));
    assert_eq!(
        answer["rows"],
        serde_json::json!([[1, 2.5], [null, "hi"], [{"blob": "00ff"}, -0.0]])
    );
    assert_eq!(answer["digest"], WORKED_EXAMPLE_DIGEST);
    assert_eq!(answer["truncated"], false);
    assert_eq!(answer["as_of"], "start");

    let body = WORKED_EXAMPLE_SQL.as_bytes().to_vec();
    let csv = tokio::task::spawn_blocking(move || {
        http(addr, "POST", "/query", &body, &[("Accept", "text/csv")])
    })
    .await
    .unwrap();
    assert_eq!(csv.status, 200, "{csv:?}");
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(csv.body, "k,v\n1,2.5\n,hi\n00ff,-0.0\n");
    assert_eq!(csv.header("kappalog-digest"), Some(WORKED_EXAMPLE_DIGEST));
    assert_eq!(csv.header("kappalog-as-of"), Some("start"));
    assert_eq!(csv.header("kappalog-truncated"), Some("false"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_rows_inserted_in_another_order_digest_the_same() {
    let a = start(QueryConfig::default()).await;
    let b = start(QueryConfig::default()).await;
    let mut entries = feed(&identity(3), 30);
    entries.extend(feed(&identity(4), 30));
    for (entry, hash) in &entries {
        a.index.insert(entry, hash);
    }
    for (entry, hash) in entries.iter().rev() {
        b.index.insert(entry, hash);
    }
    let totals = "SELECT author, count(*) AS n, sum(value) AS total FROM entries \
                  GROUP BY author ORDER BY author";
    let rows = "SELECT author, seq, value, data, hash FROM entries ORDER BY value, author DESC";
    for statement in [totals, rows] {
        let from_a = query(a.server.addr, sql(statement)).await.json();
        let from_b = query(b.server.addr, sql(statement)).await.json();
        assert_eq!(from_a["rows"], from_b["rows"], "{statement}");
        assert_eq!(from_a["digest"], from_b["digest"], "{statement}");
    }
    // Different rows, different digests: the digest covers the rows.
    let first = query(
        a.server.addr,
        sql("SELECT seq FROM entries ORDER BY seq LIMIT 1"),
    )
    .await;
    let last = query(
        a.server.addr,
        sql("SELECT seq FROM entries ORDER BY seq DESC LIMIT 1"),
    )
    .await;
    assert_ne!(first.json()["digest"], last.json()["digest"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_parameters_are_bound_never_spliced() {
    let node = start(QueryConfig::default()).await;
    let ours = feed(&identity(3), 5);
    for (entry, hash) in ours.iter().chain(&feed(&identity(4), 7)) {
        node.index.insert(entry, hash);
    }
    let author = identity(3).author().to_string();
    let statement = "SELECT count(*), sum(value) FROM entries WHERE author = :author";
    let path = format!("{}&:author={author}", sql(statement));
    let answer = query(node.server.addr, path).await.json();
    assert_eq!(answer["rows"], serde_json::json!([[5, 15]]));

    // A value that would be SQL if spliced is just text.
    let injected = format!("{}&:author={}", sql(statement), encode("x' OR '1'='1"));
    let answer = query(node.server.addr, injected).await.json();
    assert_eq!(answer["rows"], serde_json::json!([[0, null]]));

    // INTEGER columns compare with TEXT parameters by SQLite's affinity.
    let path = format!(
        "{}&:from=3",
        sql("SELECT count(*) FROM entries WHERE seq >= :from")
    );
    assert_eq!(
        query(node.server.addr, path).await.json()["rows"],
        serde_json::json!([[8]])
    );

    for (path, named) in [
        (sql(statement), "parameter :author has no value"),
        (
            format!("{}&:author=a&:other=b", sql(statement)),
            "parameter :other is not in the statement",
        ),
        (sql("SELECT ?"), "write parameters as :name"),
        (
            format!("{}&x=1", sql("SELECT 1")),
            "unknown query parameter",
        ),
    ] {
        let response = query(node.server.addr, path.clone()).await;
        assert_eq!(response.status, 400, "{path}: {response:?}");
        let message = response.json()["error"].as_str().unwrap().to_string();
        assert!(message.contains(named), "{path}: {message}");
    }
}

async fn add(node: &QueryNode, value: i64) -> serde_json::Value {
    let addr = node.server.addr;
    let body = format!(r#"{{"value": {value}, "data": "{{\"k\":\"a\",\"v\":{value}}}"}}"#);
    let response = tokio::task::spawn_blocking(move || post(addr, "/add", &body))
        .await
        .unwrap();
    assert_eq!(response.status, 201, "{response:?}");
    response.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_cursor_waits_until_the_index_covers_it() {
    let mut node = start(QueryConfig {
        wait: Duration::from_secs(30),
        ..QueryConfig::default()
    })
    .await;
    let added = add(&node, 7).await;
    let cursor = added["cursor"].as_str().unwrap().to_string();
    assert_eq!(cursor.len(), 48, "{added}");

    let addr = node.server.addr;
    let path = format!(
        "{}&after={cursor}",
        sql("SELECT seq, value, json_extract(data, '$.v') FROM entries")
    );
    let request = std::thread::spawn(move || get(addr, &path));
    // The request waits for the index; only then does the "indexer" write the entry.
    wait_until("the query waits for its cursor", || {
        node.engine.covering() == 1
    });
    node.index.index_log(node.server.node.reader());
    let response = tokio::task::spawn_blocking(move || request.join().unwrap())
        .await
        .unwrap();
    assert_eq!(response.status, 200, "{response:?}");
    let answer = response.json();
    assert_eq!(answer["rows"], serde_json::json!([[1, 7, 7]]));
    assert_eq!(answer["as_of"], cursor.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncovered_cursor_is_503_with_as_of_after_the_wait() {
    let mut node = start(QueryConfig {
        wait: Duration::from_millis(200),
        ..QueryConfig::default()
    })
    .await;
    let first = add(&node, 1).await;
    node.index.index_log(node.server.node.reader());
    let second = add(&node, 2).await;
    let path = format!(
        "{}&after={}",
        sql("SELECT 1"),
        second["cursor"].as_str().unwrap()
    );
    let response = query(node.server.addr, path).await;
    assert_eq!(response.status, 503, "{response:?}");
    let body = response.json();
    assert_eq!(body["as_of"], first["cursor"], "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("within 200 ms"),
        "{body}"
    );

    // Covered already: answered at once.
    let path = format!(
        "{}&after={}",
        sql("SELECT 1"),
        first["cursor"].as_str().unwrap()
    );
    assert_eq!(query(node.server.addr, path).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_cursor_or_another_nodes_is_400() {
    let node = start(QueryConfig::default()).await;
    let other = kappalog::tail::cursor::Cursor::new(
        &identity(9).author(),
        12,
        &kappalog::hash::Hash([1; 32]),
    );
    for (after, named) in [
        ("nope".to_string(), "48 hex characters"),
        (other.to_string(), "another node"),
    ] {
        let path = format!("{}&after={after}", sql("SELECT 1"));
        let response = query(node.server.addr, path).await;
        assert_eq!(response.status, 400, "{response:?}");
        assert!(
            response.json()["error"].as_str().unwrap().contains(named),
            "{response:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_worked_examples_run() {
    let mut node = start(QueryConfig::default()).await;
    for (value, key) in [(10, "a"), (20, "b"), (30, "a")] {
        let addr = node.server.addr;
        let body =
            format!(r#"{{"value": {value}, "data": "{{\"sensor\":\"{key}\",\"temp\":{value}}}"}}"#);
        let response = tokio::task::spawn_blocking(move || post(addr, "/add", &body))
            .await
            .unwrap();
        assert_eq!(response.status, 201);
    }
    node.index.index_log(node.server.node.reader());
    let author = node.server.node.author().to_string();

    let totals = "SELECT author, count(*) AS entries, sum(value) AS total \
                  FROM entries GROUP BY author ORDER BY author";
    let answer = query(node.server.addr, sql(totals)).await.json();
    assert_eq!(answer["rows"], serde_json::json!([[author, 3, 60]]));

    let latest = "SELECT json_extract(data, '$.sensor') AS sensor, \
                  json_extract(data, '$.temp') AS temp \
                  FROM entries AS e \
                  WHERE seq = (SELECT max(seq) FROM entries \
                               WHERE author = e.author \
                               AND json_extract(data, '$.sensor') = json_extract(e.data, '$.sensor')) \
                  ORDER BY sensor";
    let response = query(node.server.addr, sql(latest)).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.json()["rows"],
        serde_json::json!([["a", 30], ["b", 20]])
    );
    let stream = crate::common::begin_request(node.server.addr, "GET", "/health", b"", &[]);
    assert_eq!(finish_request(stream).status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_retry_answers_the_same_cursor() {
    let node = start(QueryConfig::default()).await;
    let addr = node.server.addr;
    let send = move || {
        http(
            addr,
            "POST",
            "/add",
            br#"{"value": 4}"#,
            &[("Idempotency-Key", "order-1")],
        )
    };
    let first = tokio::task::spawn_blocking(send).await.unwrap();
    let retry = tokio::task::spawn_blocking(send).await.unwrap();
    assert_eq!((first.status, retry.status), (201, 200));
    let cursor = first.json()["cursor"].clone();
    assert_eq!(cursor.as_str().unwrap().len(), 48, "{first:?}");
    assert_eq!(retry.json()["cursor"], cursor);
    // The cursor names the entry: a tail from it starts after it.
    let offset = u64::from_str_radix(&cursor.as_str().unwrap()[16..32], 16).unwrap();
    let record = node
        .server
        .node
        .reader()
        .record_at(offset)
        .unwrap()
        .unwrap();
    assert_eq!(record.1.to_string(), first.json()["hash"].as_str().unwrap());
}

/// End to end with the real indexer: every `POST /add` answer's cursor, given as `after`,
/// is answered with that entry in the rows, whatever the indexer's lag when the query came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_through_the_real_indexer() {
    let (server, indexer) = start_indexed(QueryConfig {
        wait: Duration::from_secs(30),
        ..QueryConfig::default()
    })
    .await;
    let addr = server.addr;
    for value in 1..=20i64 {
        let body = format!(r#"{{"value": {value}, "data": "{{\"v\":{value}}}"}}"#);
        let added = tokio::task::spawn_blocking(move || post(addr, "/add", &body))
            .await
            .unwrap();
        assert_eq!(added.status, 201, "{added:?}");
        let cursor = added.json()["cursor"].as_str().unwrap().to_string();
        let path = format!(
            "{}&after={cursor}",
            sql("SELECT count(*), max(json_extract(data, '$.v')) FROM entries")
        );
        let answer = query(addr, path).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        let answer = answer.json();
        assert_eq!(
            answer["rows"],
            serde_json::json!([[value, value]]),
            "{answer}"
        );
        // The index covers at least the cursor asked for; `as_of` says exactly where it is.
        assert!(answer["as_of"].as_str().is_some(), "{answer}");
    }
    assert_eq!(indexer.state(), kappalog::index::IndexState::Ready);
    server.shutdown().await;
}

/// With the real indexer, a cursor of this node's log that the index does not reach within
/// `--query-wait` is answered 503 with `as_of` and the wait it was given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncovered_cursor_with_the_real_indexer_is_503_after_the_wait() {
    let (server, _indexer) = start_indexed(QueryConfig {
        wait: Duration::from_millis(300),
        ..QueryConfig::default()
    })
    .await;
    let addr = server.addr;
    let added = tokio::task::spawn_blocking(move || post(addr, "/add", r#"{"value": 1}"#))
        .await
        .unwrap();
    assert_eq!(added.status, 201, "{added:?}");
    // This node's log, a position it will not reach.
    let beyond = kappalog::tail::cursor::Cursor::new(
        &server.node.author(),
        1 << 40,
        &kappalog::hash::Hash([7; 32]),
    );
    let path = format!("{}&after={beyond}", sql("SELECT count(*) FROM entries"));
    let answer = query(addr, path).await;
    assert_eq!(answer.status, 503, "{answer:?}");
    let body = answer.json();
    assert!(
        body["as_of"].as_str().is_some_and(|a| a.len() == 48),
        "{body}"
    );
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("300")),
        "{body}"
    );
    server.shutdown().await;
}
