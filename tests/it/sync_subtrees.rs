//! The copy-search messages of v4 sessions (docs/PROTOCOL.md section 7, "Copy searches"),
//! against a node over real TCP, with a raw peer on the other side and a test double for
//! the node's copy searches (the node's own is wired by the node, not here): the messages in
//! a v3 session, an unsolicited answer, a flood of wants, an answer out of order and a
//! search that finds the answers invalid are violations; a want is answered with the node's
//! subtrees, or with nothing for what it does not hold, and the session goes on; a note the
//! book declines starts a search whose answers reach it in order; a search past its
//! deadline is dropped, its late answers are taken, and the session goes on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common;
use crate::common::net::{append_n, fast_config, start_with, wait_for, TestNode};
use crate::common::peer::RawPeer;
use ed25519_dalek::SigningKey;
use kappalog::identity::Author;
use kappalog::node::Node;
use kappalog::sync::checkpoint_book::SharedBook;
use kappalog::sync::copy_searches::{CopySearchRun, CopySearches, SearchEnd, SharedCopySearches};
use kappalog::sync::memory_book::MemoryBook;
use kappalog::sync::message::{
    Bye, ByeReason, Checkpoints, EncodedEntry, EncodedNote, Message, SubtreeData, Subtrees,
    WantSubtrees,
};
use kappalog::sync::SyncConfig;
use kappalog::tlog::checkpoint::{origin_for, Checkpoint, SignedCheckpoint};
use kappalog::tlog::merkle::{leaf_hash, node_hash};

/// What a scripted search was handed, in order.
type Replies = Arc<Mutex<Vec<(WantSubtrees, Option<SubtreeData>)>>>;

/// A search that asks for `first`, records every answer, and ends with `end` at the
/// `end_after`-th answer; `dropped` turns true when the session lets it go.
struct Scripted {
    author: Author,
    first: Vec<WantSubtrees>,
    replies: Replies,
    end_after: usize,
    end: SearchEnd,
    dropped: Arc<AtomicBool>,
}

