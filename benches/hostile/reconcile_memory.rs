//! Scenario 4: what strangers claiming huge feed sets cost the node in memory. The node holds
//! a few feeds (built with `kappalog import`); several stranger sessions at once each
//! reconcile claiming 1,048,576 made-up feeds, answering the node's rounds honestly. The
//! node's `VmRSS` is sampled every 50 ms: idle, at its peak (and `VmHWM`), and 3 s after every
//! session closed. Beside them, one session of a trusted key (`--trust-peer`) claims as much:
//! whether it still reconciles while the strangers spend their budget.
//!
//! Every session states the same items to the same node, so every session's exchange is the
//! same: it is rehearsed once in memory, between a [`Reconciler`] over the claimed items and
//! one over the node's items, and the frames of our side are encoded once and shared. Each
//! live session sends them and checks that the node answers each round as rehearsed. This
//! keeps the benchmark's own memory and CPU (one reconciler over a million items costs
//! ~100 MB) out of the node's way.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kappalog::sync::error::SessionError;
use kappalog::sync::frame::encode_frame;
use kappalog::sync::message::{FeedHave, Message};
use kappalog::sync::reconcile::{Reconcile, Reconciler, Step};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{timeout_at, Instant};

use crate::common::env_usize;
use crate::common::node_process::{self, NodeProcess, RssSampler};
use crate::common::peer::RawPeer;
use crate::fixtures::{identity, synthetic_items, write_feeds_csv, STRANGER, TRUSTED};
use crate::{mb, Table};

const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// The longest the sessions may take to reconcile, all of them.
const RECONCILE_DEADLINE: Duration = Duration::from_secs(180);
/// Sessions stay open this long after the last one reconciled (the node plans meanwhile).
const HOLD_AFTER: Duration = Duration::from_secs(2);
/// When the resident memory is read again after the sessions closed.
const AFTER_CLOSE: Duration = Duration::from_secs(3);

/// One rehearsed exchange: our rounds (encoded frames) and the node's answers.
struct Script {
    ours: Vec<Vec<u8>>,
    theirs: Vec<Vec<Reconcile>>,
}

