//! Checking a received `Entries` batch as a unit (docs/PROTOCOL.md section 6, "Entries"):
//! pure over lookups of what the store holds, so the session appends only a batch that
//! passed whole. Either every entry is accounted for in [`BatchOutcome`] or the batch is
//! refused with the first bad entry in [`BatchError`], and nothing of it may be stored.
//!
//! Each entry is decoded, then placed against the store plus the entries earlier in the same
//! batch: an entry of an author the caller refuses (known forked, outside the node's author
//! policy, a new feed over the peer's budget) is dropped (counted, not an error); a duplicate is
//! dropped; the next entry must pass every rule of [`crate::validate`]; an entry at a held
//! position with another hash must pass the shape and signature rules and becomes a fork
//! candidate (the caller pairs it with its own entry into a [`crate::fork::ForkProof`]); an
//! entry beyond the next position is a gap. Signatures are checked in one [`verify_many`]
//! call at the end.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;

use crate::entry::{DecodeError, Entry, Seq};
use crate::hash::Hash;
use crate::identity::Author;
use crate::signature::{verify_many, BatchItem};
use crate::validate::{self, place, FeedHead, Placement, ValidationError};

use super::message::EncodedEntry;

/// What a valid batch amounts to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// New entries with their hashes, in batch order: append them in one store append.
    pub append: Vec<(Entry, Hash)>,
    /// The positions `append` adds, as placing the batch found them: what the store will
    /// hold once it is appended (the session checks its next batch against these).
    pub appended: Appended,
    /// Validly signed entries that conflict with what the store holds at `entry.seq`.
    pub fork_candidates: Vec<(Entry, Hash)>,
    /// Entries already held.
    pub duplicates: usize,
    /// Entries of refused authors (forked, outside the policy, over budget), dropped.
    pub refused: usize,
}

/// The positions a run of appended entries adds to their feeds: each feed's head once they
/// are stored, and the hash at each position. Built while a batch is placed (its earlier
/// entries are what its later ones are placed against), then kept by the session while the
/// batch's append is in flight.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Appended {
    heads: HashMap<Author, FeedHead>,
    hashes: HashMap<(Author, Seq), Hash>,
}

impl Appended {
    /// `author`'s entry `head.seq`, with hash `head.hash`, is the feed's next one.
    fn add(&mut self, author: Author, head: FeedHead) {
        self.heads.insert(author, head);
        self.hashes.insert((author, head.seq), head.hash);
    }

    /// `author`'s head once these entries are stored, if they include any of its feed.
    pub fn head(&self, author: &Author) -> Option<FeedHead> {
        self.heads.get(author).copied()
    }

    /// The hash these entries put at `seq` of `author`'s feed, if they put one there.
    pub fn hash_at(&self, author: &Author, seq: Seq) -> Option<Hash> {
        self.hashes.get(&(*author, seq)).copied()
    }
}

/// Why a batch is refused; `index` is the position of the first bad entry in the batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// An entry's bytes are not an encoded entry.
    #[error("entry {index} does not decode: {error}")]
    Decode {
        /// Position of the entry in the batch, from 0.
        index: usize,
        /// Why its bytes do not decode.
        error: DecodeError,
    },
    /// An entry breaks a validation rule (shape, chain link or signature).
    #[error("entry {index} ({author} seq {seq}) is invalid: {error}")]
    Invalid {
        /// Position of the entry in the batch, from 0.
        index: usize,
        /// The entry's author.
        author: Author,
        /// The entry's seq.
        seq: Seq,
        /// The rule it breaks.
        error: ValidationError,
    },
    /// An entry lies beyond its feed's next position: the peer skipped entries.
    #[error("entry {index} ({author} seq {seq}) leaves a gap: the next seq is {next}")]
    Gap {
        /// Position of the entry in the batch, from 0.
        index: usize,
        /// The entry's author.
        author: Author,
        /// The entry's seq.
        seq: Seq,
        /// The seq the feed needs next, counting the batch's earlier entries.
        next: Seq,
    },
}

/// Checks a batch. `refuse(author)` says whether the caller refuses that author's entries
/// (asked once per author of the batch, in batch order); `head_of(author)` is the store's
/// head of that feed; `hash_at(author, seq)` its hash of a held entry (asked only for
/// `seq <= head.seq`). Entries are placed first, one by one; signatures are then verified
/// together, so a batch of mostly duplicates costs no verification.
pub fn check_batch(
    batch: &[EncodedEntry],
    refuse: impl FnMut(&Author) -> bool,
    head_of: impl Fn(&Author) -> Option<FeedHead>,
    hash_at: impl Fn(&Author, Seq) -> Option<Hash>,
) -> Result<BatchOutcome, BatchError> {
    let (mut outcome, candidates) = place_batch(batch, refuse, head_of, hash_at)?;
    verify_candidates(&candidates)?;
    for candidate in candidates {
        let pair = (candidate.entry, candidate.hash);
        match candidate.next {
            true => outcome.append.push(pair),
            false => outcome.fork_candidates.push(pair),
        }
    }
    Ok(outcome)
}

