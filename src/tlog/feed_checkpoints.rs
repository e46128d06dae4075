//! What a node keeps per feed about checkpoints: the newest author checkpoint it verified,
//! at most one waiting for entries, and the cosignatures it holds. A pure state machine:
//! the caller (sync, the store) feeds it checkpoints and cosignatures as they arrive, tells
//! it how many entries of the feed it holds, and lends it a way to compute its own tree's
//! root at a size (`Trees::root`). Nothing here reads a clock, a file or a socket.
//!
//! # Author checkpoints ([`FeedCheckpoints::offer_author`])
//!
//! The node holds entries `1..=held_size`. An offered checkpoint is first checked as an
//! [`AuthorCheckpoint`] of this feed (its author's signature; other lines are dropped), then:
//!
//! - **size <= held_size**: consistent iff the node's own root at that size equals its root
//!   (the node computes it from the entries: no proof needed). Consistent and larger than
//!   the current one: kept and served ([`Offer::Kept`]); consistent and not larger:
//!   [`Offer::NotNewer`]. Inconsistent: if the node keeps an author checkpoint at least that
//!   large (consistent with its tree, so the two disagree), it is a fork ([`Offer::Fork`],
//!   carrying what [`CheckpointForkProof::from_conflict`] needs); otherwise the author
//!   signed a root for entries the node holds that no checkpoint of its own backs: dropped
//!   and counted ([`Offer::Inconsistent`], [`FeedCheckpoints::inconsistent_count`]).
//! - **size > held_size**: it waits in the one pending slot ([`Offer::Pending`]) until
//!   [`FeedCheckpoints::entries_arrived`] reports enough entries, then is offered as above.
//!   The slot keeps the *largest* checkpoint offered: sync fetches entries up to the largest
//!   size it has heard of, so a smaller one would be superseded by the time it is
//!   checkable, and one slot bounds what a flood of checkpoints can cost. A smaller one is
//!   dropped ([`Offer::Superseded`]); one of the same size with another root is a fork
//!   by itself ([`Offer::Fork`]).
//!
//! # Cosignatures ([`FeedCheckpoints::offer_cosignature`])
//!
//! A cosignature line is kept only if it verifies under the cosigner's key over a checkpoint
//! of this feed that is consistent with the node's entries (the same rule; one beyond
//! `held_size` is refused as [`CosignatureOffer::Ahead`]: offer it again once the entries
//! arrived). Per cosigner the node keeps its largest such checkpoint (ties: the later
//! timestamp, then the smaller signature bytes). At most [`MAX_COSIGNERS_PER_FEED`]
//! cosigners are kept, ranked by (trusted first, by the caller's predicate: pinned and
//! allow-listed peers; then key name; then key bytes): a cosigner ranked below all kept
//! ones when the set is full is not kept, one ranked above evicts the lowest. So strangers
//! never evict trusted cosigners, and the kept set is the same whatever the order of offers.
//!
//! A cosignature over a checkpoint inconsistent with the node's entries means the author
//! showed the cosigner another tree. It is a fork proof only if that checkpoint is itself
//! author-signed: the caller offers the note it came on to
//! [`FeedCheckpoints::offer_author`], which answers [`Offer::Fork`] (when the node keeps a
//! checkpoint at least that large). The cosignature itself is dropped and counted
//! ([`CosignatureOffer::Inconsistent`], [`FeedCheckpoints::inconsistent_count`]).
//!
//! # What is served ([`FeedCheckpoints::served`], [`FeedCheckpoints::k`])
//!
//! `GET /feeds/AUTHOR/checkpoint` serves the current author checkpoint with the lines of
//! the kept cosignatures over exactly that checkpoint, in rank order. `k` counts the
//! cosigners whose largest kept checkpoint is consistent with the served one, which is every
//! kept cosigner (each is consistent with the node's entries, as is the served checkpoint);
//! cosigners of an older or newer size count in `k` but have no line to add (a cosignature
//! covers one checkpoint body). With no author checkpoint yet nothing is served and `k` is 0.

use std::collections::BTreeMap;

use crate::identity::Author;
use crate::tlog::author_checkpoint::{author_of_origin, AuthorCheckpoint, AuthorCheckpointError};
use crate::tlog::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::tlog::cosignature::CosignatureVerifier;
use crate::tlog::merkle::Hash;
use crate::tlog::note::{NoteSignature, MAX_SIGNATURES};
use crate::tlog::split_view::CheckpointForkProof;
use crate::tlog::vkey::VerifierKey;

