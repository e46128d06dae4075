//! Summary benchmark at many feeds: a node served in-process on 127.0.0.1:0 and the
//! keep-alive load generator of `benches/common/load.rs`. Prints figures, asserts nothing.
//! `cargo bench --bench summary`.
//!
//! - `GET /summary` on a node holding `KAPPALOG_BENCH_SUMMARY_FEEDS` feeds (default
//!   100,000) of one entry each: requests/s, latency p50/p99;
//! - the same while `APPENDERS` tasks append to the node's own feed, so nearly every
//!   request follows a commit and the digest is brought up to date incrementally; the
//!   appends/s reached meanwhile;
//! - the view alone at that many feeds: the first summary (the whole tree hashed, as after an
//!   open), one summary after a change to one feed (`CHANGES` of them: median, p99), and one
//!   after a feed is marked forked (the totals recombined over every feed);
//! - `GET /summary` again with `wrk` when it is installed (C, cheaper per request than the
//!   Rust generator, so it leaves more of the 2 shared cores to the server);
//! - walking every feed through `GET /feeds` pages of 1,000.
//!
//! `KAPPALOG_BENCH_SECS` sets each run's length (default 5 s); three runs each, medians.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use kappalog::entry::{Entry, UnsignedEntry};
use kappalog::hash::Hash;
use kappalog::identity::{Author, Identity, Signature};
use kappalog::node::Node;
use kappalog::summary::SummaryView;
use kappalog::view::View;

mod common;
use common::load::{content_length, load_fixed, serve, Figures, CONNECTIONS};
use common::wrk::report_wrk;
use common::{build_store_of_authors, env_usize, median, report};

const RUNS: usize = 3;
/// Concurrent own-feed appenders during the "summary while appending" runs.
const APPENDERS: usize = 16;
/// Single-feed changes timed one by one against the view.
const CHANGES: usize = 2_000;

/// An unsigned entry of `author` at `seq` (views do not verify signatures).
fn entry(author: Author, seq: u64, prev: Option<Hash>) -> (Entry, Hash) {
    let unsigned = UnsignedEntry {
        author,
        seq,
        timestamp: 1_700_000_000_000 + seq,
        prev,
        value: i64::try_from(seq).unwrap(),
        data: String::new(),
    };
    let hash = unsigned.hash();
    (unsigned.with_signature(Signature([0; 64])), hash)
}

