//! The real `kappalog` binary serving HTTP on 127.0.0.1:0.

use crate::common;
use crate::common::{get, kappalog, post, run_node, Running};
use std::net::SocketAddr;

#[test]
fn add_stop_restart_gives_identical_summary() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = dir.path().join("node.key");
    let (node, addr) = run_node(&data, &key, &[]);
    for v in 0..20 {
        let r = post(
            addr,
            "/add",
            &format!(r#"{{"value": {v}, "data": "n{v}"}}"#),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let before = get(addr, "/summary");
    assert_eq!(before.json()["count"], 20);
    let status = node.terminate();
    assert!(status.success(), "exit status {status:?}");

    let (node, addr) = run_node(&data, &key, &[]);
    let after = get(addr, "/summary");
    assert_eq!(before.body, after.body);
    // The restarted node extends the same feed.
    let r = post(addr, "/add", "99");
    assert_eq!(r.json()["seq"], 21);
    assert!(node.terminate().success());
}

#[test]
fn adds_proceed_while_an_export_streams() {
    let dir = tempfile::tempdir().unwrap();
    let (node, addr) = run_node(&dir.path().join("data"), &dir.path().join("k.key"), &[]);
    for v in 0..200 {
        assert_eq!(post(addr, "/add", &v.to_string()).status, 201);
    }
    let exporter = std::thread::spawn(move || get(addr, "/export.csv"));
    for v in 0..50 {
        assert_eq!(post(addr, "/add", &v.to_string()).status, 201);
    }
    let export = exporter.join().unwrap();
    assert_eq!(export.status, 200);
    let rows = export.body.lines().count() - 1;
    // The export is a consistent prefix: at least what was there when it started.
    assert!((200..=250).contains(&rows), "{rows} rows");
    assert_eq!(get(addr, "/summary").json()["count"], 250);
    assert!(node.terminate().success());
}

#[test]
fn token_from_environment_guards_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = kappalog();
    cmd.env("KAPPALOG_TOKEN", "tok")
        .env("KAPPALOG_HTTP", "127.0.0.1:0")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--key")
        .arg(dir.path().join("k.key"))
        .arg("run");
    let node = Running::spawn(cmd);
    let addr = common::printed_addr(&node.wait_line("http://"));
    assert_eq!(post(addr, "/add", "1").status, 401);
    let r = common::http(
        addr,
        "POST",
        "/add",
        b"1",
        &[("Authorization", "Bearer tok")],
    );
    assert_eq!(r.status, 201);
    assert!(node.terminate().success());
}

#[test]
fn cluster_starts_answers_on_every_node_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        let mut cmd = kappalog();
        cmd.current_dir(dir.path())
            .args(["cluster", "--nodes", "3", "--base-port", "0"]);
        let running = Running::spawn(cmd);
        let mut addrs: Vec<SocketAddr> = vec![];
        for i in 1..=3 {
            let line = running.wait_line(&format!("node-{i} "));
            let addr = common::printed_addr(&line);
            // Each row names the node's dashboard, and it answers there.
            let dashboard = format!("http://{addr}/");
            assert!(line.contains(&format!(" {dashboard} ")), "{line}");
            let page = get(addr, "/");
            assert_eq!(page.status, 200);
            assert_eq!(
                page.header("content-type"),
                Some("text/html; charset=utf-8")
            );
            addrs.push(addr);
        }
        (running, addrs)
    };
    let (cluster, addrs) = start();
    let mut authors = vec![];
    for (i, addr) in addrs.iter().enumerate() {
        // The own-feed fence answers 503 until the node has heard from its peers.
        let mut r = post(*addr, "/add", &i.to_string());
        common::wait_until("the own-feed fence to open", || {
            if r.status == 503 {
                r = post(*addr, "/add", &i.to_string());
            }
            r.status != 503
        });
        assert_eq!(r.status, 201, "{}", r.body);
        authors.push(r.json()["author"].as_str().unwrap().to_owned());
    }
    authors.sort();
    authors.dedup();
    assert_eq!(authors.len(), 3, "each node has its own key");
    assert!(cluster.terminate().success());
    for i in 1..=3 {
        assert!(dir.path().join(format!("keys/node-{i}.key")).exists());
        assert!(dir.path().join(format!("cluster/node-{i}")).is_dir());
    }
    // The nodes replicate to each other (mesh by default).
    // Running it again reuses the keys and the data.
    let (cluster, addrs) = start();
    common::wait_until("every node to hold all three entries", || {
        addrs
            .iter()
            .all(|addr| get(*addr, "/summary").json()["count"] == 3)
    });
    // The cluster pins its nodes' keys both ways: every session, dialed or accepted, is
    // with a trusted key, and every dialed peer's key is pinned by the cluster itself.
    common::wait_until("every node connected to both others", || {
        addrs.iter().all(|addr| {
            let peers = get(*addr, "/peers").json()["peers"].clone();
            let connected: Vec<&serde_json::Value> = peers
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["connected"] == true)
                .collect();
            connected.len() == 2
        })
    });
    for addr in &addrs {
        let peers = get(*addr, "/peers").json()["peers"].clone();
        for p in peers.as_array().unwrap() {
            if p["connected"] == true {
                assert_eq!(p["trusted"], true, "{p}");
            }
            if p["direction"] == "outbound" {
                assert_eq!(p["pin"], "configured", "{p}");
                assert!(
                    authors.contains(&p["pinned"].as_str().unwrap().to_owned()),
                    "{p}"
                );
            }
        }
    }
    assert!(cluster.terminate().success());
}

