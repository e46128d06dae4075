//! Shared by the benchmarks: building a large store quickly, medians, reporting, the node as
//! its own process ([`node_process`]) and a hand-driven sync peer ([`peer`]).
#![allow(dead_code)]

pub mod load;
pub mod node_process;
pub mod peer;
pub mod wrk;

use std::path::Path;

use kappalog::entry::{Entry, UnsignedEntry};
use kappalog::hash::Hash;
use kappalog::identity::Identity;
use kappalog::store::format;
use rayon::prelude::*;

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident set size of this process, in bytes.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// CPU time (user + system, all threads) this process has used, in seconds, from
/// `/proc/self/stat` (clock ticks of 10 ms: meaningful over runs of a second or more). CPU per
/// operation is a steadier figure than wall-clock rate on a shared machine.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Read and write system calls (`syscr`, `syscw` in `/proc/self/io`; `writev` counts as
/// one write) this process has made: with sockets, how many reads and writes it took.
pub fn syscalls() -> (u64, u64) {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("syscr:"), field("syscw:"))
}

/// One pair of an interleaved comparison: `a` then `b` on even runs, `b` then `a` on odd
/// ones, so neither side always runs in the machine's same phase.
pub fn in_turn(run: usize, mut a: impl FnMut(), mut b: impl FnMut()) {
    if run.is_multiple_of(2) {
        a();
        b();
    } else {
        b();
        a();
    }
}

