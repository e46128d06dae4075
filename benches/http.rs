//! HTTP benchmark: a node served in-process on 127.0.0.1:0 and a keep-alive load generator
//! on the same machine. Prints figures, asserts nothing. `cargo bench --bench http`.
//!
//! - `POST /add` with 64 connections, durable: requests/s and latency p50/p99;
//! - the same with a fresh 36-byte `Idempotency-Key` (a UUID's length) on every request, and
//!   the bytes each key adds on disk (the log's growth per entry, against the unkeyed run);
//! - `GET /summary` on a node holding `KAPPALOG_BENCH_ENTRIES` entries (default 1,000,000);
//! - `GET /health` latency (p50, p99) on fresh connections while `KAPPALOG_BENCH_BAD_CLIENTS`
//!   (default 600) connections are open, a quarter each idle, mid-head, mid-upload and
//!   refusing to read an export (`KAPPALOG_BENCH_HEALTH_PROBES` probes, default 200).
//!
//! When `wrk` is installed the same routes are also measured with it (C, cheaper per request
//! than the Rust generator, so it leaves more of the 2 shared cores to the server).
//!
//! `KAPPALOG_BENCH_SECS` sets each run's length (default 5 s), `KAPPALOG_BENCH_FEEDS` the
//! number of feeds of the big node (default 10); three runs each, medians. `GET /summary` at
//! 100,000 feeds is `cargo bench --bench summary`. `KAPPALOG_BENCH_ONLY=index_cost` runs only
//! what the SQL index costs `POST /add` (`KAPPALOG_BENCH_RUNS` pairs, default 3), so builds
//! can be compared by running their binaries in turn; `KAPPALOG_BENCH_ONLY=tree_cost` the same
//! for the Merkle tree cache and its own checkpoints (issue 22); `KAPPALOG_BENCH_ONLY=tlog_reads`
//! inclusion proofs over HTTP in a feed of `KAPPALOG_BENCH_ENTRIES` against `GET /health`,
//! then full tiles' throughput (issue 22's read targets).

use std::net::SocketAddr;
use std::time::Instant;

use kappalog::identity::Identity;
use kappalog::node::Node;

mod common;
use common::load::{load, load_fixed, percentile, serve, Figures, CONNECTIONS};
use common::wrk::{report_wrk, report_wrk_runs, wrk, wrk_keyed_script, wrk_script};
use common::{build_store_with_feeds, cpu_seconds, env_usize, report, report_ratios, Follower};

const RUNS: usize = 3;

