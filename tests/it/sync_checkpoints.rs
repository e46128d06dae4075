//! Checkpoint gossip in v3 sessions (docs/PROTOCOL.md section 7, "Checkpoints"), with the
//! in-memory test book standing in for the node's: notes cross both ways after the checkpoint
//! reconciliation, also between nodes holding the same entries; a changed note is pushed
//! live; a peer sending notes past the session's bound is disconnected; a malformed note is
//! a violation; the checkpoint messages in a v2 session are violations; a note is offered
//! only once the entries before it are stored; a peer that stalls or drags out the
//! checkpoint reconciliation is ended at its deadline, its entries kept; a note a peer sent
//! is not pushed back to it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common;
use crate::common::held_io::node_with_held_syncs;
use crate::common::net::{fast_config, start_with, wait_for, TestNode};
use crate::common::peer::RawPeer;
use ed25519_dalek::SigningKey;
use kappalog::identity::Author;
use kappalog::node::Node;
use kappalog::store::StoreReader;
use kappalog::sync::checkpoint_book::{CheckpointBook, CheckpointOfferError, SharedBook};
use kappalog::sync::memory_book::MemoryBook;
use kappalog::sync::message::{
    Bye, ByeReason, Checkpoints, EncodedEntry, EncodedNote, Entries, FeedHave, Message,
};
use kappalog::sync::reconcile::{Bound, Range, RangeMode, Reconcile, Reconciler, Step};
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

/// A v4 node and a node held to v3 (hidden `--sync-protocol-max 3`), whichever dials: a v3
/// session, in which entries and notes cross both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v3_and_a_v4_node_exchange_entries_and_notes_in_a_v3_session() {
    for (listener_max, dialer_max) in [(4, 3), (3, 4)] {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (book_a, book_b) = (
            Arc::new(MemoryBook::default()),
            Arc::new(MemoryBook::default()),
        );
        book_a.serve(&note(50, 3)).unwrap();
        book_b.serve(&note(51, 2)).unwrap();
        let a = node_with(da.path(), 1, &[], book_a.clone(), |c| {
            c.max_protocol_version = listener_max
        })
        .await;
        let b = node_with(db.path(), 2, &[a.addr], book_b.clone(), |c| {
            c.max_protocol_version = dialer_max
        })
        .await;
        common::net::append_n(&a.node, 2, 0).await;
        common::net::append_n(&b.node, 1, 10).await;
        wait_for("entries and notes both ways", || {
            a.count() == 3
                && b.count() == 3
                && served(&book_b, 50) == Some(note(50, 3))
                && served(&book_a, 51) == Some(note(51, 2))
        })
        .await;
        let on_b = b.sync.peers(&b.node);
        assert_eq!(on_b[0].protocol, Some(3), "{on_b:?}");
        a.stop().await;
        b.stop().await;
    }
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

