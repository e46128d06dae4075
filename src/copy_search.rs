//! Finding the author's copies: which leaves of a peer's tree differ from the node's, given
//! an author checkpoint (size `n`, root `R`) the node's tree disagrees with (docs/TLOG.md
//! section 8, "Two signatures of one entry hash").
//!
//! A pure, deterministic state machine. [`CopySearch::start`] and the `on_*` answers return
//! the [`SubtreeWant`]s to send to the peer; the caller does the I/O (the sync session asks
//! the peer, a [`LocalTree`] reads the node's own tree and log) and hands each reply back.
//!
//! # The descent
//!
//! - **Peaks.** The tree of size `n` is its full subtrees, one per set bit of `n`, largest
//!   first ([`merkle::peaks`]). The first round asks the peer for every peak's hash (a peak
//!   at level 0 is one leaf: its entry).
//! - **Opening** a differing subtree of level `l`: at `l >= 9`, its 256 descendants at level
//!   `l - 8`; at `l = 8`, its 128 descendants at level 1 (256 entries would be over
//!   [`MAX_WANT_ENTRIES`], and 8 -> 1 -> leaves costs no more rounds than any other way
//!   down); at `l` in `1..=7`, its `2^l` leaves' entries. So one leaf in a tree of 2^20
//!   entries is found in four rounds (peaks; 19 -> 11; 11 -> 3; entries).
//! - A **differing leaf** is one whose peer leaf hash, `SHA-256(0x00 || encoded entry)`
//!   computed here from the entry the peer sent, is not the node's.
//!
//! # What a reply must be (else [`SearchError::BadReply`])
//!
//! - an answer to an outstanding want, exactly: same level, index and count; hashes for a
//!   want at level >= 1, entries for one at level 0;
//! - `count` items; each entry decodes, is by the checkpoint's author, at seq `index + i + 1`;
//! - an opened subtree has at least one differing child (the peer said its hash differs);
//! - each differing leaf's entry is validly signed ([`crate::signature`]): with the node's
//!   entry hash, it is a **candidate copy**; with another, a **fork**
//!   ([`ForkProof::check`] must accept the pair).
//!
//! # Bounds
//!
//! At most [`MAX_DIFFERING_LEAVES`] differing leaves (counting each differing subtree still
//! being opened as one), else [`SearchError::TooManyDiffering`]; at most
//! [`MAX_SUBTREE_WANTS`] wants, else [`SearchError::TooManyRequests`]. Each want asks at
//! most [`MAX_WANT_HASHES`] hashes or [`MAX_WANT_ENTRIES`] entries.
//!
//! # The outcome
//!
//! Once nothing is outstanding: no peak differed: [`SearchError::NothingDiffers`]. A fork
//! found: [`Found`] with the forks and no copies (a fork excludes the feed; no new subtree is
//! opened after the first one). Otherwise the root of the first `n` leaves with every
//! candidate's leaf hash in place of the node's ([`merkle::Overlay`]: the node's stored
//! hashes, only those above a changed leaf recomputed) must be `R`, else
//! [`SearchError::RootMismatch`]: then the candidates are [`Found::copies`]. That last check
//! is what makes the result the author's: whatever the peer said on the way, the copies are
//! kept only if they give the root the author signed.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::entry::{DecodeError, Entry};
use crate::fork::{ForkProof, ForkProofError};
use crate::identity::Author;
use crate::signature::{self, SignatureError};
use crate::tlog::merkle::{
    self, leaf_hash, split_stored_hash_index, tree_hash, Hash, HashReader, Overlay, MAX_TREE_SIZE,
};