impl CopySearchRun for Scripted {
    fn author(&self) -> Author {
        self.author
    }
    fn start(&mut self) -> Result<Vec<WantSubtrees>, SearchEnd> {
        Ok(self.first.clone())
    }
    fn on_reply(
        &mut self,
        want: &WantSubtrees,
        data: Option<SubtreeData>,
    ) -> Result<Vec<WantSubtrees>, SearchEnd> {
        let mut replies = self.replies.lock().unwrap();
        replies.push((*want, data));
        if replies.len() >= self.end_after {
            return Err(self.end.clone());
        }
        Ok(vec![])
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

/// The node's copy searches, doubled: subtrees computed from the node's store (leaf hashes
/// of the stored entries' encodings, combined as docs/TLOG.md does), and one scripted
/// search, handed out for the first note offered.
struct Double {
    node: Node,
    search: Mutex<Option<Scripted>>,
}

impl CopySearches for Double {
    fn subtrees(&self, author: &Author, level: u8, index: u64, count: u16) -> Option<SubtreeData> {
        let width = 1u64 << level;
        let first = index * width;
        let mut entries = Vec::new();
        for seq in first + 1..=first + u64::from(count) * width {
            let (entry, _) = self.node.reader().get(author, seq).ok()??;
            entries.push(EncodedEntry::from_entry(&entry));
        }
        Some(if level == 0 {
            SubtreeData::Entries(entries)
        } else {
            SubtreeData::Hashes(subtree_hashes(&entries, level))
        })
    }

    fn start(&self, _peer: &Author, _note: &[u8]) -> Option<Box<dyn CopySearchRun>> {
        let search = self.search.lock().unwrap().take()?;
        Some(Box::new(search))
    }
}

/// The hashes of the complete subtrees of height `level` over `entries`, in order.
fn subtree_hashes(entries: &[EncodedEntry], level: u8) -> Vec<kappalog::hash::Hash> {
    let mut row: Vec<[u8; 32]> = entries.iter().map(|e| leaf_hash(&e.0)).collect();
    for _ in 0..level {
        row = row.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
    }
    row.into_iter().map(kappalog::hash::Hash).collect()
}

fn author_of(seed: u8) -> Author {
    Author(
        *SigningKey::from_bytes(&[seed; 32])
            .verifying_key()
            .as_bytes(),
    )
}

/// A signed checkpoint note of the feed of key `seed` at `size`.
fn note(seed: u8, size: u64) -> Vec<u8> {
    let key = SigningKey::from_bytes(&[seed; 32]);
    let origin = origin_for(key.verifying_key().as_bytes());
    let checkpoint = Checkpoint::new(&origin, size, [7; 32]).unwrap();
    SignedCheckpoint::sign(checkpoint, &key).unwrap().to_bytes()
}

fn want(author: Author, level: u8, index: u64, count: u16) -> WantSubtrees {
    WantSubtrees {
        author,
        level,
        index,
        count,
    }
}

/// A node whose book serves the note of feed 50 at size 3 (so a note of size 1 is
/// declined), with the double as its copy searches, handing out `search` if given.
async fn node(
    dir: &std::path::Path,
    search: Option<Scripted>,
    tweak: impl FnOnce(&mut SyncConfig),
) -> TestNode {
    let (node, _) = Node::open_with_identity(dir, common::identity(1)).unwrap();
    let book = Arc::new(MemoryBook::default());
    book.serve(&note(50, 3)).unwrap();
    let double = Double {
        node: node.clone(),
        search: Mutex::new(search),
    };
    let mut config = SyncConfig {
        checkpoint_book: Some(SharedBook(book)),
        copy_searches: Some(SharedCopySearches(Arc::new(double))),
        ..fast_config()
    };
    tweak(&mut config);
    start_with(node, &[], config).await
}

fn violation() -> Message {
    Message::Bye(Bye {
        reason: ByeReason::ProtocolViolation,
    })
}

/// The next message `pick` takes, skipping others (pings, the node's reconciliation).
async fn next_of<T>(peer: &mut RawPeer, mut pick: impl FnMut(Message) -> Option<T>) -> T {
    tokio::time::timeout(common::DEADLINE, async {
        loop {
            if let Some(got) = pick(peer.reader.next().await.unwrap()) {
                return got;
            }
        }
    })
    .await
    .expect("the message came before the deadline")
}

async fn next_answer(peer: &mut RawPeer) -> Subtrees {
    next_of(peer, |m| match m {
        Message::Subtrees(answer) => Some(answer),
        _ => None,
    })
    .await
}

async fn next_want(peer: &mut RawPeer) -> WantSubtrees {
    next_of(peer, |m| match m {
        Message::WantSubtrees(want) => Some(want),
        _ => None,
    })
    .await
}

/// A scripted search for feed 50 asking for one subtree of height 8, then two leaves.
fn scripted(end_after: usize, end: SearchEnd) -> (Scripted, Replies, Arc<AtomicBool>) {
    let (replies, dropped) = (Replies::default(), Arc::new(AtomicBool::new(false)));
    let author = author_of(50);
    let search = Scripted {
        author,
        first: vec![want(author, 8, 0, 1), want(author, 0, 0, 2)],
        replies: replies.clone(),
        end_after,
        end,
        dropped: dropped.clone(),
    };
    (search, replies, dropped)
}

/// Connects as a v4 peer and sends the stale note of feed 50, which the book declines.
async fn offer_stale_note(n: &TestNode, seed: u8) -> RawPeer {
    let mut peer = RawPeer::connect(n.addr, &common::identity(seed)).await;
    peer.send(&Message::Checkpoints(Checkpoints {
        notes: vec![EncodedNote(note(50, 1))],
    }))
    .await;
    peer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subtree_messages_in_a_v3_session_are_violations() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path(), None, |_| {}).await;
    let w = want(n.node.author(), 0, 0, 1);
    for (i, message) in [
        Message::WantSubtrees(w),
        Message::Subtrees(Subtrees::answer(&w, None)),
    ]
    .into_iter()
    .enumerate()
    {
        let mut peer = RawPeer::connect_at(n.addr, &common::identity(10 + i as u8), 3).await;
        peer.send(&message).await;
        let frames = peer.read_until_closed().await;
        assert!(frames.contains(&violation()), "{frames:?}");
        assert!(
            !frames.iter().any(|m| matches!(m, Message::Subtrees(_))),
            "{frames:?}"
        );
    }
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsolicited_answer_is_a_violation() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path(), None, |_| {}).await;
    let mut peer = RawPeer::connect(n.addr, &common::identity(12)).await;
    let w = want(n.node.author(), 0, 0, 1);
    peer.send(&Message::Subtrees(Subtrees::answer(&w, None)))
        .await;
    let frames = peer.read_until_closed().await;
    assert!(frames.contains(&violation()), "{frames:?}");
    n.stop().await;
}

/// No refill: the bound does not depend on how fast the test runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_wants_is_a_violation() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path(), None, |c| {
        c.subtree_wants_burst = 4;
        c.subtree_wants_per_second = 0;
    })
    .await;
    let mut peer = RawPeer::connect(n.addr, &common::identity(13)).await;
    for index in 0..5 {
        let _ = peer
            .try_send(&Message::WantSubtrees(want(author_of(60), 0, index, 1)))
            .await;
    }
    let frames = peer.read_until_closed().await;
    assert!(frames.contains(&violation()), "{frames:?}");
    let answers = frames
        .iter()
        .filter(|m| matches!(m, Message::Subtrees(_)))
        .count();
    assert!(answers <= 4, "{frames:?}");
    n.stop().await;
}

