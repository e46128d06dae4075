//! Nodes converge over real TCP on 127.0.0.1: initial exchange, live pushes, transitive
//! replication, a mesh under concurrent appends, and a restart in the middle of a sync.

use std::collections::BTreeSet;

use crate::common;
use crate::common::net::{append_n, fast_config, start, start_with, wait_for, TestNode};
use kappalog::entry::Entry;
use kappalog::node::{Node, NodeEvent};
use tokio::sync::broadcast::error::TryRecvError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_converge_and_push_live() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start(da.path(), 1, &[]).await;
    append_n(&a.node, 300, 0).await;
    let b = start(db.path(), 2, &[a.addr]).await;
    append_n(&b.node, 50, 1000).await;
    wait_for("a and b to converge", || {
        a.count() == 350 && b.count() == 350 && a.digest() == b.digest()
    })
    .await;
    // Live: a new entry on a is readable on b without another round.
    let added = a.node.append(7, "live".into()).await.unwrap();
    wait_for("the live entry on b", || {
        b.node.reader().get_by_hash(&added.hash).unwrap().is_some()
    })
    .await;
    // The counter is bumped once the store's append returns, a moment after the entries are
    // readable: poll it too.
    let to_a = || {
        let peers = b.sync.peers(&b.node);
        peers
            .into_iter()
            .find(|p| p.addr == a.addr.to_string())
            .unwrap()
    };
    wait_for("b to count the 301 entries received", || {
        to_a().entries_received >= 301
    })
    .await;
    let to_a = to_a();
    assert!(to_a.connected);
    assert_eq!(to_a.author, Some(a.node.author()));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_in_a_line_replicate_transitively() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = start(dirs[0].path(), 1, &[]).await;
    let b = start(dirs[1].path(), 2, &[a.addr]).await;
    let c = start(dirs[2].path(), 3, &[b.addr]).await;
    wait_for("b connected to a and c to b", || {
        b.sync.peers(&b.node).iter().any(|p| p.connected)
            && c.sync.peers(&c.node).iter().any(|p| p.connected)
    })
    .await;
    let added = a.node.append(42, "from a".into()).await.unwrap();
    wait_for("a's entry on c", || {
        c.node.reader().get_by_hash(&added.hash).unwrap().is_some()
    })
    .await;
    append_n(&c.node, 5, 0).await;
    wait_for("all three equal", || {
        a.digest() == b.digest() && b.digest() == c.digest() && a.count() == 6
    })
    .await;
    for n in [a, b, c] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_in_a_mesh_with_concurrent_adds_reach_one_digest() {
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes: Vec<TestNode> = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let peers: Vec<_> = nodes.iter().map(|n| n.addr).collect();
        nodes.push(start(dir.path(), u8::try_from(i + 1).unwrap(), &peers).await);
    }
    let mut tasks = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let node = n.node.clone();
        tasks.push(tokio::spawn(async move {
            append_n(&node, 40, i64::try_from(i).unwrap() * 1000).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    wait_for("five equal digests", || {
        let first = nodes[0].digest();
        nodes
            .iter()
            .all(|n| n.digest() == first && n.count() == 200)
    })
    .await;
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_mid_sync_resumes_and_converges() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start(da.path(), 1, &[]).await;
    // A large foreign feed on a, offered in one go.
    let big: Vec<Entry> = common::entries(&common::feed(&common::identity(77), 20_000));
    a.node.offer_entries(big).await.unwrap();
    append_n(&a.node, 10, 0).await;
    // b dials through a relay that stops forwarding a's bytes after 1 MiB (a few hundred
    // entries), so b is stopped with part of the feed, however fast the machine.
    let relay = common::relay::Relay::start(a.addr).await;
    relay
        .seen
        .hold_after
        .store(1 << 20, std::sync::atomic::Ordering::SeqCst);
    // Every entry b's store acknowledges is published as committed: b listens from before
    // its first session, so the set it collects is exactly what was acknowledged.
    let (b_node, _) = Node::open_with_identity(db.path(), common::identity(2)).unwrap();
    let mut committed = b_node.subscribe();
    let b = start_with(b_node, &[relay.addr], fast_config()).await;
    wait_for("b to receive something", || !b.node.reader().is_empty()).await;
    wait_for("the relay to hold", || {
        relay
            .seen
            .forwarded
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1 << 20
    })
    .await;
    b.stop().await;
    drop(relay);
    let mut acknowledged = BTreeSet::new();
    loop {
        match committed.try_recv() {
            Ok(NodeEvent::Committed(batch)) => {
                acknowledged.extend(batch.iter().map(|(e, h)| (e.author, e.seq, *h)));
            }
            Ok(_) => {}
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            Err(e @ TryRecvError::Lagged(_)) => panic!("acknowledgements missed: {e}"),
        }
    }
    let partial = u64::try_from(acknowledged.len()).unwrap();
    assert!(
        partial > 0 && partial < 20_010,
        "b must stop mid-sync, it acknowledged {partial} of 20010"
    );
    eprintln!("stopped b holding {partial} of 20010 entries");
    // Reopened before it syncs again: exactly the acknowledged entries, each as acknowledged.
    let (b_node, _) = Node::open_with_identity(db.path(), common::identity(2)).unwrap();
    let reader = b_node.reader();
    assert_eq!(
        reader.len(),
        partial,
        "the reopened log holds what was acknowledged"
    );
    for &(author, seq, hash) in &acknowledged {
        let held = reader.get(&author, seq).unwrap().map(|(_, h)| h);
        assert_eq!(
            held,
            Some(hash),
            "acknowledged {author} seq {seq} is lost or altered"
        );
    }
    let b = start_with(b_node, &[a.addr], fast_config()).await;
    wait_for("b to converge after the restart", || {
        a.digest() == b.digest() && b.count() == 20_010
    })
    .await;
    a.stop().await;
    b.stop().await;
}
