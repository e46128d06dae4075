//! The tree cache on a failing disk: a bit flipped inside a stored row or edge is caught by
//! its checksum (the node never hands out the wrong hash, answers 503 meanwhile and
//! rebuilds the cache from the log), and a cache whose writes fail leaves the log, appends
//! and `/health` working, answers 503 for what it does not cover, and catches up once it
//! can write again.

use kappalog::tlog::bundle::verify_entry_proof;
use kappalog::tlog::merkle::{prove_inclusion, tree_hash};
use kappalog::tree::{TreeReadError, TreeState, Trees, TREE_FILE};

use crate::common;
use crate::common::tree::{offer_interleaved, open, wait_covered, Model};
use crate::common::{get, post, run_node, wait_until};

/// Flips one bit of the blob in `column` of the first row `query` selects (`rowid, blob`).
fn flip_a_bit(conn: &rusqlite::Connection, table: &str, column: &str, query: &str, byte: usize) {
    let (rowid, mut blob): (i64, Vec<u8>) = conn
        .query_row(query, [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    blob[byte] ^= 0x04;
    let changed = conn
        .execute(
            &format!("UPDATE {table} SET {column} = ?1 WHERE rowid = ?2"),
            rusqlite::params![blob, rowid],
        )
        .unwrap();
    assert_eq!(changed, 1);
}

/// Every root and a spread of inclusion proofs of `model`'s feed: each answer the trees
/// give must be the model's; a refusal must be the node's (`Rebuilding`, or the feed not
/// yet covered again during the rebuild). How many reads were refused, and whether one of
/// them was a `Rebuilding`.
fn reads_are_right_or_refused(trees: &Trees, model: &Model) -> (usize, bool) {
    let (author, mem) = (&model.author, &model.tree);
    let n = mem.size();
    let (mut refused, mut rebuilding) = (0, false);
    let mut refusal = |e: TreeReadError| {
        assert!(
            matches!(
                e,
                TreeReadError::Rebuilding(_)
                    | TreeReadError::UnknownFeed { .. }
                    | TreeReadError::BeyondCovered { .. }
            ),
            "{e:?}"
        );
        rebuilding |= matches!(e, TreeReadError::Rebuilding(_));
        refused += 1;
    };
    for size in [1, 2, 127, 128, 129, 255, 256, 257, n / 2, n - 1, n] {
        match trees.root(author, size) {
            Ok(root) => assert_eq!(root, tree_hash(size, mem).unwrap(), "root of {size}"),
            Err(e) => refusal(e),
        }
        for index in (0..size).step_by((size as usize / 9).max(1)) {
            match trees.inclusion_proof(author, index, size) {
                Ok(proof) => assert_eq!(
                    proof,
                    prove_inclusion(size, index, mem).unwrap(),
                    "inclusion of {index} in {size}: a wrong hash was served"
                ),
                Err(e) => refusal(e),
            }
        }
    }
    (refused, rebuilding)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_bit_in_a_stored_row_or_edge_is_never_served_and_the_cache_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let (node, trees) = open(dir.path(), common::identity(1));
    // Feed 10 completes five rows of 128 leaves, feed 11 two, and its edge holds hashes.
    let models = offer_interleaved(&node, &[700, 300]).await;
    wait_covered(&trees, &models).await;
    for model in &models {
        assert_eq!(reads_are_right_or_refused(&trees, model), (0, false));
    }
    node.shutdown().await.unwrap();
    drop(trees);

    // With the node stopped: one bit of feed 10's first row (inside the hash at position
    // 3, read by the proofs of its first leaves), and one of feed 11's edge (inside the
    // root of its first 256 leaves, read by every root of a size above 256).
    let conn = rusqlite::Connection::open(dir.path().join(TREE_FILE)).unwrap();
    let ids: Vec<i64> = models
        .iter()
        .map(|m| {
            conn.query_row(
                "SELECT id FROM feeds WHERE author = ?1",
                [m.author.as_bytes().as_slice()],
                |r| r.get(0),
            )
            .unwrap()
        })
        .collect();
    // Row keys put the feed id above 39 bits of layer and row (src/tree/layout.rs).
    let first_row = ids[0] << 39;
    flip_a_bit(
        &conn,
        "nodes",
        "hashes",
        &format!("SELECT key, hashes FROM nodes WHERE key = {first_row}"),
        3 * 32 + 5,
    );
    flip_a_bit(
        &conn,
        "feeds",
        "edge",
        &format!("SELECT id, edge FROM feeds WHERE id = {}", ids[1]),
        5,
    );
    drop(conn);

    let (node, trees) = open(dir.path(), common::identity(1));
    // Reads now: never a wrong hash; the damage found, the cache rebuilt from the log, and
    // then every read answered right. Polled (the follower is at idle priority: a spinning
    // test would starve it).
    let mut seen_rebuilding = false;
    crate::common::index::eventually("the cache to be rebuilt", || {
        let mut refused = 0;
        for model in &models {
            let (r, rebuilding) = reads_are_right_or_refused(&trees, model);
            refused += r;
            seen_rebuilding |= rebuilding;
        }
        refused == 0 && trees.state() == TreeState::Ready
    })
    .await;
    assert!(seen_rebuilding, "the damage was found by a read");
    // Rebuilt: the row and the edge read back whole from the new file.
    for model in &models {
        common::tree::check_against_model(&trees, model);
    }
    node.shutdown().await.unwrap();
}

/// The `/health` of the node at `addr` as JSON.
fn health(addr: std::net::SocketAddr) -> serde_json::Value {
    get(addr, "/health").json()
}

#[test]
fn a_tree_cache_that_cannot_write_fails_alone_and_catches_up_once_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let (data, key) = (dir.path().join("data"), dir.path().join("node.key"));
    let (node, addr) = run_node(&data, &key, &["--query-wait", "0.2"]);
    for v in 0..3 {
        assert_eq!(
            post(addr, "/add", &format!(r#"{{"value":{v}}}"#)).status,
            201
        );
    }
    wait_until("the tree to cover the first entries", || {
        let h = health(addr);
        h["tree"]["state"] == "ready" && h["tree"]["lag_bytes"] == 0
    });
    let own = health(addr)["author"].as_str().unwrap().to_owned();

    // Another process takes the cache's write lock and keeps it: every write the follower
    // tries fails (SQLite's busy timeout runs out), as on a disk that refuses writes. The
    // log is another file: appends go on.
    let blocker = rusqlite::Connection::open(data.join(TREE_FILE)).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    assert_eq!(post(addr, "/add", r#"{"value":3}"#).status, 201);
    wait_until("the tree to say it failed", || {
        health(addr)["tree"]["state"] == "failed"
    });
    let h = health(addr);
    assert_eq!(
        h["status"], "ok",
        "the cache failing is not the node failing: {h}"
    );
    let reason = h["tree"]["reason"].as_str().unwrap();
    assert!(reason.contains("locked"), "{reason}");

    // Appended while the cache fails: acknowledged, readable, and beyond the tree.
    let added = post(addr, "/add", r#"{"value":4}"#);
    assert_eq!(added.status, 201, "{}", added.body);
    let seq = added.json()["seq"].as_u64().unwrap();
    assert_eq!(seq, 5);
    let hash = added.json()["hash"].as_str().unwrap().to_owned();
    assert_eq!(get(addr, &format!("/entries/{hash}")).status, 200);
    let not_yet = get(addr, &format!("/feeds/{own}/proof?seq={seq}"));
    assert_eq!(not_yet.status, 503, "{}", not_yet.body);
    assert_eq!(not_yet.header("retry-after"), Some("1"));
    assert!(not_yet.json()["error"].as_str().unwrap().contains("retry"));
    assert_eq!(health(addr)["tree"]["state"], "failed", "still failing");

    // The lock released: the follower's next try succeeds and catches up.
    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    wait_until("the tree to catch up", || {
        let h = health(addr);
        h["tree"]["state"] == "ready" && h["tree"]["lag_bytes"] == 0
    });
    let proof = get(addr, &format!("/feeds/{own}/proof?seq={seq}"));
    assert_eq!(proof.status, 200, "{}", proof.body);
    let verified = verify_entry_proof(proof.body.as_bytes(), None).unwrap();
    assert_eq!((verified.entry.seq, verified.tree_size()), (seq, seq));

    // Durable: a restart finds every acknowledged entry, and the tree covers them.
    assert!(node.terminate().success());
    let (_node, addr) = run_node(&data, &key, &[]);
    wait_until("the restarted tree to cover the log", || {
        let h = health(addr);
        h["entries"] == seq && h["tree"]["state"] == "ready" && h["tree"]["lag_bytes"] == 0
    });
    let proof = get(addr, &format!("/feeds/{own}/proof?seq=1"));
    assert_eq!(
        verify_entry_proof(proof.body.as_bytes(), None)
            .unwrap()
            .tree_size(),
        seq
    );
}
