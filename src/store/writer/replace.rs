//! Replacing an entry's copy (docs/STORE.md, "Replacement records"): what a request to do
//! so comes to ([`ReplaceOutcome`]), the copy as the writer carries it ([`Copy`]), and the
//! syncer's decision for each copy ([`decide`]), made where what is durable is known.
//!
//! Two valid signatures of one entry hash exist only when an author signed its entry twice;
//! the author's checkpoint says which copy its tree holds (docs/TLOG.md), and the caller
//! (the sync session that found the author's copy) asks the store to keep that one. The
//! store checks for itself everything that makes the copy a copy: the same author, seq and
//! entry hash as the entry it holds, a valid signature (checked by the planner, so the log
//! never holds an unverified copy), a signature other than the current copy's, and an author
//! not known forked (a forked feed is out of every view; its copies do not matter).

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use crate::entry::{Entry, Seq};
use crate::hash::Hash;
use crate::identity::{Author, Signature};
use crate::store::fork_log::Forked;
use crate::store::format;
use crate::store::index::Index;
use crate::store::io::{LogFile, LogIo};
use crate::store::AppendError;
use crate::validate::{self, ValidationError};

/// What one offered copy came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplaceOutcome {
    /// Written and durable: every read returns this copy from now on.
    Replaced,
    /// The store's current copy is this one already (same signature): nothing written.
    AlreadyCurrent,
    /// Not written, for this reason.
    Refused(ReplaceRefusal),
}

/// Why a copy was not written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplaceRefusal {
    /// The store holds no entry at the copy's author and seq (durable before the write the
    /// copy came in).
    #[error("the store holds no entry at this author and seq")]
    NoSuchEntry,
    /// The store holds another entry there: this is no copy of it (a fork, for the caller to
    /// prove with [`crate::fork::ForkProof`]).
    #[error("the store holds another entry (hash {held}) at this author and seq")]
    OtherEntryHash {
        /// The entry hash the store holds at that position.
        held: Hash,
    },
    /// The copy breaks the shape rules or its signature does not verify.
    #[error("the copy is invalid: {0}")]
    Invalid(ValidationError),
    /// The author is known forked: its feed is out of every view, its copies are not kept.
    #[error("the author is forked")]
    Forked,
}

/// The writer's answer to a replacement request: one outcome per copy, in order.
pub type ReplaceResult = Result<Vec<ReplaceOutcome>, AppendError>;

/// One offered copy as the writer carries it.
pub(in crate::store) struct Copy {
    pub entry: Entry,
    pub hash: Hash,
    /// The planner's shape and signature check, then the syncer's decision; `None` until
    /// decided.
    pub outcome: Option<ReplaceOutcome>,
    /// Set by the syncer for a copy it writes: the record the entry entered the log in.
    pub original: u64,
    /// Where its replacement record starts, once laid out.
    pub offset: u64,
}

impl Copy {
    /// A copy checked for shape and signature (the store never holds an unverified copy).
    pub(super) fn checked(entry: Entry) -> Copy {
        let hash = entry.hash();
        let outcome = validate::check_shape(&entry)
            .and_then(|()| validate::check_signature(&entry, &hash))
            .err()
            .map(|e| ReplaceOutcome::Refused(ReplaceRefusal::Invalid(e)));
        Copy {
            entry,
            hash,
            outcome,
            original: 0,
            offset: 0,
        }
    }

    /// Whether the syncer writes it (decided [`ReplaceOutcome::Replaced`]).
    pub(super) fn written(&self) -> bool {
        self.outcome == Some(ReplaceOutcome::Replaced)
    }
}

/// Decides every undecided copy of a write's replacement `requests` (each its copies and
/// its failure) against the durable log: reads each held entry's current copy (one
/// positional read a copy; replacements are rare) and compares. Copies decided earlier in
/// the same write count as current for later ones. A read that fails fails the copy's
/// request (`failed`), which then writes nothing.
pub(super) fn decide<'a>(
    requests: impl Iterator<Item = (&'a mut Vec<Copy>, &'a mut Option<AppendError>)>,
    index: &RwLock<Index>,
    forked: &RwLock<Forked>,
    io: &dyn LogIo,
    file: &LogFile,
) {
    let mut decided: HashMap<(Author, Seq), Signature> = HashMap::new();
    for (copies, failed) in requests {
        // This request's copies count for its later ones, and for later requests only if
        // it is written: a failed request writes nothing.
        let mut own = decided.clone();
        for copy in copies.iter_mut().filter(|c| c.outcome.is_none()) {
            match decide_one(copy, &own, index, forked, io, file) {
                Ok(outcome) => copy.outcome = Some(outcome),
                Err(e) => {
                    *failed = Some(e);
                    break;
                }
            }
            if copy.written() {
                own.insert((copy.entry.author, copy.entry.seq), copy.entry.signature);
            }
        }
        if failed.is_some() {
            // Answered with the error, so none of its copies is written.
            for copy in copies.iter_mut() {
                if copy.written() {
                    copy.outcome = None;
                }
            }
        } else {
            decided = own;
        }
    }
}

fn decide_one(
    copy: &mut Copy,
    decided: &HashMap<(Author, Seq), Signature>,
    index: &RwLock<Index>,
    forked: &RwLock<Forked>,
    io: &dyn LogIo,
    file: &LogFile,
) -> Result<ReplaceOutcome, AppendError> {
    let author = copy.entry.author;
    if forked
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(&author)
    {
        return Ok(ReplaceOutcome::Refused(ReplaceRefusal::Forked));
    }
    let (original, current, end) = {
        let index = index.read().unwrap_or_else(PoisonError::into_inner);
        let original = index
            .feeds
            .get(&author)
            .and_then(|f| f.offset_of(copy.entry.seq));
        (original, original.map(|o| index.current(o)), index.end)
    };
    let (Some(original), Some(current)) = (original, current) else {
        return Ok(ReplaceOutcome::Refused(ReplaceRefusal::NoSuchEntry));
    };
    let held = format::read_record_at(io, file, current, end).map_err(|fault| match fault {
        format::ReadFault::Io(e) => AppendError::Io(std::sync::Arc::new(e)),
        format::ReadFault::Bad(reason) => {
            AppendError::Io(std::sync::Arc::new(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("record at offset {current}: {reason}"),
            )))
        }
    })?;
    if held.hash != copy.hash {
        return Ok(ReplaceOutcome::Refused(ReplaceRefusal::OtherEntryHash {
            held: held.hash,
        }));
    }
    let signature = decided
        .get(&(author, copy.entry.seq))
        .copied()
        .unwrap_or(held.entry.signature);
    if signature == copy.entry.signature {
        return Ok(ReplaceOutcome::AlreadyCurrent);
    }
    copy.original = original;
    Ok(ReplaceOutcome::Replaced)
}
