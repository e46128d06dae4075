//! Checkpoint gossip in v3 sessions (docs/PROTOCOL.md section 7, "Checkpoints"), with the
//! in-memory test book standing in for the node's: notes cross both ways after the checkpoint
//! reconciliation, also between nodes holding the same entries; a changed note is pushed
//! live; a peer sending notes past the session's bound is disconnected; a malformed note is
//! a violation; the checkpoint messages in a v2 session are violations.

use std::sync::Arc;

use crate::common;
use crate::common::net::{fast_config, start_with, wait_for, TestNode};
use crate::common::peer::RawPeer;
use ed25519_dalek::SigningKey;
use kappalog::identity::Author;
use kappalog::node::Node;
use kappalog::sync::checkpoint_book::{CheckpointBook, SharedBook};
use kappalog::sync::memory_book::MemoryBook;
use kappalog::sync::message::{Bye, ByeReason, Checkpoints, EncodedNote, Message};
use kappalog::sync::reconcile::Reconcile;
use kappalog::sync::SyncConfig;
use kappalog::tlog::checkpoint::{origin_for, Checkpoint, SignedCheckpoint};

/// A signed checkpoint note of the feed of key `seed` at `size`.
fn note(seed: u8, size: u64) -> Vec<u8> {
    let key = SigningKey::from_bytes(&[seed; 32]);
    let origin = origin_for(key.verifying_key().as_bytes());
    let checkpoint =
        Checkpoint::new(&origin, size, [u8::try_from(size % 256).unwrap(); 32]).unwrap();
    SignedCheckpoint::sign(checkpoint, &key).unwrap().to_bytes()
}

fn author_of(seed: u8) -> Author {
    Author(
        *SigningKey::from_bytes(&[seed; 32])
            .verifying_key()
            .as_bytes(),
    )
}

async fn node_with(
    dir: &std::path::Path,
    seed: u8,
    peers: &[std::net::SocketAddr],
    book: Arc<MemoryBook>,
    tweak: impl FnOnce(&mut SyncConfig),
) -> TestNode {
    let (node, _) = Node::open_with_identity(dir, common::identity(seed)).unwrap();
    let mut config = SyncConfig {
        checkpoint_book: Some(SharedBook(book)),
        ..fast_config()
    };
    tweak(&mut config);
    start_with(node, peers, config).await
}

fn served(book: &MemoryBook, seed: u8) -> Option<Vec<u8>> {
    book.served(&author_of(seed)).map(|n| n.to_vec())
}

/// Neither node holds an entry: the books differ only in notes, and each ends with the
/// newer note of every feed, in both directions; then a note served anew reaches the peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_v3_nodes_exchange_notes_both_ways_and_live() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (book_a, book_b) = (
        Arc::new(MemoryBook::default()),
        Arc::new(MemoryBook::default()),
    );
    book_a.serve(&note(50, 3)).unwrap();
    book_b.serve(&note(50, 1)).unwrap();
    book_b.serve(&note(51, 2)).unwrap();
    let a = node_with(da.path(), 1, &[], book_a.clone(), |_| {}).await;
    let b = node_with(db.path(), 2, &[a.addr], book_b.clone(), |_| {}).await;
    wait_for("the notes to cross both ways", || {
        served(&book_b, 50) == Some(note(50, 3)) && served(&book_a, 51) == Some(note(51, 2))
    })
    .await;
    assert_eq!(a.count(), 0, "no entries: only notes crossed");
    // Live: a note served anew on b (a newer checkpoint) is pushed to a.
    book_b.serve(&note(51, 5)).unwrap();
    wait_for("the live push", || served(&book_a, 51) == Some(note(51, 5))).await;
    book_a.serve(&note(52, 1)).unwrap();
    wait_for("the live push back", || {
        served(&book_b, 52) == Some(note(52, 1))
    })
    .await;
    a.stop().await;
    b.stop().await;
}

/// A v3 node with a note and a node held to v2 (hidden `--sync-protocol-max 2`): entries
/// sync, notes do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_session_carries_no_notes() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (book_a, book_b) = (
        Arc::new(MemoryBook::default()),
        Arc::new(MemoryBook::default()),
    );
    book_a.serve(&note(50, 3)).unwrap();
    let a = node_with(da.path(), 1, &[], book_a.clone(), |_| {}).await;
    let b = node_with(db.path(), 2, &[a.addr], book_b.clone(), |c| {
        c.max_protocol_version = 2
    })
    .await;
    common::net::append_n(&a.node, 2, 0).await;
    wait_for("the entries", || b.count() == 2).await;
    // A v2 session: nothing of v3 is sent in it (by construction; the note stays on a).
    let on_b = b.sync.peers(&b.node);
    assert_eq!(on_b[0].protocol, Some(2), "{on_b:?}");
    assert_eq!(served(&book_b, 50), None);
    a.stop().await;
    b.stop().await;
}

/// A raw v3 peer: `Checkpoints` past the session's bucket ends the session with
/// `ProtocolViolation`; a malformed note too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_flooding_notes_or_sending_a_malformed_one_is_disconnected() {
    let dn = tempfile::tempdir().unwrap();
    let book = Arc::new(MemoryBook::default());
    let n = node_with(dn.path(), 1, &[], book.clone(), |c| {
        // No refill: the bound does not depend on how fast the test runs.
        c.checkpoint_burst = 4;
        c.checkpoints_per_second = 0;
    })
    .await;
    let notes = |seeds: std::ops::Range<u8>| {
        Message::Checkpoints(Checkpoints {
            notes: seeds.map(|s| EncodedNote(note(s, 1))).collect(),
        })
    };
    let mut flood = RawPeer::connect(n.addr, &common::identity(66)).await;
    flood.send(&notes(60..63)).await;
    let _ = flood.try_send(&notes(63..66)).await;
    let frames = flood.read_until_closed().await;
    assert!(bye(&frames, ByeReason::ProtocolViolation), "{frames:?}");
    // The first frame was within the bound and taken.
    wait_for("the first notes", || served(&book, 62) == Some(note(62, 1))).await;
    assert_eq!(served(&book, 65), None);

    let mut bad = RawPeer::connect(n.addr, &common::identity(67)).await;
    bad.send(&Message::Checkpoints(Checkpoints {
        notes: vec![EncodedNote(b"not a note\n".to_vec())],
    }))
    .await;
    let frames = bad.read_until_closed().await;
    assert!(bye(&frames, ByeReason::ProtocolViolation), "{frames:?}");
    n.stop().await;
}

fn bye(frames: &[Message], reason: ByeReason) -> bool {
    frames.contains(&Message::Bye(Bye { reason }))
}

/// In a v2 session both checkpoint messages are violations, as a v2 node sees them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_messages_in_a_v2_session_are_violations() {
    let dn = tempfile::tempdir().unwrap();
    let book = Arc::new(MemoryBook::default());
    let n = node_with(dn.path(), 1, &[], book.clone(), |_| {}).await;
    for (i, message) in [
        Message::Checkpoints(Checkpoints {
            notes: vec![EncodedNote(note(70, 1))],
        }),
        Message::CheckpointReconcile(Reconcile {
            ranges: vec![],
            last: true,
        }),
    ]
    .into_iter()
    .enumerate()
    {
        let mut peer = RawPeer::connect_at(n.addr, &common::identity(80 + i as u8), 2).await;
        peer.send(&message).await;
        let frames = peer.read_until_closed().await;
        assert!(bye(&frames, ByeReason::ProtocolViolation), "{frames:?}");
    }
    assert_eq!(served(&book, 70), None);
    n.stop().await;
}
