//! Scenario 5: what a stranger that claims to hold nothing gets out of a node holding many
//! feeds, for how little it sends. The node's data directory is built with `kappalog
//! import` (one entry per feed); a stranger dials, reconciles holding nothing, and reads
//! until the node has sent every entry. Bytes are counted at the stranger's socket (TCP
//! payload); the node's CPU comes from `/proc/PID/stat` before and after.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use kappalog::sync::error::SessionError;
use kappalog::sync::message::Message;
use tokio::task::JoinSet;
use tokio::time::{timeout, Instant};

use crate::common::env_usize;
use crate::common::node_process::{self, NodeProcess};
use crate::common::peer::RawPeer;
use crate::fixtures::{identity, write_feeds_csv, STRANGER};
use crate::{mb, Table};

/// The longest one session may take, from connect until the last entry.
const SESSION_DEADLINE: Duration = Duration::from_secs(120);
/// A node that sends nothing for this long has sent all it will.
const QUIET: Duration = Duration::from_secs(3);
/// Sessions of the burst, and the time their starts are spread over.
const BURST: u64 = 10;
const BURST_SPREAD: Duration = Duration::from_secs(1);
/// How long one source opens sessions back to back.
const ONE_SOURCE_SPAN: Duration = Duration::from_secs(20);
/// Time for the node's CPU to settle before and after a measured span.
const SETTLE: Duration = Duration::from_secs(1);

/// What one stranger session moved.
#[derive(Default, Clone, Copy)]
struct Drained {
    /// (sent by us, sent by the node) when reconciliation ended.
    reconciled: (u64, u64),
    /// (sent by us, sent by the node) when the last entry arrived.
    total: (u64, u64),
    entries: u64,
}

pub async fn amplification(table: &mut Table) {
    let feeds = env_usize("KAPPALOG_BENCH_HOSTILE_AMP_FEEDS", 20_000) as u64;
    let work = tempfile::tempdir().expect("a temp dir");
    let dir = work.path().join("v");
    let csv = work.path().join("feeds.csv");
    write_feeds_csv(&csv, feeds);
    node_process::import(&dir, &csv);
    let args = ["--listen".to_owned(), "127.0.0.1:0".to_owned()];
    let node = NodeProcess::start(&dir, &args);
    let addr = node.sync.expect("the node listens for peers");
    tokio::time::sleep(SETTLE).await;
    let scenario = "amplification";
    table.row(
        scenario,
        "feeds the node holds",
        format!("{}", node.feed_count().await.unwrap_or(0)),
    );

    let cpu = node.cpu_seconds();
    let one = drain(Ipv4Addr::LOCALHOST.into(), addr, 0, feeds).await;
    tokio::time::sleep(SETTLE).await;
    let cpu = node.cpu_seconds() - cpu;
    match one {
        Ok(d) => {
            let (sent, got) = d.reconciled;
            table.row(
                scenario,
                "1 session, to the end of reconciliation: in / out",
                format!("{sent} B / {} (x{:.0})", mb(got), ratio(got, sent)),
            );
            let (sent, got) = d.total;
            table.row(
                scenario,
                "1 session, until every entry is sent: in / out",
                format!("{sent} B / {} (x{:.0})", mb(got), ratio(got, sent)),
            );
            table.row(
                scenario,
                "1 session: entries received / node CPU",
                format!("{} / {cpu:.2} s", d.entries),
            );
        }
        Err(e) => table.row(scenario, "1 session", format!("failed: {e}")),
    }

    // Ten strangers, each from its own loopback address (the per-address limit is not
    // what this measures), started evenly over one second.
    let cpu = node.cpu_seconds();
    let mut sessions = JoinSet::new();
    for i in 0..BURST {
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 2, u8::try_from(i + 1).unwrap_or(1)));
        sessions.spawn(async move {
            tokio::time::sleep(BURST_SPREAD / BURST as u32 * i as u32).await;
            drain(source, addr, i + 1, feeds).await
        });
    }
    let (mut total, mut failed) = (Drained::default(), 0);
    while let Some(joined) = sessions.join_next().await {
        match joined {
            Ok(Ok(d)) => {
                total.total.0 += d.total.0;
                total.total.1 += d.total.1;
                total.entries += d.entries;
            }
            _ => failed += 1,
        }
    }
    tokio::time::sleep(SETTLE).await;
    let cpu = node.cpu_seconds() - cpu;
    let (sent, got) = total.total;
    table.row(
        scenario,
        format!("{BURST} sessions in 1 s: in / out"),
        format!("{sent} B / {} (x{:.0})", mb(got), ratio(got, sent)),
    );
    table.row(
        scenario,
        format!("{BURST} sessions: entries received / failed / node CPU"),
        format!("{} / {failed} / {cpu:.2} s", total.entries),
    );
    one_source(&node, addr, feeds, table).await;
    node.stop();
}

/// Sessions from one source, back to back for [`ONE_SOURCE_SPAN`]: what one address can
/// pull, and what it costs the node, once its burst is spent.
async fn one_source(node: &NodeProcess, addr: SocketAddr, feeds: u64, table: &mut Table) {
    let scenario = "amplification";
    let source: IpAddr = Ipv4Addr::new(127, 0, 4, 1).into();
    let cpu = node.cpu_seconds();
    let started = Instant::now();
    let (mut sessions, mut total) = (0u64, Drained::default());
    while started.elapsed() < ONE_SOURCE_SPAN {
        let left = ONE_SOURCE_SPAN.saturating_sub(started.elapsed());
        if let Ok(Ok(d)) = timeout(left, drain(source, addr, 100 + sessions, feeds)).await {
            total.total.1 += d.total.1;
            total.entries += d.entries;
        }
        sessions += 1;
    }
    let span = started.elapsed().as_secs_f64();
    let cpu = node.cpu_seconds() - cpu;
    table.row(
        scenario,
        format!(
            "one source, {:.0} s of sessions back to back: sessions / out",
            span
        ),
        format!(
            "{sessions} / {} ({:.1} MB/s), {} entries",
            mb(total.total.1),
            total.total.1 as f64 / span / 1e6,
            total.entries
        ),
    );
    table.row(
        scenario,
        "one source: node CPU over that span",
        format!("{cpu:.2} s ({:.0}% of a core)", 100.0 * cpu / span),
    );
}

fn ratio(out: u64, sent: u64) -> f64 {
    out as f64 / sent.max(1) as f64
}

/// One stranger session from `source` claiming nothing: reads until `entries` entries have
/// arrived or the node goes quiet.
async fn drain(
    source: IpAddr,
    addr: SocketAddr,
    n: u64,
    entries: u64,
) -> Result<Drained, SessionError> {
    let deadline = Instant::now() + SESSION_DEADLINE;
    let mut peer = RawPeer::dial_from(source, addr, &identity(STRANGER, n)).await?;
    peer.reconcile(vec![], deadline).await?;
    let mut drained = Drained {
        reconciled: peer.wire.bytes(),
        ..Drained::default()
    };
    while drained.entries < entries && Instant::now() < deadline {
        match timeout(QUIET, peer.reader.next()).await {
            Ok(Ok(Message::Entries(batch))) => drained.entries += batch.entries.len() as u64,
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => break,
        }
    }
    drained.total = peer.wire.bytes();
    peer.close(Instant::now() + QUIET).await;
    Ok(drained)
}
