//! Scenario 6: what a stream of short stranger sessions writes to the node's log. The node
//! runs at its default log level (`RUST_LOG` unset) with its output going to a file; the
//! benchmark opens and closes complete sessions (handshake, reconciliation as a peer holding
//! nothing, close), each with a fresh key, as fast as it can from one address.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kappalog::sync::error::SessionError;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::common::node_process::NodeProcess;
use crate::common::peer::RawPeer;
use crate::fixtures::{identity, STRANGER};
use crate::{env_secs, Table};

/// Sessions open at once: under the node's default of 8 connections per address.
const WORKERS: usize = 4;
const SESSION_DEADLINE: Duration = Duration::from_secs(20);
/// Time for the node to finish and log the last sessions before its log is measured.
const FLUSH_WAIT: Duration = Duration::from_secs(1);

pub async fn log_churn(table: &mut Table) {
    let secs = env_secs("KAPPALOG_BENCH_HOSTILE_CHURN_SECS", 10);
    let work = tempfile::tempdir().expect("a temp dir");
    let args = ["--listen".to_owned(), "127.0.0.1:0".to_owned()];
    let node = NodeProcess::start(&work.path().join("v"), &args);
    let addr = node.sync.expect("the node listens for peers");
    tokio::time::sleep(FLUSH_WAIT).await;
    let (bytes_before, lines_before) = (node.log_bytes(), node.log_lines());
    let cpu_before = node.cpu_seconds();

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
                match empty_session(addr, n).await {
                    Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    tokio::time::sleep(FLUSH_WAIT).await;
    let bytes = node.log_bytes() - bytes_before;
    let lines = node.log_lines() - lines_before;
    let cpu = node.cpu_seconds() - cpu_before;
    node.stop();

    let scenario = "log_churn";
    let (done, failed) = (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let per = |x: f64| x / done.max(1) as f64;
    table.row(
        scenario,
        "sessions completed / failed",
        format!("{done} / {failed} in {elapsed:.1} s"),
    );
    table.row(
        scenario,
        "sessions/s",
        format!("{:.0}", done as f64 / elapsed),
    );
    table.row(
        scenario,
        "log written (stdout + stderr)",
        format!("{bytes} bytes, {lines} lines"),
    );
    table.row(
        scenario,
        "log per session",
        format!(
            "{:.0} bytes, {:.1} lines",
            per(bytes as f64),
            per(lines as f64)
        ),
    );
    table.row(
        scenario,
        "node CPU per session",
        format!("{:.2} ms", per(cpu * 1e3)),
    );
}

/// One complete session with fresh stranger key number `n`, holding nothing.
async fn empty_session(addr: SocketAddr, n: u64) -> Result<(), SessionError> {
    let deadline = Instant::now() + SESSION_DEADLINE;
    let mut peer = RawPeer::dial(addr, &identity(STRANGER, n)).await?;
    peer.reconcile(vec![], deadline).await?;
    peer.close(deadline).await;
    Ok(())
}
