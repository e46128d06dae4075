//! Unit tests of `copy_search.rs`: a node's feed of 70,000 signed entries and a peer whose
//! tree holds other copies (or other entries) at some seqs, the peer answering each want
//! from its own tree; then peers that lie, one way each, asserting the exact outcome.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::hazmat::ExpandedSecretKey;
use sha2::{Digest, Sha512};

use super::*;
use crate::entry::testing::feed as feed_of;
use crate::identity::{challenge, Identity, Signature};
use crate::tlog::merkle::{stored_hash_index, MemoryTree};

const SEED: [u8; 32] = [7; 32];
const FEED_SIZE: u64 = 70_000;

struct Feed {
    entries: Vec<Entry>,
    tree: MemoryTree,
}

/// The node's feed, built once: signing 70,000 entries is most of what these tests cost.
fn feed() -> &'static Feed {
    static FEED: OnceLock<Feed> = OnceLock::new();
    FEED.get_or_init(|| {
        let entries: Vec<Entry> = feed_of(SEED[0], FEED_SIZE, 0)
            .into_iter()
            .map(|(entry, _)| entry)
            .collect();
        let mut tree = MemoryTree::new();
        for entry in &entries {
            tree.append(leaf_hash(&entry.encode())).unwrap();
        }
        Feed { entries, tree }
    })
}

fn base(seq: u64) -> Entry {
    feed().entries[usize::try_from(seq - 1).unwrap()].clone()
}

/// The entry at `seq` signed again with another nonce: what only its author can make.
fn second_copy(seq: u64) -> Entry {
    let entry = base(seq);
    let hash = entry.hash();
    let scalar = ExpandedSecretKey::from_bytes(&Sha512::digest(SEED).into()).scalar;
    let nonce = Sha512::new()
        .chain_update(b"another nonce prefix")
        .chain_update(hash.as_bytes())
        .finalize();
    let r = Scalar::from_bytes_mod_order_wide(&nonce.into());
    let big_r = EdwardsPoint::mul_base(&r).compress();
    let s = r + challenge(big_r.as_bytes(), entry.author.as_bytes(), hash.as_bytes()) * scalar;
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(big_r.as_bytes());
    bytes[32..].copy_from_slice(s.as_bytes());
    let copy = Entry {
        signature: Signature(bytes),
        ..entry.clone()
    };
    assert_ne!(copy.signature, entry.signature);
    assert_eq!(
        signature::verify(&copy.author, &hash, &copy.signature),
        Ok(())
    );
    copy
}

/// Another entry at `seq`, validly signed: a fork.
fn other_entry(seq: u64) -> Entry {
    let mut unsigned = base(seq).unsigned();
    unsigned.data = format!("another entry {seq}");
    unsigned.sign(&Identity::from_seed(SEED)).0
}

/// The node: its tree and log are the feed.
struct Node;

impl LocalTree for Node {
    fn subtree_hashes(&mut self, level: u8, index: u64, count: u16) -> Result<Vec<Hash>, String> {
        let stored = feed().tree.stored_hashes();
        (index..index + u64::from(count))
            .map(|n| {
                let at = stored_hash_index(u32::from(level), n);
                stored
                    .get(usize::try_from(at).unwrap())
                    .copied()
                    .ok_or(format!("no stored hash ({level}, {n})"))
            })
            .collect()
    }

    fn entry(&mut self, seq: u64) -> Result<Entry, String> {
        Ok(base(seq))
    }
}

/// What a peer sends back for one want.
#[derive(Debug, Clone)]
enum Reply {
    Hashes(Vec<Hash>),
    Entries(Vec<Vec<u8>>),
}

/// A peer whose feed is the node's with `replaced` entries in place, up to `size`.
struct Peer {
    replaced: BTreeMap<u64, Entry>,
    tree: MemoryTree,
}

impl Peer {
    fn new(size: u64, replaced: impl IntoIterator<Item = Entry>) -> Peer {
        let replaced: BTreeMap<u64, Entry> = replaced.into_iter().map(|e| (e.seq, e)).collect();
        let mut peer = Peer {
            replaced,
            tree: MemoryTree::new(),
        };
        for seq in 1..=size {
            let leaf = leaf_hash(&peer.entry(seq).encode());
            peer.tree.append(leaf).unwrap();
        }
        peer
    }

    fn entry(&self, seq: u64) -> Entry {
        self.replaced
            .get(&seq)
            .cloned()
            .unwrap_or_else(|| base(seq))
    }

    fn root(&self) -> Hash {
        self.tree.root().unwrap()
    }

    fn answer(&self, want: &SubtreeWant) -> Reply {
        let range = want.index..want.index + u64::from(want.count);
        match want.level {
            0 => Reply::Entries(range.map(|i| self.entry(i + 1).encode()).collect()),
            level => Reply::Hashes(
                range
                    .map(|n| {
                        let at = stored_hash_index(u32::from(level), n);
                        self.tree.stored_hashes()[usize::try_from(at).unwrap()]
                    })
                    .collect(),
            ),
        }
    }
}

