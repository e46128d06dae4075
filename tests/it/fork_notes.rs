//! A lost fork proof never re-admits a forked feed. Recording a proof first makes a fork note
//! durable in the log; if `DATA_DIR/forks` is later truncated or emptied, the reopened node
//! still treats the author as forked (same summary digest as with the proof), `kappalog
//! verify` fails naming the author, and a peer sending the proof again restores it.

use std::path::Path;

use crate::common;
use crate::common::{identity, kappalog};
use kappalog::fork::ForkProof;
use kappalog::node::Node;

const OWN: u8 = 1;
const FORKER: u8 = 9;

fn proof() -> ForkProof {
    common::fork_proof(FORKER)
}

fn open(dir: &Path) -> Node {
    Node::open_with_identity(dir, identity(OWN)).unwrap().0
}

fn digest(node: &Node) -> serde_json::Value {
    let summary: serde_json::Value = serde_json::from_str(&node.summary_json()).unwrap();
    summary["digest"].clone()
}

fn verify(data: &Path) -> (bool, String) {
    let o = kappalog()
        .arg("--data-dir")
        .arg(data)
        .arg("verify")
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[test]
fn an_emptied_forks_file_keeps_the_feed_forked_until_a_peer_restores_the_proof() {
    let dir = tempfile::tempdir().unwrap();
    let forker = identity(FORKER).author();
    let node = open(dir.path());
    node.append_blocking(5, String::new()).unwrap();
    assert!(node.record_proof(proof()).unwrap());
    let with_proof = digest(&node);
    node.shutdown_blocking().unwrap();
    assert!(verify(dir.path()).0);

    // The forks file loses its only proof (truncated at a record boundary: nothing in the
    // file itself can tell).
    std::fs::write(dir.path().join("forks"), b"").unwrap();
    let node = open(dir.path());
    assert!(node.is_forked(&forker), "the log's note keeps it forked");
    assert!(node.fork_proofs().is_empty(), "no proof to show");
    assert_eq!(
        digest(&node),
        with_proof,
        "the summary agrees with the peers'"
    );
    let report = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(node.offer_entries(vec![common::first_entry(&identity(FORKER), 1)]))
        .unwrap();
    assert_eq!(report.refused_forked, 1, "its entries stay refused");
    node.shutdown_blocking().unwrap();
    let (ok, out) = verify(dir.path());
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("fork proof of author {forker}")),
        "{out}"
    );

    // A peer sends the proof again: recorded, shown, and verify is clean.
    let node = open(dir.path());
    assert!(node.record_proof(proof()).unwrap());
    assert_eq!(node.fork_proofs().len(), 1);
    assert_eq!(digest(&node), with_proof);
    node.shutdown_blocking().unwrap();
    let (ok, out) = verify(dir.path());
    assert!(ok, "{out}");
}

/// A data dir from before fork notes: its proofs get notes on the first open, so losing the
/// forks file afterwards cannot re-admit them either.
#[test]
fn proofs_recorded_before_notes_existed_are_noted_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let forker = identity(FORKER).author();
    open(dir.path()).shutdown_blocking().unwrap();
    std::fs::write(dir.path().join("forks"), proof().encode()).unwrap();
    let node = open(dir.path());
    assert!(node.is_forked(&forker));
    node.shutdown_blocking().unwrap();

    std::fs::write(dir.path().join("forks"), b"").unwrap();
    let node = open(dir.path());
    assert!(node.is_forked(&forker), "noted on the first open");
    node.shutdown_blocking().unwrap();
}
