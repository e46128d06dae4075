//! Planning an import (pure) and reporting on it.
//!
//! An import offers the store the distinct entries of its input in **plan order**: by author,
//! then seq, then hash, then signature bytes (line numbers break the last ties). The outcome
//! depends only on the *set* of records, not their order in the input (line numbers aside),
//! so concatenated, shuffled or repeated exports import alike. The pieces here work on a
//! stream already in plan order, one entry at a time, so an import of any size needs memory
//! for one batch, not for its input (`crate::import` sorts the input on disk first):
//!
//! - [`Dedup`]: an entry that appears more than once (same hash and same signature) is kept
//!   once and the repeats are counted as `duplicates`; the copy kept is the one on the lowest
//!   line.
//! - [`ForkTracker`]: two different signed entries at the same author and seq are a fork
//!   inside the input: reported in `forks` with every line involved. Both entries are offered:
//!   signatures are not verified yet, so dropping either could let a forged row hide a genuine
//!   entry; a side whose signature does not check is a rejection, not a fork side.
//!   Offered in order, the store appends the first that verifies and links (the lower hash
//!   when both do), and meets the second as a fork against what it now holds — which it
//!   verifies and reports like any other fork. A fork against an entry the store held before
//!   the import adds that entry as a side without a line.
//! - The same hash with two different signatures is not a fork (the entry is the same); both
//!   rows are offered, the store keeps the first that verifies and counts the other as a
//!   duplicate.
//!
//! Reports stay bounded whatever the input: at most [`MAX_REPORTED_REJECTIONS`] rejections
//! and [`MAX_REPORTED_FORKS`] forks are listed, with exact totals.

use std::cmp::Ordering;
use std::fmt;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::csv::parse::{ParsedEntry, Rejection};
use crate::entry::Seq;
use crate::hash::Hash;
use crate::identity::Author;

/// Two or more different entries claiming one position of one feed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ForkDetail {
    /// The forked feed's author.
    pub author: Author,
    /// The position the entries compete for.
    pub seq: Seq,
    /// The competing entries, by hash.
    pub entries: Vec<ForkSide>,
}

/// One side of a fork: its hash and the input line it came from, `None` for an entry the
/// store already held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ForkSide {
    /// The 1-based input line; `None` for the entry the store already held.
    pub line: Option<u64>,
    /// The entry's hash.
    pub hash: Hash,
}

/// The outcome of an import, as the CLI prints it and the HTTP API returns it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Entries the store appended.
    pub added: u64,
    /// Entries already held, or repeated within the input.
    pub duplicates: u64,
    /// Records not imported, from the parser, the plan or the store.
    pub rejected: Rejections,
    /// Forks found, within the input or against the store.
    pub forks: Forks,
}

/// The most rejections an import report lists (the lowest lines); the count stays exact.
/// A body of garbage rows must not make the node hold, or answer with, one record per row.
pub const MAX_REPORTED_REJECTIONS: usize = 1000;

/// The rejections of an import: the exact total, and the [`MAX_REPORTED_REJECTIONS`] with
/// the lowest line numbers (memory stays bounded however many rows are rejected).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rejections {
    kept: Vec<Rejection>,
    total: u64,
}

impl Rejections {
    /// Counts a rejection and keeps it if it is among the lowest lines.
    pub fn push(&mut self, rejection: Rejection) {
        self.total = self.total.saturating_add(1);
        self.kept.push(rejection);
        // Trim in batches: amortised O(log n) per push, memory at most twice the cap.
        if self.kept.len() >= 2 * MAX_REPORTED_REJECTIONS {
            self.trim();
        }
    }

    /// Adds every rejection of `other` (its total, and its kept records).
    pub fn merge(&mut self, other: Rejections) {
        self.total = self.total.saturating_add(other.total);
        self.kept.extend(other.kept);
        if self.kept.len() >= 2 * MAX_REPORTED_REJECTIONS {
            self.trim();
        }
    }

    fn trim(&mut self) {
        self.kept
            .sort_by_cached_key(|r| (r.line, r.reason.to_string()));
        self.kept.truncate(MAX_REPORTED_REJECTIONS);
    }