/// A finished search: its outcome and how many rounds and wants it took.
#[derive(Debug)]
struct Outcome {
    result: Result<Found, SearchError>,
    rounds: usize,
    wants: usize,
}

/// Runs a search to its end against `answer`, one round at a time: every want of a round
/// is answered before the wants they led to are.
fn run_with(
    size: u64,
    root: Hash,
    local: &mut impl LocalTree,
    mut answer: impl FnMut(&SubtreeWant) -> Reply,
) -> Outcome {
    let mut search = CopySearch::new(Identity::from_seed(SEED).author(), size, root);
    let mut round = match search.start() {
        Ok(wants) => wants,
        Err(e) => {
            return Outcome {
                result: Err(e),
                rounds: 0,
                wants: 0,
            }
        }
    };
    let (mut rounds, mut wants) = (1, round.len());
    loop {
        let mut next = Vec::new();
        for want in &round {
            let step = match answer(want) {
                Reply::Hashes(hashes) => search.on_hashes(want, &hashes, local),
                Reply::Entries(entries) => search.on_entries(want, &entries, local),
            };
            match step {
                Ok(Step::Want(more)) => next.extend(more),
                Ok(Step::Found(found)) => {
                    assert_eq!(search.outstanding().count(), 0);
                    return Outcome {
                        result: Ok(found),
                        rounds,
                        wants,
                    };
                }
                Err(e) => {
                    return Outcome {
                        result: Err(e),
                        rounds,
                        wants,
                    }
                }
            }
        }
        assert!(!next.is_empty(), "nothing outstanding and no outcome");
        rounds += 1;
        wants += next.len();
        round = next;
    }
}

/// A search against an honest `peer` over its own root.
fn run(size: u64, peer: &Peer) -> Outcome {
    run_with(size, peer.root(), &mut Node, |want| peer.answer(want))
}

fn copies_found(outcome: Outcome) -> Vec<Entry> {
    match outcome.result {
        Ok(Found { copies, forks }) if forks.is_empty() => copies,
        other => panic!("expected copies, got {other:?}"),
    }
}

fn error(outcome: Outcome) -> SearchError {
    outcome.result.expect_err("expected the search to fail")
}

#[test]
fn one_other_copy_is_found_at_the_first_middle_and_last_leaf_of_every_size() {
    for size in [1, 2, 255, 256, 257, 1000, FEED_SIZE] {
        for seq in [1, size / 2 + 1, size] {
            let copy = second_copy(seq);
            let outcome = run(size, &Peer::new(size, [copy.clone()]));
            let rounds = outcome.rounds;
            assert_eq!(copies_found(outcome), [copy], "size {size}, seq {seq}");
            // Peaks, then at most three openings (16 -> 8 -> 1 -> entries at 70,000).
            assert!(rounds <= 4, "size {size}, seq {seq}: {rounds} rounds");
        }
    }
}

#[test]
fn three_copies_come_back_in_seq_order() {
    let copies: Vec<Entry> = [40_000, 3, 69_999].into_iter().map(second_copy).collect();
    let found = copies_found(run(FEED_SIZE, &Peer::new(FEED_SIZE, copies.clone())));
    let mut expected = copies;
    expected.sort_by_key(|e| e.seq);
    assert_eq!(found, expected);
}

#[test]
fn sixteen_scattered_copies_are_found_within_the_want_limit_and_seventeen_are_too_many() {
    let scattered = |k: u64| (1..=k).map(|i| second_copy(i * 4_111)).collect::<Vec<_>>();
    let outcome = run(FEED_SIZE, &Peer::new(FEED_SIZE, scattered(16)));
    let wants = outcome.wants;
    assert_eq!(copies_found(outcome).len(), MAX_DIFFERING_LEAVES);
    assert!(wants <= MAX_SUBTREE_WANTS, "{wants} wants");
    let outcome = run(FEED_SIZE, &Peer::new(FEED_SIZE, scattered(17)));
    assert_eq!(error(outcome), SearchError::TooManyDiffering);
    // Seventeen side by side are found out in the one reply that holds them all.
    let side_by_side: Vec<Entry> = (1_001..=1_017).map(second_copy).collect();
    let outcome = run(FEED_SIZE, &Peer::new(FEED_SIZE, side_by_side));
    assert_eq!(error(outcome), SearchError::TooManyDiffering);
}

