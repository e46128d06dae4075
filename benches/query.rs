//! Issue 21's targets for the SQL index and `/query`, on a node holding N entries of 100
//! feeds with JSON in `data`. Prints figures, asserts nothing. `cargo bench --bench query`.
//!
//! The node is the real binary (`kappalog run`, its own process, so its memory is its own)
//! over a log written directly by the benchmark; it builds its index from that log at start
//! and every figure is taken once the index covers it. Each section runs alone with
//! `KAPPALOG_BENCH_ONLY=NAME`:
//!
//! - `group_by`: `SELECT author, count(*), sum(value) FROM entries GROUP BY author` through
//!   `POST /query`, request to last byte, `KAPPALOG_BENCH_QUERIES` times (default 7): median
//!   (target: at most 300 ms);
//! - `lag`: 64 keep-alive connections `POST /add` for `KAPPALOG_BENCH_SECS` (default 5) while
//!   a 65th client in turn appends (`POST /add`) and asks `POST /query?after=CURSOR` with
//!   that answer's cursor: the time from the `/add` answer until the query's answer, which
//!   the node gives as soon as its indexer has published a coverage past the entry (the
//!   `after=` wait, docs/QUERY.md). Beside it the same client's plain query (no `after=`)
//!   in the same load, the round trip the lag figure includes. p50, p99, max per run
//!   (target: p99 at most 50 ms from commit to visible);
//! - `point`: `GET /views/point` (benches/common `point_view`: a point lookup through an
//!   expression index on two JSON fields; the node comes up with this view, issue 21's "one
//!   view holding one expression index") from 64 connections, interleaved with `GET /health`
//!   as the baseline, `KAPPALOG_BENCH_RUNS` pairs (target: at least 10,000 req/s);
//! - `hostile`: the same `/add` load with and without 8 clients each sending a recursive CTE
//!   that runs to the query deadline (`--query-timeout`, 2 s), re-sent as soon as it is
//!   answered; `KAPPALOG_BENCH_RUNS` interleaved pairs (default 5), each going first in
//!   turn: `/add` p99 and rate, and what the hostile queries were answered;
//! - `memory`: the node's resident memory (`VmRSS`, sampled every 10 ms) while 4 clients
//!   run big statements in a loop for `KAPPALOG_BENCH_SECS`: `group_concat` of every
//!   `data`, a sort of the whole table on `data`, and a `group_concat` of every hash per
//!   author; idle, peak, and the statuses answered;
//! - `view_build`: 15 s of the `/add` load, then 15 s more during which a second view is
//!   added (`PUT /views/temps`, an expression index over the whole table): the build's
//!   time, the appends' rate and p99 in both, and how long after the view was ready the index
//!   covered an append made then (target: within 5 s);
//! - `replication` (in-process nodes, as `cargo bench --bench sync`): node A holds the same
//!   log; a fresh node B dials A and replicates it at full speed, with B's indexer following
//!   and without, `KAPPALOG_BENCH_RUNS` interleaved pairs: entries/s each, the pair ratios
//!   (target: with/without at least 0.85), and with the indexer, how long after B's store
//!   holds every entry the index covers the last one (target: at most 5 s);
//! - `replication_tree` (only when named): the same with B's Merkle tree cache following
//!   instead of the indexer, and signing no checkpoint (B's own feed is empty), issue 22's
//!   target: with/without at least 0.95.
//!
//! `KAPPALOG_BENCH_QUERY_ENTRIES` sets N (default 1,000,000, the issue's; 20,000 for a smoke
//! run). Every indexed node here holds the point view and its expression index.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kappalog::identity::Identity;
use kappalog::keys;
use kappalog::node::Node;
use kappalog::sync::{self, SyncConfig, SyncHandle};

mod common;
use common::load::{load, percentile, Figures, CONNECTIONS};
use common::node_process::{http, NodeProcess, RssSampler};
use common::{env_usize, in_turn, report, report_ratios, Follower};

const FEEDS: usize = 100;
/// How long the node may take to index the log it starts with, or B's index to follow.
const INDEX_DEADLINE: Duration = Duration::from_secs(600);
/// The hostile clients of `hostile`, as the issue names them.
const HOSTILE_CLIENTS: usize = 8;
/// A statement that never ends by itself: the engine interrupts it at the deadline.
const RECURSIVE_CTE: &str =
    "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r";
