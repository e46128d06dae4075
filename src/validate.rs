//! When an entry is valid: pure functions, one error variant per rule.
//!
//! An entry is accepted into a feed whose current head is `head` (None for an empty feed)
//! if and only if:
//!
//! - **data**: `data` is at most [`MAX_DATA_BYTES`] bytes ([`ValidationError::DataTooLong`]);
//! - **seq**: `seq >= 1` ([`ValidationError::SeqZero`]);
//! - **prev shape**: `prev` is absent exactly when `seq == 1`
//!   ([`ValidationError::PrevOnFirst`], [`ValidationError::PrevMissing`]);
//! - **claimed hash**: where a hash travels with the entry (CSV, HTTP), it equals the hash
//!   computed from the fields ([`ValidationError::HashMismatch`]);
//! - **seq next**: `seq` is the head's seq + 1, or 1 for an empty feed
//!   ([`ValidationError::SeqNotNext`]);
//! - **prev link**: `prev` is the head's hash ([`ValidationError::PrevMismatch`]);
//! - **signature**: the signature verifies under [`crate::signature`]'s rule
//!   ([`ValidationError::BadSignature`]).
//!
//! Whether an entry is *new*, a *duplicate* or a *fork* relative to what a store holds is not
//! a validity question: see [`Placement`].

use crate::entry::{Entry, Seq, MAX_DATA_BYTES};
use crate::hash::Hash;
use crate::signature::{self, SignatureError};

/// The last entry of a feed: what the next entry must link to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedHead {
    /// The last entry's seq; the next entry must carry `seq + 1`.
    pub seq: Seq,
    /// The last entry's hash; the next entry's `prev` must equal it.
    pub hash: Hash,
}

/// Why an entry is refused. One variant per rule of the module docs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// The **data** rule.
    #[error("data is {len} bytes, the limit is {MAX_DATA_BYTES}")]
    DataTooLong {
        /// The data's length, in bytes of UTF-8.
        len: usize,
    },
    /// The **seq** rule.
    #[error("seq 0 is not a valid position (feeds start at 1)")]
    SeqZero,
    /// The **prev shape** rule: a seq 1 entry carries a prev.
    #[error("the first entry of a feed must not have a prev hash")]
    PrevOnFirst,
    /// The **prev shape** rule: an entry past seq 1 carries no prev.
    #[error("entry {seq} has no prev hash")]
    PrevMissing {
        /// The entry's seq (above 1).
        seq: Seq,
    },
    /// The **claimed hash** rule.
    #[error("hash mismatch: claimed {claimed}, computed {computed}")]
    HashMismatch {
        /// The hash that travelled with the entry.
        claimed: Hash,
        /// The hash of the entry's fields.
        computed: Hash,
    },
    /// The **seq next** rule.
    #[error("seq not next: expected {expected}, found {found}")]
    SeqNotNext {
        /// The head's seq + 1 (1 for an empty feed).
        expected: Seq,
        /// The entry's seq.
        found: Seq,
    },
    /// The **prev link** rule.
    #[error("prev mismatch: expected {expected}, found {found}")]
    PrevMismatch {
        /// The head's hash.
        expected: Hash,
        /// The entry's prev.
        found: Hash,
    },
    /// The **signature** rule.
    #[error("bad signature: {0}")]
    BadSignature(#[from] SignatureError),
}

/// Rules that look at the entry alone: data length, seq, prev shape.
pub fn check_shape(entry: &Entry) -> Result<(), ValidationError> {
    if entry.data.len() > MAX_DATA_BYTES {
        return Err(ValidationError::DataTooLong {
            len: entry.data.len(),
        });
    }
    match (entry.seq, entry.prev) {
        (0, _) => Err(ValidationError::SeqZero),
        (1, Some(_)) => Err(ValidationError::PrevOnFirst),
        (seq, None) if seq > 1 => Err(ValidationError::PrevMissing { seq }),
        _ => Ok(()),
    }
}

/// The claimed-hash rule.
pub fn check_claimed_hash(claimed: &Hash, computed: &Hash) -> Result<(), ValidationError> {
    if claimed == computed {
        Ok(())
    } else {
        Err(ValidationError::HashMismatch {
            claimed: *claimed,
            computed: *computed,
        })
    }
}

/// The chain rules: `entry` must extend `head`.
pub fn check_link(entry: &Entry, head: Option<&FeedHead>) -> Result<(), ValidationError> {
    let expected = head.map_or(1, |h| h.seq.saturating_add(1));
    if entry.seq != expected {
        return Err(ValidationError::SeqNotNext {
            expected,
            found: entry.seq,
        });
    }
    match (head, entry.prev) {
        (Some(head), Some(prev)) if prev != head.hash => Err(ValidationError::PrevMismatch {
            expected: head.hash,
            found: prev,
        }),
        // Shape rules already tie `prev` presence to seq, and seq to the head.
        _ => Ok(()),
    }
}

/// The signature rule, for one entry whose hash is already computed.
pub fn check_signature(entry: &Entry, hash: &Hash) -> Result<(), ValidationError> {
    signature::verify(&entry.author, hash, &entry.signature).map_err(ValidationError::from)
}

/// Every rule, cheapest first. Returns the entry hash.
pub fn validate(
    entry: &Entry,
    claimed: Option<&Hash>,
    head: Option<&FeedHead>,
) -> Result<Hash, ValidationError> {
    check_shape(entry)?;
    let hash = entry.hash();
    if let Some(claimed) = claimed {
        check_claimed_hash(claimed, &hash)?;
    }
    check_link(entry, head)?;
    check_signature(entry, &hash)?;
    Ok(hash)
}

