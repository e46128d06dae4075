//! Sync benchmark (protocol v2: every session encrypted, feed sets reconciled by
//! fingerprinted ranges): prints figures, asserts nothing. `cargo bench --bench sync`.
//!
//! In-process nodes over loopback TCP, each figure the median of 3 runs:
//! - **replication**: node A holds `KAPPALOG_BENCH_SYNC_ENTRIES` entries (default 100,000,
//!   one foreign feed); a fresh node B dials A; time from B's sync start until B holds them
//!   all, as entries/s (over the encrypted channel, connection set-up included), and the CPU
//!   time per entry of both nodes;
//! - **memory**: resident memory of the process (both nodes) sampled during replication;
//!   the peak growth per replicated entry shows whether anything buffers the stream;
//! - **live latency**: with A and B connected, `KAPPALOG_BENCH_LIVE_APPENDS` (default 500)
//!   sequential own appends on A; each measured from the start of the append on A until B's
//!   store has committed it; p50 and p99;
//! - **encryption**: a `transport::establish` channel pair over an in-memory duplex pipe,
//!   `KAPPALOG_BENCH_TRANSPORT_MIB` MiB (default 256) of plaintext pushed through
//!   `SecureWriter::write_all` in 64 KiB writes while the other end reads: MB/s (10^6 bytes)
//!   and CPU per MB (both ends). Beside it, the share of a core that sealing costs at the
//!   replication rate: wire bytes per replicated entry (`Entries` frames, record prefixes
//!   and tags, computed from the entries' encoding) x entries/s / MB/s;
//! - **join**: node A holds `KAPPALOG_BENCH_JOIN_FEEDS` feeds (default 100,000) of
//!   `KAPPALOG_BENCH_JOIN_ENTRIES` entries each (default 10), every feed its own author (the
//!   store file is written directly, not synced); a fresh node B dials A; time from B's sync
//!   start until B holds every entry, as seconds, entries/s and feeds/s, and the CPU time per
//!   entry of both nodes (set beside replication's, it shows what the per-feed work costs,
//!   and the cores busy show whether the join waits rather than computes). A dialed peer is
//!   trusted, so no new-feed budget holds any feed back;
//! - **in-sync reconnect**: after each join, A and B are reopened over their stores (now
//!   the same feeds) and B dials A through a relay in the benchmark that counts bytes: the
//!   bytes both ways until both ends' `GET /peers` records show the session connected with
//!   lag 0 and a completed sync (target: at most 64 KiB), and the time from B's
//!   `sync::start` until B's record shows it (target: at most 1 s; read from the record's
//!   `last_sync` stamp, so the 100 ms polling does not round it). Printed beside them: the
//!   cost of one `GET /peers` at that size, and the pure steps of the exchange timed alone
//!   (feed map and items, `Reconciler::new`, the reconciliation rounds in memory, the
//!   progress merge, `plan::plan`) to show where the time goes.
//!
//! `KAPPALOG_BENCH_SYNC_ENTRIES=1000000` replicates a million entries (signing them first
//! takes ~25 s). A join that has not finished after 15 minutes, or a reconnect after 2, is
//! reported as incomplete instead of timed.

use std::time::{Duration, Instant};

use kappalog::entry::{Entry, UnsignedEntry};
use kappalog::hash::Hash;
use kappalog::identity::Identity;
use kappalog::node::{Node, NodeEvent};
use kappalog::sync::{self, SyncConfig, SyncHandle};
use tokio::net::TcpListener;

mod common;
#[path = "sync/many_feeds.rs"]
mod many_feeds;
#[path = "sync/relay.rs"]
mod relay;
#[path = "sync/transport.rs"]
mod transport;
use common::{build_store_of_authors, cpu_seconds, env_usize, median, rss_bytes};

const RUNS: usize = 3;
/// How long replication may take before the benchmark gives up on it (a million entries
/// take ~17 s at the target rate).
const REPLICATION_DEADLINE: Duration = Duration::from_secs(600);

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

/// Starts a node's sync. Every node of the benchmark trusts the others (`--trust-peer`): B
/// dials A, so at A B would be a stranger whose source's send budget (4 MiB/s after
/// 32 MiB) would cap what A sends it; these figures are the replication pipeline's.
async fn start(node: &Node, peers: Vec<String>) -> SyncHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = SyncConfig::default();
    // Seeds 1 and 2: A and B here and in `many_feeds`.
    config.policy.trusted = [1u8, 2]
        .into_iter()
        .map(|seed| Identity::from_seed([seed; 32]).author())
        .collect();
    sync::start(node, config, Some(listener), peers).unwrap()
}