    /// How many records were rejected in all.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The total as a count of records (for callers that compare with `usize`).
    pub fn len(&self) -> usize {
        usize::try_from(self.total).unwrap_or(usize::MAX)
    }

    /// Whether no record was rejected.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The reported rejections, by line then reason.
    pub fn sorted(&self) -> Vec<&Rejection> {
        let mut sorted: Vec<&Rejection> = self.kept.iter().collect();
        sorted.sort_by_cached_key(|r| (r.line, r.reason.to_string()));
        sorted.truncate(MAX_REPORTED_REJECTIONS);
        sorted
    }
}

/// The plan order of two parsed entries: author, seq, hash, signature bytes, then line (so
/// the first of equal entries is the one on the lowest line).
pub fn plan_order(a: &ParsedEntry, b: &ParsedEntry) -> Ordering {
    // Field by field, so the common case (different authors or seqs) never touches the
    // 64-byte signatures: this runs ~20 times per entry in the import's sort and merge.
    a.entry
        .author
        .cmp(&b.entry.author)
        .then(a.entry.seq.cmp(&b.entry.seq))
        .then_with(|| a.hash.cmp(&b.hash))
        .then_with(|| a.entry.signature.0.cmp(&b.entry.signature.0))
        .then(a.line.cmp(&b.line))
}

/// Drops repeats from a stream in plan order: an entry equal (same author, seq, hash and
/// signature) to the one before it is a duplicate.
#[derive(Debug, Default)]
pub struct Dedup {
    last: Option<(Author, Seq, Hash, [u8; 64])>,
    /// Repeats dropped so far.
    pub duplicates: u64,
}

impl Dedup {
    /// Whether `parsed` repeats the entry before it (and is counted as a duplicate).
    pub fn is_repeat(&mut self, parsed: &ParsedEntry) -> bool {
        let key = (
            parsed.entry.author,
            parsed.entry.seq,
            parsed.hash,
            parsed.entry.signature.0,
        );
        if self.last == Some(key) {
            self.duplicates = self.duplicates.saturating_add(1);
            true
        } else {
            self.last = Some(key);
            false
        }
    }
}

/// The most forks an import report lists (the lowest authors and seqs); the count stays exact.
pub const MAX_REPORTED_FORKS: usize = 1000;

/// The forks of an import: the exact number of forked positions, and the first
/// [`MAX_REPORTED_FORKS`] of them in (author, seq) order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Forks {
    kept: Vec<ForkDetail>,
    total: u64,
}

impl Forks {
    /// Adds a fork; forks must come in (author, seq) order for the kept ones to be the first.
    pub fn push(&mut self, fork: ForkDetail) {
        self.total = self.total.saturating_add(1);
        if self.kept.len() < MAX_REPORTED_FORKS {
            self.kept.push(fork);
        }
    }

    /// How many forked positions were found in all.
    pub fn len(&self) -> usize {
        usize::try_from(self.total).unwrap_or(usize::MAX)
    }

    /// Whether no fork was found.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The listed forks, by author then seq.
    pub fn listed(&self) -> &[ForkDetail] {
        &self.kept
    }
}

/// Finds the forks in a stream of entries in plan order, with what the store said of each.
///
/// Call [`ForkTracker::observe`] for every distinct entry of the input (offered or not) and
/// [`ForkTracker::held`] when the store reports one as a fork against what it holds; a
/// position with more than one distinct signed hash is a fork once the stream moves past it.
#[derive(Debug, Default)]
pub struct ForkTracker {
    position: Option<(Author, Seq)>,
    /// The distinct hashes seen at `position`, in hash order, with their lowest line.
    sides: Vec<ForkSide>,
    forks: Forks,
}

impl ForkTracker {
    /// An input entry, in plan order; `signed` when its signature checked. Only signed
    /// entries are sides of a fork: a row nobody signed proves nothing, so a forged row
    /// next to a genuine entry is a rejection, not a fork.
    pub fn observe(&mut self, parsed: &ParsedEntry, signed: bool) {
        self.move_to(parsed.entry.author, parsed.entry.seq);
        if signed {
            self.add_side(Some(parsed.line), parsed.hash);
        }
    }