/// Where an entry falls relative to a feed a store holds. Expected outcomes, not errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The next entry of the feed (still subject to the chain and signature rules).
    Next,
    /// The store holds this very entry (same hash).
    Duplicate,
    /// The store holds a different entry of the same author at this seq.
    Fork {
        /// The hash of the entry the store holds there.
        held: Hash,
    },
    /// The entry is beyond the feed's next position: the entries in between are missing.
    Gap {
        /// The seq the feed needs next (its head's seq + 1).
        next: Seq,
    },
    /// The feed holds this position but the caller did not supply its hash: a duplicate or
    /// a fork, which only the held hash can tell. Nothing is invented for it (a made-up
    /// "held" hash would turn into a fork that nobody signed).
    Held,
}

/// Classifies an entry at `seq` with `hash` against a feed of `length` entries, where
/// `held_hash` is the hash the feed holds at `seq` (only consulted when `seq <= length`).
pub fn place(seq: Seq, hash: &Hash, length: Seq, held_hash: Option<Hash>) -> Placement {
    let next = length.saturating_add(1);
    if seq == next {
        Placement::Next
    } else if seq > next {
        Placement::Gap { next }
    } else {
        match held_hash {
            Some(held) if held == *hash => Placement::Duplicate,
            Some(held) => Placement::Fork { held },
            None => Placement::Held,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::UnsignedEntry;
    use crate::identity::Identity;

    fn id() -> Identity {
        Identity::from_seed([1; 32])
    }

    /// A valid second entry and the head it extends: every test breaks exactly one rule of it.
    fn base() -> (Entry, FeedHead) {
        let id = id();
        let (first, first_hash) = UnsignedEntry {
            author: id.author(),
            seq: 1,
            timestamp: 1000,
            prev: None,
            value: 1,
            data: String::new(),
        }
        .sign(&id);
        let (second, _) = UnsignedEntry {
            author: id.author(),
            seq: 2,
            timestamp: 2000,
            prev: Some(first_hash),
            value: 2,
            data: "two".into(),
        }
        .sign(&id);
        assert_eq!(first.seq, 1);
        (
            second,
            FeedHead {
                seq: 1,
                hash: first_hash,
            },
        )
    }

    fn resign(mut e: Entry) -> Entry {
        e.signature = id().sign_hash(&e.hash());
        e
    }

    #[test]
    fn base_is_valid() {
        let (e, head) = base();
        assert_eq!(validate(&e, Some(&e.hash()), Some(&head)), Ok(e.hash()));
    }

    #[test]
    fn data_too_long() {
        let (mut e, head) = base();
        e.data = "x".repeat(MAX_DATA_BYTES + 1);
        let e = resign(e);
        assert_eq!(
            validate(&e, None, Some(&head)),
            Err(ValidationError::DataTooLong {
                len: MAX_DATA_BYTES + 1
            })
        );
    }

    #[test]
    fn seq_zero() {
        let (mut e, head) = base();
        e.seq = 0;
        assert_eq!(
            validate(&resign(e), None, Some(&head)),
            Err(ValidationError::SeqZero)
        );
    }

    #[test]
    fn prev_on_first() {
        let (mut e, _) = base();
        e.seq = 1;
        assert_eq!(
            validate(&resign(e), None, None),
            Err(ValidationError::PrevOnFirst)
        );
    }

    #[test]
    fn prev_missing() {
        let (mut e, head) = base();
        e.prev = None;
        assert_eq!(
            validate(&resign(e), None, Some(&head)),
            Err(ValidationError::PrevMissing { seq: 2 })
        );
    }

    #[test]
    fn hash_mismatch() {
        let (e, head) = base();
        let claimed = Hash([9; 32]);
        assert_eq!(
            validate(&e, Some(&claimed), Some(&head)),
            Err(ValidationError::HashMismatch {
                claimed,
                computed: e.hash()
            })
        );
    }

    #[test]
    fn seq_not_next() {
        let (mut e, head) = base();
        e.seq = 3;
        assert_eq!(
            validate(&resign(e), None, Some(&head)),
            Err(ValidationError::SeqNotNext {
                expected: 2,
                found: 3
            })
        );
    }

    #[test]
    fn prev_mismatch() {
        let (mut e, head) = base();
        e.prev = Some(Hash([4; 32]));
        assert_eq!(
            validate(&resign(e), None, Some(&head)),
            Err(ValidationError::PrevMismatch {
                expected: head.hash,
                found: Hash([4; 32])
            })
        );
    }

    #[test]
    fn bad_signature() {
        let (mut e, head) = base();
        e.value = 3; // changed after signing
        assert_eq!(
            validate(&e, None, Some(&head)),
            Err(ValidationError::BadSignature(SignatureError::Mismatch))
        );
    }

    #[test]
    fn placement() {
        let h = Hash([1; 32]);
        assert_eq!(place(3, &h, 2, None), Placement::Next);
        assert_eq!(place(5, &h, 2, None), Placement::Gap { next: 3 });
        assert_eq!(place(2, &h, 2, Some(h)), Placement::Duplicate);
        assert_eq!(
            place(2, &h, 2, Some(Hash([2; 32]))),
            Placement::Fork {
                held: Hash([2; 32])
            }
        );
        assert_eq!(place(2, &h, 2, None), Placement::Held);
    }
}
