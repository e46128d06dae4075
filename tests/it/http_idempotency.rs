//! `POST /add` with an `Idempotency-Key`, over real TCP on 127.0.0.1: a retry answers 200
//! with the original entry and appends nothing, bad keys are 400, a key reused for another
//! request is 422, racing retries append once, and keys never reach a peer.

use std::net::SocketAddr;
use std::sync::{Arc, Barrier};

use crate::common;
use crate::common::serve_blocking::{serve, Served};
use crate::common::{get, http, identity, HttpResponse};
use kappalog::fence::FenceEvent;
use kappalog::http::HttpConfig;
use kappalog::node::Node;

struct Fixture {
    node: Node,
    served: Served,
    _dir: tempfile::TempDir,
}

fn start(seed: u8) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = Node::open_with_identity(dir.path(), identity(seed)).unwrap();
    let served = serve(&node, HttpConfig::default());
    Fixture {
        node,
        served,
        _dir: dir,
    }
}

impl Fixture {
    fn addr(&self) -> SocketAddr {
        self.served.addr
    }
}

fn add(addr: SocketAddr, body: &str, key: Option<&str>) -> HttpResponse {
    let headers: Vec<(&str, &str)> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
    http(addr, "POST", "/add", body.as_bytes(), &headers)
}

fn count(addr: SocketAddr) -> u64 {
    get(addr, "/summary").json()["count"].as_u64().unwrap()
}

fn error(r: &HttpResponse) -> String {
    r.json()["error"].as_str().unwrap().to_owned()
}

#[test]
fn a_retry_with_the_same_key_answers_200_with_the_original_entry() {
    let f = start(1);
    let body = r#"{"value": 42, "data": "hi"}"#;
    let first = add(f.addr(), body, Some("order-1"));
    assert_eq!(first.status, 201, "{}", first.body);
    for _ in 0..3 {
        let retry = add(f.addr(), body, Some("order-1"));
        assert_eq!(retry.status, 200, "{}", retry.body);
        assert_eq!(retry.json(), first.json(), "the same entry, hash included");
    }
    assert_eq!(count(f.addr()), 1);

    let other = add(f.addr(), body, Some("order-2"));
    assert_eq!(other.status, 201);
    assert_eq!(other.json()["seq"], 2);
    assert_ne!(other.json()["hash"], first.json()["hash"]);
    // Without a key every request appends.
    assert_eq!(add(f.addr(), body, None).status, 201);
    assert_eq!(add(f.addr(), body, None).status, 201);
    assert_eq!(count(f.addr()), 4);
    // The key is compared byte for byte: case matters.
    assert_eq!(add(f.addr(), body, Some("ORDER-1")).status, 201);
}

#[test]
fn a_retry_of_an_empty_body_replays_the_value_the_node_picked() {
    let f = start(2);
    let first = add(f.addr(), "", Some("pick-for-me"));
    assert_eq!(first.status, 201);
    let retry = add(f.addr(), "", Some("pick-for-me"));
    assert_eq!((retry.status, retry.json()), (200, first.json()));
    // Naming the value it picked is the same request too.
    let named = add(
        f.addr(),
        &first.json()["value"].to_string(),
        Some("pick-for-me"),
    );
    assert_eq!((named.status, named.json()), (200, first.json()));
    assert_eq!(count(f.addr()), 1);
}

#[test]
fn malformed_keys_are_400_and_append_nothing() {
    let f = start(3);
    let cases: [(&[(&str, &str)], &str); 6] = [
        (&[("Idempotency-Key", "")], "Idempotency-Key is empty"),
        (
            &[("Idempotency-Key", &"k".repeat(65))],
            "Idempotency-Key is 65 bytes, the limit is 64",
        ),
        (
            &[("Idempotency-Key", "two words")],
            "Idempotency-Key byte 3 is 0x20: only visible ASCII (0x21-0x7e) is allowed",
        ),
        (&[("Idempotency-Key", "café")], "byte 3 is 0xc3"),
        (&[("Idempotency-Key", "a\tb")], "byte 1 is 0x09"),
        (
            &[("Idempotency-Key", "a"), ("Idempotency-Key", "a")],
            "Idempotency-Key appears 2 times: send it once",
        ),
    ];
    for (headers, expected) in cases {
        let r = http(f.addr(), "POST", "/add", b"1", headers);
        assert_eq!(r.status, 400, "{headers:?}: {}", r.body);
        assert!(error(&r).contains(expected), "{headers:?}: {}", r.body);
    }
    // The longest key is fine.
    assert_eq!(add(f.addr(), "1", Some(&"~".repeat(64))).status, 201);
    assert_eq!(count(f.addr()), 1);
}

