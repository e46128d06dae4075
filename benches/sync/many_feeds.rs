//! A node holding many feeds, each its own author: a fresh node joining it, then the two
//! reconnecting once they hold the same feeds, with what that reconnect costs on the wire
//! and in time, and the pure steps of the exchange timed alone to show where the time goes.

use std::path::Path;
use std::time::{Duration, Instant};

use kappalog::clock::now_ms;
use kappalog::identity::Identity;
use kappalog::node::Node;
use kappalog::sync::plan::{self, FeedState, Feeds, PeerProgress};
use kappalog::sync::reconcile::{Reconciler, Step};
use kappalog::sync::{PeerInfo, SyncHandle};

use crate::common::cpu_seconds;
use crate::relay::Relay;
use crate::{start, stop};

/// Seeds of the two nodes' own keys (their own feeds stay empty).
const SEED_A: [u8; 32] = [1; 32];
const SEED_B: [u8; 32] = [2; 32];
/// How long a join may take before the run is reported incomplete (1M entries at the
/// ~60,000 entries/s of single-feed replication take ~17 s).
const JOIN_DEADLINE: Duration = Duration::from_secs(900);
/// How long an in-sync reconnect may take before the run is reported incomplete.
const RECONNECT_DEADLINE: Duration = Duration::from_secs(120);
/// Between two polls of the joining node's entry count (a cheap read of one counter).
const LEN_POLL: Duration = Duration::from_millis(5);
/// Between two polls of `GET /peers`. Each poll sums the lag over every feed, ~25 ms of CPU
/// at 100,000 feeds (printed beside the figures): polled every few milliseconds it would
/// take most of a core from the exchange it times. The time itself does not depend on the
/// interval (see [`reconnect`]).
const PEERS_POLL: Duration = Duration::from_millis(100);

pub async fn open(dir: &Path, seed: [u8; 32]) -> Node {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        Node::open_with_identity(&dir, Identity::from_seed(seed))
            .unwrap()
            .0
    })
    .await
    .unwrap()
}

/// A completed join.
pub struct Join {
    /// From B's sync start until B holds every entry.
    pub secs: f64,
    /// CPU time of the process (both nodes, all threads) over the same span.
    pub cpu_secs: f64,
}

/// A fresh node (its store in `b_dir`, empty) dials the node whose store is `a_dir` and
/// fetches its `entries` entries; `Err(held)` at the deadline.
pub async fn join(a_dir: &Path, b_dir: &Path, entries: u64) -> Result<Join, u64> {
    let a = open(a_dir, SEED_A).await;
    let sa = start(&a, vec![]).await;
    let b = open(b_dir, SEED_B).await;
    let cpu = cpu_seconds();
    let began = Instant::now();
    let sb = start(&b, vec![sa.local_addr().unwrap().to_string()]).await;
    let mut held = b.reader().len();
    while held < entries && began.elapsed() < JOIN_DEADLINE {
        tokio::time::sleep(LEN_POLL).await;
        held = b.reader().len();
    }
    let secs = began.elapsed().as_secs_f64();
    let cpu_secs = cpu_seconds() - cpu;
    stop(b, sb).await;
    stop(a, sa).await;
    if held < entries {
        Err(held)
    } else {
        Ok(Join { secs, cpu_secs })
    }
}

/// One in-sync reconnect.
pub struct Reconnect {
    /// From B's `sync::start` until B's record of A is connected, lag 0, synced.
    pub ms: u64,
    /// Bytes B sent to A and A sent to B until both records show the session live.
    pub bytes_out: u64,
    pub bytes_back: u64,
    /// One `SyncHandle::peers` call on B (what `GET /peers` costs) while live.
    pub peers_call_ms: f64,
}