/// What each connection sends: the same bytes every time, or `POST /add` with a key no
/// other request of the benchmark uses.
#[derive(Clone, Copy)]
enum Requests {
    Fixed(&'static [u8]),
    /// Keys are `RR-CC-NNN...`: run, connection and request number, 36 bytes in all.
    UniqueKeys {
        run: usize,
    },
}

/// The bytes of request number `i` of connection `conn`, written into `buf`.
fn write_request(requests: Requests, conn: usize, i: u64, buf: &mut Vec<u8>) {
    use std::io::Write;
    match requests {
        Requests::Fixed(bytes) => buf.extend_from_slice(bytes),
        Requests::UniqueKeys { run } => {
            // Writing into a Vec cannot fail.
            let _ = write!(
                buf,
                "POST /add HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nIdempotency-Key: {run:02}-{conn:02}-{i:030}\r\nContent-Length: 13\r\n\r\n{{\"value\": 42}}"
            );
        }
    }
}

/// [`load`] with `requests`.
fn load_requests(addr: SocketAddr, requests: Requests, expect: u16, secs: f64) -> (f64, Vec<u64>) {
    load(
        addr,
        move |conn, i, buf: &mut Vec<u8>| write_request(requests, conn, i, buf),
        expect,
        secs,
    )
}

/// `RUNS` runs of [`load_fixed`] with the same request.
fn runs(addr: SocketAddr, request: &'static [u8], expect: u16, secs: f64) -> Figures {
    let mut figures = Figures::default();
    for _ in 0..RUNS {
        figures.push(load_fixed(addr, request, expect, secs));
    }
    figures
}

/// `GET /health` on fresh connections while `bad` connections (a quarter each: idle, a head
/// sent in part, a stalled upload, an export nobody reads) are open: the server is at its
/// connection cap and must shed the quiet ones to serve. Returns each request's latency in
/// microseconds, connect included.
fn health_under_bad_clients(bad: usize, probes: usize) -> Vec<u64> {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = Node::open_with_identity(dir.path(), Identity::from_seed([1; 32])).unwrap();
    let (addr, server) = serve(node.clone());
    // Enough log that an unread export fills the socket buffers.
    server.block_on(async {
        for i in 0..2_500 {
            node.append(i, "x".repeat(4_000)).await.unwrap();
        }
    });
    let requests: [&[u8]; 4] = [
        b"",
        b"GET /hea",
        b"POST /import HTTP/1.1\r\nHost: b\r\nContent-Length: 99999\r\n\r\nauthor,",
        b"GET /export.csv HTTP/1.1\r\nHost: b\r\n\r\n",
    ];
    let mut held = Vec::with_capacity(bad);
    for i in 0..bad {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(requests[i % 4]).unwrap();
        held.push(s);
    }
    let mut latencies = Vec::with_capacity(probes);
    for _ in 0..probes {
        let start = Instant::now();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut response = Vec::new();
        let _ = s.read_to_end(&mut response);
        if !response.starts_with(b"HTTP/1.1 200") {
            println!("a /health probe was not answered 200");
            continue;
        }
        latencies.push(u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX));
    }
    drop(held);
    drop(server);
    latencies.sort_unstable();
    latencies
}

/// The log file's size past its header, per entry held.
fn log_bytes_per_entry(node: &Node) -> f64 {
    let reader = node.reader();
    let bytes = std::fs::metadata(reader.path()).map_or(0, |m| m.len());
    bytes.saturating_sub(12) as f64 / reader.len().max(1) as f64
}

/// A node in `dir`, signing with the benchmarks' fixed key.
fn open_node(dir: &tempfile::TempDir) -> Node {
    Node::open_with_identity(dir.path(), Identity::from_seed([1; 32]))
        .unwrap()
        .0
}