pub async fn reconcile_memory(table: &mut Table) {
    let counts: Vec<usize> = std::env::var("KAPPALOG_BENCH_HOSTILE_SESSIONS")
        .unwrap_or_else(|_| "8".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let feeds = env_usize("KAPPALOG_BENCH_HOSTILE_FEEDS", 100) as u64;
    let claimed = env_usize("KAPPALOG_BENCH_HOSTILE_CLAIMED", 1 << 20) as u64;
    let work = tempfile::tempdir().expect("a temp dir");
    let csv = work.path().join("feeds.csv");
    let held = write_feeds_csv(&csv, feeds);
    let script = tokio::task::spawn_blocking(move || rehearse(synthetic_items(claimed), held))
        .await
        .expect("the rehearsal");
    let script = Arc::new(script);
    let scenario = "reconcile_memory";
    table.row(
        scenario,
        format!("claim per session: {claimed} feeds"),
        format!(
            "{} rounds each way, {} sent per session",
            script.ours.len(),
            mb(script.ours.iter().map(|r| r.len() as u64).sum())
        ),
    );
    for (run, &count) in counts.iter().enumerate() {
        let dir = work.path().join(format!("v{run}"));
        node_process::import(&dir, &csv);
        let args = [
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--trust-peer".to_owned(),
            identity(TRUSTED, 0).author().to_string(),
        ];
        let node = NodeProcess::start(&dir, &args);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = node.rss_bytes();
        let sampler = RssSampler::start(node.pid(), SAMPLE_EVERY);
        let with_trusted = env_usize("KAPPALOG_BENCH_HOSTILE_TRUSTED", 1) != 0;
        let trusted = {
            let (script, addr) = (script.clone(), node.sync.expect("the node listens"));
            tokio::spawn(async move {
                if !with_trusted {
                    return false;
                }
                let deadline = Instant::now() + RECONCILE_DEADLINE;
                let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
                let key = identity(TRUSTED, 0);
                claim_as(local, addr, &key, &script, deadline).await.is_ok()
            })
        };
        let (reconciled, failed, took, trusted) =
            claim_at_once(&node, count, script.clone(), trusted).await;
        let after = node.rss_bytes();
        let peak = sampler.finish();
        let hwm = node.hwm_bytes();
        node.stop();
        let prefix = format!("{count} sessions:");
        table.row(
            scenario,
            format!("{prefix} reconciled / failed"),
            format!("{reconciled} / {failed} (all in after {took:.1} s)"),
        );
        table.row(
            scenario,
            format!("{prefix} RSS idle / peak / VmHWM"),
            format!("{} / {} / {}", mb(idle), mb(peak), mb(hwm)),
        );
        table.row(
            scenario,
            format!("{prefix} RSS 3 s after all closed"),
            mb(after),
        );
        table.row(
            scenario,
            format!("{prefix} a trusted key claiming as much meanwhile"),
            match (with_trusted, trusted) {
                (false, _) => "not run (KAPPALOG_BENCH_HOSTILE_TRUSTED=0)",
                (true, true) => "reconciled",
                (true, false) => "failed",
            }
            .to_owned(),
        );
    }
}

/// Runs the exchange between us (claiming `claimed`) and a node holding `held`, in memory.
fn rehearse(claimed: Vec<FeedHave>, held: Vec<FeedHave>) -> Script {
    let mut us = Reconciler::new(claimed);
    let mut node = Reconciler::new(held);
    let mut ours = vec![us.initiate()];
    let mut theirs = Vec::new();
    let answer = |side: &mut Reconciler, frames: &[Reconcile]| {
        let mut step = None;
        for frame in frames {
            step = side.receive(frame.clone()).expect("an honest exchange");
        }
        step.expect("a round ends with its last frame")
    };
    // Each side answers the other's last round until one of them sent or received the
    // all-`Skip` round that ends the exchange.
    while let Step::Reply(reply) = answer(&mut node, ours.last().expect("a round")) {
        theirs.push(reply);
        if node.is_done() {
            break;
        }
        let Step::Reply(reply) = answer(&mut us, theirs.last().expect("a round")) else {
            break;
        };
        ours.push(reply);
        if us.is_done() {
            break;
        }
    }
    let ours = ours
        .iter()
        .map(|round| {
            round
                .iter()
                .flat_map(|f| encode_frame(&Message::Reconcile(f.clone())).expect("encodes"))
                .collect()
        })
        .collect();
    Script { ours, theirs }
}

/// `count` sessions at once, each from its own loopback address; once all have reconciled
/// (or failed) they are held [`HOLD_AFTER`], then closed together, and the call returns
/// [`AFTER_CLOSE`] after they and the `trusted` session (which closes once it reconciled)
/// are gone, on the node's side too (`GET /peers` shows none connected, and its CPU is idle). Returns (reconciled, failed, seconds until all were in, whether the trusted
/// session reconciled).
async fn claim_at_once(
    node: &NodeProcess,
    count: usize,
    script: Arc<Script>,
    trusted: tokio::task::JoinHandle<bool>,
) -> (u64, u64, f64, bool) {
    let started = Instant::now();
    let addr = node.sync.expect("the node listens for peers");
    let reconciled = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let (close, closed) = watch::channel(false);
    let deadline = Instant::now() + RECONCILE_DEADLINE;
    let mut sessions = JoinSet::new();
    for i in 0..count {
        let (script, reconciled, failed) = (script.clone(), reconciled.clone(), failed.clone());
        let mut closed = closed.clone();
        // 127.0.1.1, 127.0.1.2, ...: one address per session, below the per-address limit.
        let octets = u16::try_from(i + 1).unwrap_or(u16::MAX).to_be_bytes();
        let source = IpAddr::V4(Ipv4Addr::new(127, 1, octets[0], octets[1]));
        sessions.spawn(async move {
            let outcome = claim(source, addr, i as u64, &script, deadline).await;
            let Ok(mut peer) = outcome else {
                failed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            reconciled.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                _ = closed.wait_for(|c| *c) => {}
                _ = peer.read_until_closed(deadline) => {}
            }
        });
    }
    let all_in = || reconciled.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed);
    while all_in() < count as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed().as_secs_f64();
    tokio::time::sleep(HOLD_AFTER).await;
    let _ = close.send(true);
    sessions.shutdown().await;
    let trusted = trusted.await.unwrap_or(false);
    // Until the node has ended every session on its side too (a session that stated a
    // million feeds may still be planning when its peer closes).
    let until = Instant::now() + RECONCILE_DEADLINE;
    while node.connected_peers().await != Some(0) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...and has finished what they started (a plan over their feeds runs to its end on a
    // blocking thread): its CPU clock stands still for a second.
    let mut cpu = node.cpu_seconds();
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = node.cpu_seconds();
        if now - cpu < 0.05 {
            break;
        }
        cpu = now;
    }
    tokio::time::sleep(AFTER_CLOSE).await;
    (
        reconciled.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        took,
        trusted,
    )
}

/// One session playing `script`; the peer, still open, once reconciliation is done.
async fn claim(
    source: IpAddr,
    addr: SocketAddr,
    n: u64,
    script: &Script,
    deadline: Instant,
) -> Result<RawPeer, SessionError> {
    claim_as(source, addr, &identity(STRANGER, n), script, deadline).await
}

/// [`claim`] with the key `key`.
async fn claim_as(
    source: IpAddr,
    addr: SocketAddr,
    key: &kappalog::identity::Identity,
    script: &Script,
    deadline: Instant,
) -> Result<RawPeer, SessionError> {
    let mut peer = RawPeer::dial_from(source, addr, key).await?;
    for (round, frames) in script.ours.iter().enumerate() {
        peer.send_encoded(frames).await?;
        let Some(expected) = script.theirs.get(round) else {
            break;
        };
        let mut got = Vec::new();
        while got.last().is_none_or(|f: &Reconcile| !f.last) {
            let message = timeout_at(deadline, peer.reader.next())
                .await
                .map_err(|_| SessionError::Timeout {
                    what: "reconciling feed sets",
                })??;
            match message {
                Message::Reconcile(frame) => got.push(frame),
                Message::Bye(bye) => return Err(SessionError::PeerBye(bye.reason)),
                _ => {}
            }
        }
        if &got != expected {
            return Err(SessionError::OutOfOrder {
                got: "a reconcile round other than rehearsed",
                when: "reconciling feed sets",
            });
        }
    }
    Ok(peer)
}
