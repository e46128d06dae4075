//! Scenarios 1 and 2: a configured peer that claims more of the node's own feed than the
//! node holds, and never delivers it. The node dials an address the benchmark listens on
//! (`--peer`); every session it opens there is answered by a peer whose reconciliation
//! items state the node's own feed with 1,000 entries more than it holds and a made-up head.
//! Meanwhile `POST /add` runs at a steady rate; the figure is how many of those appends the
//! node refuses (503) while it waits for entries that never come.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kappalog::hash::Hash;
use kappalog::identity::Identity;
use kappalog::sync::message::FeedHave;
use kappalog::sync::transport::Role;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{timeout_at, Instant, MissedTickBehavior};

use crate::common::env_usize;
use crate::common::node_process::NodeProcess;
use crate::common::peer::RawPeer;
use crate::fixtures::{identity, CLAIMANT};
use crate::{env_secs, share, Table};

/// How many entries beyond the node's own length each claim states.
const CLAIM_AHEAD: u64 = 1_000;
/// The claim delivery deadline of today's protocol is 5 s (`CLAIM_DELIVERY_TIMEOUT_MS`): a
/// claimant that closes just before it is never the one that "failed a claim".
const CLOSE_EARLY: Duration = Duration::from_millis(4_500);
/// The longest one reconciliation with the node may take.
const RECONCILE_DEADLINE: Duration = Duration::from_secs(30);

/// How the claimant answers the node's dials.
#[derive(Clone, Copy)]
enum Claimant {
    /// A fresh key on every session, held until the node drops it.
    FreshKeys,
    /// One key for every session, each closed [`CLOSE_EARLY`] after its claim.
    OneKeyClosingEarly,
}

/// What `POST /add` answered over a run, and how many claims the node took in.
#[derive(Default)]
struct Outcome {
    created: u64,
    refused: u64,
    other: u64,
    claims: u64,
}

pub async fn claim_fresh_keys(table: &mut Table) {
    let o = run(Claimant::FreshKeys, false).await;
    report(table, "claim_fresh_keys", &o);
}

pub async fn claim_close_early(table: &mut Table) {
    let o = run(Claimant::OneKeyClosingEarly, false).await;
    report(table, "claim_close_early", &o);
    let o = run(Claimant::OneKeyClosingEarly, true).await;
    report(table, "claim_close_early+honest", &o);
}

fn report(table: &mut Table, scenario: &str, o: &Outcome) {
    let total = o.created + o.refused + o.other;
    table.row(
        scenario,
        "adds refused (503) / all",
        share(o.refused, total),
    );
    table.row(
        scenario,
        "adds created (201) / other answers",
        format!("{} / {}", o.created, o.other),
    );
    table.row(
        scenario,
        "claims the node took in (sessions reconciled)",
        o.claims.to_string(),
    );
}

async fn run(claimant: Claimant, honest_peer: bool) -> Outcome {
    let secs = env_secs("KAPPALOG_BENCH_HOSTILE_ADD_SECS", 45);
    let rate = env_usize("KAPPALOG_BENCH_HOSTILE_ADD_RATE", 10).max(1);
    let work = tempfile::tempdir().expect("a temp dir");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let our_addr = listener.local_addr().expect("bound address");
    let listen = || vec!["--listen".to_owned(), "127.0.0.1:0".to_owned()];
    let honest = honest_peer.then(|| NodeProcess::start(&work.path().join("v2"), &listen()));
    let mut args = listen();
    args.extend(["--peer".to_owned(), our_addr.to_string()]);
    if let Some(sync) = honest.as_ref().and_then(|h| h.sync) {
        args.extend(["--peer".to_owned(), sync.to_string()]);
    }
    let node = NodeProcess::start(&work.path().join("v"), &args);

    let created = Arc::new(AtomicU64::new(0));
    let claims = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + secs;
    let attacker = tokio::spawn(answer_dials(
        listener,
        claimant,
        created.clone(),
        claims.clone(),
        end,
    ));
    let mut outcome = Outcome::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate as u32);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while Instant::now() < end {
        tick.tick().await;
        match node.add().await {
            201 => {
                created.fetch_add(1, Ordering::Relaxed);
                outcome.created += 1;
            }
            503 => outcome.refused += 1,
            _ => outcome.other += 1,
        }
    }
    let _ = attacker.await;
    outcome.claims = claims.load(Ordering::Relaxed);
    node.stop();
    if let Some(honest) = honest {
        honest.stop();
    }
    outcome
}

/// Answers every dial of the node until `end`, one task per session; at `end` every
/// session still open is dropped.
async fn answer_dials(
    listener: TcpListener,
    claimant: Claimant,
    created: Arc<AtomicU64>,
    claims: Arc<AtomicU64>,
    end: Instant,
) {
    let mut sessions = JoinSet::new();
    let mut dials = 0u64;
    while let Ok(Ok((stream, _))) = timeout_at(end, listener.accept()).await {
        dials += 1;
        let (id, close_after) = match claimant {
            Claimant::FreshKeys => (identity(CLAIMANT, dials), None),
            Claimant::OneKeyClosingEarly => (identity(CLAIMANT, 0), Some(CLOSE_EARLY)),
        };
        sessions.spawn(claim(
            stream,
            id,
            created.clone(),
            claims.clone(),
            close_after,
            end,
        ));
    }
    sessions.shutdown().await;
}

/// One session the node dialed: the claim, then nothing until the node closes, `end`, or
/// `close_after` has passed since the claim.
async fn claim(
    stream: TcpStream,
    id: Identity,
    created: Arc<AtomicU64>,
    claims: Arc<AtomicU64>,
    close_after: Option<Duration>,
    end: Instant,
) {
    let Ok(mut peer) = RawPeer::over(stream, &id, Role::Responder).await else {
        return;
    };
    // The node's own length is what it has created (it starts empty).
    let item = FeedHave {
        author: peer.node,
        length: created.load(Ordering::Relaxed) + CLAIM_AHEAD,
        head: Hash([0xab; 32]),
    };
    let deadline = Instant::now() + RECONCILE_DEADLINE;
    if peer.answer_reconcile(vec![item], deadline).await.is_err() {
        return;
    }
    claims.fetch_add(1, Ordering::Relaxed);
    let until = close_after.map_or(end, |after| end.min(Instant::now() + after));
    peer.read_until_closed(until).await;
}
