//! The HTTP API through the router (`oneshot`), one test per endpoint and error.

use axum::body::{to_bytes, Body};
use axum::http::{header, Request, StatusCode};
use axum::response::IntoResponse;
use std::time::Duration;

use crate::common;
use kappalog::http::{router, Api, Gate, HttpConfig, MAX_ADD_BODY_BYTES};
use kappalog::node::Node;
use serde_json::Value;
use tower::ServiceExt;

struct Fixture {
    _dir: tempfile::TempDir,
    node: Node,
}

fn fixture(seed: u8) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = Node::open_with_identity(dir.path(), common::identity(seed)).unwrap();
    Fixture { _dir: dir, node }
}

fn app(f: &Fixture) -> Api {
    router(f.node.clone(), HttpConfig::default())
}

async fn send(
    app: Api,
    method: &str,
    uri: &str,
    body: impl Into<Body>,
) -> (StatusCode, String, Option<String>) {
    send_with(
        app,
        Request::builder()
            .method(method)
            .uri(uri)
            .body(body.into())
            .unwrap(),
    )
    .await
}

async fn send_with(app: Api, request: Request<Body>) -> (StatusCode, String, Option<String>) {
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (
        status,
        String::from_utf8(bytes.to_vec()).unwrap(),
        content_type,
    )
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

async fn count(f: &Fixture) -> u64 {
    let (_, body, _) = send(app(f), "GET", "/summary", Body::empty()).await;
    json(&body)["count"].as_u64().unwrap()
}

#[tokio::test]
async fn add_accepts_object_integer_and_empty_body() {
    let f = fixture(1);
    let (status, body, _) =
        send(app(&f), "POST", "/add", r#"{"value": 42, "data": "hello"}"#).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let entry = json(&body);
    assert_eq!(entry["value"], 42);
    assert_eq!(entry["data"], "hello");
    assert_eq!(entry["seq"], 1);
    assert_eq!(entry["prev"], Value::Null);
    assert_eq!(entry["author"], f.node.author().to_string());
    for field in ["hash", "signature", "timestamp"] {
        assert!(!entry[field].is_null(), "{field}");
    }
    let first_hash = entry["hash"].clone();

    let (status, body, _) = send(app(&f), "POST", "/add", "-7").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(json(&body)["value"], -7);
    assert_eq!(json(&body)["prev"], first_hash);

    let (status, body, _) = send(app(&f), "POST", "/add", Body::empty()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(json(&body)["seq"], 3);
    assert_eq!(count(&f).await, 3);
}

#[tokio::test]
async fn bad_add_bodies_get_400_with_a_message_and_append_nothing() {
    let f = fixture(2);
    let cases: Vec<(Body, &str)> = vec![
        (Body::from("{"), "not valid JSON"),
        (Body::from(r#"{"value": "x"}"#), "must be an integer"),
        (
            Body::from(r#"{"value": 18446744073709551615}"#),
            "out of range",
        ),
        (Body::from(r#"{"value": 1.25}"#), "must be an integer"),
        (
            Body::from(r#"{"value": 1.0}"#),
            "must be an integer written without a fraction or exponent",
        ),
        (
            Body::from(r#"{"value": 1, "value": 2}"#),
            "field \"value\" appears twice",
        ),
        (Body::from(r#"[1]"#), "got an array"),
        (Body::from(vec![0xc3u8, 0x28]), "not valid UTF-8"),
        (
            Body::from(format!(r#"{{"value": 1, "data": "{}"}}"#, "y".repeat(4097))),
            "limit is 4096",
        ),
    ];
    for (body, expected) in cases {
        let (status, text, content_type) = send(app(&f), "POST", "/add", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert_eq!(content_type.as_deref(), Some("application/json"));
        let message = json(&text)["error"].as_str().unwrap().to_owned();
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
    }
    assert_eq!(count(&f).await, 0);
}

#[tokio::test]
async fn oversize_add_body_is_413() {
    let f = fixture(3);
    let big = format!(
        r#"{{"value": 1, "data": "{}"}}"#,
        "z".repeat(MAX_ADD_BODY_BYTES)
    );
    let (status, text, _) = send(app(&f), "POST", "/add", big.clone()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(json(&text)["error"].as_str().unwrap().contains("limit"));
    assert_eq!(count(&f).await, 0);

    // Streamed with no Content-Length, the limit is found while reading.
    let chunks = tokio_util::io::ReaderStream::with_capacity(std::io::Cursor::new(big), 4096);
    let (status, text, _) = send(app(&f), "POST", "/add", Body::from_stream(chunks)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(json(&text)["error"].as_str().unwrap().contains("limit"));
    assert_eq!(count(&f).await, 0);
}

#[tokio::test]
async fn a_request_past_the_timeout_is_503_json() {
    let f = fixture(9);
    let never = tower::service_fn(|_: Request<Body>| {
        std::future::pending::<Result<axum::response::Response, std::convert::Infallible>>()
    });
    let gate = Gate::new(never, f.node.clone(), None, Duration::from_millis(20));
    let response = gate.oneshot(Request::get("/summary").body(Body::empty()).unwrap());
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("the gate answers once its timeout passes")
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(
        json(&text)["error"].as_str().unwrap().contains("timed out"),
        "{text}"
    );
}

/// `/add` is never timed out by the gate: a handler that takes longer than the request
/// timeout (as an append does behind a slow fdatasync) still answers what happened.
#[tokio::test]
async fn add_is_not_timed_out_into_an_error_once_it_runs() {
    let f = fixture(10);
    let slow = tower::service_fn(|_: Request<Body>| async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok::<_, std::convert::Infallible>((StatusCode::CREATED, "{\"seq\":1}").into_response())
    });
    let gate = Gate::new(slow, f.node.clone(), None, Duration::from_millis(20));
    let response = gate
        .oneshot(Request::post("/add").body(Body::from("1")).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn unknown_route_is_404_and_wrong_method_is_405_both_json() {
    let f = fixture(4);
    let (status, text, _) = send(app(&f), "GET", "/nope", Body::empty()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(json(&text)["error"].is_string());
    let (status, text, _) = send(app(&f), "GET", "/add", Body::empty()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(json(&text)["error"].is_string());
    let (status, text, _) = send(app(&f), "DELETE", "/summary", Body::empty()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(json(&text)["error"].is_string());
}

#[tokio::test]
async fn token_guards_writes_but_not_reads() {
    let f = fixture(5);
    let guarded = || {
        router(
            f.node.clone(),
            HttpConfig {
                token: Some("s3cret".into()),
                ..HttpConfig::default()
            },
        )
    };
    let (status, text, _) = send(guarded(), "POST", "/add", "1").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(json(&text)["error"].is_string());
    let wrong = Request::post("/add")
        .header(header::AUTHORIZATION, "Bearer nope")
        .body(Body::from("1"))
        .unwrap();
    assert_eq!(
        send_with(guarded(), wrong).await.0,
        StatusCode::UNAUTHORIZED
    );
    for path in ["/import", "/peers", "/sync"] {
        let (status, text, _) = send(guarded(), "POST", path, "{}").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(json(&text)["error"].is_string());
    }
    // Unpinning a peer's key is a write too.
    let (status, _, _) = send(guarded(), "DELETE", "/peers/127.0.0.1:1", Body::empty()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let right = Request::post("/add")
        .header(header::AUTHORIZATION, "Bearer s3cret")
        .body(Body::from("1"))
        .unwrap();
    assert_eq!(send_with(guarded(), right).await.0, StatusCode::CREATED);
    for path in ["/summary", "/peers", "/health"] {
        let (status, _, _) = send(guarded(), "GET", path, Body::empty()).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn entries_are_paginated_and_looked_up_by_hash() {
    let f = fixture(6);
    let mut hashes = vec![];
    for v in 0..5 {
        let (_, body, _) = send(app(&f), "POST", "/add", format!("{v}")).await;
        hashes.push(json(&body)["hash"].as_str().unwrap().to_owned());
    }
    let author = f.node.author().to_string();
    let (status, body, _) = send(
        app(&f),
        "GET",
        &format!("/entries?author={author}&limit=2"),
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let page = json(&body);
    assert_eq!(page["entries"].as_array().unwrap().len(), 2);
    assert_eq!(page["next"], 3);
    assert_eq!(page["length"], 5);
    let (_, body, _) = send(
        app(&f),
        "GET",
        &format!("/entries?author={author}&from=5&limit=2"),
        Body::empty(),
    )
    .await;
    let page = json(&body);
    assert_eq!(page["entries"][0]["hash"], hashes[4]);
    assert_eq!(page["next"], Value::Null);

    let (status, body, _) = send(
        app(&f),
        "GET",
        &format!("/entries/{}", hashes[2]),
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["value"], 2);

    for (uri, expected) in [
        ("/entries".to_owned(), StatusCode::BAD_REQUEST),
        ("/entries?author=zz".to_owned(), StatusCode::BAD_REQUEST),
        (
            format!("/entries?author={author}&from=0"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/entries?author={author}&limit=-1"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/entries?author={}", "ab".repeat(32)),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/entries/{}", "00".repeat(32)),
            StatusCode::NOT_FOUND,
        ),
        ("/entries/nothex".to_owned(), StatusCode::BAD_REQUEST),
        (
            format!("/entries/{}0", "ab".repeat(32)),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, body, _) = send(app(&f), "GET", &uri, Body::empty()).await;
        assert_eq!(status, expected, "{uri}: {body}");
        assert!(json(&body)["error"].is_string(), "{uri}");
    }
    // A hash one digit too long says so in digits.
    let uri = format!("/entries/{}0", "ab".repeat(32));
    let (_, body, _) = send(app(&f), "GET", &uri, Body::empty()).await;
    let message = json(&body)["error"].as_str().unwrap().to_owned();
    assert!(
        message.contains("expected 64 hex digits, got 65"),
        "{message}"
    );
}

#[tokio::test]
async fn feeds_health_and_metrics() {
    let f = fixture(7);
    send(app(&f), "POST", "/add", "5").await;
    let (_, body, _) = send(app(&f), "GET", "/feeds", Body::empty()).await;
    let page = json(&body);
    let feeds = &page["feeds"];
    assert_eq!(feeds[0]["author"], f.node.author().to_string());
    assert_eq!(feeds[0]["length"], 1);
    assert_eq!(feeds[0]["status"], "ok");
    assert_eq!(page["next"], Value::Null);
    let (status, body, _) = send(app(&f), "GET", "/health", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["status"], "ok");
    let (status, body, content_type) = send(app(&f), "GET", "/metrics", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.unwrap().contains("text"));
    assert!(body.contains("kappalog_appends_total 1"), "{body}");
    assert!(body.contains("kappalog_http_requests_total"), "{body}");
    assert!(
        body.contains("kappalog_stored_entries{status=\"ok\"} 1"),
        "{body}"
    );
}

/// The summary is constant-size; the feeds are listed by `/feeds` a page at a time in
/// author order, `next` leading from page to page; bad parameters get a 400 naming them.
#[tokio::test]
async fn summary_counts_feeds_and_feeds_are_paged_by_author() {
    let f = fixture(8);
    let mut csv = Vec::new();
    let mut writer = kappalog::csv::CsvWriter::new(&mut csv).unwrap();
    for seed in 20..25 {
        for (entry, hash) in common::feed(&common::identity(seed), 2) {
            writer.write_entry(&entry, &hash).unwrap();
        }
    }
    writer.finish().unwrap();
    f.node.import(&csv[..]).unwrap();
    let (_, body, _) = send(app(&f), "GET", "/summary", Body::empty()).await;
    let summary = json(&body);
    let mut keys: Vec<&str> = summary
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "count",
            "digest",
            "feed_count",
            "forked_feed_count",
            "max",
            "mean",
            "min",
            "own_feed",
            "sum"
        ]
    );
    assert_eq!(
        (summary["count"].as_u64(), summary["feed_count"].as_u64()),
        (Some(10), Some(5))
    );
    assert_eq!(summary["forked_feed_count"], 0);
    assert_eq!(summary["own_feed"], "ok");

    let mut authors = vec![];
    let mut path = "/feeds?limit=2".to_owned();
    loop {
        let (status, body, _) = send(app(&f), "GET", &path, Body::empty()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let page = json(&body);
        let feeds = page["feeds"].as_array().unwrap();
        assert!(feeds.len() <= 2);
        authors.extend(
            feeds
                .iter()
                .map(|feed| feed["author"].as_str().unwrap().to_owned()),
        );
        match page["next"].as_str() {
            Some(next) => path = format!("/feeds?limit=2&after={next}"),
            None => break,
        }
    }
    let mut expected: Vec<String> = (20..25)
        .map(|s| common::identity(s).author().to_string())
        .collect();
    expected.sort();
    assert_eq!(authors, expected);
    let (_, body, _) = send(app(&f), "GET", "/feeds", Body::empty()).await;
    assert_eq!(json(&body)["feeds"].as_array().unwrap().len(), 5);

    for (query, says) in [
        ("limit=0", "\"limit\" must be a positive integer"),
        ("limit=x", "\"limit\" must be a positive integer"),
        ("limit=-1", "\"limit\" must be a positive integer"),
        ("after=abc", "\"after\" must be an author"),
        ("after=", "\"after\" must be an author"),
    ] {
        let (status, body, _) =
            send(app(&f), "GET", &format!("/feeds?{query}"), Body::empty()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        let error = json(&body)["error"].as_str().unwrap().to_owned();
        assert!(error.contains(says), "{query}: {error}");
    }
    // A `limit` beyond the largest page is served as the largest page.
    let (status, body, _) = send(app(&f), "GET", "/feeds?limit=1000000", Body::empty()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json(&body)["feeds"].as_array().unwrap().len(), 5);
}

/// A body of garbage rows is answered with the exact count and the first 1,000 rejections
/// (by line), not one record per row.
#[tokio::test]
async fn an_import_of_garbage_lists_the_first_1000_rejections_and_counts_all() {
    let f = fixture(12);
    let body = "a\n".repeat(5_000);
    let (status, text, _) = send(app(&f), "POST", "/import", body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let report = json(&text);
    assert_eq!(report["rejected"], 5_000);
    let listed = report["rejections"].as_array().unwrap();
    assert_eq!(listed.len(), 1_000);
    assert_eq!(listed[0]["line"], 1);
    assert_eq!(listed[999]["line"], 1_000);
    assert_eq!(report["added"], 0);
}

/// The streamed export, produced a chunk at a time, is byte for byte `kappalog export`'s,
/// across chunk and feed boundaries.
#[tokio::test]
async fn http_export_is_byte_identical_to_the_cli_export() {
    let f = fixture(11);
    for seed in [30, 31, 32] {
        let feed = common::entries(&common::feed(&common::identity(seed), 300));
        f.node.offer_entries(feed).await.unwrap();
    }
    for v in 0..10 {
        f.node.append(v, "own, \"quoted\"".into()).await.unwrap();
    }
    let (status, csv, _) = send(app(&f), "GET", "/export.csv", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    let mut direct = Vec::new();
    f.node.export(&mut direct).unwrap();
    assert_eq!(csv.len(), direct.len());
    assert!(
        csv.as_bytes() == direct.as_slice(),
        "the two exports differ"
    );
    assert_eq!(csv.lines().count(), 1 + 910);
}

#[tokio::test]
async fn export_then_import_into_another_node_gives_the_same_summary() {
    let a = fixture(8);
    for v in [1, -2, 3] {
        send(
            app(&a),
            "POST",
            "/add",
            format!(r#"{{"value": {v}, "data": "a,\"b\"\nc"}}"#),
        )
        .await;
    }
    let (status, csv, content_type) = send(app(&a), "GET", "/export.csv", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.unwrap().starts_with("text/csv"));
    assert!(csv.starts_with("author,seq,timestamp,prev,value,data,hash,signature\n"));

    let b = fixture(9);
    // Twice, concatenated: the second copy is all duplicates.
    let (status, body, _) = send(app(&b), "POST", "/import", format!("{csv}{csv}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report = json(&body);
    assert_eq!(report["added"], 3);
    assert_eq!(report["duplicates"], 3);
    assert_eq!(report["rejected"], 0);

    let (_, summary_a, _) = send(app(&a), "GET", "/summary", Body::empty()).await;
    let (_, summary_b, _) = send(app(&b), "GET", "/summary", Body::empty()).await;
    assert_eq!(summary_a, summary_b);
}

#[tokio::test]
async fn import_reports_bad_lines_and_keeps_good_ones() {
    let a = fixture(10);
    send(app(&a), "POST", "/add", "1").await;
    let (_, csv, _) = send(app(&a), "GET", "/export.csv", Body::empty()).await;
    let body = format!("{csv}garbage,line\n");
    let b = fixture(11);
    let (status, text, _) = send(app(&b), "POST", "/import", body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let report = json(&text);
    assert_eq!(report["added"], 1);
    assert_eq!(report["rejected"], 1);
    assert_eq!(report["rejections"][0]["line"], 3);
}