#[test]
fn acknowledged_entries_survive_kill_9_and_a_torn_tail_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = dir.path().join("node.key");
    let (mut node, addr) = run_node(&data, &key, &[]);
    let mut acknowledged = vec![];
    for v in 0..50 {
        let r = post(addr, "/add", &v.to_string());
        assert_eq!(r.status, 201);
        acknowledged.push(r.json()["hash"].as_str().unwrap().to_owned());
    }
    node.child.kill().unwrap();
    node.child.wait().unwrap();
    // A crash in the middle of the next write: half a record header and some payload.
    let log = data.join("entries.log");
    let mut bytes = std::fs::read(&log).unwrap();
    let intact = bytes.len();
    bytes.extend_from_slice(&[0x9e, 0x00, 0x00, 0x00, 0x12, 0x34, 0x56]);
    std::fs::write(&log, &bytes).unwrap();

    let (node, addr) = run_node(&data, &key, &[]);
    for hash in &acknowledged {
        assert_eq!(get(addr, &format!("/entries/{hash}")).status, 200, "{hash}");
    }
    assert_eq!(get(addr, "/summary").json()["count"], 50);
    assert_eq!(std::fs::metadata(&log).unwrap().len(), intact as u64);
    // The feed continues after the repaired tail.
    assert_eq!(post(addr, "/add", "1").json()["seq"], 51);
    assert!(node.terminate().success());
}

/// The `kappalog_http_connections` gauge of a node's `/metrics`.
fn open_http_connections(addr: SocketAddr) -> u64 {
    get(addr, "/metrics")
        .body
        .lines()
        .find_map(|l| l.strip_prefix("kappalog_http_connections "))
        .and_then(|v| v.trim().parse().ok())
        .expect("kappalog_http_connections in /metrics")
}

/// SIGTERM while a client stalls mid-upload, or stops reading an export, still stops the
/// node within `--shutdown-timeout` (it aborts what is left, syncs and releases the data
/// directory), and a restart right after succeeds.
#[test]
fn sigterm_with_a_stalled_upload_or_a_stalled_reader_exits_and_a_restart_works() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = dir.path().join("k.key");
    // More entries than socket buffers hold: an export that nobody reads keeps its request
    // in flight.
    let entries = common::entries_beyond_socket_buffers();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let (node, _) =
            kappalog::node::Node::open_with_identity(&data, common::identity(5)).unwrap();
        for i in 0..entries {
            node.append(i, "x".repeat(4_000)).await.unwrap();
        }
        node.shutdown().await.unwrap();
    });

    type Stall = fn(SocketAddr) -> std::net::TcpStream;
    let stalled_upload: Stall = |addr| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(
            b"POST /import HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nauthor,seq",
        )
        .unwrap();
        s
    };
    let stalled_reader: Stall = |addr| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /export.csv HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        // The response has started; from now on nothing is read.
        let mut first = [0u8; 64];
        s.read_exact(&mut first).unwrap();
        s
    };
    for (what, stall) in [("upload", stalled_upload), ("reader", stalled_reader)] {
        let (node, addr) = run_node(&data, &key, &["--shutdown-timeout", "1"]);
        let _stalled = stall(addr);
        // The stalled connection and the one asking: the server holds both.
        common::wait_until("the stalled request to be open", || {
            open_http_connections(addr) >= 2
        });
        let status = node.terminate();
        assert!(status.success(), "{what}: exit status {status:?}");
        let (again, addr) = run_node(&data, &key, &[]);
        assert_eq!(get(addr, "/summary").json()["count"], entries, "{what}");
        assert!(again.terminate().success(), "{what}");
    }
}

/// A keyed `/add` whose answer the client never reads: the entry is committed (visible to
/// readers, which the node only allows once it is fdatasynced), then the node is killed
/// with SIGKILL. The restarted node answers the retry with the same key 200 and the
/// original entry, and appends nothing. Honest limits: the server may or may not have
/// written its answer to the socket when the kill lands (the client's view is the same:
/// no answer); `store_keys.rs` makes the server-side moment between sync and answer exact.
#[test]
fn a_keyed_add_killed_before_its_answer_is_read_is_replayed_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = dir.path().join("node.key");
    let (mut node, addr) = run_node(&data, &key, &[]);
    let body = br#"{"value": 77, "data": "exactly once"}"#;
    let headers = [("Idempotency-Key", "crash-test-1")];
    let unanswered = common::begin_request(addr, "POST", "/add", body, &headers);
    common::wait_until("the keyed entry to be committed", || {
        get(addr, "/summary").json()["count"] == 1
    });
    node.child.kill().unwrap();
    node.child.wait().unwrap();
    drop(unanswered);

    let (node, addr) = run_node(&data, &key, &[]);
    let retry = common::http(addr, "POST", "/add", body, &headers);
    assert_eq!(retry.status, 200, "{}", retry.body);
    let entry = retry.json();
    assert_eq!(
        (entry["seq"].as_u64(), entry["value"].as_i64()),
        (Some(1), Some(77))
    );
    let author = entry["author"].as_str().unwrap();
    let held = get(addr, &format!("/entries?author={author}&from=1")).json();
    assert_eq!(held["entries"][0]["hash"], entry["hash"]);
    assert_eq!(get(addr, "/summary").json()["count"], 1);
    // A different request under the key is refused, and a new key appends.
    let other = common::http(addr, "POST", "/add", b"78", &headers);
    assert_eq!(other.status, 422, "{}", other.body);
    let fresh = common::http(
        addr,
        "POST",
        "/add",
        body,
        &[("Idempotency-Key", "crash-test-2")],
    );
    assert_eq!((fresh.status, fresh.json()["seq"].as_u64()), (201, Some(2)));
    assert!(node.terminate().success());
}
