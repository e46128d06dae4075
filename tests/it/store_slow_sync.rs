//! What `POST /add` answers while the store's fdatasync is slow or fails, over real TCP on
//! 127.0.0.1, with the sync held or failed through the store's I/O seam
//! (`kappalog::store::io::LogIo`, here `common::held_io::HeldIo`).

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use crate::common::held_io::HeldIo;
use crate::common::serve_blocking::{serve, Served};
use crate::common::{begin_request, finish_request, get, http, identity};
use kappalog::http::HttpConfig;
use kappalog::node::Node;
use kappalog::store::StoreOptions;

/// Short, so a sync held for a few of them is far past it.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(200);

fn open(dir: &std::path::Path, io: &Arc<HeldIo>) -> Node {
    // No idle commit markers: the tests count fdatasync calls one by one.
    let options = StoreOptions {
        io: io.clone(),
        idle_marker_delay: None,
        ..StoreOptions::default()
    };
    Node::open_with_store_options(dir, identity(1), &options)
        .unwrap()
        .0
}

fn config() -> HttpConfig {
    HttpConfig {
        request_timeout: REQUEST_TIMEOUT,
        ..HttpConfig::default()
    }
}

/// A node in `dir` whose fsyncs `io` controls, served over TCP, after one keyed append.
fn serve_warm(dir: &std::path::Path) -> (Arc<HeldIo>, Node, Served) {
    let io = Arc::new(HeldIo::default());
    let node = open(dir, &io);
    let served = serve(&node, config());
    let key = [("Idempotency-Key", "warm-up")];
    assert_eq!(http(served.addr, "POST", "/add", b"0", &key).status, 201);
    (io, node, served)
}

fn count(addr: std::net::SocketAddr) -> u64 {
    get(addr, "/summary").json()["count"].as_u64().unwrap()
}

/// The answer is the truth however long the fdatasync takes: 201 once it completes, never
/// a timeout error for an entry that was appended. A retry with the same key sent during
/// the sync waits for the first and answers 200 with its entry.
#[test]
fn add_answers_201_once_a_held_fsync_completes_long_past_the_request_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (io, _node, served) = serve_warm(dir.path());
    let addr = served.addr;

    io.hold();
    let key = [("Idempotency-Key", "slow-1")];
    let mut first = begin_request(addr, "POST", "/add", b"5", &key);
    io.wait_until_held();
    // The entry is synced but not yet published: readers do not see it yet, and the
    // server still answers them (the gate's timeout applies to them, not to /add).
    assert_eq!(count(addr), 1);
    let retry = begin_request(addr, "POST", "/add", b"5", &key);
    // Nothing is answered while the sync is held, even three request timeouts later (this
    // bounded read is the assertion, not a wait for anything).
    first.set_read_timeout(Some(REQUEST_TIMEOUT * 3)).unwrap();
    let mut byte = [0u8; 1];
    let early = first.read(&mut byte);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "answered while the sync was held: {early:?}"
    );
    io.release();
    let first = finish_request(first);
    assert_eq!(first.status, 201, "{}", first.body);
    let retry = finish_request(retry);
    assert_eq!((retry.status, retry.json()), (200, first.json()));
    assert_eq!(count(addr), 2);
    let hash = first.json()["hash"].as_str().unwrap().to_owned();
    assert_eq!(get(addr, &format!("/entries/{hash}")).status, 200);
    served.stop();
}

/// An injected failing fdatasync: the request is answered with an error, and the error is
/// the truth: after a reopen the entry is not in the log (the writer cut the unsynced bytes
/// off), so a retry with the same key appends it.
#[test]
fn a_failed_fsync_answers_an_error_degrades_health_and_the_next_append_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (io, node, served) = serve_warm(dir.path());
    let addr = served.addr;
    assert_eq!(get(addr, "/health").status, 200);

    // The failed sync itself, then the recovery's sync: the store stays degraded until a
    // write succeeds.
    io.fail_call(io.calls() + 1);
    io.fail_call(io.calls() + 2);
    let key = [("Idempotency-Key", "doomed")];
    let failed = http(addr, "POST", "/add", b"7", &key);
    assert_eq!(failed.status, 503, "{}", failed.body);
    assert_eq!(failed.json()["error"], "unable to write to the log");
    let health = get(addr, "/health");
    assert_eq!(health.status, 503, "{}", health.body);
    assert_eq!(health.json()["status"], "degraded");
    let reason = health.json()["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("injected failure of sync call"), "{reason}");
    let metrics = get(addr, "/metrics").body;
    assert!(metrics.contains("kappalog_store_degraded 1"), "{metrics}");
    assert_eq!(
        count(addr),
        1,
        "reads keep working and see only durable entries"
    );

    // The next append recovers the tail (cut back, synced, re-read) and is written.
    let retry = http(addr, "POST", "/add", b"7", &key);
    assert_eq!(retry.status, 201, "{}", retry.body);
    assert_eq!(
        retry.json()["seq"],
        2,
        "the failed entry left no seq behind"
    );
    assert_eq!(get(addr, "/health").json()["status"], "ok");
    let metrics = get(addr, "/metrics").body;
    assert!(metrics.contains("kappalog_store_degraded 0"), "{metrics}");
    assert!(metrics.contains("kappalog_store_recoveries 1"), "{metrics}");
    assert!(
        metrics.contains("kappalog_store_write_failures 2"),
        "{metrics}"
    );
    served.stop();
    node.shutdown_blocking().unwrap();

    let (_node, report) = Node::open_with_identity(dir.path(), identity(1)).unwrap();
    assert_eq!(
        report.entries, 2,
        "the warm-up and the retry, nothing of the failure"
    );
}