/// The most differing leaves one search follows: a misbehaving author double-signs a few
/// entries, not many; beyond this the search gives up and the checkpoint stays dropped.
pub const MAX_DIFFERING_LEAVES: usize = 16;
/// The most wants one search sends (peaks included). A tree of `n` leaves costs
/// `popcount(n)` peaks plus one want per differing subtree opened. Below 2^24 leaves a
/// leaf under a peak of level 16 or more is three openings down, one under a lower peak
/// at most two, and a peak's first opening is shared by its leaves: 16 differing leaves
/// cost at most 24 peaks + 8 such peaks opened + 2 * 16 = 64 wants (39 in a tree of
/// 70,000). So the limit refuses only searches in larger trees with many scattered copies,
/// which then give up as with too many differing leaves.
pub const MAX_SUBTREE_WANTS: usize = 64;
/// The most hashes one want at level >= 1 asks for (a tile's width).
pub const MAX_WANT_HASHES: u16 = 256;
/// The most entries one want at level 0 asks for (at most 128 * 4,254 bytes in a reply).
pub const MAX_WANT_ENTRIES: u16 = 128;

/// One request to the peer: `count` consecutive full subtrees of height `level` from
/// `index` (leaves `index * 2^level ..`); at level 0, the entries themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SubtreeWant {
    /// The subtrees' height: 0 for leaves (entries), at most 62.
    pub level: u8,
    /// The first subtree's index at that level.
    pub index: u64,
    /// How many: at most [`MAX_WANT_HASHES`] (level >= 1) or [`MAX_WANT_ENTRIES`] (level 0).
    pub count: u16,
}

/// What the search reads from the node's own tree and log; the caller does the I/O. Its
/// errors are carried as text in [`SearchError::Local`].
pub trait LocalTree {
    /// The stored hashes of the full subtrees `(level, index..index + count)` of the node's
    /// tree (at level 0, leaf hashes), in order.
    fn subtree_hashes(&mut self, level: u8, index: u64, count: u16) -> Result<Vec<Hash>, String>;
    /// The node's current copy of the entry at `seq`.
    fn entry(&mut self, seq: u64) -> Result<Entry, String>;
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send these wants (none when answers to earlier ones are still awaited).
    Want(Vec<SubtreeWant>),
    /// The search is over.
    Found(Found),
}

/// What a finished search found, in seq order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The author's copies to keep in place of the node's (same entry hash, other
    /// signature), which with the node's other leaves give the checkpoint's root. Empty
    /// when `forks` is not.
    pub copies: Vec<Entry>,
    /// Entries at a differing leaf with another entry hash than the node's: checked proofs.
    pub forks: Vec<ForkProof>,
}

/// Why a reply breaks the protocol (module docs, "What a reply must be").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// No outstanding want has this level, index and count.
    #[error("no outstanding want matches")]
    NotOutstanding,
    /// Hashes for a want at level 0, or entries for one at level >= 1.
    #[error("hashes answer level >= 1 wants and entries level 0 ones")]
    WrongKind,
    /// Another number of items than the want's count.
    #[error("{found} items for a want of {expected}")]
    WrongCount {
        /// The want's count.
        expected: u16,
        /// Items in the reply.
        found: usize,
    },
    /// An entry that does not decode.
    #[error("the entry for seq {seq} does not decode: {error}")]
    Undecodable {
        /// The seq it was sent for.
        seq: u64,
        /// Why.
        error: DecodeError,
    },
    /// An entry of another author or at another seq than its position says.
    #[error("the entry for seq {seq} is not this feed's entry at that seq")]
    WrongEntry {
        /// The seq it was sent for.
        seq: u64,
    },
    /// The peer said a subtree differs, and none of its children does.
    #[error("subtree ({level}, {index}) differs but none of its children does")]
    NoDifferingChild {
        /// The subtree's level.
        level: u8,
        /// Its index at that level.
        index: u64,
    },
    /// A copy with the node's entry hash whose signature the acceptance rule refuses.
    #[error("the copy of seq {seq} is not validly signed: {error}")]
    BadSignature {
        /// Its seq.
        seq: u64,
        /// Why.
        error: SignatureError,
    },
    /// An entry with another entry hash that does not make a fork proof with the node's.
    #[error("the entry of seq {seq} is no fork of the node's: {error}")]
    BadFork {
        /// Its seq.
        seq: u64,
        /// Why.
        error: ForkProofError,
    },
}