#[test]
fn another_entry_at_a_seq_is_a_fork_and_no_copy_is_kept() {
    let fork = other_entry(500);
    let peer = Peer::new(1_000, [fork.clone(), second_copy(900)]);
    match run(1_000, &peer).result {
        Ok(Found { copies, forks }) => {
            assert!(copies.is_empty());
            assert_eq!(forks, [ForkProof::new(base(500), fork)]);
            assert!(forks[0].check().is_ok());
        }
        other => panic!("expected a fork, got {other:?}"),
    }
}

#[test]
fn a_peer_with_the_nodes_tree_differs_nowhere() {
    let peer = Peer::new(257, []);
    assert_eq!(error(run(257, &peer)), SearchError::NothingDiffers);
    assert_eq!(
        error(run_with(0, [0; 32], &mut Node, |w| peer.answer(w))),
        SearchError::NothingDiffers
    );
}

#[test]
fn copies_that_do_not_give_the_checkpoints_root_are_refused() {
    let peer = Peer::new(1_000, [second_copy(10)]);
    let other_root = Peer::new(1_000, [second_copy(11)]).root();
    let outcome = run_with(1_000, other_root, &mut Node, |w| peer.answer(w));
    assert_eq!(error(outcome), SearchError::RootMismatch);
}

/// The violation a search against `peer`, its replies changed by `lie`, ends on.
fn violation(
    size: u64,
    peer: &Peer,
    mut lie: impl FnMut(&SubtreeWant, Reply) -> Reply,
) -> Violation {
    match error(run_with(size, peer.root(), &mut Node, |w| {
        lie(w, peer.answer(w))
    })) {
        SearchError::BadReply { violation, .. } => violation,
        other => panic!("expected a bad reply, got {other:?}"),
    }
}

#[test]
fn a_reply_of_the_wrong_count_is_a_violation() {
    let peer = Peer::new(1_000, [second_copy(10)]);
    let short = violation(1_000, &peer, |_, reply| match reply {
        Reply::Hashes(mut h) => {
            h.pop();
            Reply::Hashes(h)
        }
        entries => entries,
    });
    assert_eq!(
        short,
        Violation::WrongCount {
            expected: 1,
            found: 0
        }
    );
    let long = violation(1_000, &peer, |_, reply| match reply {
        Reply::Entries(mut e) => {
            e.push(e[0].clone());
            Reply::Entries(e)
        }
        hashes => hashes,
    });
    assert!(matches!(long, Violation::WrongCount { .. }), "{long:?}");
}

#[test]
fn entries_of_the_wrong_seq_or_author_or_that_do_not_decode_are_violations() {
    let peer = Peer::new(1_000, [second_copy(10)]);
    // The first entries asked for are seqs 9..=16 (the level-3 subtree holding seq 10).
    let shifted = violation(1_000, &peer, |_, reply| match reply {
        Reply::Entries(mut e) => {
            e.swap(0, 1);
            Reply::Entries(e)
        }
        hashes => hashes,
    });
    assert_eq!(shifted, Violation::WrongEntry { seq: 9 });
    let stranger = violation(1_000, &peer, |_, reply| match reply {
        Reply::Entries(mut e) => {
            let mut theirs = base(9).unsigned();
            theirs.author = Identity::from_seed([8; 32]).author();
            e[0] = theirs.sign(&Identity::from_seed([8; 32])).0.encode();
            Reply::Entries(e)
        }
        hashes => hashes,
    });
    assert_eq!(stranger, Violation::WrongEntry { seq: 9 });
    let garbled = violation(1_000, &peer, |_, reply| match reply {
        Reply::Entries(mut e) => {
            e[0][0] = 9;
            Reply::Entries(e)
        }
        hashes => hashes,
    });
    assert_eq!(
        garbled,
        Violation::Undecodable {
            seq: 9,
            error: DecodeError::UnknownVersion(9)
        }
    );
}

#[test]
fn a_differing_subtree_with_no_differing_child_is_a_violation() {
    let peer = Peer::new(FEED_SIZE, []);
    // A lie about the largest peak, opened through hashes; then about a level-3 peak
    // (1,000 = 512 + 256 + 128 + 64 + 32 + 8), opened through entries.
    let big = violation(FEED_SIZE, &peer, |want, reply| match (want.level, reply) {
        (16, Reply::Hashes(_)) => Reply::Hashes(vec![[1; 32]]),
        (_, reply) => reply,
    });
    assert_eq!(
        big,
        Violation::NoDifferingChild {
            level: 16,
            index: 0
        }
    );
    let small = violation(1_000, &peer, |want, reply| match (want.level, reply) {
        (3, Reply::Hashes(_)) => Reply::Hashes(vec![[1; 32]]),
        (_, reply) => reply,
    });
    assert_eq!(
        small,
        Violation::NoDifferingChild {
            level: 3,
            index: 124
        }
    );
}