/// Nodes over `a_dir` and `b_dir`, which hold the same feeds, connect through a counting
/// relay; `None` if the session is not live by the deadline.
///
/// The time is read from B's record rather than from when a poll saw it: `last_sync` (Unix
/// ms) is stamped when the exchange completes, after the peer's feeds were merged into its
/// progress (lag 0 from then on) and while connected, so it is the moment all three first
/// hold, to the millisecond, however seldom the benchmark polls.
pub async fn reconnect(a_dir: &Path, b_dir: &Path) -> Option<Reconnect> {
    let a = open(a_dir, SEED_A).await;
    let b = open(b_dir, SEED_B).await;
    let sa = start(&a, vec![]).await;
    let relay = Relay::start(sa.local_addr().unwrap()).await;
    let began = Instant::now();
    let began_ms = now_ms();
    let sb = start(&b, vec![relay.addr().to_string()]).await;
    let b_synced = wait_live(&sb, &b, began).await;
    // The bytes are taken once A's side is live too, so nothing of the exchange is still in
    // flight towards B.
    let a_synced = match b_synced {
        Some(_) => wait_live(&sa, &a, began).await,
        None => None,
    };
    let (bytes_out, bytes_back) = relay.bytes();
    let mut calls: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(sb.peers(&b));
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    calls.sort_by(|x, y| x.total_cmp(y));
    stop(b, sb).await;
    stop(a, sa).await;
    relay.shutdown().await;
    let (b_synced, _) = (b_synced?, a_synced?);
    Some(Reconnect {
        ms: b_synced.saturating_sub(began_ms),
        bytes_out,
        bytes_back,
        peers_call_ms: calls[calls.len() / 2],
    })
}

/// The `last_sync` of a record that is connected with lag 0, if any.
fn live(peers: &[PeerInfo]) -> Option<u64> {
    peers
        .iter()
        .filter(|p| p.connected && p.lag == Some(0))
        .find_map(|p| p.last_sync)
}

/// Polls `GET /peers` until a record is live with lag 0 and returns its `last_sync`; `None`
/// at the deadline.
async fn wait_live(sync: &SyncHandle, node: &Node, began: Instant) -> Option<u64> {
    loop {
        if let Some(synced) = live(&sync.peers(node)) {
            return Some(synced);
        }
        if began.elapsed() > RECONNECT_DEADLINE {
            return None;
        }
        tokio::time::sleep(PEERS_POLL).await;
    }
}

/// The pure steps of an in-sync exchange at the store's size, timed alone, in ms.
pub struct ExchangeCosts {
    /// `reader().feeds()` into the sorted feed map, then the reconciliation items.
    pub items_ms: f64,
    /// `Reconciler::new` over those items (one item hash per feed, the prefix sums); each
    /// side builds one.
    pub reconciler_new_ms: f64,
    /// Every round between the two sides' reconcilers until both are done, each then holding
    /// the peer's feeds.
    pub rounds_ms: f64,
    /// Those peer feeds merged into a fresh `PeerProgress`, as the session does.
    pub merge_ms: f64,
    /// `plan::plan` with both sides holding the same feeds.
    pub plan_ms: f64,
}

/// Times the steps of [`ExchangeCosts`] over the feeds of the store in `dir`.
pub fn exchange_costs(dir: &Path) -> ExchangeCosts {
    let node = Node::open_with_identity(dir, Identity::from_seed(SEED_B))
        .unwrap()
        .0;
    let t = Instant::now();
    let ours: Feeds = node
        .reader()
        .feeds()
        .into_iter()
        .map(|f| (f.author, FeedState::from(&f)))
        .collect();
    let forked = node.forked_authors();
    let items = plan::have_lines(&ours, &forked);
    let items_ms = ms_since(t);

    let mut listener = Reconciler::new(items.clone());
    let t = Instant::now();
    let mut dialer = Reconciler::new(items);
    let reconciler_new_ms = ms_since(t);

    let t = Instant::now();
    let mut frames = dialer.initiate();
    let mut to_listener = true;
    loop {
        let receiver = if to_listener {
            &mut listener
        } else {
            &mut dialer
        };
        let mut step = None;
        for frame in frames {
            step = receiver.receive(frame).unwrap().or(step);
        }
        match step {
            Some(Step::Reply(reply)) => {
                frames = reply;
                to_listener = !to_listener;
            }
            Some(Step::Done) | None => break,
        }
    }
    assert!(dialer.is_done() && listener.is_done());
    let rounds_ms = ms_since(t);

    let t = Instant::now();
    let mut progress = PeerProgress::default();
    progress.merge_feeds(dialer.peer_feeds().unwrap());
    let merge_ms = ms_since(t);

    let t = Instant::now();
    let reader = node.reader().clone();
    let planned = plan::plan(&node.author(), &ours, &ours, &forked, |a, seq| {
        reader.get(a, seq).ok().flatten().map(|(_, h)| h)
    })
    .unwrap();
    let plan_ms = ms_since(t);
    assert!(planned.send.is_empty());
    drop(reader);
    node.shutdown_blocking().unwrap();
    ExchangeCosts {
        items_ms,
        reconciler_new_ms,
        rounds_ms,
        merge_ms,
        plan_ms,
    }
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}