/// The peer holds the node's 300 entries from the session's plan and computes the
/// subtrees from the bytes it received; the node's answers (from its store) must match.
/// What the node does not hold is answered with nothing, and the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wants_are_answered_with_the_nodes_subtrees_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path(), None, |_| {}).await;
    append_n(&n.node, 300, 0).await;
    let own = n.node.author();
    let mut peer = RawPeer::connect_and_have(n.addr, &common::identity(14)).await;
    let mut received: Vec<EncodedEntry> = Vec::new();
    while received.len() < 300 {
        let batch = next_of(&mut peer, |m| match m {
            Message::Entries(batch) => Some(batch.entries),
            _ => None,
        })
        .await;
        received.extend(batch);
    }
    let asked = [
        want(author_of(61), 1, 0, 1),
        want(own, 8, 0, 1),
        want(own, 1, 0, 128),
        want(own, 0, 256, 44),
        want(own, 8, 1, 1),
    ];
    for w in asked {
        peer.send(&Message::WantSubtrees(w)).await;
    }
    let hashes = |level| Some(SubtreeData::Hashes(subtree_hashes(&received[..256], level)));
    let expected = [
        None,
        hashes(8),
        hashes(1),
        Some(SubtreeData::Entries(received[256..].to_vec())),
        None,
    ];
    for (w, data) in asked.iter().zip(expected) {
        let answer = next_answer(&mut peer).await;
        assert!(w.is_answered_by(&answer), "{w:?} {answer:?}");
        assert_eq!(answer.data(), data, "{w:?}");
    }
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_note_starts_a_search_whose_answers_reach_it_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (search, replies, dropped) = scripted(2, SearchEnd::Done);
    let n = node(dir.path(), Some(search), |_| {}).await;
    let mut peer = offer_stale_note(&n, 15).await;
    let (a, b) = (next_want(&mut peer).await, next_want(&mut peer).await);
    assert_eq!(
        (a, b),
        (want(author_of(50), 8, 0, 1), want(author_of(50), 0, 0, 2))
    );
    let hash = kappalog::hash::Hash([9; 32]);
    let data = SubtreeData::Hashes(vec![hash]);
    peer.send(&Message::Subtrees(Subtrees::answer(&a, Some(data.clone()))))
        .await;
    peer.send(&Message::Subtrees(Subtrees::answer(&b, None)))
        .await;
    wait_for("the search to end", || dropped.load(Ordering::SeqCst)).await;
    assert_eq!(*replies.lock().unwrap(), [(a, Some(data)), (b, None)]);
    // The session goes on: a want of the peer's is still answered.
    peer.send(&Message::WantSubtrees(a)).await;
    assert!(a.is_answered_by(&next_answer(&mut peer).await));
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_to_another_want_than_the_oldest_is_a_violation() {
    let dir = tempfile::tempdir().unwrap();
    let (search, replies, _) = scripted(2, SearchEnd::Done);
    let n = node(dir.path(), Some(search), |_| {}).await;
    let mut peer = offer_stale_note(&n, 16).await;
    let _a = next_want(&mut peer).await;
    let b = next_want(&mut peer).await;
    peer.send(&Message::Subtrees(Subtrees::answer(&b, None)))
        .await;
    let frames = peer.read_until_closed().await;
    assert!(frames.contains(&violation()), "{frames:?}");
    assert!(replies.lock().unwrap().is_empty());
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_that_finds_the_answers_invalid_ends_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let (search, replies, _) = scripted(1, SearchEnd::Violation("not its tree".into()));
    let n = node(dir.path(), Some(search), |_| {}).await;
    let mut peer = offer_stale_note(&n, 17).await;
    let a = next_want(&mut peer).await;
    peer.send(&Message::Subtrees(Subtrees::answer(&a, None)))
        .await;
    let frames = peer.read_until_closed().await;
    assert!(frames.contains(&violation()), "{frames:?}");
    assert_eq!(replies.lock().unwrap().len(), 1);
    n.stop().await;
}

/// The search's deadline passes while the peer holds its answers back: the search is
/// dropped, the answers that come after are matched and dropped (not violations), and the
/// session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_past_its_deadline_is_dropped_and_the_session_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (search, replies, dropped) = scripted(2, SearchEnd::Done);
    let n = node(dir.path(), Some(search), |c| {
        c.copy_search_timeout = Duration::from_millis(50);
    })
    .await;
    let mut peer = offer_stale_note(&n, 18).await;
    let (a, b) = (next_want(&mut peer).await, next_want(&mut peer).await);
    wait_for("the search to be dropped", || {
        dropped.load(Ordering::SeqCst)
    })
    .await;
    for w in [a, b] {
        peer.send(&Message::Subtrees(Subtrees::answer(&w, None)))
            .await;
    }
    peer.send(&Message::WantSubtrees(a)).await;
    assert!(a.is_answered_by(&next_answer(&mut peer).await));
    assert!(replies.lock().unwrap().is_empty());
    n.stop().await;
}