#[test]
fn a_copy_or_other_entry_not_validly_signed_is_a_violation() {
    let mut forged = base(10);
    forged.signature.0[40] ^= 1;
    let bad = violation(1_000, &Peer::new(1_000, [forged]), |_, reply| reply);
    assert!(
        matches!(bad, Violation::BadSignature { seq: 10, .. }),
        "{bad:?}"
    );
    let mut forged_fork = other_entry(10);
    forged_fork.signature = base(10).signature;
    let bad = violation(1_000, &Peer::new(1_000, [forged_fork]), |_, reply| reply);
    assert!(matches!(bad, Violation::BadFork { seq: 10, .. }), "{bad:?}");
}

#[test]
fn a_reply_to_no_outstanding_want_or_of_the_wrong_kind_is_a_violation() {
    let peer = Peer::new(1_000, [second_copy(10)]);
    let mut search = CopySearch::new(Identity::from_seed(SEED).author(), 1_000, peer.root());
    let wants = search.start().unwrap();
    let peak = wants[0];
    let stray = SubtreeWant { index: 1, ..peak };
    let not_asked = search.on_hashes(&stray, &[[0; 32]], &mut Node);
    assert_eq!(
        not_asked,
        Err(SearchError::BadReply {
            want: stray,
            violation: Violation::NotOutstanding
        })
    );
    let entries = [base(1).encode()];
    let wrong_kind = search.on_entries(&peak, &entries, &mut Node);
    assert_eq!(
        wrong_kind,
        Err(SearchError::BadReply {
            want: peak,
            violation: Violation::WrongKind
        })
    );
    // An answered want is no longer outstanding.
    assert!(search.outstanding().all(|w| *w != peak));
}

/// A node and peer over an enormous tree of made-up hashes: enough peaks and levels to
/// reach the want limit, which no tree a test can build in memory does.
struct Fake {
    /// The leaves under which the peer's hashes differ.
    marked: Vec<u64>,
    peer: bool,
}

impl Fake {
    fn hash(&self, level: u8, n: u64) -> Hash {
        let under = |leaf: &u64| leaf >> level == n;
        let differs = self.peer && self.marked.iter().any(under);
        let mut h = Sha512::new();
        h.update([level, u8::from(differs)]);
        h.update(n.to_be_bytes());
        h.finalize()[..32].try_into().unwrap()
    }
}

impl LocalTree for Fake {
    fn subtree_hashes(&mut self, level: u8, index: u64, count: u16) -> Result<Vec<Hash>, String> {
        Ok((index..index + u64::from(count))
            .map(|n| self.hash(level, n))
            .collect())
    }

    fn entry(&mut self, seq: u64) -> Result<Entry, String> {
        Err(format!("no entry {seq} in a made-up tree"))
    }
}

/// A search of `size` made-up leaves whose peer differs under `marked`, the peer
/// answering entries with none (so a search reaching the entries ends on a wrong count).
fn run_fake(size: u64, marked: Vec<u64>) -> Outcome {
    let peer = Fake {
        marked: marked.clone(),
        peer: true,
    };
    let mut node = Fake {
        marked,
        peer: false,
    };
    run_with(size, [0; 32], &mut node, |want| match want.level {
        0 => Reply::Entries(Vec::new()),
        level => Reply::Hashes(
            (want.index..want.index + u64::from(want.count))
                .map(|n| peer.hash(level, n))
                .collect(),
        ),
    })
}

#[test]
fn the_want_limit_lets_the_worst_search_below_2_pow_24_leaves_through() {
    // 2^24 - 2 leaves: 23 peaks, none a single leaf. Two leaves in each peak of level 16
    // and up, in its two halves: each such peak is opened once, each leaf twice more
    // before its entries are asked: 23 + 8 + 16 + 16 = 63 wants, all sent.
    let size: u64 = (1 << 24) - 2;
    let marked: Vec<u64> = (16..24u32)
        .flat_map(|level| {
            let start = (1 << 24) - (1u64 << (level + 1));
            [start, start + (1 << (level - 1))]
        })
        .collect();
    let outcome = run_fake(size, marked);
    assert_eq!(outcome.wants, 63);
    assert!(
        matches!(
            error(outcome),
            SearchError::BadReply {
                want: SubtreeWant { level: 0, .. },
                violation: Violation::WrongCount { found: 0, .. }
            }
        ),
        "the search reached the entries"
    );
}

#[test]
fn a_search_needing_more_wants_than_the_limit_gives_up() {
    // 2^40 - 2 leaves: 39 peaks, none a single leaf. Sixteen leaves 2^35 apart in the
    // level-39 peak cost one want to open it, then sixteen per level on the way down: 56
    // for the level-31 subtrees, past 64 for the level-23 ones.
    let marked: Vec<u64> = (0..16).map(|k| k << 35).collect();
    let outcome = run_fake((1 << 40) - 2, marked);
    assert_eq!(error(outcome), SearchError::TooManyRequests);
}
