//! Forks over sync and import, and the own-feed fence.

use crate::common;
use crate::common::net::{append_n, copy_dir, start, summary, wait_for};
use axum::body::{to_bytes, Body};
use axum::http::Request;
use kappalog::fence::{FenceError, OwnFeedState};
use kappalog::http::{router, HttpConfig};
use kappalog::node::{Node, NodeError};
use tower::ServiceExt;

async fn get_json(node: &Node, path: &str) -> serde_json::Value {
    let response = router(node.clone(), HttpConfig::default())
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn export(node: &Node) -> Vec<u8> {
    let mut out = Vec::new();
    node.export(&mut out).unwrap();
    out
}

/// Whether a node has recorded a fork proof and its views have taken it in. `is_forked`
/// turns true earlier, from the fork note in the log: the proof is published after its own
/// fsync, and the views (`/feeds`, the digest) after the store's answer.
fn recorded(node: &Node) -> bool {
    !node.fork_proofs().is_empty() && summary(node)["forked_feed_count"] == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_reaches_nodes_by_sync_import_and_proof_alone() {
    let dirs: Vec<_> = (0..6).map(|_| tempfile::tempdir().unwrap()).collect();
    // One key (seed 50) in two data dirs, appending independently: a fork at seq 1.
    let (k1, _) = Node::open_with_identity(dirs[0].path(), common::identity(50)).unwrap();
    let (k2, _) = Node::open_with_identity(dirs[1].path(), common::identity(50)).unwrap();
    for v in 0..3 {
        k1.append(v, "one".into()).await.unwrap();
        k2.append(v + 10, "two".into()).await.unwrap();
    }
    let (csv1, csv2) = (export(&k1), export(&k2));

    // Node A meets both copies by sync.
    let k1 = common::net::start_with(k1, &[], common::net::fast_config()).await;
    let k2 = common::net::start_with(k2, &[], common::net::fast_config()).await;
    let a = start(dirs[2].path(), 1, &[k1.addr]).await;
    wait_for("a to hold k1's feed", || a.node.reader().len() == 3).await;
    a.sync.add_peer(&a.node, k2.addr.to_string()).unwrap();
    let forked = common::identity(50).author();
    wait_for("a to record the fork", || recorded(&a.node)).await;
    assert!(a.node.is_forked(&forked));

    // Node B meets both copies by CSV import.
    let (b, _) = Node::open_with_identity(dirs[3].path(), common::identity(2)).unwrap();
    let r1 = b.import(csv1.as_slice()).unwrap();
    assert_eq!(r1.added, 3);
    let r2 = b.import(csv2.as_slice()).unwrap();
    assert!(!r2.forks.is_empty(), "{r2}");
    assert!(b.is_forked(&forked));
    // From now on the feed is refused by import.
    let again = b.import(csv1.as_slice()).unwrap();
    assert_eq!(again.added, 0);
    assert_eq!(again.rejected.len(), 3, "{again}");

    // Node C only ever receives the proof, from A.
    let c = start(dirs[4].path(), 3, &[a.addr]).await;
    wait_for("c to learn the fork", || recorded(&c.node)).await;
    assert!(c.node.is_forked(&forked));
    assert!(
        c.node.reader().head(&forked).is_none(),
        "no entry of the forked feed"
    );

    for node in [&a.node, &b, &c.node] {
        let forks = get_json(node, "/forks").await;
        let forks = forks.as_array().unwrap();
        assert_eq!(forks.len(), 1);
        assert_eq!(forks[0]["author"], forked.to_string());
        // A found it from the heads (seq 3), B by import (seq 1): any proof is a proof.
        assert!((1..=3).contains(&forks[0]["seq"].as_u64().unwrap()));
        assert_ne!(forks[0]["a"]["hash"], forks[0]["b"]["hash"]);
        assert_eq!(forks[0]["a"]["author"], forked.to_string());
    }
    // C holds no entry of the forked feed, yet lists it (and digests it) as A and B do.
    for node in [&a.node, &b, &c.node] {
        let feeds = get_json(node, "/feeds").await;
        assert_eq!(feeds["feeds"][0]["author"], forked.to_string());
        assert_eq!(feeds["feeds"][0]["status"], "forked");
        assert_eq!(feeds["feeds"][0]["length"], serde_json::Value::Null);
    }
    let digest = |n: &Node| summary(n)["digest"].clone();
    assert_eq!(digest(&a.node), digest(&b));
    assert_eq!(digest(&b), digest(&c.node));
    assert_eq!(summary(&a.node)["forked_feed_count"], 1);

    // Proofs survive a restart.
    a.stop().await;
    let (a, _) = Node::open_with_identity(dirs[2].path(), common::identity(1)).unwrap();
    assert!(a.is_forked(&forked));
    assert_eq!(digest(&a), digest(&b));
    c.stop().await;
    k1.stop().await;
    k2.stop().await;
}

/// Node x (seed 7) appends 3 entries, its data dir is copied to `old`, then it appends 2
/// more, which reach peer p (seed 8); x stops. Returns p (running), `old`, x's author and
/// the directories to keep alive.
async fn peer_ahead_of_an_old_copy() -> (
    common::net::TestNode,
    tempfile::TempDir,
    kappalog::identity::Author,
    [tempfile::TempDir; 2],
) {
    let (dx, dp, old) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let p = start(dp.path(), 8, &[]).await;
    let x = start(dx.path(), 7, &[p.addr]).await;
    append_n(&x.node, 3, 0).await;
    x.stop().await;
    copy_dir(dx.path(), old.path());
    let x = start(dx.path(), 7, &[p.addr]).await;
    append_n(&x.node, 2, 3).await;
    let own = common::identity(7).author();
    wait_for("p to hold 5 of x's entries", || {
        p.node.reader().head(&own).is_some_and(|h| h.seq == 5)
    })
    .await;
    x.stop().await;
    (p, old, own, [dx, dp])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restored_from_an_old_copy_catches_up_before_signing() {
    let (p, old, own, _dirs) = peer_ahead_of_an_old_copy().await;

    // Restart from the old copy (3 entries) with p holding 5: no append before catching up.
    let x = start(old.path(), 7, &[p.addr]).await;
    match x.node.append(99, String::new()).await {
        Err(NodeError::Fence(FenceError::Starting { .. } | FenceError::CatchingUp { .. })) => {}
        other => panic!("append went past the fence: {other:?}"),
    }
    let entry = loop {
        match x.node.append(99, String::new()).await {
            Ok(entry) => break entry,
            Err(NodeError::Fence(FenceError::Starting { .. } | FenceError::CatchingUp { .. })) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(entry.seq, 6, "continues after the caught-up entries");
    assert_eq!(x.node.own_feed_state(), OwnFeedState::Ok);
    wait_for("p to get seq 6", || {
        p.node.reader().head(&own).is_some_and(|h| h.seq == 6)
    })
    .await;
    assert!(!p.node.is_forked(&own));
    x.stop().await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diverged_copy_of_the_own_feed_stops_appends_for_good() {
    let (p, old, own, _dirs) = peer_ahead_of_an_old_copy().await;

    // The old copy signs different entries 4 and 5 offline.
    let (offline, _) = Node::open_with_identity(old.path(), common::identity(7)).unwrap();
    offline.append(-1, "other".into()).await.unwrap();
    offline.append(-2, "other".into()).await.unwrap();
    offline.shutdown().await.unwrap();

    let x = start(old.path(), 7, &[p.addr]).await;
    wait_for("x to see its feed diverged", || {
        x.node.own_feed_state() == OwnFeedState::Diverged
    })
    .await;
    assert!(matches!(
        x.node.append(1, String::new()).await,
        Err(NodeError::Fence(FenceError::Diverged { .. }))
    ));
    wait_for("p to record the fork of x", || p.node.is_forked(&own)).await;
    wait_for("x to record the fork too", || x.node.is_forked(&own)).await;
    let s = get_json(&x.node, "/summary").await;
    assert_eq!(s["own_feed"], "diverged");
    let response = router(x.node.clone(), HttpConfig::default())
        .oneshot(Request::post("/add").body(Body::from("1")).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let error: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("diverged"),
        "{error}"
    );
    // Still refused after a restart: the proof is on disk.
    x.stop().await;
    let (x, _) = Node::open_with_identity(old.path(), common::identity(7)).unwrap();
    assert_eq!(x.own_feed_state(), OwnFeedState::Diverged);
    assert!(x.append(1, String::new()).await.is_err());
    p.stop().await;
}

#[tokio::test]
async fn peer_and_sync_writes_need_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = Node::open_with_identity(dir.path(), common::identity(1)).unwrap();
    let config = HttpConfig {
        token: Some("tok".into()),
        ..HttpConfig::default()
    };
    for path in ["/peers", "/sync"] {
        let response = router(node.clone(), config.clone())
            .oneshot(
                Request::post(path)
                    .body(Body::from(r#"{"addr": "127.0.0.1:1"}"#))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{path}");
    }
    // Reads stay open; without sync running the peer list is empty.
    assert_eq!(
        get_json(&node, "/peers").await,
        serde_json::json!({"peers": [], "refused": {}, "feeds_skipped": {}})
    );
    assert_eq!(get_json(&node, "/forks").await, serde_json::json!([]));
}