/// The most cosigners kept per feed: one below a note's signature cap, so the served
/// checkpoint (the author's line plus every cosignature) is always a valid note.
pub const MAX_COSIGNERS_PER_FEED: usize = MAX_SIGNATURES - 1;

/// What became of an offered author checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// Not an author checkpoint of any feed: nothing kept.
    Invalid(AuthorCheckpointError),
    /// An author checkpoint of another feed (carried): nothing kept.
    WrongFeed(Author),
    /// Consistent with the entries and larger than the one kept: now served.
    Kept,
    /// Consistent with the entries, not larger than the one kept: nothing changes.
    NotNewer,
    /// Beyond the entries held: waits in the pending slot.
    Pending,
    /// Beyond the entries held, and a larger one waits: dropped.
    Superseded,
    /// Conflicts with an author checkpoint the node keeps: build the proof from this.
    Fork(Box<ForkEvidence>),
    /// Disagrees with the entries held, with no kept checkpoint to pair it with: dropped
    /// and counted.
    Inconsistent,
}

/// Two author checkpoints of one feed that conflict, and what is needed to prove it. Either
/// `held` is the kept checkpoint, at least as large as `offered` and agreeing with the
/// node's tree, which disagrees with `offered`; or both are beyond the entries held, of
/// one size with two roots (the pending one and the offered one), and need no tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkEvidence {
    /// The offered checkpoint, which the node's tree disagrees with.
    pub offered: AuthorCheckpoint,
    /// The checkpoint the node keeps, or the pending one of the same size.
    pub held: AuthorCheckpoint,
    /// The node's own root at the offered size (for equal sizes, unused).
    pub own_root_at_offered: Hash,
}

impl ForkEvidence {
    /// The consistency proof to ask the node's tree for, `(old, new)`, before
    /// [`ForkEvidence::into_proof`]; None for equal sizes, which need none.
    pub fn consistency_sizes(&self) -> Option<(u64, u64)> {
        let (old, new) = (self.offered.size(), self.held.size());
        (old < new).then_some((old, new))
    }

    /// The portable proof, given the node's consistency proof for
    /// [`ForkEvidence::consistency_sizes`] (empty when that is None). None only if the
    /// proof given is not the node's tree's.
    pub fn into_proof(self, consistency_proof: &[Hash]) -> Option<CheckpointForkProof> {
        CheckpointForkProof::from_conflict(
            self.offered.signed(),
            self.held.signed(),
            &self.own_root_at_offered,
            consistency_proof,
        )
    }
}

/// What became of an offered cosignature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CosignatureOffer {
    /// Not kept: the checkpoint is not this feed's, the key is not a cosignature key, or
    /// the line does not verify.
    Invalid,
    /// The checkpoint is beyond the entries held: not kept; offer it again later.
    Ahead,
    /// The checkpoint disagrees with the entries held: dropped and counted (module docs).
    Inconsistent,
    /// Kept: a new cosigner, or a larger checkpoint of a kept one.
    Kept,
    /// This cosigner already has one at least as large kept.
    NotNewer,
    /// The cosigner set is full of cosigners ranked above this one.
    OverCap,
}

/// One kept cosignature: whose, over what, and the line to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldCosignature {
    /// The cosigner's key (type `0x04`), with its name.
    pub cosigner: VerifierKey,
    /// Whether the caller's predicate trusted it at the last offer.
    pub trusted: bool,
    /// The checkpoint it cosigned.
    pub checkpoint: Checkpoint,
    /// The cosignature's timestamp.
    pub timestamp: u64,
    /// The signature line.
    pub line: NoteSignature,
}

impl HeldCosignature {
    /// The order of the module docs: trusted first, then name, then key bytes.
    fn rank(&self) -> (bool, &str, &[u8; 32]) {
        (
            !self.trusted,
            self.cosigner.name(),
            self.cosigner.key().as_bytes(),
        )
    }
}

/// The map key of a cosigner: its name and key bytes (one key may serve one name only, by
/// tlog-cosignature's rule, but a stranger could break that rule; both are kept apart).
type CosignerId = (String, [u8; 32]);

