//! The SQL index under faults, with the real binary: a full disk under the index only (the
//! log keeps writing, the index is degraded and catches up by itself once there is room),
//! readers that never stop (the `-wal` file stays bounded), and `kill -9` while the index
//! is being built (the restarted node resumes it, and it ends equal to a rebuilt one).
//!
//! Mounting a tmpfs needs root; elsewhere the full-disk test is skipped
//! ([`crate::common::tmpfs`]).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use kappalog::index::wal::WAL_LIMIT_BYTES;
use kappalog::index::{index_path, INDEX_DIR};
use kappalog::store::format::FILE_HEADER_BYTES;
use kappalog::store::{Store, StoreReader};
use rusqlite::types::Value;

use crate::common::index::{copy_store, expected, table};
use crate::common::query_db::encode;
use crate::common::tmpfs::Mount;
use crate::common::{entries, feed, get, identity, kappalog, post, run_node, wait_until};

/// The statement whose digest two indexes are compared by.
const EVERYTHING: &str = "SELECT * FROM entries ORDER BY author, seq";

/// `GET /query?sql=...`, answered 200 (its JSON).
fn query(addr: std::net::SocketAddr, sql: &str) -> serde_json::Value {
    let answer = get(addr, &format!("/query?sql={}", encode(sql)));
    assert_eq!(answer.status, 200, "{sql}: {}", answer.body);
    answer.json()
}

/// Rows of `entries`, as `GET /query` counts them.
fn indexed(addr: std::net::SocketAddr) -> u64 {
    query(addr, "SELECT count(*) FROM entries")["rows"][0][0]
        .as_u64()
        .unwrap()
}

/// `/health`'s `index` object.
fn index_health(addr: std::net::SocketAddr) -> serde_json::Value {
    get(addr, "/health").json()["index"].clone()
}

/// Whether the node's index is ready and covers every entry its log holds.
fn caught_up(addr: std::net::SocketAddr) -> bool {
    let index = index_health(addr);
    let held = get(addr, "/summary").json()["count"].as_u64().unwrap();
    index["state"] == "ready" && index["lag_bytes"] == 0 && indexed(addr) == held
}

/// A fresh index of `data`'s log, built by `kappalog index rebuild` on a copy of the log:
/// its rows, and the JSON answer of `kappalog query` for [`EVERYTHING`] over it.
fn rebuilt(data: &Path, key: &Path) -> (Vec<Vec<Value>>, serde_json::Value) {
    let copy = tempfile::tempdir().unwrap();
    copy_store(data, copy.path());
    let run = |args: &[&str]| {
        let out = kappalog()
            .arg("--data-dir")
            .arg(copy.path())
            .arg("--key")
            .arg(key)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["index", "rebuild"]);
    let answer = run(&["query", EVERYTHING, "--format", "json"]);
    (table(copy.path()), serde_json::from_str(&answer).unwrap())
}

