//! Scenario 3: a stranger with one address and an endless supply of keys. The node allows
//! each stranger key 10 new feeds per hour (`--new-feeds-per-hour 10`); the benchmark opens
//! session after session from 127.0.0.1, each with a fresh key, each announcing and sending
//! one new valid feed (seq 1, signed by a fresh author). The figure is how many feeds the
//! node holds afterwards, against the 10 one source was meant to be allowed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kappalog::sync::error::SessionError;
use kappalog::sync::message::{EncodedEntry, Entries, FeedHave, Message};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::common::env_usize;
use crate::common::node_process::NodeProcess;
use crate::common::peer::RawPeer;
use crate::fixtures::{first_entry, identity, NEW_FEED, SESSION};
use crate::{env_secs, Table};

const BUDGET_PER_HOUR: u64 = 10;
/// Sessions open at once: under the node's default of 8 connections per address.
const WORKERS: usize = 4;
/// The longest one session may take, from connect to the node's close.
const SESSION_DEADLINE: Duration = Duration::from_secs(20);
/// How long the feed count may keep changing after the last session before it is read.
const SETTLE_DEADLINE: Duration = Duration::from_secs(10);

pub async fn fresh_keys_one_address(table: &mut Table) {
    let secs = env_secs("KAPPALOG_BENCH_HOSTILE_KEYS_SECS", 20);
    let keys = env_usize("KAPPALOG_BENCH_HOSTILE_KEYS", 2_000) as u64;
    let work = tempfile::tempdir().expect("a temp dir");
    let args: Vec<String> = ["--listen", "127.0.0.1:0", "--new-feeds-per-hour"]
        .iter()
        .map(|s| s.to_string())
        .chain([BUDGET_PER_HOUR.to_string()])
        .collect();
    let node = NodeProcess::start(&work.path().join("v"), &args);
    let addr = node.sync.expect("the node listens for peers");

    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let end = started + secs;
    let mut workers = JoinSet::new();
    for _ in 0..WORKERS {
        let (next, done, failed) = (next.clone(), done.clone(), failed.clone());
        workers.spawn(async move {
            while Instant::now() < end {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= keys {
                    break;
                }
                match offer_new_feed(addr, n).await {
                    Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    let held = settled_feed_count(&node).await;
    node.stop();

    let scenario = "fresh_keys_one_address";
    let (done, failed) = (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    table.row(
        scenario,
        "sessions completed / failed (fresh key each)",
        format!("{done} / {failed} in {elapsed:.1} s"),
    );
    table.row(
        scenario,
        "feeds the node holds / budget of one source",
        format!(
            "{} / {BUDGET_PER_HOUR}",
            held.map_or("?".into(), |h| h.to_string())
        ),
    );
}

/// One session with fresh key number `n`: reconcile holding one new feed, send it, close.
async fn offer_new_feed(addr: SocketAddr, n: u64) -> Result<(), SessionError> {
    let deadline = Instant::now() + SESSION_DEADLINE;
    let author = identity(NEW_FEED, n);
    let (entry, hash) = first_entry(&author, 1);
    let mut peer = RawPeer::dial(addr, &identity(SESSION, n)).await?;
    let item = FeedHave {
        author: entry.author,
        length: 1,
        head: hash,
    };
    peer.reconcile(vec![item], deadline).await?;
    peer.send(&Message::Entries(Entries {
        entries: vec![EncodedEntry::from_entry(&entry)],
    }))
    .await?;
    peer.close(deadline).await;
    Ok(())
}

/// The node's feed count once two reads half a second apart agree (its last appends may
/// still be committing), or the last read at the deadline.
async fn settled_feed_count(node: &NodeProcess) -> Option<u64> {
    let deadline = Instant::now() + SETTLE_DEADLINE;
    let mut last = node.feed_count().await;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = node.feed_count().await;
        if now.is_some() && now == last {
            break;
        }
        last = now;
    }
    last
}
