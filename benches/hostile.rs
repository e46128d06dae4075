//! Hostile peers benchmark: what sync peers that do not play fair can do to a node. Prints
//! figures, asserts nothing. `cargo bench --bench hostile`.
//!
//! The node under test is the real `kappalog` binary in its own process (its memory and CPU
//! are read from `/proc`, its log from the file its output goes to); the attackers run in
//! this process and speak the real protocol through the library's own transport, handshake
//! and reconciler. Loopback only. Scenarios (select with
//! `KAPPALOG_BENCH_HOSTILE=name1,name2`, default all):
//!
//! - `claim_fresh_keys`: the node dials an address of ours; every dial is answered by a
//!   fresh key claiming the node's own feed is 1,000 entries longer, delivering nothing,
//!   while `POST /add` runs at `KAPPALOG_BENCH_HOSTILE_ADD_RATE`/s (default 10) for
//!   `KAPPALOG_BENCH_HOSTILE_ADD_SECS` (default 45): adds refused (503) of all;
//! - `claim_close_early`: the same with one key, each session closed 4.5 s after its claim
//!   (before the 5 s claim delivery deadline); then again with an honest second configured
//!   peer (a second `kappalog run`), reported as `claim_close_early+honest`;
//! - `fresh_keys_one_address`: a node with `--new-feeds-per-hour 10`; sessions from one
//!   address, a fresh key each (`KAPPALOG_BENCH_HOSTILE_KEYS`, default 2,000, within
//!   `KAPPALOG_BENCH_HOSTILE_KEYS_SECS`, default 20), each offering one new feed: the feeds
//!   the node holds afterwards;
//! - `reconcile_memory`: a node holding `KAPPALOG_BENCH_HOSTILE_FEEDS` feeds (default 100);
//!   `KAPPALOG_BENCH_HOSTILE_SESSIONS` stranger sessions at once (a list, default `8`), each
//!   claiming `KAPPALOG_BENCH_HOSTILE_CLAIMED` feeds (default 1,048,576): the node's resident
//!   memory idle, at its peak and 3 s after the sessions closed;
//! - `amplification`: a node holding `KAPPALOG_BENCH_HOSTILE_AMP_FEEDS` feeds (default
//!   20,000); a stranger claiming nothing: bytes each way and the node's CPU, for one
//!   session and for 10 started within 1 s;
//! - `log_churn`: complete stranger sessions (handshake, empty reconciliation, close) for
//!   `KAPPALOG_BENCH_HOSTILE_CHURN_SECS` (default 10): sessions/s and log bytes per session.
//!
//! With the defaults the whole run takes about 5 minutes.

use std::time::Duration;

#[path = "hostile/amplification.rs"]
mod amplification;
#[path = "hostile/claims.rs"]
mod claims;
mod common;
#[path = "hostile/fixtures.rs"]
mod fixtures;
#[path = "hostile/fresh_keys.rs"]
mod fresh_keys;
#[path = "hostile/log_churn.rs"]
mod log_churn;
#[path = "hostile/reconcile_memory.rs"]
mod reconcile_memory;

/// Printed figures: scenario, figure, value.
#[derive(Default)]
pub struct Table {
    rows: Vec<(String, String, String)>,
}

impl Table {
    /// Adds a row and prints it at once (a long run shows progress).
    pub fn row(&mut self, scenario: &str, figure: impl Into<String>, value: impl Into<String>) {
        let row = (scenario.to_owned(), figure.into(), value.into());
        println!("  {:<24} {:<52} {}", row.0, row.1, row.2);
        self.rows.push(row);
    }

    fn print(&self) {
        let w0 = self.rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let w1 = self.rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
        println!("| {:<w0$} | {:<w1$} | value", "scenario", "figure");
        println!("|-{}-|-{}-|------", "-".repeat(w0), "-".repeat(w1));
        for (scenario, figure, value) in &self.rows {
            println!("| {scenario:<w0$} | {figure:<w1$} | {value}");
        }
    }
}

/// A duration in whole seconds from the environment.
pub fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(common::env_usize(name, default as usize) as u64)
}

/// Bytes as MB (10^6), one decimal.
pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// `part / whole (percent)`.
pub fn share(part: u64, whole: u64) -> String {
    let percent = if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    };
    format!("{part} / {whole} ({percent:.1}%)")
}

const SCENARIOS: [&str; 6] = [
    "claim_fresh_keys",
    "claim_close_early",
    "fresh_keys_one_address",
    "reconcile_memory",
    "amplification",
    "log_churn",
];

fn print_environment() {
    let run = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    println!("hostile peers benchmark");
    println!(
        "  date        {}",
        run("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"])
    );
    println!(
        "  commit      {}",
        run("git", &["log", "-1", "--format=%h %<(60,trunc)%s"])
    );
    println!("  nproc       {cores}");
    println!("  load avg    {} (1, 5, 15 min)", load.join(" "));
}

fn main() {
    print_environment();
    let chosen: Vec<String> = match std::env::var("KAPPALOG_BENCH_HOSTILE") {
        Ok(list) if !list.trim().is_empty() => {
            list.split(',').map(|s| s.trim().to_owned()).collect()
        }
        _ => SCENARIOS.iter().map(|s| s.to_string()).collect(),
    };
    if let Some(unknown) = chosen.iter().find(|c| !SCENARIOS.contains(&c.as_str())) {
        eprintln!(
            "unknown scenario {unknown:?}; known: {}",
            SCENARIOS.join(", ")
        );
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut table = Table::default();
    for name in SCENARIOS.iter().filter(|s| chosen.iter().any(|c| c == *s)) {
        println!("{name}:");
        let started = std::time::Instant::now();
        runtime.block_on(async {
            match *name {
                "claim_fresh_keys" => claims::claim_fresh_keys(&mut table).await,
                "claim_close_early" => claims::claim_close_early(&mut table).await,
                "fresh_keys_one_address" => fresh_keys::fresh_keys_one_address(&mut table).await,
                "reconcile_memory" => reconcile_memory::reconcile_memory(&mut table).await,
                "amplification" => amplification::amplification(&mut table).await,
                _ => log_churn::log_churn(&mut table).await,
            }
        });
        println!("  ({name} took {:.0} s)", started.elapsed().as_secs_f64());
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("\nload avg at the end: {}", load.trim());
    table.print();
}