/// One `Entries` frame carrying `feed`.
fn entries_of(feed: &[(kappalog::entry::Entry, kappalog::hash::Hash)]) -> Message {
    Message::Entries(Entries {
        entries: feed
            .iter()
            .map(|(e, _)| EncodedEntry::from_entry(e))
            .collect(),
    })
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

/// Reads what the node sends until it closes (bounded), answering each of its `Ping`s with
/// `step()`, if any: the peer is never idle, so only the checkpoint reconciliation's
/// deadline can end the session.
async fn read_answering_pings(
    peer: &mut RawPeer,
    mut step: impl FnMut() -> Option<Message>,
) -> Vec<Message> {
    let mut got = Vec::new();
    let closed = tokio::time::timeout(common::DEADLINE, async {
        while let Ok(m) = peer.reader.next().await {
            if m == Message::Ping {
                let _ = peer.try_send(&step().unwrap_or(Message::Ping)).await;
            }
            got.push(m);
        }
    })
    .await;
    assert!(closed.is_ok(), "the node did not close the session");
    got
}

/// Whether the node recorded the session from `peer`'s address as ended by the checkpoint
/// reconciliation's deadline (recorded just after the `Bye` is sent).
fn ended_at_the_deadline(n: &TestNode, peer: &RawPeer) -> bool {
    let records = n.sync.peers(&n.node);
    let record = records.iter().find(|p| p.addr == peer.local.to_string());
    record
        .and_then(|r| r.last_error.as_deref())
        .is_some_and(|e| e.contains("timed out reconciling checkpoints"))
}

/// A raw v3 dialer completes the entries' part (it sends its feed, gets the node's) and then
/// never opens the checkpoint reconciliation, answering pings only: the node ends the
/// session with `Bye(Timeout)` at the reconciliation's deadline, and what the peer sent and
/// was sent in the entries' part stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reconciles_checkpoints_is_ended_at_the_deadline() {
    let dn = tempfile::tempdir().unwrap();
    let book = Arc::new(MemoryBook::default());
    let n = node_with(dn.path(), 1, &[], book, |c| {
        c.checkpoint_reconcile_timeout = Duration::from_millis(300);
    })
    .await;
    common::net::append_n(&n.node, 2, 0).await;
    let id = common::identity(90);
    let feed = common::feed(&id, 3);
    let mut peer = RawPeer::connect(n.addr, &id).await;
    let held = FeedHave {
        author: id.author(),
        length: 3,
        head: feed[2].1,
    };
    let theirs = peer.reconcile(vec![held]).await;
    assert_eq!(theirs.len(), 1, "the node holds its own feed");
    peer.send(&entries_of(&feed)).await;
    let frames = read_answering_pings(&mut peer, || None).await;
    assert!(bye(&frames, ByeReason::Timeout), "{frames:?}");
    let sent: usize = frames
        .iter()
        .map(|m| match m {
            Message::Entries(e) => e.entries.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(sent, 2, "the node's plan reached the peer: {frames:?}");
    wait_for("the peer's entries", || n.count() == 5).await;
    wait_for("the end recorded as the deadline's", || {
        ended_at_the_deadline(&n, &peer)
    })
    .await;
    n.stop().await;
}

/// A raw v3 dialer opens the checkpoint reconciliation with one tiny frame of its opening
/// round and adds one more at each of the node's pings, never ending the round (each frame
/// is valid, and the frame cap is far off): the deadline ends it with `Bye(Timeout)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_dragging_out_the_checkpoint_reconciliation_is_ended_at_the_deadline() {
    let dn = tempfile::tempdir().unwrap();
    let book = Arc::new(MemoryBook::default());
    book.serve(&note(50, 3)).unwrap();
    let n = node_with(dn.path(), 1, &[], book, |c| {
        c.checkpoint_reconcile_timeout = Duration::from_secs(1);
        c.ping_interval = Duration::from_millis(50);
    })
    .await;
    let mut peer = RawPeer::connect(n.addr, &common::identity(91)).await;
    peer.reconcile(vec![]).await;
    let mut steps = 0u8;
    let mut step = move || {
        steps = steps.checked_add(1)?;
        let mut upper = [0; 32];
        upper[31] = steps;
        Some(Message::CheckpointReconcile(Reconcile {
            ranges: vec![Range {
                upper: Bound::Author(Author(upper)),
                mode: RangeMode::Items(vec![]),
            }],
            last: false,
        }))
    };
    peer.send(&step().unwrap()).await;
    let frames = read_answering_pings(&mut peer, step).await;
    assert!(bye(&frames, ByeReason::Timeout), "{frames:?}");
    assert!(
        !frames.iter().any(|m| matches!(m, Message::Checkpoints(_))),
        "no note before the reconciliation ends: {frames:?}"
    );
    wait_for("the end recorded as the deadline's", || {
        ended_at_the_deadline(&n, &peer)
    })
    .await;
    n.stop().await;
}

/// The rule of the node's checkpoint book that matters below, over the in-memory book: a
/// note of a feed the node does not hold is dropped (docs/TLOG.md; the node's book drops it
/// as "feed not held"). Each offer records whether the feed was held when it came.
struct HeldFeedsOnly {
    inner: MemoryBook,
    reader: StoreReader,
    author: Author,
    offers: Mutex<Vec<bool>>,
}

impl CheckpointBook for HeldFeedsOnly {
    fn items(&self) -> Vec<FeedHave> {
        self.inner.items()
    }
    fn served(&self, author: &Author) -> Option<Arc<[u8]>> {
        self.inner.served(author)
    }
    fn offer(&self, peer: &Author, note: &[u8]) -> Result<bool, CheckpointOfferError> {
        let held = self.reader.head(&self.author).is_some();
        self.offers.lock().unwrap().push(held);
        if !held {
            return Ok(false);
        }
        self.inner.offer(peer, note)
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Author> {
        self.inner.subscribe()
    }
}

/// A raw v3 peer sends a new feed's entries and, right behind them, the feed's note, while
/// the node's `fdatasync` is held (the append in flight cannot finish): the session offers
/// the note only once the entries before it are stored, so the book, which drops notes of
/// feeds the node does not hold, keeps it. Regression test of 952cb7f: before it, the note
/// was offered while the entries were in flight and dropped, every time the sync was held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_behind_its_feeds_entries_is_offered_once_they_are_stored() {
    let dn = tempfile::tempdir().unwrap();
    let (node, io) = node_with_held_syncs(dn.path());
    let seed = 92;
    let book = Arc::new(HeldFeedsOnly {
        inner: MemoryBook::default(),
        reader: node.reader().clone(),
        author: author_of(seed),
        offers: Mutex::default(),
    });
    let config = SyncConfig {
        checkpoint_book: Some(SharedBook(book.clone())),
        ..fast_config()
    };
    let n = start_with(node, &[], config).await;
    let id = common::identity(seed);
    let feed = common::feed(&id, 3);

    io.hold();
    let mut peer = RawPeer::connect_and_have(n.addr, &common::identity(93)).await;
    peer.send(&entries_of(&feed)).await;
    peer.send(&Message::Checkpoints(Checkpoints {
        notes: vec![EncodedNote(note(seed, 3))],
    }))
    .await;
    let held = io.clone();
    tokio::task::spawn_blocking(move || held.wait_until_held())
        .await
        .unwrap();
    // While the append is held the note is not offered, even well after the frame arrived
    // (this bounded wait is the assertion: before the fix it was offered at once).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(book.offers.lock().unwrap().is_empty(), "offered while held");
    io.release();
    wait_for("the note offered", || {
        !book.offers.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(
        *book.offers.lock().unwrap(),
        [true],
        "offered before its feed was held"
    );
    assert_eq!(served(&book.inner, seed), Some(note(seed, 3)));
    assert_eq!(n.count(), 3);
    n.stop().await;
}

/// Runs the checkpoint reconciliation as the dialer holding no notes, to its end; other
/// messages meanwhile are dropped.
async fn reconcile_checkpoints(peer: &mut RawPeer) {
    let mut reconciler = Reconciler::new(vec![]);
    for frame in reconciler.initiate() {
        peer.send(&Message::CheckpointReconcile(frame)).await;
    }
    tokio::time::timeout(common::DEADLINE, async {
        while !reconciler.is_done() {
            if let Message::CheckpointReconcile(frame) = peer.reader.next().await.unwrap() {
                if let Some(Step::Reply(frames)) = reconciler.receive(frame).unwrap() {
                    for frame in frames {
                        peer.send(&Message::CheckpointReconcile(frame)).await;
                    }
                }
            }
        }
    })
    .await
    .expect("the checkpoint reconciliation within the deadline");
}

/// No echo: a note a peer sends changes what the node serves, and every session pushes a
/// changed note, but not to the peer that sent it. A note of another feed changing after
/// it is pushed, and the peer's own note would have gone first or with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_a_peer_sent_is_not_pushed_back_to_it() {
    let dn = tempfile::tempdir().unwrap();
    let book = Arc::new(MemoryBook::default());
    let n = node_with(dn.path(), 1, &[], book.clone(), |_| {}).await;
    let mut changes = book.subscribe();
    let mut peer = RawPeer::connect_and_have(n.addr, &common::identity(94)).await;
    reconcile_checkpoints(&mut peer).await;
    peer.send(&Message::Checkpoints(Checkpoints {
        notes: vec![EncodedNote(note(50, 1))],
    }))
    .await;
    let changed = tokio::time::timeout(common::DEADLINE, changes.recv()).await;
    assert_eq!(
        changed.unwrap().unwrap(),
        author_of(50),
        "the book took the note"
    );
    book.serve(&note(51, 1)).unwrap();
    let mut pushed = Vec::new();
    while !pushed.contains(&EncodedNote(note(51, 1))) {
        let next = tokio::time::timeout(common::DEADLINE, peer.reader.next()).await;
        if let Message::Checkpoints(c) = next.expect("the push within the deadline").unwrap() {
            pushed.extend(c.notes);
        }
    }
    assert_eq!(
        pushed,
        [EncodedNote(note(51, 1))],
        "the peer's own note came back"
    );
    n.stop().await;
}