/// A pseudo-random author (splitmix64 of `i`): spread over the tree's buckets as real
/// public keys are.
fn author(i: u64) -> Author {
    let mut bytes = [0u8; 32];
    let mut x = i;
    for chunk in bytes.chunks_exact_mut(8) {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    Author(bytes)
}

/// The view's costs at `feeds` feeds, in µs: the first summary, single-feed changes, forks.
fn view_costs(feeds: usize) {
    let mut view = SummaryView::new();
    let mut heads = Vec::with_capacity(feeds);
    for i in 0..feeds as u64 {
        let (e, h) = entry(author(i), 1, None);
        view.apply(&e, &h);
        heads.push(h);
    }
    let start = Instant::now();
    view.summary();
    report(
        &format!("first summary of a view of {feeds} feeds (every leaf hashed)"),
        "ms",
        vec![start.elapsed().as_secs_f64() * 1e3],
    );
    let mut micros = Vec::with_capacity(CHANGES);
    for c in 0..CHANGES {
        let i = (c * 7919) % feeds;
        let (e, h) = entry(author(i as u64), 2, Some(heads[i]));
        let start = Instant::now();
        view.apply(&e, &h);
        view.summary();
        micros.push(start.elapsed().as_secs_f64() * 1e6);
    }
    micros.sort_by(|a, b| a.total_cmp(b));
    println!(
        "one entry applied + summary at {feeds} feeds: median {:.1} µs, p99 {:.1} µs ({CHANGES} changes)",
        median(micros.clone()),
        micros[micros.len() * 99 / 100]
    );
    let mut forks = vec![];
    for f in 0..RUNS {
        let start = Instant::now();
        view.mark_forked(&author(f as u64 * 1000 + 1));
        view.summary();
        forks.push(start.elapsed().as_secs_f64() * 1e3);
    }
    report(
        &format!("one feed marked forked + summary at {feeds} feeds"),
        "ms",
        forks,
    );
}

/// Pages through every feed with `GET /feeds?limit=1000`; returns seconds and feeds seen.
fn walk_feeds(addr: std::net::SocketAddr) -> (f64, usize) {
    use std::io::Write;
    let start = Instant::now();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let mut after: Option<String> = None;
    let mut seen = 0;
    loop {
        let path = match &after {
            Some(a) => format!("/feeds?limit=1000&after={a}"),
            None => "/feeds?limit=1000".to_owned(),
        };
        write!(stream, "GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").unwrap();
        let body = read_body(&mut stream);
        let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
        seen += page["feeds"].as_array().unwrap().len();
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    (start.elapsed().as_secs_f64(), seen)
}

/// The body of one Content-Length response.
fn read_body(stream: &mut std::net::TcpStream) -> Vec<u8> {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let length = content_length(&head);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    body
}

fn main() {
    let secs = env_usize("KAPPALOG_BENCH_SECS", 5) as f64;
    let feeds = env_usize("KAPPALOG_BENCH_SUMMARY_FEEDS", 100_000);
    println!("kappalog summary benchmark ({feeds} feeds, {CONNECTIONS} keep-alive connections, {secs} s runs)");
    view_costs(feeds);

    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    build_store_of_authors(dir.path(), feeds, 1);
    let built = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let (node, _) = Node::open_with_identity(dir.path(), Identity::from_seed([1; 32])).unwrap();
    let json = node.summary_json();
    println!(
        "built a {feeds}-feed log in {built:.1} s; opened it and read its summary in {:.2} s; /summary is {} bytes",
        start.elapsed().as_secs_f64(),
        json.len() + r#","own_feed":"ok""#.len()
    );
    let (addr, server) = serve(node.clone());
    let request: &'static [u8] = b"GET /summary HTTP/1.1\r\nHost: bench\r\n\r\n";

    let mut idle = Figures::default();
    let mut busy = Figures::default();
    let mut append_rates = vec![];
    let appended = Arc::new(AtomicU64::new(0));
    for run in 0..RUNS {
        // Quiet and appending runs interleaved, each first in turn: the shared VM's speed
        // drifts within minutes.
        let quiet = || load_fixed(addr, request, 200, secs);
        let appending = || {
            let stop = Arc::new(AtomicBool::new(false));
            let before = appended.load(Ordering::Relaxed);
            let tasks: Vec<_> = (0..APPENDERS)
                .map(|_| {
                    let (node, stop, appended) = (node.clone(), stop.clone(), appended.clone());
                    server.spawn(async move {
                        while !stop.load(Ordering::Relaxed) {
                            node.append(7, String::new()).await.unwrap();
                            appended.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            let start = Instant::now();
            let figures = load_fixed(addr, request, 200, secs);
            let rate =
                (appended.load(Ordering::Relaxed) - before) as f64 / start.elapsed().as_secs_f64();
            stop.store(true, Ordering::Relaxed);
            for task in tasks {
                server.block_on(task).unwrap();
            }
            (figures, rate)
        };
        let order = if run % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for appends in order {
            if appends {
                let (figures, rate) = appending();
                busy.push(figures);
                append_rates.push(rate);
            } else {
                idle.push(quiet());
            }
        }
    }
    idle.report(&format!("GET /summary at {feeds} feeds"));
    busy.report(&format!(
        "GET /summary at {feeds} feeds while {APPENDERS} tasks append"
    ));
    report("durable appends meanwhile", "appends/s", append_rates);
    report_wrk(
        &format!("GET /summary at {feeds} feeds"),
        &format!("http://{addr}/summary"),
        None,
        secs,
    );

    let mut walks = vec![];
    for _ in 0..RUNS {
        let (secs, seen) = walk_feeds(addr);
        assert!(seen > feeds, "every feed and the node's own");
        walks.push(secs * 1e3);
    }
    report(
        &format!("every feed through GET /feeds?limit=1000 ({feeds}+1 feeds)"),
        "ms",
        walks,
    );
    drop(server);
}