#[test]
fn a_full_index_disk_leaves_appends_answered_and_the_index_catches_up_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Only the index's directory is small: the log has all the room it wants.
    let Some(disk) =
        Mount::tmpfs_or_skip(&data.join(INDEX_DIR), "1m", "a_full_index_disk_leaves_...")
    else {
        return;
    };
    let key = dir.path().join("node.key");
    let (node, addr) = run_node(&data, &key, &[]);

    let body = format!("{{\"value\":1,\"data\":\"{}\"}}", "x".repeat(1000));
    let acked = std::cell::Cell::new(0u64);
    let append = || {
        let answer = post(addr, "/add", &body);
        assert_eq!(answer.status, 201, "{}", answer.body);
        acked.set(acked.get() + 1);
        answer.json()["cursor"].clone()
    };
    let degraded = loop {
        append();
        let index = index_health(addr);
        if index["state"] == "degraded" {
            break index;
        }
        assert!(
            acked.get() < 5_000,
            "a 1 MiB index disk never filled: {index}"
        );
    };
    let reason = degraded["reason"].as_str().unwrap();
    assert!(reason.contains("database or disk is full"), "{degraded}");
    assert!(degraded["since_ms"].as_u64().unwrap() > 0, "{degraded}");

    // The log is unaffected: the node is healthy and every append is answered.
    let mut last = serde_json::Value::Null;
    for _ in 0..50 {
        last = append();
    }
    let health = get(addr, "/health");
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.json()["status"], "ok");
    // Queries answer from what was indexed before the disk filled, and say how far.
    let answer = query(addr, "SELECT count(*) FROM entries");
    let covered = answer["rows"][0][0].as_u64().unwrap();
    assert!(
        covered > 0 && covered < acked.get(),
        "{covered} of {acked:?}"
    );
    assert_ne!(answer["as_of"], last);
    let index = index_health(addr);
    assert_eq!(index["state"], "degraded", "{index}");
    assert!(index["lag_bytes"].as_u64().unwrap() > 0, "{index}");
    assert_eq!(index["since_ms"], degraded["since_ms"], "one spell");
    // GET /views says it too, beside the views.
    let views = get(addr, "/views").json();
    assert_eq!(views["index"]["state"], "degraded", "{views}");
    assert!(
        views["index"]["reason"].as_str().unwrap().contains("full"),
        "{views}"
    );

    // Room again: the index catches up by itself, without a restart.
    disk.resize("64m");
    wait_until("the index to catch up", || caught_up(addr));
    assert_eq!(indexed(addr), acked.get());
    assert_eq!(query(addr, "SELECT 1")["as_of"], last);
    // And follows the log again: read-your-writes.
    let cursor = append();
    let after = format!(
        "/query?sql={}&after={}",
        encode("SELECT count(*) FROM entries"),
        cursor.as_str().unwrap()
    );
    assert_eq!(get(addr, &after).json()["rows"][0][0], acked.get());

    // What the failed transactions left in the WAL changed nothing: the table is the one
    // a fresh rebuild of the log makes.
    let live = query(addr, EVERYTHING);
    assert_eq!(live["truncated"], false);
    assert!(node.terminate().success());
    let (rows, fresh) = rebuilt(&data, &key);
    assert_eq!(rows.len() as u64, acked.get());
    assert_eq!(table(&data), rows);
    let reader = StoreReader::open_read_only(&data).unwrap().0;
    assert_eq!(rows, expected(&reader, &Default::default()));
    assert_eq!(live["digest"], fresh["digest"]);
}

#[test]
fn the_wal_stays_bounded_under_readers_that_never_stop() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_node, addr) = run_node(&data, &dir.path().join("node.key"), &[]);
    let wal = kappalog::index::wal::wal_path(&index_path(&data));
    // Before its first pass there is no index to query (503): not what this test is about.
    wait_until("the index to be created", || {
        index_health(addr)["state"] == "ready"
    });

    // Each reader keeps a statement running that holds its snapshot for a while; four of
    // them (the engine's connections) overlap, so at no moment is no reader on the WAL.
    let slow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000) \
                SELECT (SELECT count(*) FROM entries), count(*) FROM c";
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, answered) = (stop.clone(), answered.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    query(addr, slow);
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    wait_until("the readers to start", || {
        answered.load(Ordering::Relaxed) >= 4
    });

    const APPENDS: u64 = 2_000;
    let body = format!("{{\"value\":1,\"data\":\"{}\"}}", "y".repeat(2000));
    let largest = std::thread::scope(|scope| {
        let appenders: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut largest = 0;
                    for _ in 0..APPENDS {
                        let answer = post(addr, "/add", &body);
                        assert_eq!(answer.status, 201, "{}", answer.body);
                        let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
                        largest = largest.max(size);
                    }
                    largest
                })
            })
            .collect();
        appenders
            .into_iter()
            .map(|a| a.join().unwrap())
            .max()
            .unwrap()
    });
    wait_until("the index to catch up", || caught_up(addr));
    let before_stop = answered.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.join().expect("a reader got an error");
    }
    assert_eq!(indexed(addr), 2 * APPENDS);
    assert!(before_stop > 20, "the readers hardly ran: {before_stop}");
    // The limit, plus one batch's pages written before the indexer looks. A batch is at most
    // BATCH_DATA_BYTES (8 MiB) of data: 4,000 of these 2 KB rows, about 2,000 pages with the
    // table's and the primary key's. Usually a batch is a pass's 10 ms of
    // appends, but the indexer runs at idle priority: on a machine busy with other tests it
    // can be starved for a while and take a full batch at once. Without the bound the WAL
    // reached 35 MB here.
    let bound = WAL_LIMIT_BYTES + kappalog::index::BATCH_DATA_BYTES as u64 + (2 << 20);
    assert!(
        largest <= bound,
        "the WAL reached {largest} bytes, past {bound}"
    );
}