/// One feed's checkpoint state (module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedCheckpoints {
    author: Author,
    current: Option<AuthorCheckpoint>,
    pending: Option<AuthorCheckpoint>,
    cosignatures: BTreeMap<CosignerId, HeldCosignature>,
    inconsistent: u64,
}

impl FeedCheckpoints {
    /// The state of `author`'s feed before any checkpoint arrived.
    pub fn new(author: Author) -> FeedCheckpoints {
        FeedCheckpoints {
            author,
            current: None,
            pending: None,
            cosignatures: BTreeMap::new(),
            inconsistent: 0,
        }
    }

    /// Offers an author checkpoint (any lines; only the author's is kept) to a node holding
    /// entries `1..=held_size`; `root_at(s)` is the node's own root at `s <= held_size`.
    pub fn offer_author<E>(
        &mut self,
        signed: &SignedCheckpoint,
        held_size: u64,
        root_at: impl FnMut(u64) -> Result<Hash, E>,
    ) -> Result<Offer, E> {
        let offered = match AuthorCheckpoint::verify(signed) {
            Ok(offered) => offered,
            Err(error) => return Ok(Offer::Invalid(error)),
        };
        if offered.author() != self.author {
            return Ok(Offer::WrongFeed(offered.author()));
        }
        if offered.size() > held_size {
            return Ok(self.offer_pending(offered));
        }
        self.offer_checkable(offered, root_at)
    }

    /// The node now holds entries `1..=held_size`: the pending checkpoint, if it has become
    /// checkable, is offered as [`FeedCheckpoints::offer_author`] would; its outcome is
    /// returned (None when nothing was pending or it still waits).
    pub fn entries_arrived<E>(
        &mut self,
        held_size: u64,
        root_at: impl FnMut(u64) -> Result<Hash, E>,
    ) -> Result<Option<Offer>, E> {
        match self.pending.take() {
            Some(pending) if pending.size() <= held_size => {
                self.offer_checkable(pending, root_at).map(Some)
            }
            still_waiting => {
                self.pending = still_waiting;
                Ok(None)
            }
        }
    }

    fn offer_pending(&mut self, offered: AuthorCheckpoint) -> Offer {
        let Some(pending) = &self.pending else {
            self.pending = Some(offered);
            return Offer::Pending;
        };
        match offered.size().cmp(&pending.size()) {
            std::cmp::Ordering::Greater => {
                self.pending = Some(offered);
                Offer::Pending
            }
            std::cmp::Ordering::Less => Offer::Superseded,
            std::cmp::Ordering::Equal if offered.root() == pending.root() => Offer::NotNewer,
            std::cmp::Ordering::Equal => Offer::Fork(Box::new(ForkEvidence {
                own_root_at_offered: *offered.root(),
                offered,
                held: pending.clone(),
            })),
        }
    }

    fn offer_checkable<E>(
        &mut self,
        offered: AuthorCheckpoint,
        mut root_at: impl FnMut(u64) -> Result<Hash, E>,
    ) -> Result<Offer, E> {
        let own_root = root_at(offered.size())?;
        if own_root != *offered.root() {
            return Ok(match &self.current {
                Some(held) if held.size() >= offered.size() => {
                    Offer::Fork(Box::new(ForkEvidence {
                        offered,
                        held: held.clone(),
                        own_root_at_offered: own_root,
                    }))
                }
                _ => {
                    self.inconsistent = self.inconsistent.saturating_add(1);
                    Offer::Inconsistent
                }
            });
        }
        match &self.current {
            Some(held) if held.size() >= offered.size() => Ok(Offer::NotNewer),
            _ => {
                self.current = Some(offered);
                Ok(Offer::Kept)
            }
        }
    }

