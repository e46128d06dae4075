//! Applies a CSV import to the store: parse everything (streamed, record by record), plan
//! (group per feed, order, deduplicate), then offer each feed's entries to the store in
//! order and fold every outcome into one [`ImportReport`].
//!
//! Nothing is appended until the whole input has been read: an input that fails to read
//! half-way (a dropped HTTP upload, an unreadable file) imports nothing, rather than an
//! arbitrary prefix.

use std::io::Read;

use crate::csv::{
    plan_import, CsvParser, ForkDetail, ForkSide, ImportReport, ParsedEntry, ParsedLine,
};
use crate::csv::{RejectReason, Rejection};
use crate::fork::ForkProof;
use crate::identity::Author;
use crate::node::NodeError;
use crate::store::{Outcome, Store};
use crate::validate::ValidationError;

/// Entries handed to the store per call: large enough to batch signature checks and share
/// one fdatasync, small enough to bound the memory of one call's outcomes.
pub const IMPORT_BATCH_ENTRIES: usize = 4096;

/// Imports CSV from `input` into `store`. Blocking. Entries whose author `refuse`s are not
/// offered (rejected as [`RejectReason::ForkedAuthor`]). Returns the report and, for every
/// fork the store reported, the (unchecked) proof built from the held and offered entries.
pub fn import_csv(
    store: &Store,
    input: impl Read,
    refuse: impl Fn(&Author) -> bool,
) -> Result<(ImportReport, Vec<ForkProof>), NodeError> {
    let mut parser = CsvParser::new(input);
    let mut lines = Vec::new();
    // Rejected rows are counted as they are parsed, not kept: a body of garbage costs a
    // counter, not a record per row.
    let mut rejected = crate::csv::Rejections::default();
    while let Some(line) = parser.next_line().map_err(NodeError::ImportRead)? {
        match line {
            ParsedLine::Rejected(rejection) => rejected.push(rejection),
            entry => lines.push(entry),
        }
    }
    let (feeds, mut report) = plan_import(lines).into_parts();
    report.rejected.merge(rejected);
    let mut proofs = Vec::new();
    let mut batch = Vec::with_capacity(IMPORT_BATCH_ENTRIES);
    for entry in feeds.into_values().flatten() {
        if refuse(&entry.entry.author) {
            report.rejected.push(Rejection {
                line: entry.line,
                reason: RejectReason::ForkedAuthor {
                    author: entry.entry.author,
                },
            });
            continue;
        }
        batch.push(entry);
        if batch.len() == IMPORT_BATCH_ENTRIES {
            offer(store, &mut batch, &mut report, &mut proofs)?;
        }
    }
    offer(store, &mut batch, &mut report, &mut proofs)?;
    Ok((report, proofs))
}

/// Offers `batch` (per-feed seq order) to the store and records each outcome; empties it.
fn offer(
    store: &Store,
    batch: &mut Vec<ParsedEntry>,
    report: &mut ImportReport,
    proofs: &mut Vec<ForkProof>,
) -> Result<(), NodeError> {
    if batch.is_empty() {
        return Ok(());
    }
    let entries = batch.iter().map(|p| p.entry.clone()).collect();
    let outcomes = store.append_entries(entries)?;
    for (parsed, outcome) in batch.drain(..).zip(outcomes) {
        if let Outcome::Fork { seq, .. } = &outcome {
            if let Some((held, _)) = store.reader().get(&parsed.entry.author, *seq)? {
                proofs.push(ForkProof::new(held, parsed.entry.clone()));
            }
        }
        record(report, &parsed, outcome);
    }
    Ok(())
}

fn record(report: &mut ImportReport, parsed: &ParsedEntry, outcome: Outcome) {
    let reject = |report: &mut ImportReport, error: ValidationError| {
        report.rejected.push(Rejection {
            line: parsed.line,
            reason: RejectReason::Invalid(error),
        })
    };
    match outcome {
        Outcome::Added(_) => report.added += 1,
        Outcome::Duplicate(_) => report.duplicates += 1,
        Outcome::Rejected(error) => reject(report, error),
        // The entries before this one are missing (absent from the input, or rejected).
        Outcome::Gap { next } => reject(
            report,
            ValidationError::SeqNotNext {
                expected: next,
                found: parsed.entry.seq,
            },
        ),
        Outcome::Fork { seq, held, offered } => {
            let author = parsed.entry.author;
            let held_side = ForkSide {
                line: None,
                hash: held,
            };
            let offered_side = ForkSide {
                line: Some(parsed.line),
                hash: offered,
            };
            // A fork the plan already saw inside the input gains the store's side; any
            // other is new.
            match report
                .forks
                .iter_mut()
                .find(|f| f.author == author && f.seq == seq)
            {
                Some(fork) => {
                    // A hash already listed keeps its side: if this import appended it,
                    // that side names its input line, which "held" would hide.
                    for side in [held_side, offered_side] {
                        if !fork.entries.iter().any(|s| s.hash == side.hash) {
                            fork.entries.push(side);
                        }
                    }
                    fork.entries.sort_by_key(|s| s.hash);
                }
                None => report.forks.push(ForkDetail {
                    author,
                    seq,
                    entries: vec![held_side, offered_side],
                }),
            }
        }
    }
}