async fn stop(node: Node, sync: SyncHandle) {
    drop(sync);
    node.shutdown().await.unwrap();
}

/// Entries/s, the resident memory growth (peak during the sync minus before it) in bytes per
/// replicated entry, and the CPU µs per entry (both nodes).
async fn replication(entries: &[Entry]) -> (f64, f64, f64) {
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
    let cpu = cpu_seconds();
    let began = Instant::now();
    let sb = start(&b, vec![sa.local_addr().unwrap().to_string()]).await;
    while b.reader().len() < target {
        assert!(
            began.elapsed() < REPLICATION_DEADLINE,
            "replication stalled: B holds {} of {target} entries after {REPLICATION_DEADLINE:?}",
            b.reader().len()
        );
        rss_peak = rss_peak.max(rss_bytes());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let secs = began.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    stop(b, sb).await;
    stop(a, sa).await;
    let growth = rss_peak.saturating_sub(rss_before) as f64 / target as f64;
    (target as f64 / secs, growth, cpu * 1e6 / target as f64)
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
    let transport_mib = env_usize("KAPPALOG_BENCH_TRANSPORT_MIB", 256);
    let join_feeds = env_usize("KAPPALOG_BENCH_JOIN_FEEDS", 100_000);
    let join_entries = env_usize("KAPPALOG_BENCH_JOIN_ENTRIES", 10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    eprintln!("signing {n} entries...");
    let entries = feed(n);
    let mut rates = Vec::new();
    let mut cpus = Vec::new();
    let mut growths = Vec::new();
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    for run in 1..=RUNS {
        let (rate, growth, cpu) = runtime.block_on(replication(&entries));
        let (p50, p99) = runtime.block_on(live_latency(appends));
        eprintln!(
            "run {run}: replication {rate:.0} entries/s, {cpu:.1} µs CPU per entry, RSS growth {growth:.1} B/entry, live p50 {p50:.2} ms, p99 {p99:.2} ms"
        );
        rates.push(rate);
        cpus.push(cpu);
        growths.push(growth);
        p50s.push(p50);
        p99s.push(p99);
    }
    let rate = median(rates);
    println!(
        "sync replication of {n} entries over loopback: {rate:.0} entries/s, {:.1} µs CPU per entry for both nodes (medians of {RUNS})",
        median(cpus)
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
    encryption(&runtime, transport_mib, &entries, rate);
    drop(entries);
    join_and_reconnect(&runtime, join_feeds, join_entries);
}

/// The encryption figures; `rate` is the measured replication rate of `entries`.
fn encryption(runtime: &tokio::runtime::Runtime, mib: usize, entries: &[Entry], rate: f64) {
    let mut throughputs = Vec::new();
    let mut cpus = Vec::new();
    for run in 1..=RUNS {
        let (mb_per_s, cpu_per_mb) = runtime.block_on(transport::throughput(mib << 20));
        eprintln!(
            "run {run}: encrypted channel {mb_per_s:.0} MB/s, {:.2} ms CPU per MB",
            cpu_per_mb * 1000.0
        );
        throughputs.push(mb_per_s);
        cpus.push(cpu_per_mb);
    }
    let (mb_per_s, cpu_per_mb) = (median(throughputs), median(cpus));
    let per_entry = transport::wire_bytes_per_entry(entries);
    let wire_mb_per_s = per_entry * rate / 1e6;
    println!(
        "encrypted channel alone (ChaCha20-Poly1305 records over an in-memory pipe, {} KiB writes, {mib} MiB): {mb_per_s:.0} MB/s, {:.2} ms CPU per MB for both ends (medians of {RUNS})",
        transport::WRITE_BYTES / 1024,
        cpu_per_mb * 1000.0
    );
    println!(
        "encryption at the replication rate: {per_entry:.1} wire bytes per entry x {rate:.0} entries/s = {wire_mb_per_s:.1} MB/s, {:.1}% of a core per end at the channel's rate ({:.1}% of a core for both ends together by CPU time)",
        wire_mb_per_s / mb_per_s * 100.0,
        wire_mb_per_s * cpu_per_mb * 100.0
    );
}

fn join_and_reconnect(runtime: &tokio::runtime::Runtime, feeds: usize, per_feed: usize) {
    let total = feeds as u64 * per_feed as u64;
    let a_dir = tempfile::tempdir().unwrap();
    eprintln!("writing a store of {feeds} feeds x {per_feed} entries, one author each...");
    let began = Instant::now();
    build_store_of_authors(a_dir.path(), feeds, per_feed);
    eprintln!("written in {:.1} s", began.elapsed().as_secs_f64());
    let mut joins = Vec::new();
    let mut reconnects = Vec::new();
    let mut costs = Vec::new();
    for run in 1..=RUNS {
        let b_dir = tempfile::tempdir().unwrap();
        let join = match runtime.block_on(many_feeds::join(a_dir.path(), b_dir.path(), total)) {
            Ok(join) => join,
            Err(held) => {
                eprintln!("run {run}: join incomplete: B holds {held} of {total} entries");
                continue;
            }
        };
        eprintln!(
            "run {run}: join {:.2} s, {:.0} entries/s, {:.0} feeds/s, {:.1} µs CPU per entry ({:.2} cores busy)",
            join.secs,
            total as f64 / join.secs,
            feeds as f64 / join.secs,
            join.cpu_secs * 1e6 / total as f64,
            join.cpu_secs / join.secs
        );
        joins.push(join);
        match runtime.block_on(many_feeds::reconnect(a_dir.path(), b_dir.path())) {
            Some(r) => {
                eprintln!(
                    "run {run}: in-sync reconnect {} bytes ({} out, {} back), live after {} ms; one GET /peers {:.1} ms",
                    r.bytes_out + r.bytes_back,
                    r.bytes_out,
                    r.bytes_back,
                    r.ms,
                    r.peers_call_ms
                );
                reconnects.push(r);
            }
            None => eprintln!("run {run}: in-sync reconnect not live by the deadline"),
        }
        let dir = b_dir.path().to_owned();
        let c = runtime
            .block_on(runtime.spawn_blocking(move || many_feeds::exchange_costs(&dir)))
            .unwrap();
        eprintln!(
            "run {run}: feeds and items {:.0} ms, Reconciler::new {:.0} ms, rounds {:.0} ms, progress merge {:.0} ms, plan {:.0} ms",
            c.items_ms, c.reconciler_new_ms, c.rounds_ms, c.merge_ms, c.plan_ms
        );
        costs.push(c);
    }
    if !joins.is_empty() {
        let secs = median(joins.iter().map(|j| j.secs).collect());
        let cpu = median(joins.iter().map(|j| j.cpu_secs).collect());
        println!(
            "join: a fresh node fetching {feeds} feeds x {per_feed} entries (one author each): {secs:.2} s, {:.0} entries/s, {:.0} feeds/s, {:.1} µs CPU per entry for both nodes (medians of {})",
            total as f64 / secs,
            feeds as f64 / secs,
            cpu * 1e6 / total as f64,
            joins.len()
        );
    }
    if !reconnects.is_empty() {
        let runs = reconnects.len();
        let bytes = median(
            reconnects
                .iter()
                .map(|r| (r.bytes_out + r.bytes_back) as f64)
                .collect(),
        );
        let out = median(reconnects.iter().map(|r| r.bytes_out as f64).collect());
        let back = median(reconnects.iter().map(|r| r.bytes_back as f64).collect());
        let ms = median(reconnects.iter().map(|r| r.ms as f64).collect());
        let peers_ms = median(reconnects.iter().map(|r| r.peers_call_ms).collect());
        println!(
            "in-sync reconnect at {feeds} feeds: {bytes:.0} bytes in both directions until live with lag 0 (dialer {out:.0}, listener {back:.0}; target <= 65,536); {ms:.0} ms from sync start to connected, lag 0, synced (target <= 1,000 ms) (medians of {runs})"
        );
        println!("one GET /peers at {feeds} feeds: {peers_ms:.1} ms (median of {runs})");
    }
    if !costs.is_empty() {
        let runs = costs.len();
        let m = |f: fn(&many_feeds::ExchangeCosts) -> f64| median(costs.iter().map(f).collect());
        println!(
            "in-sync exchange steps alone at {feeds} feeds, one core: per side feed map and items {:.0} ms, Reconciler::new {:.0} ms, progress merge {:.0} ms, plan {:.0} ms; the reconciliation rounds of both sides {:.0} ms (medians of {runs})",
            m(|c| c.items_ms),
            m(|c| c.reconciler_new_ms),
            m(|c| c.merge_ms),
            m(|c| c.plan_ms),
            m(|c| c.rounds_ms)
        );
    }
}