/// A JSON document like an application's for entry `seq` of feed `feed`: a sensor, a
/// reading, a unit (the SQL index benchmarks' `data`).
pub fn sensor_reading(feed: usize, seq: u64) -> String {
    format!(
        "{{\"sensor\":\"s-{}\",\"temp\":{}.{},\"unit\":\"C\",\"seq\":{seq}}}",
        feed % 17,
        15 + seq % 20,
        seq % 10
    )
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// One printed figure of a run of type `R`: its name, its unit, and where the run keeps it.
pub type Figure<R> = (&'static str, &'static str, fn(&R) -> f64);

/// Prints `name: median X unit (runs: a, b, c)`.
pub fn report(name: &str, unit: &str, runs: Vec<f64>) {
    let shown: Vec<String> = runs.iter().map(|r| format!("{r:.1}")).collect();
    println!(
        "{name}: median {:.1} {unit} (runs: {})",
        median(runs),
        shown.join(", ")
    );
}

/// Writes `entries` value-only entries over 100 feeds straight into a log file: chains are
/// hashed sequentially per feed, signatures made in parallel.
pub fn build_big_store(dir: &Path, entries: usize) {
    build_store_with_feeds(dir, entries, 100);
}

/// As [`build_big_store`] with `feeds` feeds.
pub fn build_store_with_feeds(dir: &Path, entries: usize, feeds: usize) {
    build_store_with_data(dir, entries, feeds, |_, _| String::new());
}

/// As [`build_store_with_feeds`], the entry at `seq` of feed `f` carrying `data(f, seq)`.
pub fn build_store_with_data(
    dir: &Path,
    entries: usize,
    feeds: usize,
    data: impl Fn(usize, u64) -> String,
) {
    let feeds = feeds.clamp(1, 250).min(entries.max(1));
    let per_feed = entries / feeds;
    let identities: Vec<Identity> = (0..feeds)
        .map(|i| Identity::from_seed([(i % 250) as u8 + 2; 32]))
        .collect();
    let mut file = format::file_header().to_vec();
    // Interleave feeds in rounds so the log looks like a real multi-feed log.
    let mut heads: Vec<Option<Hash>> = vec![None; feeds];
    let rounds_per_chunk = 1000;
    let mut seq = 1u64;
    while (seq as usize) <= per_feed {
        let last = (seq + rounds_per_chunk - 1).min(per_feed as u64);
        let mut unsigned: Vec<(usize, UnsignedEntry, Hash)> = Vec::new();
        for s in seq..=last {
            for (f, id) in identities.iter().enumerate() {
                let u = UnsignedEntry {
                    author: id.author(),
                    seq: s,
                    timestamp: 1_700_000_000_000 + s,
                    prev: heads[f],
                    value: s as i64,
                    data: data(f, s),
                };
                let h = u.hash();
                heads[f] = Some(h);
                unsigned.push((f, u, h));
            }
        }
        let signed: Vec<Entry> = unsigned
            .into_par_iter()
            .map(|(f, u, h)| u.with_signature(identities[f].sign_hash(&h)))
            .collect();
        for e in &signed {
            format::encode_keyed_record(e, None, &mut file);
        }
        seq = last + 1;
    }
    std::fs::write(dir.join("entries.log"), &file).unwrap();
}

/// The seed of feed author `i` of [`build_store_of_authors`]: the counter's eight
/// little-endian bytes repeated over the 32 (never one of the uniform `[n; 32]` seeds the
/// benchmarks give their nodes, which would need `i + 1 = n * 0x0101010101010101`).
pub fn feed_seed(i: u64) -> [u8; 32] {
    let mut seed = [0u8; 32];
    for chunk in seed.chunks_exact_mut(8) {
        chunk.copy_from_slice(&(i + 1).to_le_bytes());
    }
    seed
}

/// Writes `feeds` feeds of `per_feed` value-only entries straight into a log file, each feed
/// its own author (seeds from [`feed_seed`]). The log holds feed after feed, the order a node
/// that fetched each feed whole (as a joining node does) holds them in. Feeds are hashed and
/// signed in parallel, one batch signature call per feed, and written in chunks of feeds so
/// memory stays bounded whatever the size.
pub fn build_store_of_authors(dir: &Path, feeds: usize, per_feed: usize) {
    use std::io::Write;
    const FEEDS_PER_CHUNK: usize = 4096;
    let file = std::fs::File::create(dir.join("entries.log")).unwrap();
    let mut out = std::io::BufWriter::new(file);
    out.write_all(&format::file_header()).unwrap();
    for first in (0..feeds).step_by(FEEDS_PER_CHUNK) {
        let last = (first + FEEDS_PER_CHUNK).min(feeds);
        let chunk: Vec<Vec<u8>> = (first..last)
            .into_par_iter()
            .map(|f| encode_feed(&Identity::from_seed(feed_seed(f as u64)), per_feed))
            .collect();
        for records in chunk {
            out.write_all(&records).unwrap();
        }
    }
    out.flush().unwrap();
}

/// The log records of `identity`'s feed of `len` value-only entries.
fn encode_feed(identity: &Identity, len: usize) -> Vec<u8> {
    let mut prev = None;
    let unsigned: Vec<(UnsignedEntry, Hash)> = (1..=len as u64)
        .map(|seq| {
            let u = UnsignedEntry {
                author: identity.author(),
                seq,
                timestamp: 1_700_000_000_000 + seq,
                prev,
                value: seq as i64,
                data: String::new(),
            };
            let h = u.hash();
            prev = Some(h);
            (u, h)
        })
        .collect();
    let hashes: Vec<Hash> = unsigned.iter().map(|(_, h)| *h).collect();
    let signatures = identity.sign_hashes(&hashes);
    let mut records = Vec::new();
    for ((u, _), signature) in unsigned.into_iter().zip(signatures) {
        format::encode_keyed_record(&u.with_signature(signature), None, &mut records);
    }
    records
}

/// Issue 21's benchmark view: "one view holding one expression index". A point lookup of
/// one sensor's reading at one seq (a handful of rows: the feeds reporting that sensor),
/// through the expression index on the two JSON fields. Its index statement is written as
/// SQLite keeps it (what `PUT /views` would store), so it can be put straight in a
/// registry.
pub fn point_view() -> kappalog::views::ViewDef {
    kappalog::views::ViewDef {
        name: "point".into(),
        sql: "SELECT author, seq, value FROM entries WHERE json_valid(data) \
              AND json_extract(data, '$.sensor') = :sensor \
              AND json_extract(data, '$.seq') = :seq + 0 ORDER BY author, seq"
            .into(),
        indexes: vec![
            "CREATE INDEX point ON entries(json_extract(data, '$.sensor'), json_extract(data, '$.seq')) WHERE json_valid(data)"
                .into(),
        ],
        description: "one sensor's reading at one seq".into(),
    }
}

/// The views of the data directory `dir`, with [`point_view`] added.
pub fn views_with_point(dir: &Path) -> kappalog::views::Views {
    let views = kappalog::views::Views::open(dir).unwrap();
    views.put(point_view()).unwrap();
    views
}

/// A follower of the log that `kappalog run` starts beside the store: what its cost to
/// `POST /add` is measured for.
#[derive(Clone, Copy, PartialEq)]
#[allow(dead_code)] // each bench binary uses the variants it measures
pub enum Follower {
    /// The SQL index (issue 21's target: at least 0.9 of `/add` without it).
    Index,
    /// The Merkle tree cache and the own checkpoints it signs (issue 22's target: at least
    /// 0.95 of `/add` without it).
    Tree,
}

impl Follower {
    pub fn name(self) -> &'static str {
        match self {
            Follower::Index => "the index",
            Follower::Tree => "the tree",
        }
    }

    /// Starts the follower on `node` (inside its runtime); returns how far it covers the log.
    pub fn start(self, node: &kappalog::node::Node) -> Box<dyn Fn() -> u64> {
        match self {
            Follower::Index => {
                // With issue 21's one view holding one expression index.
                let indexer = kappalog::index::start(node, views_with_point(node.data_dir()));
                Box::new(move || indexer.covered_now().covered)
            }
            Follower::Tree => {
                let trees = kappalog::tree::start(node);
                Box::new(move || trees.covered_offset())
            }
        }
    }
}

/// Prints `name, pair ratios: median R (runs: a, b, c)` to three decimals.
pub fn report_ratios(name: &str, ratios: Vec<f64>) {
    let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
    println!(
        "{name}, pair ratios: median {:.3} (runs: {})",
        median(ratios),
        shown.join(", ")
    );
}