const GROUP_BY: &str = "SELECT author, count(*), sum(value) FROM entries GROUP BY author";
/// The statements of `memory`: everything concatenated, everything sorted, per-author
/// concatenations.
const BIG_QUERIES: [&str; 3] = [
    "SELECT length(group_concat(data)) FROM entries",
    "SELECT data, hash FROM entries ORDER BY data DESC, hash",
    "SELECT author, length(group_concat(hash)) FROM entries GROUP BY author ORDER BY author",
];
/// `POST /add` with JSON in `data`, as the load of `lag` and `hostile` sends it.
const ADD_BODY: &str = "{\"value\": 42, \"data\": \"{\\\"sensor\\\":\\\"a\\\",\\\"t\\\":21}\"}";

/// A data directory holding a log of `entries` entries of [`FEEDS`] feeds and a node key.
fn prepared_dir(root: &Path, entries: usize) -> PathBuf {
    let dir = root.join("node");
    std::fs::create_dir_all(&dir).unwrap();
    keys::generate_key_files(&dir.join("node.key")).unwrap();
    let start = Instant::now();
    common::build_store_with_data(&dir, entries, FEEDS, common::sensor_reading);
    println!(
        "log: {} entries of {FEEDS} feeds with JSON data, built in {:.1} s",
        (entries / FEEDS) * FEEDS,
        start.elapsed().as_secs_f64()
    );
    dir
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `POST /query` (the statement as the body; `path` may carry `?after=`): status and body.
async fn query(addr: SocketAddr, path: &str, sql: &str) -> (u16, String) {
    http(addr, "POST", path, sql)
        .await
        .unwrap_or((0, String::new()))
}

/// Waits until the node's index holds `rows` rows; the seconds it took.
fn wait_indexed(rt: &tokio::runtime::Runtime, node: &NodeProcess, rows: usize) -> f64 {
    let start = Instant::now();
    let want = format!("[[{rows}]]");
    loop {
        let (status, body) =
            rt.block_on(query(node.http, "/query", "SELECT count(*) FROM entries"));
        if status == 200 && body.contains(&want) {
            return start.elapsed().as_secs_f64();
        }
        assert!(
            start.elapsed() < INDEX_DEADLINE,
            "the index did not reach {rows} rows: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the node reports the point view ready (its expression index built).
fn wait_view_ready(rt: &tokio::runtime::Runtime, node: &NodeProcess) {
    let start = Instant::now();
    loop {
        let (status, body) = rt
            .block_on(http(node.http, "GET", "/views", ""))
            .unwrap_or((0, String::new()));
        // Each view's own state (the answer also holds the index's, `"index":{"state":..}`).
        let listed: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let views = listed["views"].as_array().cloned().unwrap_or_default();
        if status == 200 && !views.is_empty() && views.iter().all(|v| v["state"] == "ready") {
            println!(
                "the point view's expression index was ready {:.1} s after the rows",
                start.elapsed().as_secs_f64()
            );
            return;
        }
        assert!(
            start.elapsed() < INDEX_DEADLINE,
            "the view was not built: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET /views/point?:sensor=S&:seq=N` (a few rows through the expression index, N varied
/// per request) from 64 keep-alive connections, interleaved with `GET /health` (the
/// baseline: a request that touches no index) in pairs: req/s each and the ratio
/// (target: at least 10,000 point queries/s).
fn point(node: &NodeProcess, secs: f64, runs: usize) {
    fn write_point(conn: usize, i: u64, buf: &mut Vec<u8>) {
        // Seqs of a 1,000,000-entry log of 100 feeds; a smaller log answers some with no rows.
        let seq = 1 + (i * 7919 + conn as u64 * 104_729) % 10_000;
        let sensor = (i + conn as u64) % 17;
        buf.extend_from_slice(
            format!(
                "GET /views/point?:sensor=s-{sensor}&:seq={seq} HTTP/1.1\r\nHost: bench\r\n\r\n"
            )
            .as_bytes(),
        );
    }
    fn write_health(_: usize, _: u64, buf: &mut Vec<u8>) {
        buf.extend_from_slice(b"GET /health HTTP/1.1\r\nHost: bench\r\n\r\n");
    }
    let (mut points, mut healths, mut ratios) = (vec![], vec![], vec![]);
    for run in 0..runs {
        in_turn(
            run,
            || points.push(load(node.http, write_point, 200, secs).0),
            || healths.push(load(node.http, write_health, 200, secs).0),
        );
        ratios.push(points[run] / healths[run]);
    }
    report(
        "GET /views/point (expression index), 64 connections",
        "req/s",
        points,
    );
    report("GET /health, 64 connections (baseline)", "req/s", healths);
    report_ratios("  point query / GET /health", ratios);
}

fn group_by(rt: &tokio::runtime::Runtime, node: &NodeProcess, entries: usize) {
    let times: Vec<f64> = (0..env_usize("KAPPALOG_BENCH_QUERIES", 7))
        .map(|_| {
            let start = Instant::now();
            let (status, body) = rt.block_on(query(node.http, "/query", GROUP_BY));
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            assert_eq!(status, 200, "{body}");
            ms
        })
        .collect();
    report(
        &format!("{GROUP_BY} over HTTP, {entries} rows, {FEEDS} groups"),
        "ms",
        times,
    );
}

/// `POST /add` from 64 connections for `secs`: requests/s and every latency in µs.
fn add_load(addr: SocketAddr, secs: f64) -> (f64, Vec<u64>) {
    let request = format!(
        "POST /add HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{ADD_BODY}",
        ADD_BODY.len()
    );
    let request: &'static [u8] = Box::leak(request.into_bytes().into_boxed_slice());
    load(
        addr,
        move |_, _, buf: &mut Vec<u8>| buf.extend_from_slice(request),
        201,
        secs,
    )
}

/// The cursor of a `POST /add` answer.
fn cursor_of(body: &str) -> Option<String> {
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    json["cursor"].as_str().map(str::to_owned)
}

/// One run of `lag`: the lags (µs) seen by the probing client, its plain queries' round
/// trips (µs), and the probes not covered within the node's `--query-wait`.
fn lag_run(addr: SocketAddr, secs: f64) -> (Vec<u64>, Vec<u64>, usize) {
    let done = Arc::new(AtomicBool::new(false));
    let probing = {
        let done = done.clone();
        std::thread::spawn(move || {
            let rt = runtime();
            let (mut lags, mut trips, mut uncovered) = (Vec::new(), Vec::new(), 0);
            while !done.load(Ordering::Relaxed) {
                let Ok((201, body)) = rt.block_on(http(addr, "POST", "/add", ADD_BODY)) else {
                    continue;
                };
                let Some(cursor) = cursor_of(&body) else {
                    continue;
                };
                let asked = Instant::now();
                let (status, _) =
                    rt.block_on(query(addr, &format!("/query?after={cursor}"), "SELECT 1"));
                let micros = u64::try_from(asked.elapsed().as_micros()).unwrap_or(u64::MAX);
                match status {
                    200 => lags.push(micros),
                    _ => uncovered += 1,
                }
                let asked = Instant::now();
                if rt.block_on(query(addr, "/query", "SELECT 1")).0 == 200 {
                    trips.push(u64::try_from(asked.elapsed().as_micros()).unwrap_or(u64::MAX));
                }
            }
            (lags, trips, uncovered)
        })
    };
    let (rate, _) = add_load(addr, secs);
    done.store(true, Ordering::Relaxed);
    let (mut lags, mut trips, uncovered) = probing.join().unwrap();
    lags.sort_unstable();
    trips.sort_unstable();
    println!(
        "  run: /add {rate:.0} req/s; {} probes: lag p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; plain query round trip p50 {:.1} ms, p99 {:.1} ms; not covered within --query-wait: {uncovered}",
        lags.len(),
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        percentile(&lags, 1.0),
        percentile(&trips, 0.5),
        percentile(&trips, 0.99),
    );
    (lags, trips, uncovered)
}

fn lag(node: &NodeProcess, secs: f64, runs: usize) {
    let mut p99s = Vec::new();
    let mut trip_p99s = Vec::new();
    for _ in 0..runs {
        let (lags, trips, _) = lag_run(node.http, secs);
        p99s.push(percentile(&lags, 0.99));
        trip_p99s.push(percentile(&trips, 0.99));
    }
    report(
        "index lag under 64-connection POST /add, /add answer to a covering query answer, p99",
        "ms",
        p99s,
    );
    report(
        "  a plain query's round trip in the same load (included above), p99",
        "ms",
        trip_p99s,
    );
}

/// A view added while 64 connections append (`view_build`): a `/add` run of `BUILD_LOAD`
/// without a build, then one during which a second view's expression index is built over the
/// whole table. Prints how long the build took, the appends' rate and p99 in both runs (they
/// never wait for the indexer), and how long after the view was ready the index covered an
/// append made at that moment (issue 21: within 5 s).
fn view_build(rt: &tokio::runtime::Runtime, node: &NodeProcess) {
    const BUILD_LOAD: f64 = 15.0;
    let view = r#"{"sql": "SELECT author, seq FROM entries WHERE json_valid(data) AND json_extract(data, '$.temp') = :t + 0 ORDER BY author, seq", "indexes": ["CREATE INDEX temps ON entries(json_extract(data, '$.temp')) WHERE json_valid(data)"], "params": {"t": "21.5"}}"#;
    let quiet = add_load(node.http, BUILD_LOAD);
    let addr = node.http;
    let load = std::thread::spawn(move || add_load(addr, BUILD_LOAD));
    std::thread::sleep(Duration::from_secs(1));
    let asked = Instant::now();
    let (status, body) = rt
        .block_on(http(addr, "PUT", "/views/temps", view))
        .unwrap_or((0, String::new()));
    assert!(status == 201 || status == 200, "{status} {body}");
    let listed_ready = || {
        let (_, body) = rt
            .block_on(http(addr, "GET", "/views", ""))
            .unwrap_or((0, String::new()));
        let listed: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        listed["views"].as_array().is_some_and(|views| {
            views
                .iter()
                .any(|v| v["name"] == "temps" && v["state"] == "ready")
        })
    };
    while !listed_ready() {
        assert!(asked.elapsed() < INDEX_DEADLINE, "the view was not built");
        std::thread::sleep(Duration::from_millis(20));
    }
    let built = asked.elapsed().as_secs_f64();
    // An append at the moment the view is ready, then how long until a query sees it.
    let (_, body) = rt
        .block_on(http(addr, "POST", "/add", ADD_BODY))
        .unwrap_or((0, String::new()));
    let cursor = cursor_of(&body).expect("an /add answer with a cursor");
    let ready = Instant::now();
    loop {
        let (status, _) = rt.block_on(query(addr, &format!("/query?after={cursor}"), "SELECT 1"));
        if status == 200 {
            break;
        }
        assert!(
            ready.elapsed() < INDEX_DEADLINE,
            "the index never caught up"
        );
    }
    let caught_up = ready.elapsed().as_secs_f64() * 1000.0;
    let during = load.join().unwrap();
    let mut quiet_lat = quiet.1.clone();
    let mut during_lat = during.1.clone();
    quiet_lat.sort_unstable();
    during_lat.sort_unstable();
    println!(
        "view added under 64-connection /add: its expression index built in {built:.1} s; \
         an append at the moment it was ready was covered {caught_up:.0} ms later; \
         /add {:.0} req/s p99 {:.1} ms without a build, {:.0} req/s p99 {:.1} ms with one",
        quiet.0,
        percentile(&quiet_lat, 0.99),
        during.0,
        percentile(&during_lat, 0.99),
    );
}

/// `/add` load for `secs` while `clients` clients send [`RECURSIVE_CTE`] back to back;
/// the load's figures and the hostile answers' statuses.
fn add_with_hostile(addr: SocketAddr, secs: f64, clients: usize) -> ((f64, Vec<u64>), Vec<u16>) {
    let done = Arc::new(AtomicBool::new(false));
    let hostile: Vec<_> = (0..clients)
        .map(|_| {
            let done = done.clone();
            std::thread::spawn(move || {
                let rt = runtime();
                let mut statuses = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    statuses.push(rt.block_on(query(addr, "/query", RECURSIVE_CTE)).0);
                }
                statuses
            })
        })
        .collect();
    let figures = add_load(addr, secs);
    done.store(true, Ordering::Relaxed);
    let statuses = hostile
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    (figures, statuses)
}

fn hostile(node: &NodeProcess, secs: f64, runs: usize) {
    let (mut quiet, mut loud) = (Figures::default(), Figures::default());
    let mut statuses = Vec::new();
    for run in 0..runs {
        in_turn(
            run,
            || quiet.push(add_load(node.http, secs)),
            || {
                let (figures, answered) = add_with_hostile(node.http, secs, HOSTILE_CLIENTS);
                loud.push(figures);
                statuses.extend(answered);
            },
        );
    }
    let ratios: Vec<f64> = loud
        .p99
        .iter()
        .zip(&quiet.p99)
        .map(|(l, q)| l / q)
        .collect();
    quiet.report("POST /add, 64 connections, no queries");
    loud.report(&format!(
        "POST /add, 64 connections, {HOSTILE_CLIENTS} recursive CTEs running to the deadline"
    ));
    report(
        "  /add p99 with/without hostile queries, pair ratios",
        "x",
        ratios,
    );
    println!("  hostile answers by status: {}", by_status(&statuses));
}

/// `200: 3, 504: 40`.
fn by_status(statuses: &[u16]) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for status in statuses {
        *counts.entry(*status).or_insert(0u64) += 1;
    }
    counts
        .iter()
        .map(|(status, n)| format!("{status}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn memory(node: &NodeProcess, secs: f64) {
    let idle = node.rss_bytes();
    let sampler = RssSampler::start(node.pid(), Duration::from_millis(10));
    let done = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let (done, addr) = (done.clone(), node.http);
            std::thread::spawn(move || {
                let rt = runtime();
                let mut statuses = Vec::new();
                let mut i = client;
                while !done.load(Ordering::Relaxed) {
                    let sql = BIG_QUERIES[i % BIG_QUERIES.len()];
                    statuses.push(rt.block_on(query(addr, "/query", sql)).0);
                    i += 1;
                }
                statuses
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    done.store(true, Ordering::Relaxed);
    let statuses: Vec<u16> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let peak = sampler.finish();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "node RSS with 4 clients running big statements for {secs} s (group_concat of every data, a sort of the table, group_concat per author): idle {:.1} MiB, peak {:.1} MiB (+{:.1}), after {:.1} MiB; answers by status: {}",
        mib(idle),
        mib(peak),
        mib(peak.saturating_sub(idle)),
        mib(node.rss_bytes()),
        by_status(&statuses)
    );
}

/// Seeds of the replication nodes: outside the 2..=101 of the log's feed authors.
const SOURCE_SEED: u8 = 241;
const RECEIVER_SEED: u8 = 240;

/// Starts a node's sync, trusting the other replication node (as the sync bench does: at A
/// a stranger's send budget would cap what A sends).
async fn start_sync(node: &Node, peers: Vec<String>) -> SyncHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = SyncConfig::default();
    config.policy.trusted = [SOURCE_SEED, RECEIVER_SEED]
        .into_iter()
        .map(|seed| Identity::from_seed([seed; 32]).author())
        .collect();
    sync::start(node, config, Some(listener), peers).unwrap()
}

/// One replication of `target` entries from `source` into a fresh node, with `follower`
/// following its log (or none): entries/s until its store holds them, the seconds from then
/// until the follower covers them, and the process's CPU per entry meanwhile (µs).
async fn replicate(
    source: SocketAddr,
    target: u64,
    follower: Option<Follower>,
) -> (f64, Option<f64>, f64) {
    let dir = tempfile::tempdir().unwrap();
    let (b, _) =
        Node::open_with_identity(dir.path(), Identity::from_seed([RECEIVER_SEED; 32])).unwrap();
    let covered = follower.map(|follower| follower.start(&b));
    let began = Instant::now();
    let cpu_before = common::cpu_seconds();
    let sync = start_sync(&b, vec![source.to_string()]).await;
    while b.reader().len() < target {
        assert!(
            began.elapsed() < INDEX_DEADLINE,
            "replication stalled at {}",
            b.reader().len()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let stored = began.elapsed().as_secs_f64();
    let cpu_us = (common::cpu_seconds() - cpu_before) * 1e6 / target as f64;
    let mut caught_up = None;
    if let Some(covered) = covered {
        let held = Instant::now();
        let (_, last) = b.reader().end_and_last_entry();
        let last = last.map_or(0, |(offset, _)| offset);
        while covered() <= last {
            assert!(held.elapsed() < INDEX_DEADLINE, "the follower stalled");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        caught_up = Some(held.elapsed().as_secs_f64());
    }
    drop(sync);
    b.shutdown().await.unwrap();
    (target as f64 / stored, caught_up, cpu_us)
}

/// Replication into a fresh node with `follower` following its log against one without,
/// `runs` pairs interleaved.
fn replication(entries: usize, runs: usize, follower: Follower) {
    let name = follower.name();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("source");
    std::fs::create_dir_all(&dir).unwrap();
    common::build_store_with_data(&dir, entries, FEEDS, common::sensor_reading);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (a, _) = Node::open_with_identity(&dir, Identity::from_seed([SOURCE_SEED; 32])).unwrap();
    let target = a.reader().len();
    let sync = rt.block_on(start_sync(&a, vec![]));
    let source = sync.local_addr().unwrap();
    let (mut with, mut without, mut catch_up, mut ratios) = (vec![], vec![], vec![], vec![]);
    let (mut cpu_with, mut cpu_without) = (vec![], vec![]);
    for run in 0..runs {
        in_turn(
            run,
            || {
                let (rate, caught_up, cpu) = rt.block_on(replicate(source, target, Some(follower)));
                with.push(rate);
                catch_up.push(caught_up.unwrap_or(f64::NAN) * 1000.0);
                cpu_with.push(cpu);
            },
            || {
                let (rate, _, cpu) = rt.block_on(replicate(source, target, None));
                without.push(rate);
                cpu_without.push(cpu);
            },
        );
        ratios.push(with[run] / without[run]);
    }
    report(
        &format!("replication of {target} entries into a fresh node, {name} following"),
        "entries/s",
        with,
    );
    report(
        &format!("replication of {target} entries into a fresh node, without {name}"),
        "entries/s",
        without,
    );
    report_ratios(&format!("  entries/s with/without {name}"), ratios);
    report(
        &format!("  from the store holding every entry to {name} covering the last"),
        "ms",
        catch_up,
    );
    // Both nodes are this process: its CPU until B's store holds every entry, per entry.
    report(
        &format!("  CPU of both nodes per entry, {name} following"),
        "µs",
        cpu_with,
    );
    report(
        &format!("  CPU of both nodes per entry, without {name}"),
        "µs",
        cpu_without,
    );
    drop(sync);
    rt.block_on(a.shutdown()).unwrap();
}

fn main() {
    let entries = env_usize("KAPPALOG_BENCH_QUERY_ENTRIES", 1_000_000);
    let secs = env_usize("KAPPALOG_BENCH_SECS", 5) as f64;
    let runs = env_usize("KAPPALOG_BENCH_RUNS", 5).max(1);
    let only = std::env::var("KAPPALOG_BENCH_ONLY").ok();
    let wanted = |name: &str| only.as_deref().is_none_or(|only| only == name);
    println!(
        "kappalog query benchmark: {entries} entries, {CONNECTIONS} /add connections, {secs} s runs, {runs} runs or pairs"
    );
    if [
        "group_by",
        "point",
        "lag",
        "hostile",
        "memory",
        "view_build",
    ]
    .iter()
    .any(|name| wanted(name))
    {
        let root = tempfile::tempdir().unwrap();
        let dir = prepared_dir(root.path(), entries);
        // The node comes up with issue 21's one view holding one expression index.
        drop(common::views_with_point(&dir));
        let node = NodeProcess::start(&dir, &[]);
        let rt = runtime();
        let rows = (entries / FEEDS) * FEEDS;
        let secs_indexed = wait_indexed(&rt, &node, rows);
        println!(
            "the node indexed its log in {secs_indexed:.1} s of start; RSS {:.1} MiB",
            node.rss_bytes() as f64 / (1 << 20) as f64
        );
        wait_view_ready(&rt, &node);
        if wanted("group_by") {
            group_by(&rt, &node, rows);
        }
        if wanted("point") {
            point(&node, secs, runs);
        }
        if wanted("memory") {
            memory(&node, secs);
        }
        if wanted("lag") {
            lag(&node, secs, runs);
        }
        if wanted("hostile") {
            hostile(&node, secs, runs);
        }
        if wanted("view_build") {
            view_build(&rt, &node);
        }
        node.stop();
    }
    if wanted("replication") {
        replication(entries, runs, Follower::Index);
    }
    // Issue 22's target: the tree cache and own checkpoints cost replication at most 5%.
    if only.as_deref() == Some("replication_tree") {
        replication(entries, runs, Follower::Tree);
    }
}