/// `POST /add` with JSON data on a node where `follower` follows the log (as `kappalog run`
/// has it) against one without (`--no-index`, `--no-tree`): two nodes, their runs
/// interleaved, each going first in turn. Then how long the follower takes to cover the last
/// append once the load stops.
fn follower_cost(follower: Follower, secs: f64, pairs: usize) {
    let name = follower.name();
    let add: &'static [u8] = b"POST /add HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: 52\r\n\r\n{\"value\": 42, \"data\": \"{\\\"sensor\\\":\\\"a\\\",\\\"t\\\":21}\"}";
    let (bare_dir, followed_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (bare, followed) = (open_node(&bare_dir), open_node(&followed_dir));
    let (bare_addr, bare_server) = serve(bare.clone());
    let (followed_addr, followed_server) = serve(followed.clone());
    let covered = {
        let _runtime = followed_server.enter();
        follower.start(&followed)
    };
    let (mut without, mut with) = (Figures::default(), Figures::default());
    // CPU of the whole process (generator and node) per request: the same generator on both
    // sides, so the difference is the follower's, a steadier figure than the rates when other
    // jobs share the cores.
    let (mut cpu_without, mut cpu_with) = (Vec::new(), Vec::new());
    let mut ratios = Vec::new();
    for run in 0..pairs {
        let timed = |addr, cpu: &mut Vec<f64>| {
            let before = cpu_seconds();
            let figures = load_requests(addr, Requests::Fixed(add), 201, secs);
            let requests = figures.1.len().max(1) as f64;
            cpu.push((cpu_seconds() - before) * 1e6 / requests);
            figures
        };
        if run % 2 == 0 {
            without.push(timed(bare_addr, &mut cpu_without));
            with.push(timed(followed_addr, &mut cpu_with));
        } else {
            with.push(timed(followed_addr, &mut cpu_with));
            without.push(timed(bare_addr, &mut cpu_without));
        }
        ratios.push(with.rates[run] / without.rates[run]);
    }
    report(
        &format!("POST /add with JSON data, process CPU per request, without {name}"),
        "µs",
        cpu_without,
    );
    report(
        &format!("POST /add with JSON data, process CPU per request, {name} following"),
        "µs",
        cpu_with,
    );
    report(
        &format!("POST /add with JSON data, without {name}, requests/s"),
        "req/s",
        without.rates,
    );
    report(
        &format!("POST /add with JSON data, {name} following, requests/s"),
        "req/s",
        with.rates,
    );
    report_ratios(&format!("{name}'s cost, with/without"), ratios);
    let started = Instant::now();
    let (_, last) = followed.reader().end_and_last_entry();
    let target = last.map_or(0, |(offset, _)| offset);
    while covered() <= target {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    println!(
        "{name} caught up with the last append {:.0} ms after the load stopped ({} entries)",
        started.elapsed().as_secs_f64() * 1000.0,
        followed.reader().len()
    );
    drop((bare_server, followed_server, bare, followed));
}

/// Issue 22's read targets on a node whose own feed holds `entries` entries, its tree
/// cache covering them and its checkpoint book serving the checkpoint: `GET /feeds/AUTHOR/proof?seq=N` for random N (target: at least
/// 20,000 req/s at 1,000,000 entries) interleaved with `GET /health` in the same sitting (the
/// no-op request it is measured against), then tile reads (full level-0 hash tiles and full
/// entry bundles at random indexes) in MB/s against a 1 Gb/s line's 125 MB/s.
fn tlog_reads(entries: usize, secs: f64, pairs: usize) {
    let dir = tempfile::tempdir().unwrap();
    build_store_with_feeds(dir.path(), entries, 1);
    // The builder's one feed is seed 2's: the node's own feed, so it has checkpoints.
    let (node, _) = Node::open_with_identity(dir.path(), Identity::from_seed([2; 32])).unwrap();
    let author = node.author();
    let trees = std::sync::Arc::new(std::sync::Mutex::new(None));
    let (addr, server) = common::load::serve_configured(node.clone(), Default::default(), {
        let trees = trees.clone();
        move |node| {
            let started = kappalog::tree::start(node);
            *trees.lock().unwrap() = Some(started.clone());
            // As `kappalog run` serves them: the checkpoint comes from the book (parsed per
            // request), which cosigns nothing here (no witness journal).
            let book = kappalog::checkpoint_book::start(
                node,
                started.clone(),
                None,
                kappalog::checkpoint_book::CosignerKeys::new(Vec::new(), Vec::new()),
            )
            .unwrap();
            kappalog::http::HttpConfig {
                tree: Some(started),
                book: Some(book),
                ..Default::default()
            }
        }
    });
    let trees = trees.lock().unwrap().clone().unwrap();
    let started = Instant::now();
    while trees.size(&author) < entries as u64 || trees.own_checkpoint().is_none() {
        assert!(started.elapsed().as_secs() < 600, "the tree cache stalled");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    println!(
        "tree cache of {entries} entries built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // `load` wants a `Copy` request writer: the author's hex lives for the whole bench.
    let hex: &'static str = Box::leak(author.to_string().into_boxed_str());
    let size = entries as u64;
    // A cheap spread of seqs over the feed (no two connections walk in step).
    let spread = |conn: usize, i: u64, n: u64| {
        (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (conn as u64).wrapping_mul(0x2545_f491_4f6c_dd1d))
            % n
    };
    let proof = move |conn: usize, i: u64, buf: &mut Vec<u8>| {
        use std::io::Write;
        let seq = spread(conn, i, size) + 1;
        let _ = write!(
            buf,
            "GET /feeds/{hex}/proof?seq={seq} HTTP/1.1\r\nHost: bench\r\n\r\n"
        );
    };
    let health: &'static [u8] = b"GET /health HTTP/1.1\r\nHost: bench\r\n\r\n";
    let (mut proofs, mut healths, mut ratios) = (Figures::default(), Figures::default(), vec![]);
    for run in 0..pairs {
        let p = || common::load::load(addr, proof, 200, secs);
        let h = || load_fixed(addr, health, 200, secs);
        if run % 2 == 0 {
            proofs.push(p());
            healths.push(h());
        } else {
            healths.push(h());
            proofs.push(p());
        }
        ratios.push(proofs.rates[run] / healths.rates[run]);
    }
    report(
        &format!("GET /feeds/AUTHOR/proof?seq=random of a {entries}-entry feed, requests/s (target >= 20,000)"),
        "req/s",
        proofs.rates,
    );
    report("  its latency p99", "ms", proofs.p99);
    report(
        "GET /health in the same sitting, requests/s",
        "req/s",
        healths.rates,
    );
    report_ratios("  proof/health", ratios);
    let full_tiles = size / 256;
    use kappalog::tlog::tiles::{Tile, TileKind};
    for (what, kind) in [
        ("level-0 hash tiles", TileKind::Hashes { level: 0 }),
        ("entry bundles", TileKind::Entries),
    ] {
        let tile = move |conn: usize, i: u64, buf: &mut Vec<u8>| {
            use std::io::Write;
            // Full tiles only, so no `.p/W`: the immutable ones a cache keeps.
            let path = Tile::new(kind, spread(conn, i, full_tiles), 256)
                .unwrap()
                .path();
            let _ = write!(
                buf,
                "GET /feeds/{hex}/{path} HTTP/1.1\r\nHost: bench\r\n\r\n"
            );
        };
        // Every full tile of one kind here has the same size: bytes/s = rate x that size.
        let one = tile_bytes(addr, hex, &Tile::new(kind, 0, 256).unwrap().path());
        let mbs = (0..pairs)
            .map(|_| common::load::load(addr, tile, 200, secs).0 * one as f64 / 1e6)
            .collect();
        report(
            &format!("GET /feeds/AUTHOR/tile/..., full {what} ({one} bytes) at random N, MB/s (a 1 Gb/s line: 125)"),
            "MB/s",
            mbs,
        );
    }
    drop(server);
}

/// The body length of the tile at `path` of the feed `hex` at `addr`.
fn tile_bytes(addr: SocketAddr, hex: &str, path: &str) -> usize {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /feeds/{hex}/{path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    response.len() - end
}

fn main() {
    let secs = env_usize("KAPPALOG_BENCH_SECS", 5) as f64;
    let only = std::env::var("KAPPALOG_BENCH_ONLY").ok();
    let pairs = env_usize("KAPPALOG_BENCH_RUNS", RUNS).max(1);
    match only.as_deref() {
        Some("index_cost") => return follower_cost(Follower::Index, secs, pairs),
        Some("tree_cost") => return follower_cost(Follower::Tree, secs, pairs),
        Some("tlog_reads") => {
            let entries = env_usize("KAPPALOG_BENCH_ENTRIES", 1_000_000);
            return tlog_reads(entries, secs, pairs);
        }
        _ => {}
    }
    let bad = env_usize("KAPPALOG_BENCH_BAD_CLIENTS", 600);
    let probes = env_usize("KAPPALOG_BENCH_HEALTH_PROBES", 200);
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    for _ in 0..RUNS {
        let latencies = health_under_bad_clients(bad, probes);
        p50s.push(percentile(&latencies, 0.5));
        p99s.push(percentile(&latencies, 0.99));
    }
    report(
        &format!("GET /health on a fresh connection with {bad} bad clients open, latency p50"),
        "ms",
        p50s,
    );
    report(
        &format!("GET /health on a fresh connection with {bad} bad clients open, latency p99"),
        "ms",
        p99s,
    );
    let entries = env_usize("KAPPALOG_BENCH_ENTRIES", 1_000_000);
    // The summary is constant-size; `cargo bench --bench summary` measures it at 100,000
    // feeds, and while appends run.
    let feeds = env_usize("KAPPALOG_BENCH_FEEDS", 10);
    println!("kappalog HTTP benchmark ({CONNECTIONS} keep-alive connections, {secs} s runs)");

    // `/add` without and with a key, on two nodes, their runs interleaved and each going first
    // in turn: the shared VM's speed drifts within minutes, so one block after the other would
    // compare its phases, and a fixed order could favour whichever runs first.
    let (plain_dir, keyed_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (plain, keyed) = (open_node(&plain_dir), open_node(&keyed_dir));
    let (plain_addr, plain_server) = serve(plain.clone());
    let (keyed_addr, keyed_server) = serve(keyed.clone());
    let add: &'static [u8] =
        b"POST /add HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"value\": 42}";
    let (mut plain_figures, mut keyed_figures) = (Figures::default(), Figures::default());
    for run in 0..RUNS {
        let plain = || load_requests(plain_addr, Requests::Fixed(add), 201, secs);
        let keyed = || load_requests(keyed_addr, Requests::UniqueKeys { run }, 201, secs);
        if run % 2 == 0 {
            plain_figures.push(plain());
            keyed_figures.push(keyed());
        } else {
            keyed_figures.push(keyed());
            plain_figures.push(plain());
        }
    }
    report(
        "POST /add (durable), requests/s",
        "req/s",
        plain_figures.rates,
    );
    report("POST /add latency p50", "ms", plain_figures.p50);
    report("POST /add latency p99", "ms", plain_figures.p99);
    report(
        "POST /add with a unique 36-byte Idempotency-Key (durable), requests/s",
        "req/s",
        keyed_figures.rates,
    );
    report("POST /add with a key, latency p50", "ms", keyed_figures.p50);
    report("POST /add with a key, latency p99", "ms", keyed_figures.p99);
    let (plain_bytes, keyed_bytes) = (log_bytes_per_entry(&plain), log_bytes_per_entry(&keyed));
    println!(
        "log bytes per entry: {plain_bytes:.1} without a key, {keyed_bytes:.1} with a 36-byte key: {:.1} bytes on disk per key",
        keyed_bytes - plain_bytes
    );
    let (mut plain_wrk, mut keyed_wrk) = (vec![], vec![]);
    for run in 0..RUNS {
        let plain = || {
            wrk(
                &format!("http://{plain_addr}/add"),
                Some("{\"value\": 42}"),
                secs,
            )
        };
        let keyed = || {
            wrk_script(
                &format!("http://{keyed_addr}/add"),
                Some(wrk_keyed_script()),
                secs,
            )
        };
        if run % 2 == 0 {
            plain_wrk.extend(plain());
            keyed_wrk.extend(keyed());
        } else {
            keyed_wrk.extend(keyed());
            plain_wrk.extend(plain());
        }
    }
    report_wrk_runs("POST /add", plain_wrk);
    report_wrk_runs("POST /add with a unique key", keyed_wrk);
    drop((plain_server, keyed_server, plain, keyed));

    follower_cost(Follower::Index, secs, RUNS);
    follower_cost(Follower::Tree, secs, RUNS);

    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    build_store_with_feeds(dir.path(), entries, feeds);
    let (node, _) = Node::open_with_identity(dir.path(), Identity::from_seed([1; 32])).unwrap();
    println!(
        "built and opened a {entries}-entry node with {feeds} feeds in {:.1} s (summary: {} bytes)",
        start.elapsed().as_secs_f64(),
        node.summary_json().len()
    );
    let (addr, server) = serve(node);
    let summary: &'static [u8] = b"GET /summary HTTP/1.1\r\nHost: bench\r\n\r\n";
    let figures = runs(addr, summary, 200, secs);
    report(
        &format!("GET /summary on {entries} entries, requests/s"),
        "req/s",
        figures.rates,
    );
    report("GET /summary latency p99", "ms", figures.p99);
    report_wrk(
        "GET /summary",
        &format!("http://{addr}/summary"),
        None,
        secs,
    );
    drop(server);
}
