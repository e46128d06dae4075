//! Sync benchmark: prints figures, asserts nothing. `cargo bench --bench sync`.
//!
//! Two in-process nodes over loopback TCP:
//! - **replication**: node A holds `KAPPALOG_BENCH_SYNC_ENTRIES` entries (default 100,000,
//!   one foreign feed); a fresh node B dials A; time from B's start until B holds them all,
//!   as entries/s;
//! - **live latency**: with A and B connected, `KAPPALOG_BENCH_LIVE_APPENDS` (default 500)
//!   sequential own appends on A; each measured from the start of the append on A until B's
//!   store has committed it; p50 and p99.
//!
//! - **memory**: resident memory of the process (both nodes) sampled during replication;
//!   the peak growth per replicated entry shows whether anything buffers the stream.
//!
//! Each figure is the median of 3 runs.

use std::time::{Duration, Instant};

use kappalog::entry::{Entry, UnsignedEntry};
use kappalog::hash::Hash;
use kappalog::identity::Identity;
use kappalog::node::{Node, NodeEvent};
use kappalog::sync::{self, SyncConfig, SyncHandle};
use tokio::net::TcpListener;

mod common;
use common::{env_usize, median, rss_bytes};

const RUNS: usize = 3;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// A valid feed of `n` entries, signed in parallel.
fn feed(n: usize) -> Vec<Entry> {
    let id = Identity::from_seed([200; 32]);
    // Each entry links to the previous hash, so the chain is signed in order.
    let mut out: Vec<(Entry, Hash)> = Vec::with_capacity(n);
    for seq in 1..=n as u64 {
        let prev = out.last().map(|(_, h)| *h);
        out.push(
            UnsignedEntry {
                author: id.author(),
                seq,
                timestamp: 1_700_000_000_000 + seq,
                prev,
                value: seq as i64,
                data: format!("bench entry {seq}"),
            }
            .sign(&id),
        );
    }
    out.into_iter().map(|(e, _)| e).collect()
}

async fn start(node: &Node, peers: Vec<String>) -> SyncHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    sync::start(node, SyncConfig::default(), Some(listener), peers).unwrap()
}

async fn stop(node: Node, sync: SyncHandle) {
    sync.shutdown().await;
    drop(sync);
    tokio::task::spawn_blocking(move || node.close().unwrap())
        .await
        .unwrap();
}

/// Entries/s, and the resident memory growth (peak during the sync minus before it) in
/// bytes per replicated entry.
async fn replication(entries: &[Entry]) -> (f64, f64) {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, _) = Node::open_with_identity(da.path(), Identity::from_seed([1; 32])).unwrap();
    for chunk in entries.chunks(4096) {
        a.offer_entries(chunk.to_vec()).await.unwrap();
    }
    let sa = start(&a, vec![]).await;
    let (b, _) = Node::open_with_identity(db.path(), Identity::from_seed([2; 32])).unwrap();
    let target = entries.len() as u64;
    let rss_before = rss_bytes();
    let mut rss_peak = rss_before;
    let began = Instant::now();
    let sb = start(&b, vec![sa.local_addr().unwrap().to_string()]).await;
    while b.reader().len() < target {
        rss_peak = rss_peak.max(rss_bytes());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let secs = began.elapsed().as_secs_f64();
    stop(b, sb).await;
    stop(a, sa).await;
    let growth = rss_peak.saturating_sub(rss_before) as f64 / target as f64;
    (target as f64 / secs, growth)
}

async fn live_latency(appends: usize) -> (f64, f64) {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, _) = Node::open_with_identity(da.path(), Identity::from_seed([1; 32])).unwrap();
    let sa = start(&a, vec![]).await;
    let (b, _) = Node::open_with_identity(db.path(), Identity::from_seed([2; 32])).unwrap();
    let sb = start(&b, vec![sa.local_addr().unwrap().to_string()]).await;
    while !sb
        .peers(&b)
        .iter()
        .any(|p| p.connected && p.last_sync.is_some())
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut events = b.subscribe();
    let mut samples = Vec::with_capacity(appends);
    for i in 0..appends {
        let began = Instant::now();
        let added = a.append(i as i64, String::new()).await.unwrap();
        'wait: loop {
            match events.recv().await {
                Ok(NodeEvent::Committed(batch)) => {
                    if batch.iter().any(|(_, h)| *h == added.hash) {
                        break 'wait;
                    }
                }
                Ok(NodeEvent::Proof(_)) => {}
                Err(e) => panic!("event stream failed: {e}"),
            }
        }
        samples.push(began.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(|x, y| x.total_cmp(y));
    stop(b, sb).await;
    stop(a, sa).await;
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

fn main() {
    let n = env_usize("KAPPALOG_BENCH_SYNC_ENTRIES", 100_000);
    let appends = env_usize("KAPPALOG_BENCH_LIVE_APPENDS", 500);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    eprintln!("signing {n} entries...");
    let entries = feed(n);
    let mut rates = Vec::new();
    let mut growths = Vec::new();
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    for run in 1..=RUNS {
        let (rate, growth) = runtime.block_on(replication(&entries));
        let (p50, p99) = runtime.block_on(live_latency(appends));
        eprintln!(
            "run {run}: replication {rate:.0} entries/s, RSS growth {growth:.1} B/entry, live p50 {p50:.2} ms, p99 {p99:.2} ms"
        );
        rates.push(rate);
        growths.push(growth);
        p50s.push(p50);
        p99s.push(p99);
    }
    println!(
        "sync replication of {n} entries over loopback: {:.0} entries/s (median of {RUNS})",
        median(rates)
    );
    println!(
        "resident memory of both nodes during sync: peak growth {:.1} bytes per replicated entry (the receiver's index holds ~60 B/entry; anything far above that would be buffering)",
        median(growths)
    );
    println!(
        "live propagation latency, {appends} appends: p50 {:.2} ms, p99 {:.2} ms (medians of {RUNS})",
        median(p50s),
        median(p99s)
    );
}