/// Why a search ended without a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    /// The peer broke the protocol: a violation, the session's to handle.
    #[error("bad reply to {want:?}: {violation}")]
    BadReply {
        /// The want the reply claimed to answer.
        want: SubtreeWant,
        /// What is wrong with it.
        violation: Violation,
    },
    /// More than [`MAX_DIFFERING_LEAVES`] leaves differ.
    #[error("more than {MAX_DIFFERING_LEAVES} leaves differ")]
    TooManyDiffering,
    /// No peak of the peer's tree differs from the node's.
    #[error("the peer's tree does not differ from the node's")]
    NothingDiffers,
    /// The candidate copies do not give the checkpoint's root.
    #[error("the copies found do not give the checkpoint's root")]
    RootMismatch,
    /// The search would need more than [`MAX_SUBTREE_WANTS`] wants.
    #[error("the search needs more than {MAX_SUBTREE_WANTS} wants")]
    TooManyRequests,
    /// The checkpoint's size is over [`MAX_TREE_SIZE`].
    #[error("tree size {0} is over the limit")]
    SizeTooLarge(u64),
    /// Reading the node's own tree or log failed.
    #[error("reading the node's tree: {0}")]
    Local(String),
}

/// An outstanding want and whether its subtree is known to differ (an opening) or not (a
/// peak, which may well not).
#[derive(Debug, Clone, Copy)]
struct Outstanding {
    want: SubtreeWant,
    opens_differing: bool,
}

/// The search for the author's copies of one checkpoint (module docs).
#[derive(Debug)]
pub struct CopySearch {
    author: Author,
    size: u64,
    root: Hash,
    outstanding: Vec<Outstanding>,
    wants_sent: usize,
    /// Differing leaves found, by leaf index: the peer's entry and its leaf hash.
    differing: BTreeMap<u64, (Entry, Hash)>,
    forks: Vec<ForkProof>,
}

impl CopySearch {
    /// A search for the leaves behind `author`'s checkpoint of `size` leaves and `root`.
    pub fn new(author: Author, size: u64, root: Hash) -> CopySearch {
        CopySearch {
            author,
            size,
            root,
            outstanding: Vec::new(),
            wants_sent: 0,
            differing: BTreeMap::new(),
            forks: Vec::new(),
        }
    }

    /// The first round: every peak of the tree of `size` leaves.
    pub fn start(&mut self) -> Result<Vec<SubtreeWant>, SearchError> {
        if self.size > MAX_TREE_SIZE {
            return Err(SearchError::SizeTooLarge(self.size));
        }
        if self.size == 0 {
            return Err(SearchError::NothingDiffers);
        }
        let wants = merkle::peaks(self.size)
            .map(|(level, index)| SubtreeWant {
                // Levels of a tree within MAX_TREE_SIZE are at most 62.
                level: u8::try_from(level).unwrap_or(u8::MAX),
                index,
                count: 1,
            })
            .collect();
        self.send(wants, false)
    }

    /// The wants sent and not yet answered, in the order sent.
    pub fn outstanding(&self) -> impl Iterator<Item = &SubtreeWant> {
        self.outstanding.iter().map(|o| &o.want)
    }

    /// The peer's answer to `want` (level >= 1): the hashes of its subtrees.
    pub fn on_hashes(
        &mut self,
        want: &SubtreeWant,
        hashes: &[Hash],
        local: &mut impl LocalTree,
    ) -> Result<Step, SearchError> {
        let (opens_differing, ours) = self.take_reply(want, false, hashes.len(), local)?;
        let differing: Vec<u64> = (want.index..)
            .zip(hashes.iter().zip(&ours))
            .filter(|(_, (theirs, ours))| theirs != ours)
            .map(|(index, _)| index)
            .collect();
        if opens_differing && differing.is_empty() {
            return Err(bad(want, no_differing_child(want)));
        }
        let wants = differing
            .into_iter()
            .map(|index| opening(want.level, index))
            .collect();
        let wants = self.send(wants, true)?;
        self.finish_if_done(Step::Want(wants), local)
    }

