//! Store benchmark: prints figures, asserts nothing. `cargo bench --bench store`.
//!
//! Sizes: `KAPPALOG_BENCH_ENTRIES` (entries in the big store, default 1,000,000) and
//! `KAPPALOG_BENCH_APPENDS` (own appends per concurrent run, default 20,000). Open time,
//! RSS growth and `verify_all` run in a fresh child process per run, so memory left over
//! from building the store does not blur the RSS figure.

use std::path::Path;

use std::time::Instant;

use kappalog::entry::{Entry, UnsignedEntry};
use kappalog::hash::Hash;
use kappalog::identity::Identity;
use kappalog::store::{format, Store, StoreReader};
use rayon::prelude::*;

const RUNS: usize = 3;
const APPENDERS: usize = 64;
const CHILD_ENV: &str = "KAPPALOG_BENCH_CHILD_DIR";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn report(name: &str, unit: &str, runs: Vec<f64>) {
    let shown: Vec<String> = runs.iter().map(|r| format!("{r:.1}")).collect();
    println!(
        "{name}: median {:.1} {unit} (runs: {})",
        median(runs),
        shown.join(", ")
    );
}

fn concurrent_appends(appends: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), Some(Identity::from_seed([1; 32])), None).unwrap();
    let per_thread = appends / APPENDERS;
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..APPENDERS {
            let store = store.clone();
            s.spawn(move || {
                for i in 0..per_thread {
                    store
                        .append_own((t * per_thread + i) as i64, String::new())
                        .unwrap();
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    store.sync_and_close().unwrap();
    (per_thread * APPENDERS) as f64 / secs
}

fn sequential_appends(appends: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), Some(Identity::from_seed([1; 32])), None).unwrap();
    let start = Instant::now();
    for i in 0..appends {
        store.append_own(i as i64, String::new()).unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    store.sync_and_close().unwrap();
    appends as f64 / secs
}

/// Writes `entries` value-only entries over 100 feeds straight into a log file: chains are
/// hashed sequentially per feed, signatures made in parallel.
fn build_big_store(dir: &Path, entries: usize) {
    let feeds = 100.min(entries.max(1));
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
                    data: String::new(),
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
            format::encode_record(e, &mut file);
        }
        seq = last + 1;
    }
    std::fs::write(dir.join("entries.log"), &file).unwrap();
}

/// Child process: open (timed, RSS measured), then verify_all (timed). Prints one line.
fn child(dir: &Path) {
    // Start the rayon pool first: its threads are part of the fixed base, not per entry.
    rayon::broadcast(|_| ());
    let before = rss_bytes();
    let start = Instant::now();
    let (reader, report) = StoreReader::open_read_only(dir).unwrap();
    let open_secs = start.elapsed().as_secs_f64();
    let after = rss_bytes();
    let per_entry = (after.saturating_sub(before)) as f64 / report.entries.max(1) as f64;
    let start = Instant::now();
    let verify = reader.verify_all().unwrap();
    let verify_secs = start.elapsed().as_secs_f64();
    assert!(verify.is_ok(), "{:?}", &verify.problems[..1]);
    println!("{open_secs} {per_entry} {verify_secs} {}", report.entries);
}

fn main() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let entries = env_usize("KAPPALOG_BENCH_ENTRIES", 1_000_000);
    let appends = env_usize("KAPPALOG_BENCH_APPENDS", 20_000);
    println!(
        "kappalog store benchmark ({} cores)",
        rayon::current_num_threads()
    );

    report(
        &format!("own-feed durable appends/s, {APPENDERS} concurrent appenders"),
        "appends/s",
        (0..RUNS).map(|_| concurrent_appends(appends)).collect(),
    );
    report(
        "sequential durable appends/s, one appender",
        "appends/s",
        (0..RUNS)
            .map(|_| sequential_appends(appends / 10))
            .collect(),
    );

    {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), Some(Identity::from_seed([1; 32])), None).unwrap();
        store.append_own(0, String::new()).unwrap();
        let before = std::fs::metadata(dir.path().join("entries.log"))
            .unwrap()
            .len();
        store.append_own(1, String::new()).unwrap();
        let after = std::fs::metadata(dir.path().join("entries.log"))
            .unwrap()
            .len();
        println!("bytes on disk per value-only entry: {}", after - before);
    }

    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    build_big_store(dir.path(), entries);
    println!(
        "built a {entries}-entry store in {:.1} s ({} bytes)",
        start.elapsed().as_secs_f64(),
        std::fs::metadata(dir.path().join("entries.log"))
            .unwrap()
            .len()
    );
    let exe = std::env::current_exe().unwrap();
    let mut open = vec![];
    let mut rss = vec![];
    let mut verify = vec![];
    for _ in 0..RUNS {
        let out = std::process::Command::new(&exe)
            .env(CHILD_ENV, dir.path())
            .output()
            .unwrap();
        let line = String::from_utf8_lossy(&out.stdout);
        let fields: Vec<f64> = line
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        assert_eq!(
            fields.len(),
            4,
            "child said: {line} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        open.push(fields[0] * 1000.0);
        rss.push(fields[1]);
        verify.push(fields[2] * 1000.0);
    }
    report(
        &format!("open (read-only, chain check) of {entries} entries"),
        "ms",
        open,
    );
    report("RSS growth of the open store per entry", "bytes", rss);
    report(&format!("verify_all of {entries} entries"), "ms", verify);
}
