//! SQL index benchmark: the rebuild rate of the index from a log of N entries of 100 feeds
//! with JSON in `data`, next to `kappalog verify`'s rate on the same log (the house's
//! baseline for a full pass over the log), and the index's bytes on disk against the log's.
//! Prints figures, asserts nothing. `cargo bench --bench index`.
//!
//! `KAPPALOG_BENCH_INDEX_ENTRIES` sets N (default 200,000). Each rebuild and verify runs
//! three times (the real binary, `kappalog index rebuild` and `kappalog verify`, so each
//! run starts with the process's memory fresh); medians. Issue 21's targets: rebuild at
//! least 200,000 entries/s, the index at most 1.5x the log's bytes.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use kappalog::keys;

mod common;
use common::{env_usize, median};

const FEEDS: usize = 100;
const RUNS: usize = 3;

/// Runs the binary on `dir` with `args`; the seconds it took.
fn timed(dir: &Path, key: &Path, args: &[&str]) -> f64 {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_kappalog"))
        .arg("--data-dir")
        .arg(dir)
        .arg("--key")
        .arg(key)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run kappalog");
    let secs = start.elapsed().as_secs_f64();
    assert!(out.status.success(), "{args:?}: {out:?}");
    secs
}

/// The bytes of the files in `dir` (not recursing).
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn main() {
    let entries = env_usize("KAPPALOG_BENCH_INDEX_ENTRIES", 200_000);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let key = tmp.path().join("node.key");
    keys::generate_key_files(&key).unwrap();
    let start = Instant::now();
    common::build_store_with_data(&dir, entries, FEEDS, common::sensor_reading);
    let held = (entries / FEEDS) * FEEDS;
    println!(
        "log: {held} entries of {FEEDS} feeds with JSON data, built in {:.1} s",
        start.elapsed().as_secs_f64()
    );

    let mut rebuild = Vec::new();
    let mut verify = Vec::new();
    for _ in 0..RUNS {
        rebuild.push(held as f64 / timed(&dir, &key, &["index", "rebuild"]));
        verify.push(held as f64 / timed(&dir, &key, &["verify"]));
    }
    let log_bytes = std::fs::metadata(dir.join("entries.log")).unwrap().len();
    let index_bytes = dir_bytes(&dir.join("index"));
    println!(
        "index rebuild: {:.0} entries/s (runs {:?}); kappalog verify: {:.0} entries/s (runs {:?}); rebuild/verify {:.2}",
        median(rebuild.clone()),
        rebuild.iter().map(|r| r.round()).collect::<Vec<_>>(),
        median(verify.clone()),
        verify.iter().map(|r| r.round()).collect::<Vec<_>>(),
        median(rebuild) / median(verify)
    );
    println!(
        "on disk: log {log_bytes} bytes, index {index_bytes} bytes: {:.2}x the log",
        index_bytes as f64 / log_bytes as f64
    );
}