    /// The store holds `held` at the position of the entry last observed.
    pub fn held(&mut self, held: Hash) {
        self.add_side(None, held);
    }

    fn add_side(&mut self, line: Option<u64>, hash: Hash) {
        match self.sides.iter_mut().find(|s| s.hash == hash) {
            // The same entry (another signature, or appended by this import): one side,
            // named by its lowest input line.
            Some(side) => {
                side.line = match (side.line, line) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            None => {
                self.sides.push(ForkSide { line, hash });
                self.sides.sort_by_key(|s| s.hash);
            }
        }
    }

    fn move_to(&mut self, author: Author, seq: Seq) {
        if self.position == Some((author, seq)) {
            return;
        }
        self.close_position();
        self.position = Some((author, seq));
    }

    fn close_position(&mut self) {
        let sides = std::mem::take(&mut self.sides);
        if let (Some((author, seq)), true) = (self.position, sides.len() > 1) {
            self.forks.push(ForkDetail {
                author,
                seq,
                entries: sides,
            });
        }
    }

    /// The forks found, once the stream has ended.
    pub fn finish(mut self) -> Forks {
        self.close_position();
        self.forks
    }
}

impl ImportReport {
    /// The reported rejections (at most [`MAX_REPORTED_REJECTIONS`], the lowest lines) by
    /// line, then reason, whatever order they were found in.
    pub fn sorted_rejections(&self) -> Vec<&Rejection> {
        self.rejected.sorted()
    }

    /// The listed forks (at most [`MAX_REPORTED_FORKS`]) by author, then seq.
    pub fn sorted_forks(&self) -> Vec<&ForkDetail> {
        let mut sorted: Vec<&ForkDetail> = self.forks.listed().iter().collect();
        sorted.sort_by_key(|f| (f.author, f.seq));
        sorted
    }
}

/// JSON: `added`, `duplicates`, `rejected` (count), `rejections` ([{line, reason}] by line, the
/// first 1,000), `forks` (count), `fork_details` ([{author, seq, entries: [{line, hash}]}] by
/// author and seq, the first 1,000).
impl Serialize for ImportReport {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = s.serialize_struct("ImportReport", 6)?;
        out.serialize_field("added", &self.added)?;
        out.serialize_field("duplicates", &self.duplicates)?;
        out.serialize_field("rejected", &self.rejected.total())?;
        out.serialize_field("rejections", &self.sorted_rejections())?;
        out.serialize_field("forks", &self.forks.len())?;
        out.serialize_field("fork_details", &self.sorted_forks())?;
        out.end()
    }
}

/// What the CLI prints: one line of counts, then one line per rejection and per fork.
impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "added {}, duplicates {}, rejected {}, forks {}",
            self.added,
            self.duplicates,
            self.rejected.total(),
            self.forks.len()
        )?;
        let listed = self.sorted_rejections();
        for rejection in &listed {
            write!(f, "\nline {}: {}", rejection.line, rejection.reason)?;
        }
        let unlisted = self.rejected.total().saturating_sub(listed.len() as u64);
        if unlisted > 0 {
            write!(f, "\n... and {unlisted} more rejected lines (only the first {MAX_REPORTED_REJECTIONS} are listed)")?;
        }
        for fork in self.sorted_forks() {
            write!(f, "\nfork: author {} seq {}:", fork.author, fork.seq)?;
            for side in &fork.entries {
                match side.line {
                    Some(line) => write!(f, " {} (line {line})", side.hash)?,
                    None => write!(f, " {} (held)", side.hash)?,
                }
            }
        }
        let unlisted = self
            .forks
            .total
            .saturating_sub(self.forks.kept.len() as u64);
        if unlisted > 0 {
            write!(
                f,
                "\n... and {unlisted} more forks (only the first {MAX_REPORTED_FORKS} are listed)"
            )?;
        }
        Ok(())
    }
}
