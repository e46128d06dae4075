//! The node stops in one place: `Node::shutdown` ends its sync sessions and tail streams,
//! waits for its tasks (bounded), and shuts the store down, whoever still holds a clone of
//! the node. And the forks set stays readable while a proof's `fsync` is in progress.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use crate::common;
use crate::common::held_io::HeldIo;
use crate::common::net::{self, append_n, wait_for};
use crate::common::{identity, DEADLINE};
use kappalog::node::{Node, NodeError};
use kappalog::server::ServeLimits;
use kappalog::store::{AppendError, StoreOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads from `stream` into `got` until `needle` appears (false: the connection closed
/// first). Bounded by the test deadline.
async fn read_until(stream: &mut TcpStream, got: &mut Vec<u8>, needle: &str) -> bool {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !String::from_utf8_lossy(got).contains(needle) {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} before the deadline"))
            .unwrap();
        if n == 0 {
            return false;
        }
        got.extend_from_slice(&buf[..n]);
    }
    true
}

/// A node whose forks file's `fsync`s the returned `HeldIo` controls.
fn open_with_held_forks(dir: &std::path::Path) -> (Node, Arc<HeldIo>) {
    let forks_io = Arc::new(HeldIo::default());
    let options = StoreOptions {
        forks_io: forks_io.clone(),
        ..StoreOptions::default()
    };
    let (node, _) = Node::open_with_store_options(dir, identity(1), &options).unwrap();
    (node, forks_io)
}

/// Waits, off the async workers, until a sync of `io` is being held.
async fn wait_until_held(io: &Arc<HeldIo>) {
    let io = io.clone();
    tokio::task::spawn_blocking(move || io.wait_until_held())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_live_sessions_and_tail_streams_shuts_down_and_frees_its_dir() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = net::start(da.path(), 1, &[]).await;
    let b = net::start(db.path(), 2, &[a.addr]).await;
    append_n(&a.node, 5, 0).await;
    wait_for("b to hold a's entries", || b.count() == 5).await;

    // A live tail stream of a's commits, over real HTTP.
    let server = common::serve::start_over(
        a.node.clone(),
        tempfile::tempdir().unwrap(),
        ServeLimits::default(),
    )
    .await;
    let mut tail = TcpStream::connect(server.addr).await.unwrap();
    tail.write_all(
        b"GET /tail?from=start HTTP/1.1\r\nHost: test\r\nAccept: application/x-ndjson\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    assert!(
        read_until(&mut tail, &mut got, "\"seq\":5").await,
        "the stream replays a's feed"
    );
    append_n(&a.node, 1, 100).await;
    assert!(
        read_until(&mut tail, &mut got, "\"seq\":6").await,
        "and streams live commits"
    );
    wait_for("b to hold the live entry", || b.count() == 6).await;

    // A clone of the node that outlives the shutdown (the HTTP server's router holds more).
    let straggler = a.node.clone();
    tokio::time::timeout(DEADLINE, a.node.shutdown())
        .await
        .expect("the shutdown is bounded")
        .unwrap();

    // The directory is free the moment shutdown returns.
    let (reopened, report) = Node::open_with_identity(da.path(), identity(1)).unwrap();
    assert_eq!(report.entries, 6);
    // The tail stream was ended with its reason, not left hanging.
    assert!(
        read_until(&mut tail, &mut got, "\"end\"").await,
        "the stream ends"
    );
    // The session ended: b sees a gone.
    wait_for("b to see the session end", || {
        b.sync.peers(&b.node).iter().all(|p| !p.connected)
    })
    .await;
    // A clone that outlived the shutdown is told the store is closed.
    assert!(matches!(
        straggler.append(1, String::new()).await,
        Err(NodeError::Append(AppendError::Closed))
    ));

    server.shutdown().await;
    reopened.shutdown().await.unwrap();
    b.stop().await;
}

/// While the forks file's `fsync` of a new proof is in progress (held by the test), every
/// reader of the forks set — a session's push filter, `GET /forks`, `/peers` — answers at
/// once from memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_of_the_forks_set_never_wait_on_a_proofs_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let (node, forks_io) = open_with_held_forks(dir.path());
    let proof = common::fork_proof(9);
    let forker = proof.author();

    forks_io.hold();
    let recording = {
        let node = node.clone();
        let proof = proof.clone();
        tokio::spawn(async move { node.record_proof_async(proof).await })
    };
    // The writer is inside the forks file's fsync now (the note before it is durable).
    wait_until_held(&forks_io).await;

    // Readers on another thread; they must all finish while the fsync is still held.
    let (done_tx, done) = mpsc::channel();
    let reader = node.clone();
    std::thread::spawn(move || {
        let mut reads = 0u64;
        let start = Instant::now();
        while reads < 10_000 {
            // The note is durable, so the author is forked already; the proof is not yet.
            assert!(reader.is_forked(&forker));
            assert!(reader.forked_authors().contains(&forker));
            assert!(reader.fork_proofs().is_empty());
            reads += 1;
        }
        let _ = done_tx.send((reads, start.elapsed()));
    });
    let (reads, _took) = done
        .recv_timeout(DEADLINE)
        .expect("readers of the forks set waited on the held fsync");
    assert_eq!(reads, 10_000);
    assert!(!recording.is_finished(), "the proof's fsync is still held");

    forks_io.release();
    assert!(recording.await.unwrap().unwrap(), "a new proof");
    assert_eq!(node.fork_proofs(), vec![proof]);
    node.shutdown().await.unwrap();
}

/// A caller that stops waiting for a proof (a sync session aborted while the proof's fsync
/// runs) changes nothing: once durable, the proof still reaches the views and subscribers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_whose_caller_gave_up_still_reaches_views_and_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let (node, forks_io) = open_with_held_forks(dir.path());
    let proof = common::fork_proof(9);
    let mut events = node.subscribe();

    forks_io.hold();
    let caller = {
        let (node, proof) = (node.clone(), proof.clone());
        tokio::spawn(async move { node.record_proof_async(proof).await })
    };
    wait_until_held(&forks_io).await;
    caller.abort();
    assert!(caller.await.unwrap_err().is_cancelled());
    forks_io.release();

    let told = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Ok(kappalog::node::NodeEvent::Proof(told)) = events.recv().await {
                return told;
            }
        }
    })
    .await
    .expect("subscribers were never told of the proof");
    assert_eq!(*told, proof);
    assert_eq!(node.fork_proofs(), vec![proof.clone()]);
    let summary: serde_json::Value = serde_json::from_str(&node.summary_json()).unwrap();
    assert_eq!(
        summary["forked_feed_count"], 1,
        "the views mark the author forked: {summary}"
    );
    node.shutdown().await.unwrap();
}