    /// The peer's answer to `want` (level 0): its entries, encoded.
    pub fn on_entries<E: AsRef<[u8]>>(
        &mut self,
        want: &SubtreeWant,
        entries: &[E],
        local: &mut impl LocalTree,
    ) -> Result<Step, SearchError> {
        let (opens_differing, ours) = self.take_reply(want, true, entries.len(), local)?;
        let refuse = |violation| bad(want, violation);
        let mut any_differ = false;
        for ((index, bytes), our_leaf) in (want.index..).zip(entries).zip(&ours) {
            let bytes = bytes.as_ref();
            let seq = index.saturating_add(1);
            let (entry, hash) = Entry::decode(bytes)
                .map_err(|error| refuse(Violation::Undecodable { seq, error }))?;
            if entry.author != self.author || entry.seq != seq {
                return Err(refuse(Violation::WrongEntry { seq }));
            }
            let their_leaf = leaf_hash(bytes);
            if their_leaf == *our_leaf {
                continue;
            }
            any_differ = true;
            let ours = local.entry(seq).map_err(SearchError::Local)?;
            if hash == ours.hash() {
                signature::verify(&entry.author, &hash, &entry.signature)
                    .map_err(|error| refuse(Violation::BadSignature { seq, error }))?;
            } else {
                let proof = ForkProof::new(ours, entry.clone());
                proof
                    .check()
                    .map_err(|error| refuse(Violation::BadFork { seq, error }))?;
                self.forks.push(proof);
            }
            self.differing.insert(index, (entry, their_leaf));
        }
        if opens_differing && !any_differ {
            return Err(refuse(no_differing_child(want)));
        }
        self.check_differing_bound()?;
        self.finish_if_done(Step::Want(Vec::new()), local)
    }

    /// Takes a reply of `items` hashes (`entries` false) or entries to `want` off the
    /// outstanding ones, checking it answers it exactly (module docs). Returns whether it
    /// opens a differing subtree, and the node's own hashes of the same subtrees.
    fn take_reply(
        &mut self,
        want: &SubtreeWant,
        entries: bool,
        items: usize,
        local: &mut impl LocalTree,
    ) -> Result<(bool, Vec<Hash>), SearchError> {
        let at = self
            .outstanding
            .iter()
            .position(|o| o.want == *want)
            .ok_or(bad(want, Violation::NotOutstanding))?;
        let opens_differing = self.outstanding.remove(at).opens_differing;
        if entries != (want.level == 0) {
            return Err(bad(want, Violation::WrongKind));
        }
        if items != usize::from(want.count) {
            return Err(bad(
                want,
                Violation::WrongCount {
                    expected: want.count,
                    found: items,
                },
            ));
        }
        let ours = local_hashes(local, want.level, want.index, want.count)?;
        Ok((opens_differing, ours))
    }

    /// Records `wants` as outstanding, within the bounds. After a fork nothing new is
    /// opened: the fork decides the feed.
    fn send(
        &mut self,
        wants: Vec<SubtreeWant>,
        opens_differing: bool,
    ) -> Result<Vec<SubtreeWant>, SearchError> {
        if !self.forks.is_empty() {
            return Ok(Vec::new());
        }
        self.outstanding
            .extend(wants.iter().map(|&want| Outstanding {
                want,
                opens_differing,
            }));
        // Too many differing leaves first: it says more than the want count does.
        self.check_differing_bound()?;
        self.wants_sent = self.wants_sent.saturating_add(wants.len());
        if self.wants_sent > MAX_SUBTREE_WANTS {
            return Err(SearchError::TooManyRequests);
        }
        Ok(wants)
    }