    /// Offers `cosigner`'s cosignature `line` over `checkpoint` to a node holding entries
    /// `1..=held_size` (`root_at` as for [`FeedCheckpoints::offer_author`]); `is_trusted`
    /// says which cosigners rank first (pinned peers, allow-listed keys), and is applied to
    /// every kept cosigner on each offer.
    pub fn offer_cosignature<E>(
        &mut self,
        cosigner: &VerifierKey,
        checkpoint: &Checkpoint,
        line: &NoteSignature,
        held_size: u64,
        mut root_at: impl FnMut(u64) -> Result<Hash, E>,
        is_trusted: impl Fn(&VerifierKey) -> bool,
    ) -> Result<CosignatureOffer, E> {
        if author_of_origin(checkpoint.origin()) != Some(self.author) {
            return Ok(CosignatureOffer::Invalid);
        }
        let Ok(verifier) = CosignatureVerifier::new(cosigner.clone()) else {
            return Ok(CosignatureOffer::Invalid);
        };
        let Some(timestamp) = verifier.verify_line(checkpoint.body(), line) else {
            return Ok(CosignatureOffer::Invalid);
        };
        if checkpoint.size() > held_size {
            return Ok(CosignatureOffer::Ahead);
        }
        if root_at(checkpoint.size())? != *checkpoint.root() {
            self.inconsistent = self.inconsistent.saturating_add(1);
            return Ok(CosignatureOffer::Inconsistent);
        }
        for held in self.cosignatures.values_mut() {
            held.trusted = is_trusted(&held.cosigner);
        }
        let offered = HeldCosignature {
            cosigner: cosigner.clone(),
            trusted: is_trusted(cosigner),
            checkpoint: checkpoint.clone(),
            timestamp,
            line: line.clone(),
        };
        let id = (cosigner.name().to_owned(), *cosigner.key().as_bytes());
        if let Some(held) = self.cosignatures.get_mut(&id) {
            let order = |c: &HeldCosignature| (c.checkpoint.size(), c.timestamp);
            let newer = match order(&offered).cmp(&order(held)) {
                std::cmp::Ordering::Equal => offered.line.signature() < held.line.signature(),
                other => other.is_gt(),
            };
            if !newer {
                return Ok(CosignatureOffer::NotNewer);
            }
            *held = offered;
            return Ok(CosignatureOffer::Kept);
        }
        self.cosignatures.insert(id.clone(), offered);
        if self.cosignatures.len() > MAX_COSIGNERS_PER_FEED {
            let lowest = self
                .cosignatures
                .iter()
                .max_by(|(_, x), (_, y)| x.rank().cmp(&y.rank()))
                .map(|(id, _)| id.clone());
            if let Some(lowest) = lowest {
                self.cosignatures.remove(&lowest);
                if lowest == id {
                    return Ok(CosignatureOffer::OverCap);
                }
            }
        }
        Ok(CosignatureOffer::Kept)
    }

    /// The author checkpoint served, with the lines of the kept cosignatures over exactly
    /// it, trusted cosigners first, then by name and key: for `GET /feeds/AUTHOR/checkpoint`.
    /// None before any author checkpoint was kept.
    pub fn served(&self) -> Option<SignedCheckpoint> {
        let current = self.current.as_ref()?;
        let mut served = current.signed().clone();
        let mut lines: Vec<&HeldCosignature> = self
            .cosignatures
            .values()
            .filter(|held| held.checkpoint.body() == current.checkpoint().body())
            .collect();
        lines.sort_by(|x, y| x.rank().cmp(&y.rank()));
        for held in lines {
            // The cap keeps the count within a note's; a line refused anyway (two cosigners
            // whose name and key ID collide) is left out rather than failing the rest.
            let _ = served.add_signature(held.line.clone());
        }
        Some(served)
    }

    /// How many cosigners hold a checkpoint consistent with the served one (module docs);
    /// 0 while nothing is served.
    pub fn k(&self) -> usize {
        match self.current {
            Some(_) => self.cosignatures.len(),
            None => 0,
        }
    }

    /// The author checkpoint kept (served without cosignatures), if any.
    pub fn current(&self) -> Option<&AuthorCheckpoint> {
        self.current.as_ref()
    }

    /// The checkpoint waiting for entries, if any.
    pub fn pending(&self) -> Option<&AuthorCheckpoint> {
        self.pending.as_ref()
    }

    /// The kept cosignatures, by cosigner name and key.
    pub fn cosignatures(&self) -> impl Iterator<Item = &HeldCosignature> {
        self.cosignatures.values()
    }

    /// How many checkpoints and cosignatures were dropped for disagreeing with the node's
    /// entries without a kept checkpoint to pair them with.
    pub fn inconsistent_count(&self) -> u64 {
        self.inconsistent
    }
}

#[cfg(test)]
#[path = "feed_checkpoints_tests.rs"]
mod tests;
