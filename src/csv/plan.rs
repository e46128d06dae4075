//! Planning an import (pure) and reporting on it.
//!
//! [`plan_import`] takes every parsed record and gives the store, per feed, the distinct
//! entries of the input in the order it must offer them: by seq, then by hash, then by
//! signature bytes. The plan depends only on the *set* of records, not their order in the
//! input (line numbers aside), so concatenated, shuffled or repeated exports plan alike.
//!
//! - An entry that appears more than once (same hash and same signature) is kept once and
//!   the repeats are counted as `duplicates`; the copy kept is the one on the lowest line.
//! - Two different hashes at the same author and seq are a fork inside the input: reported
//!   in `forks` with every line involved. Both entries stay in the plan: signatures are not
//!   verified yet, so dropping either could let a forged row hide a genuine entry. Offered
//!   in order, the store appends the first that verifies and links, and meets the second as
//!   a fork against what it now holds — which it verifies and reports like any other fork.
//! - The same hash with two different signatures is not a fork (the entry is the same); both
//!   rows are offered, the store keeps the first that verifies and counts the other as a
//!   duplicate.

use std::collections::BTreeMap;
use std::fmt;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::csv::parse::{ParsedEntry, ParsedLine, Rejection};
use crate::entry::Seq;
use crate::hash::Hash;
use crate::identity::Author;

/// What to hand to the store, per feed, plus what planning already found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportPlan {
    /// Per author, the distinct entries in the order to offer them (seq, hash, signature).
    pub feeds: BTreeMap<Author, Vec<ParsedEntry>>,
    /// Repeats of an entry within the input.
    pub duplicates: u64,
    /// Records that are not entries.
    pub rejected: Rejections,
    /// Different entries at the same author and seq within the input.
    pub forks: Vec<ForkDetail>,
}

/// Two or more different entries claiming one position of one feed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ForkDetail {
    pub author: Author,
    pub seq: Seq,
    /// The competing entries, by hash.
    pub entries: Vec<ForkSide>,
}

/// One side of a fork: its hash and the input line it came from, `None` for an entry the
/// store already held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ForkSide {
    pub line: Option<u64>,
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
    pub forks: Vec<ForkDetail>,
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

/// Sort key of an entry within its feed; the signature makes it total.
type PlanKey = (Seq, Hash, [u8; 64]);

/// Groups, orders and deduplicates the parsed records: see the module docs.
pub fn plan_import(lines: impl IntoIterator<Item = ParsedLine>) -> ImportPlan {
    let mut plan = ImportPlan::default();
    let mut feeds: BTreeMap<Author, BTreeMap<PlanKey, ParsedEntry>> = BTreeMap::new();
    for line in lines {
        let parsed = match line {
            ParsedLine::Entry(parsed) => parsed,
            ParsedLine::Rejected(rejection) => {
                plan.rejected.push(rejection);
                continue;
            }
        };
        let key = (parsed.entry.seq, parsed.hash, parsed.entry.signature.0);
        let feed = feeds.entry(parsed.entry.author).or_default();
        match feed.get_mut(&key) {
            Some(kept) => {
                plan.duplicates = plan.duplicates.saturating_add(1);
                kept.line = kept.line.min(parsed.line);
            }
            None => {
                feed.insert(key, parsed);
            }
        }
    }
    for (author, entries) in feeds {
        let list: Vec<ParsedEntry> = entries.into_values().collect();
        plan.forks.extend(forks_in(&author, &list));
        plan.feeds.insert(author, list);
    }
    plan
}

/// The forks in one feed's ordered list: runs of equal seq with more than one hash.
fn forks_in(author: &Author, list: &[ParsedEntry]) -> Vec<ForkDetail> {
    list.chunk_by(|a, b| a.entry.seq == b.entry.seq)
        .filter_map(|run| {
            let mut sides: Vec<ForkSide> = Vec::new();
            for parsed in run {
                match sides.last_mut() {
                    // Same hash, other signature: the same entry, so one side.
                    Some(side) if side.hash == parsed.hash => {
                        side.line = side.line.min(Some(parsed.line));
                    }
                    _ => sides.push(ForkSide {
                        line: Some(parsed.line),
                        hash: parsed.hash,
                    }),
                }
            }
            (sides.len() > 1).then(|| ForkDetail {
                author: *author,
                seq: run[0].entry.seq,
                entries: sides,
            })
        })
        .collect()
}

impl ImportPlan {
    /// How many entries the plan offers the store.
    pub fn entry_count(&self) -> usize {
        self.feeds.values().map(Vec::len).sum()
    }

    /// Splits the plan into the per-feed lists for the store and a report that already
    /// counts the input's duplicates, rejections and forks; the store adds its own findings.
    pub fn into_parts(self) -> (BTreeMap<Author, Vec<ParsedEntry>>, ImportReport) {
        let report = ImportReport {
            added: 0,
            duplicates: self.duplicates,
            rejected: self.rejected,
            forks: self.forks,
        };
        (self.feeds, report)
    }
}

impl ImportReport {
    /// The reported rejections (at most [`MAX_REPORTED_REJECTIONS`], the lowest lines) by
    /// line, then reason, whatever order they were found in.
    pub fn sorted_rejections(&self) -> Vec<&Rejection> {
        self.rejected.sorted()
    }

    /// Forks by author, then seq.
    pub fn sorted_forks(&self) -> Vec<&ForkDetail> {
        let mut sorted: Vec<&ForkDetail> = self.forks.iter().collect();
        sorted.sort_by_key(|f| (f.author, f.seq));
        sorted
    }
}

/// JSON: `added`, `duplicates`, `rejected` (count), `rejections` ([{line, reason}] by line, the
/// first 1,000),
/// `forks` (count), `fork_details` ([{author, seq, entries: [{line, hash}]}]).
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
        Ok(())
    }
}
