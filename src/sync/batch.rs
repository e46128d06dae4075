//! Checking a received `Entries` batch as a unit (docs/PROTOCOL.md section 6, "Entries"):
//! pure over lookups of what the store holds durably. Either every entry is accounted for in
//! [`BatchOutcome`] or the batch is refused with the first bad entry in [`BatchError`], and
//! nothing of it may be stored.
//!
//! The check decides only what needs no placement. Each entry is decoded; an entry of an
//! author the caller refuses (known forked, outside the node's author policy, a new feed over
//! the peer's budget) is dropped (counted, not an error); an entry the store already holds
//! durably, same position and same hash, is dropped as a duplicate, before any signature is
//! verified (a peer replaying what the node holds costs no verification); every other entry
//! must pass the shape rules, and their signatures are checked in one [`verify_many`] call.
//!
//! *Where* an entry goes (the next one, a duplicate of an entry in flight, a fork, a gap) and
//! whether it links to its feed's head is decided once, by the store's writer, which places
//! the checked batch whole against its view of every feed: the durable index plus every entry
//! in flight, from any session or source ([`crate::store::Store::append_verified_batch`]). A
//! gap or a broken link there refuses the batch, and [`refused_by_store`] names the entry
//! as this check would.

use std::collections::BTreeMap;

use rayon::prelude::*;

use crate::entry::{DecodeError, Entry, Seq};
use crate::hash::Hash;
use crate::identity::Author;
use crate::signature::{verify_many, BatchItem};
use crate::store::{Misplaced, Unplaceable};
use crate::validate::{self, ValidationError};

use super::message::EncodedEntry;

/// What a valid batch amounts to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Verified entries not durably held, with their hashes, in batch order: offer them to
    /// the store in one request, placed whole.
    pub append: Vec<(Entry, Hash)>,
    /// Each entry of `append`'s position in the batch (to name it if the store refuses).
    pub positions: Vec<usize>,
    /// Entries the store already holds durably.
    pub duplicates: usize,
    /// Entries of refused authors (forked, outside the policy, over budget), dropped.
    pub refused: usize,
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
        /// The seq the feed needs next, counting every entry in flight.
        next: Seq,
    },
}

/// Checks a batch. `refuse(author)` says whether the caller refuses that author's entries
/// (asked once per author of the batch, in batch order); `held(author, seq)` is the hash
/// the store durably holds at that position, if it holds one (and can read it). Entries are
/// sorted first, one by one; signatures are then verified together, so a batch of mostly
/// duplicates costs no verification.
pub fn check_batch(
    batch: &[EncodedEntry],
    mut refuse: impl FnMut(&Author) -> bool,
    held: impl Fn(&Author, Seq) -> Option<Hash>,
) -> Result<BatchOutcome, BatchError> {
    let mut outcome = BatchOutcome::default();
    let mut refused: BTreeMap<Author, bool> = BTreeMap::new();
    // Decoding hashes every entry: done on all cores first, the sorting (cheap, in order)
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
        validate::check_shape(&entry).map_err(|error| BatchError::Invalid {
            index,
            author: entry.author,
            seq: entry.seq,
            error,
        })?;
        if held(&entry.author, entry.seq) == Some(hash) {
            outcome.duplicates += 1;
            continue;
        }
        outcome.append.push((entry, hash));
        outcome.positions.push(index);
    }
    verify(&outcome)?;
    Ok(outcome)
}

/// Verifies every entry to append in one batch; the first bad signature refuses the batch.
fn verify(outcome: &BatchOutcome) -> Result<(), BatchError> {
    let items: Vec<BatchItem<'_>> = outcome
        .append
        .iter()
        .map(|(entry, hash)| BatchItem {
            author: &entry.author,
            hash,
            signature: &entry.signature,
        })
        .collect();
    let verdicts = verify_many(&items);
    let bad = outcome
        .append
        .iter()
        .zip(&outcome.positions)
        .zip(&verdicts)
        .find_map(|(((entry, _), index), verdict)| {
            verdict.as_ref().err().map(|e| (entry, *index, *e))
        });
    match bad {
        Some((entry, index, error)) => Err(BatchError::Invalid {
            index,
            author: entry.author,
            seq: entry.seq,
            error: ValidationError::BadSignature(error),
        }),
        None => Ok(()),
    }
}

