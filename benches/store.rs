//! Store benchmark: prints figures, asserts nothing. `cargo bench --bench store`.
//!
//! Sizes: `KAPPALOG_BENCH_ENTRIES` (entries in the big store, default 1,000,000) and
//! `KAPPALOG_BENCH_APPENDS` (own appends per concurrent run, default 40,000). Open time,
//! RSS growth and `verify_all` run in a fresh child process per run, so memory left over
//! from building the store does not blur the RSS figure.

use std::path::Path;

use std::time::Instant;

use kappalog::identity::Identity;
use kappalog::store::{Store, StoreReader};

mod common;
use common::{build_big_store, cpu_seconds, env_usize, report, rss_bytes};

const RUNS: usize = 5;
const APPENDERS: usize = 64;
const CHILD_ENV: &str = "KAPPALOG_BENCH_CHILD_DIR";

/// Appends/s and CPU µs per append.
fn concurrent_appends(appends: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let (store, owner, _) =
        Store::open(dir.path(), Some(Identity::from_seed([1; 32])), None).unwrap();
    let per_thread = appends / APPENDERS;
    let cpu = cpu_seconds();
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..APPENDERS {
            let store = store.clone();
            s.spawn(move || {
                for i in 0..per_thread {
                    store
                        .append_own((t * per_thread + i) as i64, String::new())
                        .wait()
                        .unwrap();
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    owner.shutdown_blocking().unwrap();
    let n = (per_thread * APPENDERS) as f64;
    (n / secs, cpu * 1e6 / n)
}

/// The same load from 64 tokio tasks instead of 64 OS threads, which is how the node's HTTP
/// handlers append: a waiting task costs no kernel thread, so the figure is the store's own
/// throughput without the scheduler cost of 64 blocked threads.
fn concurrent_appends_async(appends: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let (store, owner, _) =
        Store::open(dir.path(), Some(Identity::from_seed([1; 32])), None).unwrap();
    let per_task = appends / APPENDERS;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let cpu = cpu_seconds();
    let start = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..APPENDERS)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..per_task {
                        store
                            .append_own((t * per_task + i) as i64, String::new())
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    owner.shutdown_blocking().unwrap();
    let n = (per_task * APPENDERS) as f64;
    (n / secs, cpu * 1e6 / n)
}

fn sequential_appends(appends: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let (store, owner, _) =
        Store::open(dir.path(), Some(Identity::from_seed([1; 32])), None).unwrap();
    let start = Instant::now();
    for i in 0..appends {
        store.append_own(i as i64, String::new()).wait().unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    owner.shutdown_blocking().unwrap();
    appends as f64 / secs
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
    let summary = kappalog::node::rebuild_summary(&reader, [])
        .unwrap()
        .summary();
    let rebuild_rate = summary.count as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let verify = reader.verify_all().unwrap();
    let verify_secs = start.elapsed().as_secs_f64();
    assert!(verify.is_ok(), "{:?}", &verify.problems[..1]);
    println!(
        "{open_secs} {per_entry} {verify_secs} {} {rebuild_rate}",
        report.entries
    );
}

/// The longest time one batch of 32 inserts holds the index while it grows to `entries`
/// (the writer holds the index's write lock for each batch, so this is the longest stall
/// an append or a read can see from index growth), in ms.
fn index_growth(entries: usize) -> f64 {
    use kappalog::entry::Entry;
    use kappalog::hash::Hash;
    use kappalog::identity::{Author, Signature};
    use kappalog::store::index::Index;
    let mut index = Index::new(0);
    let mut worst = std::time::Duration::ZERO;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for batch in 0..entries / 32 {
        let start = Instant::now();
        for i in 0..32 {
            // xorshift: hash-like, evenly spread prefixes.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut hash = [0u8; 32];
            hash[..8].copy_from_slice(&x.to_le_bytes());
            let seq = (batch * 32 + i + 1) as u64;
            let entry = Entry {
                author: Author([1; 32]),
                seq,
                timestamp: seq,
                prev: None,
                value: 0,
                data: String::new(),
                signature: Signature([0; 64]),
            };
            index.insert(&entry, &Hash(hash), seq * 166);
        }
        worst = worst.max(start.elapsed());
    }
    worst.as_secs_f64() * 1000.0
}

fn main() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let entries = env_usize("KAPPALOG_BENCH_ENTRIES", 1_000_000);
    let appends = env_usize("KAPPALOG_BENCH_APPENDS", 40_000);
    println!(
        "kappalog store benchmark ({} cores)",
        rayon::current_num_threads()
    );

    for (kind, run) in [
        ("threads", concurrent_appends as fn(usize) -> (f64, f64)),
        ("async tasks", concurrent_appends_async),
    ] {
        let (rates, cpu): (Vec<f64>, Vec<f64>) = (0..RUNS).map(|_| run(appends)).unzip();
        report(
            &format!("own-feed durable appends/s, {APPENDERS} concurrent appenders ({kind})"),
            "appends/s",
            rates,
        );
        report(&format!("  CPU per append, both cores ({kind})"), "µs", cpu);
    }
    report(
        "sequential durable appends/s, one appender",
        "appends/s",
        (0..RUNS)
            .map(|_| sequential_appends(appends / 10))
            .collect(),
    );

    {
        let dir = tempfile::tempdir().unwrap();
        let (store, owner, _) =
            Store::open(dir.path(), Some(Identity::from_seed([1; 32])), None).unwrap();
        store.append_own(0, String::new()).wait().unwrap();
        let before = std::fs::metadata(dir.path().join("entries.log"))
            .unwrap()
            .len();
        store.append_own(1, String::new()).wait().unwrap();
        let after = std::fs::metadata(dir.path().join("entries.log"))
            .unwrap()
            .len();
        println!("bytes on disk per value-only entry: {}", after - before);
        owner.shutdown_blocking().unwrap();
    }
    report(
        &format!("longest index stall (one 32-insert batch) while growing to {entries} entries"),
        "ms",
        (0..RUNS).map(|_| index_growth(entries)).collect(),
    );

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
    let mut rebuild = vec![];
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
            5,
            "child said: {line} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        open.push(fields[0] * 1000.0);
        rss.push(fields[1]);
        verify.push(fields[2] * 1000.0);
        rebuild.push(fields[4]);
    }
    report(
        &format!("open (read-only, chain check) of {entries} entries"),
        "ms",
        open,
    );
    report("RSS growth of the open store per entry", "bytes", rss);
    report(
        &format!("summary rebuild over {entries} entries"),
        "entries/s",
        rebuild,
    );
    report(&format!("verify_all of {entries} entries"), "ms", verify);
}