#[test]
fn a_key_reused_for_a_different_request_is_422_and_appends_nothing() {
    let f = start(4);
    let first = add(f.addr(), r#"{"value": 1, "data": "a"}"#, Some("k"));
    assert_eq!(first.status, 201);
    for body in [
        r#"{"value": 2, "data": "a"}"#,
        r#"{"value": 1, "data": "b"}"#,
        r#"{"value": 1}"#,
        "",
    ] {
        let r = add(f.addr(), body, Some("k"));
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        assert_eq!(
            error(&r),
            "Idempotency-Key \"k\" was used for a different request: use a new key for a new request"
        );
    }
    assert_eq!(count(f.addr()), 1);
    let retry = add(f.addr(), r#"{"value": 1, "data": "a"}"#, Some("k"));
    assert_eq!((retry.status, retry.json()), (200, first.json()));
}

#[test]
fn racing_requests_with_one_key_append_exactly_once() {
    let f = start(5);
    let racers = 32;
    let barrier = Arc::new(Barrier::new(racers));
    let addr = f.addr();
    let threads: Vec<_> = (0..racers)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                add(addr, r#"{"value": 9}"#, Some("race"))
            })
        })
        .collect();
    let answers: Vec<HttpResponse> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let created: Vec<&HttpResponse> = answers.iter().filter(|r| r.status == 201).collect();
    assert_eq!(created.len(), 1, "exactly one append");
    for r in &answers {
        assert!(r.status == 200 || r.status == 201, "{}", r.body);
        assert_eq!(r.json(), created[0].json());
    }
    assert_eq!(count(addr), 1);
}

/// A replay signs nothing, so it is answered even while the own-feed fence refuses new
/// appends (here: diverged for good).
#[test]
fn a_replay_is_answered_while_the_fence_refuses_new_appends() {
    let f = start(6);
    let first = add(f.addr(), "5", Some("before"));
    assert_eq!(first.status, 201);
    f.node.fence_event(FenceEvent::Diverged {
        reason: "test: a fork of our own feed".into(),
    });
    let retry = add(f.addr(), "5", Some("before"));
    assert_eq!((retry.status, retry.json()), (200, first.json()));
    assert_eq!(add(f.addr(), "5", Some("after")).status, 503);
    assert_eq!(add(f.addr(), "6", Some("before")).status, 422);
}

/// The key is local metadata: a peer that replicates the entries gets none of the keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_never_synced_to_a_peer() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = common::net::start(a_dir.path(), 7, &[]).await;
    let created = a
        .node
        .append_idempotent("never-leaves-node-a".parse().unwrap(), Some(3), "x".into())
        .await
        .unwrap();
    assert!(matches!(created, kappalog::node::KeyedAppend::Created(_)));
    let b = common::net::start(b_dir.path(), 8, &[a.addr]).await;
    common::net::wait_for("b to hold a's entry", || b.count() == 1).await;
    a.stop().await;
    b.stop().await;
    let a_log = std::fs::read(a_dir.path().join("entries.log")).unwrap();
    let b_log = std::fs::read(b_dir.path().join("entries.log")).unwrap();
    let holds = |log: &[u8]| log.windows(19).any(|w| w == b"never-leaves-node-a");
    assert!(holds(&a_log), "a keeps the key in its record");
    assert!(!holds(&b_log), "b never got it");
    // b holds one unkeyed record (after its leading commit marker): the key flag is clear.
    let records = &b_log[12..];
    let marker = 16;
    let field = u32::from_le_bytes(records[marker..marker + 4].try_into().unwrap());
    assert_eq!(
        field >> 30,
        0,
        "b's record carries no key (nor is it a marker)"
    );
}