/// An entry of the batch whose signature decides it: the feed's next entry, or a fork
/// candidate (`next` false).
struct Candidate {
    index: usize,
    entry: Entry,
    hash: Hash,
    next: bool,
}

/// Decodes and places every entry against the store plus the entries before it in the
/// batch: refused and duplicate entries are counted in the outcome, the rest become
/// candidates, and the first entry that breaks a rule other than its signature refuses the
/// batch.
fn place_batch(
    batch: &[EncodedEntry],
    mut refuse: impl FnMut(&Author) -> bool,
    head_of: impl Fn(&Author) -> Option<FeedHead>,
    hash_at: impl Fn(&Author, Seq) -> Option<Hash>,
) -> Result<(BatchOutcome, Vec<Candidate>), BatchError> {
    let mut outcome = BatchOutcome::default();
    let mut candidates = Vec::new();
    // The store's heads, asked once per author.
    let mut stored: BTreeMap<Author, Option<FeedHead>> = BTreeMap::new();
    let mut refused: BTreeMap<Author, bool> = BTreeMap::new();
    // Decoding hashes every entry: done on all cores first, the placement (cheap, in order)
    // after.
    let decoded: Vec<Result<(Entry, Hash), DecodeError>> =
        batch.par_iter().map(EncodedEntry::decode).collect();
    for (index, decoded) in decoded.into_iter().enumerate() {
        let (entry, hash) = decoded.map_err(|error| BatchError::Decode { index, error })?;
        if *refused
            .entry(entry.author)
            .or_insert_with(|| refuse(&entry.author))
        {
            outcome.refused += 1;
            continue;
        }
        let invalid = |error| BatchError::Invalid {
            index,
            author: entry.author,
            seq: entry.seq,
            error,
        };
        validate::check_shape(&entry).map_err(invalid)?;
        // The batch's earlier entries of a feed extend the store's head of it.
        let head = outcome.appended.head(&entry.author).or_else(|| {
            *stored
                .entry(entry.author)
                .or_insert_with(|| head_of(&entry.author))
        });
        let length = head.map_or(0, |h| h.seq);
        let held = if entry.seq <= length {
            // Positions appended earlier in this batch are answered from the batch itself,
            // the rest by the store.
            outcome
                .appended
                .hash_at(&entry.author, entry.seq)
                .or_else(|| hash_at(&entry.author, entry.seq))
        } else {
            None
        };
        let next = match place(entry.seq, &hash, length, held) {
            Placement::Duplicate => {
                outcome.duplicates += 1;
                continue;
            }
            Placement::Gap { next } => {
                return Err(BatchError::Gap {
                    index,
                    author: entry.author,
                    seq: entry.seq,
                    next,
                })
            }
            Placement::Next => {
                validate::check_link(&entry, head.as_ref()).map_err(invalid)?;
                outcome.appended.add(
                    entry.author,
                    FeedHead {
                        seq: entry.seq,
                        hash,
                    },
                );
                true
            }
            // A fork, or a held entry whose hash the store could not give here: either way a
            // candidate whose signature is checked now and which the store's writer places
            // against the hash it holds (or fails to read, with an I/O error).
            Placement::Fork { .. } | Placement::Held => false,
        };
        candidates.push(Candidate {
            index,
            entry,
            hash,
            next,
        });
    }
    Ok((outcome, candidates))
}