/// The store's refusal of a checked batch ([`Unplaceable`], its `index` counted in the
/// batch's `append`) as the batch's own error: the same reasons, the entry named by its
/// position in the batch as received (`positions`, from [`BatchOutcome`]).
pub fn refused_by_store(refused: Unplaceable, positions: &[usize]) -> BatchError {
    let index = positions
        .get(refused.index)
        .copied()
        .unwrap_or(refused.index);
    let (author, seq) = (refused.author, refused.seq);
    match refused.reason {
        Misplaced::Gap { next } => BatchError::Gap {
            index,
            author,
            seq,
            next,
        },
        Misplaced::Invalid(error) => BatchError::Invalid {
            index,
            author,
            seq,
            error,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::testing::feed;
    use std::collections::BTreeSet;

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
            |_, seq| {
                held.get(usize::try_from(seq).ok()?.checked_sub(1)?)
                    .map(|(_, h)| *h)
            },
        )
    }

    #[test]
    fn entries_not_held_are_offered_in_order_with_their_positions() {
        let f = feed(1, 5, 0);
        let out = check(&enc(&f[2..]), &f, 2, &BTreeSet::new()).unwrap();
        assert_eq!(out.append, f[2..].to_vec());
        assert_eq!(out.positions, vec![0, 1, 2]);
        assert_eq!(out.duplicates, 0);
    }

    #[test]
    fn durable_duplicates_are_dropped_before_verification() {
        let f = feed(1, 5, 0);
        // A held entry with its signature broken: the same hash (the signature is not
        // hashed), so it is dropped as held without being verified.
        let mut batch = enc(&f[..4]);
        let last = batch[0].0.len() - 1;
        batch[0].0[last] ^= 1;
        let out = check(&batch, &f, 3, &BTreeSet::new()).unwrap();
        assert_eq!(out.duplicates, 3);
        assert_eq!(out.append, f[3..4].to_vec());
        assert_eq!(out.positions, vec![3]);
    }

    /// Placement is the store's: an entry beyond the durable head, or one that does not link
    /// to it, is offered (the store may hold its predecessors in flight) as long as its
    /// shape and signature hold.
    #[test]
    fn entries_are_not_placed_here() {
        let f = feed(1, 5, 0);
        let other = feed(1, 5, 1);
        let batch = enc(&[f[3].clone(), other[2].clone()]);
        let out = check(&batch, &f, 2, &BTreeSet::new()).unwrap();
        assert_eq!(out.append, vec![f[3].clone(), other[2].clone()]);
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

    /// The bad entry is named by its place in the batch as received, not among the entries
    /// left after duplicates were dropped.
    #[test]
    fn a_bad_signature_is_named_by_its_batch_position() {
        let f = feed(1, 5, 0);
        let mut batch = enc(&f);
        let last = batch[3].0.len() - 1;
        batch[3].0[last] ^= 1;
        assert!(matches!(
            check(&batch, &f, 2, &BTreeSet::new()),
            Err(BatchError::Invalid {
                index: 3,
                seq: 4,
                error: ValidationError::BadSignature(_),
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
    fn conflicting_entry_is_offered_for_the_store_to_call_a_fork() {
        let f = feed(1, 3, 0);
        let other = feed(1, 3, 1);
        let out = check(&enc(&other[1..2]), &f, 3, &BTreeSet::new()).unwrap();
        assert_eq!(out.append, other[1..2].to_vec());
        assert_eq!(out.duplicates, 0);
    }

    #[test]
    fn forked_authors_are_refused_without_error() {
        let f = feed(1, 3, 0);
        let forked = BTreeSet::from([f[0].0.author]);
        let out = check(&enc(&f), &f, 0, &forked).unwrap();
        assert_eq!(out.refused, 3);
        assert!(out.append.is_empty());
    }

    /// The store's refusal names the entry as the check would, by its batch position.
    #[test]
    fn the_stores_refusal_maps_to_the_batch_position() {
        let author = feed(1, 1, 0)[0].0.author;
        let gap = Unplaceable {
            index: 1,
            author,
            seq: 7,
            reason: Misplaced::Gap { next: 5 },
        };
        assert_eq!(
            refused_by_store(gap, &[2, 4, 9]),
            BatchError::Gap {
                index: 4,
                author,
                seq: 7,
                next: 5
            }
        );
        let link = Unplaceable {
            index: 0,
            author,
            seq: 3,
            reason: Misplaced::Invalid(ValidationError::SeqNotNext {
                expected: 2,
                found: 3,
            }),
        };
        assert!(matches!(
            refused_by_store(link, &[6]),
            BatchError::Invalid {
                index: 6,
                seq: 3,
                ..
            }
        ));
    }
}