    /// Each differing subtree being opened holds at least one differing leaf of its own.
    fn check_differing_bound(&self) -> Result<(), SearchError> {
        let opening = self.outstanding.iter().filter(|o| o.opens_differing);
        match self.differing.len().saturating_add(opening.count()) > MAX_DIFFERING_LEAVES {
            true => Err(SearchError::TooManyDiffering),
            false => Ok(()),
        }
    }

    /// `step` while wants are outstanding; the outcome once none is (module docs).
    fn finish_if_done(
        &mut self,
        step: Step,
        local: &mut impl LocalTree,
    ) -> Result<Step, SearchError> {
        if !self.outstanding.is_empty() {
            return Ok(step);
        }
        if !self.forks.is_empty() {
            return Ok(Step::Found(Found {
                copies: Vec::new(),
                forks: std::mem::take(&mut self.forks),
            }));
        }
        if self.differing.is_empty() {
            return Err(SearchError::NothingDiffers);
        }
        let changed: BTreeMap<u64, Hash> = self
            .differing
            .iter()
            .map(|(&index, (_, leaf))| (index, *leaf))
            .collect();
        let local = LocalHashes {
            local: RefCell::new(local),
        };
        let root = tree_hash(self.size, &Overlay::new(local, &changed))
            .map_err(|e| SearchError::Local(e.to_string()))?;
        if root != self.root {
            return Err(SearchError::RootMismatch);
        }
        let copies = std::mem::take(&mut self.differing)
            .into_values()
            .map(|(entry, _)| entry)
            .collect();
        Ok(Step::Found(Found {
            copies,
            forks: Vec::new(),
        }))
    }
}

/// The want that opens differing subtree `(level, index)`, `level >= 1` (module docs).
fn opening(level: u8, index: u64) -> SubtreeWant {
    let (to, count) = match level {
        0..=7 => (0, 1u16 << level),
        8 => (1, MAX_WANT_ENTRIES),
        _ => (level - 8, MAX_WANT_HASHES),
    };
    let index = index << (level - to);
    SubtreeWant {
        level: to,
        index,
        count,
    }
}

fn no_differing_child(want: &SubtreeWant) -> Violation {
    // The want's first subtree is the opened one's first descendant; its count is how
    // many descendants the opened subtree has.
    let width = u32::from(want.count).trailing_zeros();
    let level = want
        .level
        .saturating_add(u8::try_from(width).unwrap_or(u8::MAX));
    Violation::NoDifferingChild {
        level,
        index: want.index >> width,
    }
}

fn bad(want: &SubtreeWant, violation: Violation) -> SearchError {
    SearchError::BadReply {
        want: *want,
        violation,
    }
}

fn local_hashes(
    local: &mut impl LocalTree,
    level: u8,
    index: u64,
    count: u16,
) -> Result<Vec<Hash>, SearchError> {
    let hashes = local
        .subtree_hashes(level, index, count)
        .map_err(SearchError::Local)?;
    match hashes.len() == usize::from(count) {
        true => Ok(hashes),
        false => Err(SearchError::Local(format!(
            "{} hashes for {count} subtrees",
            hashes.len()
        ))),
    }
}

/// The node's stored hashes, read through its [`LocalTree`] one full subtree at a time.
struct LocalHashes<'a, L> {
    // `HashReader` reads through `&self` and a `LocalTree` through `&mut`; nothing here
    // borrows it twice at once.
    local: RefCell<&'a mut L>,
}

impl<L: LocalTree> HashReader for LocalHashes<'_, L> {
    type Error = String;

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, String> {
        let mut local = self.local.borrow_mut();
        let mut hashes = Vec::with_capacity(indexes.len());
        for &index in indexes {
            let (level, n) = split_stored_hash_index(index);
            let level = u8::try_from(level).map_err(|_| format!("stored hash {index}"))?;
            hashes.extend(local.subtree_hashes(level, n, 1)?);
        }
        Ok(hashes)
    }
}

#[cfg(test)]
#[path = "copy_search_tests.rs"]
mod tests;