/// Verifies every candidate's signature in one batch; the first bad one refuses the batch.
fn verify_candidates(candidates: &[Candidate]) -> Result<(), BatchError> {
    let items: Vec<BatchItem<'_>> = candidates
        .iter()
        .map(|c| BatchItem {
            author: &c.entry.author,
            hash: &c.hash,
            signature: &c.entry.signature,
        })
        .collect();
    let verdicts = verify_many(&items);
    match candidates.iter().zip(&verdicts).find(|(_, v)| v.is_err()) {
        Some((c, Err(error))) => Err(BatchError::Invalid {
            index: c.index,
            author: c.entry.author,
            seq: c.entry.seq,
            error: ValidationError::BadSignature(*error),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::UnsignedEntry;
    use crate::identity::Identity;
    use std::collections::BTreeSet;

    /// A feed of `n` entries by `seed`'s key, `variant` changing the values.
    fn feed(seed: u8, n: Seq, variant: i64) -> Vec<(Entry, Hash)> {
        let id = Identity::from_seed([seed; 32]);
        let mut out: Vec<(Entry, Hash)> = Vec::new();
        for seq in 1..=n {
            let prev = out.last().map(|(_, h)| *h);
            out.push(
                UnsignedEntry {
                    author: id.author(),
                    seq,
                    timestamp: seq,
                    prev,
                    value: variant * 100 + i64::try_from(seq).unwrap(),
                    data: String::new(),
                }
                .sign(&id),
            );
        }
        out
    }

    fn enc(entries: &[(Entry, Hash)]) -> Vec<EncodedEntry> {
        entries
            .iter()
            .map(|(e, _)| EncodedEntry::from_entry(e))
            .collect()
    }

    /// Checks `batch` against a store holding the first `held` entries of `store`.
    fn check(
        batch: &[EncodedEntry],
        store: &[(Entry, Hash)],
        held: usize,
        forked: &BTreeSet<Author>,
    ) -> Result<BatchOutcome, BatchError> {
        let held = &store[..held];
        check_batch(
            batch,
            |a| forked.contains(a),
            |_| {
                held.last().map(|(e, h)| FeedHead {
                    seq: e.seq,
                    hash: *h,
                })
            },
            |_, seq| {
                held.get(usize::try_from(seq).ok()?.checked_sub(1)?)
                    .map(|(_, h)| *h)
            },
        )
    }

    #[test]
    fn next_entries_are_appended_in_order() {
        let f = feed(1, 5, 0);
        let out = check(&enc(&f[2..]), &f, 2, &BTreeSet::new()).unwrap();
        assert_eq!(out.append, f[2..].to_vec());
        assert_eq!(out.duplicates, 0);
    }

    #[test]
    fn duplicates_are_dropped() {
        let f = feed(1, 5, 0);
        let out = check(&enc(&f[..4]), &f, 3, &BTreeSet::new()).unwrap();
        assert_eq!(out.duplicates, 3);
        assert_eq!(out.append, f[3..4].to_vec());
    }

    #[test]
    fn gap_refuses_the_batch() {
        let f = feed(1, 5, 0);
        assert!(matches!(
            check(&enc(&f[3..]), &f, 2, &BTreeSet::new()),
            Err(BatchError::Gap {
                index: 0,
                seq: 4,
                next: 3,
                ..
            })
        ));
    }

    #[test]
    fn one_bad_signature_refuses_the_whole_batch() {
        let f = feed(1, 5, 0);
        let mut batch = enc(&f);
        let last = batch[4].0.len() - 1;
        batch[4].0[last] ^= 1;
        assert!(matches!(
            check(&batch, &f, 0, &BTreeSet::new()),
            Err(BatchError::Invalid {
                index: 4,
                error: ValidationError::BadSignature(_),
                ..
            })
        ));
    }

    #[test]
    fn broken_link_refuses_the_batch() {
        let f = feed(1, 5, 0);
        let other = feed(1, 5, 1);
        assert!(matches!(
            check(&enc(&other[2..3]), &f, 2, &BTreeSet::new()),
            Err(BatchError::Invalid {
                index: 0,
                error: ValidationError::PrevMismatch { .. },
                ..
            })
        ));
    }

    #[test]
    fn undecodable_entry_refuses_the_batch() {
        let batch = vec![EncodedEntry(vec![1, 2, 3])];
        assert!(matches!(
            check(&batch, &[], 0, &BTreeSet::new()),
            Err(BatchError::Decode { index: 0, .. })
        ));
    }

    #[test]
    fn conflicting_entry_becomes_a_fork_candidate() {
        let f = feed(1, 3, 0);
        let other = feed(1, 3, 1);
        let out = check(&enc(&other[1..2]), &f, 3, &BTreeSet::new()).unwrap();
        assert_eq!(out.fork_candidates, other[1..2].to_vec());
        assert!(out.append.is_empty());
    }

    #[test]
    fn an_entry_repeated_within_the_batch_is_a_duplicate_not_a_fork() {
        let f = feed(1, 4, 0);
        let batch = enc(&[f[2].clone(), f[3].clone(), f[2].clone()]);
        let out = check(&batch, &f, 2, &BTreeSet::new()).unwrap();
        assert_eq!(out.append, f[2..4].to_vec());
        assert_eq!(out.duplicates, 1);
        assert!(out.fork_candidates.is_empty());
    }

    #[test]
    fn forked_authors_are_refused_without_error() {
        let f = feed(1, 3, 0);
        let forked = BTreeSet::from([f[0].0.author]);
        let out = check(&enc(&f), &f, 0, &forked).unwrap();
        assert_eq!(out.refused, 3);
        assert!(out.append.is_empty());
    }
}