#[test]
fn a_kill_9_during_heavy_indexing_resumes_and_ends_equal_to_a_rebuilt_index() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = dir.path().join("node.key");
    // A log the index has never seen: 25 feeds of 2,000 entries (five batches), written by
    // the store alone; few enough that `SELECT *` is answered whole.
    let (store, owner, _) = Store::open(&data, None, None).unwrap();
    for n in 0..25 {
        store
            .append_entries(entries(&feed(&identity(100 + n), 2_000)))
            .wait()
            .unwrap();
    }
    drop(store);
    owner.shutdown_blocking().unwrap();

    let (node, addr) = run_node(&data, &key, &[]);
    // Appends on top while the index is built from scratch.
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let appender = scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let answer = post(addr, "/add", r#"{"value":7,"data":"{\"k\":1}"}"#);
                assert_eq!(answer.status, 201, "{}", answer.body);
            }
        });
        // Part-way: a batch committed, the log not covered.
        wait_until("the index to be part-way", || {
            let index = index_health(addr);
            index["lag_bytes"].as_u64().unwrap() > 0
                && index["covered"]
                    .as_u64()
                    .is_some_and(|c| c > FILE_HEADER_BYTES)
        });
        stop.store(true, Ordering::Relaxed);
        appender.join().unwrap();
    });
    let mut node = node;
    node.child.kill().unwrap();
    node.child.wait().unwrap();
    let mut logged = String::new();
    let mut stderr = node.child.stderr.take().unwrap();
    std::io::Read::read_to_string(&mut stderr, &mut logged).unwrap();
    assert!(logged.contains("building the SQL index"), "{logged}");

    // The kill came mid-way: the file says it covers part of the log.
    let conn = rusqlite::Connection::open_with_flags(
        index_path(&data),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let meta = kappalog::index::schema::read_meta(&conn).unwrap();
    drop(conn);
    let end = StoreReader::open_read_only(&data)
        .unwrap()
        .0
        .committed_end();
    assert!(
        meta.covered > FILE_HEADER_BYTES && meta.covered < end && !meta.clean,
        "not killed mid-way: {meta:?} of {end}"
    );

    let (mut node, addr) = run_node(&data, &key, &[]);
    wait_until("the restarted index to catch up", || caught_up(addr));
    let live = query(addr, EVERYTHING);
    assert_eq!(live["truncated"], false);
    let mut logged = String::new();
    let mut stderr = node.child.stderr.take().unwrap();
    assert!(node.terminate().success());
    std::io::Read::read_to_string(&mut stderr, &mut logged).unwrap();
    // Resumed from where the kill left it, not rebuilt (which would end equal trivially).
    assert!(!logged.contains("building the SQL index"), "{logged}");
    let (rows, fresh) = rebuilt(&data, &key);
    assert_eq!(fresh["truncated"], false);
    assert_eq!(live["digest"], fresh["digest"]);
    assert_eq!(live["rows"].as_array().unwrap().len(), rows.len());
    assert_eq!(table(&data), rows);
}
