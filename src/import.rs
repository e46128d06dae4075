//! Applies a CSV import to the store in bounded memory, whatever the input's size:
//!
//! 1. parse the input record by record; rejected records are counted (the first 1,000
//!    kept for the report), entries go to a [`SpillSorter`], which sorts them into plan
//!    order (author, seq, hash, signature) on disk in chunks;
//! 2. merge the sorted runs into one stream, drop repeats ([`Dedup`]), and offer the
//!    entries to the store in batches of [`IMPORT_BATCH_ENTRIES`], in plan order;
//! 3. fold every outcome into one [`ImportReport`], finding forks as the stream passes each
//!    position ([`ForkTracker`]), and hand each forked feed's first offered side to
//!    `on_fork` at once (the node records the proof) rather than collecting them.
//!
//! Nothing is appended until the whole input has been read: an input that fails to read
//! half-way (an unreadable file, a dropped pipe) imports nothing, rather than an arbitrary
//! prefix. (An HTTP upload is spooled to disk whole before the import starts.)
//!
//! # When the disk fails during an import
//!
//! An import that stops part-way says exactly what it stored: the error carries `added`,
//! the entries acknowledged durable by the store before the failure, and nothing after
//! them was stored. The store answers a batch all or nothing (one request, one write, one
//! `fdatasync`), so a failed batch adds nothing; every outcome of a batch that was stored is
//! counted before the fork proofs it found are handed over, so a failing proof cannot hide
//! entries already stored. Stopping reasons:
//!
//! - the sort's run files cannot be written or read back ([`ImportError::Spill`]);
//! - the store cannot write ([`ImportError::Stopped`] around the [`AppendError`]), or a
//!   fork proof cannot be recorded (the same, around that error).
//!
//! Importing the same input again afterwards is safe and completes it: what was stored
//! comes back as duplicates. `tests/it/import_faults.rs` fails every I/O call of an import
//! (spill and store, through one [`crate::store::io::LogIo`]) and checks exactly this.
//!
//! # Importing into a node
//!
//! Import sits above the node and drives it: [`Node::import`] (defined here, not in
//! [`crate::node`], which knows nothing of its callers) offers the entries to the node's
//! store, refuses the authors the node knows forked, records each fork found as a proof
//! through the node, and counts the outcomes in the node's metrics.

use std::io::Read;
use std::path::Path;

use crate::csv::{
    CsvParser, Dedup, ForkTracker, ImportReport, ParsedEntry, ParsedLine, RejectReason, Rejection,
};
use crate::entry::Entry;
use crate::identity::Author;
use crate::node::{Node, NodeError};
use crate::progress::{NoProgress, Progress, Stage};
use crate::store::{AppendError, Outcome, Store};
use crate::validate::ValidationError;

mod spill;

pub use spill::{SpillSorter, MAX_MERGE_FAN_IN, SORT_BUDGET_BYTES};

/// Why an import stopped (see the module docs for what each leaves stored).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input could not be read (an unreadable file, a dropped pipe); nothing was stored,
    /// since appending starts only once the whole input is read.
    #[error("reading the import: {0}")]
    Read(#[source] std::io::Error),
    /// The import's sort files in the data directory could not be written or read back;
    /// `added` entries were appended before (none when it failed while sorting).
    #[error("sorting the import on disk: {source} ({added} entries were imported before)")]
    Spill {
        /// The failed write or read of a run.
        #[source]
        source: std::io::Error,
        /// Entries stored before the failure.
        added: u64,
    },
    /// The store (or the recording of a fork proof) failed during an import: the `added`
    /// entries before are durable, nothing after was stored.
    #[error(
        "{source} ({added} entries were imported before; importing the same input again is safe)"
    )]
    Stopped {
        /// What the store (or the fork log) answered.
        #[source]
        source: Box<NodeError>,
        /// Entries stored (durable) before the failure.
        added: u64,
    },
    /// A promise of our own code broken; says which.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl Node {
    /// Imports CSV (any concatenation of exports) into this node. Blocking: call it off the
    /// async workers. Memory stays bounded whatever the input's size; the sort spills to
    /// the data directory.
    pub fn import(&self, input: impl Read) -> Result<ImportReport, ImportError> {
        self.import_with_progress(input, &NoProgress)
    }

    /// [`Node::import`], reporting how far it has come to `progress` (see
    /// [`import_csv_with_progress`]).
    pub fn import_with_progress(
        &self,
        input: impl Read,
        progress: &dyn Progress,
    ) -> Result<ImportReport, ImportError> {
        let forked = self.forked_authors();
        let report = import_csv_with_progress(
            self.store(),
            input,
            self.data_dir(),
            |a| forked.contains(a),
            |offered| self.record_fork_against_held(offered).map(drop),
            progress,
        )?;
        let m = self.metrics();
        m.count_import("added", report.added);
        m.count_import("duplicate", report.duplicates);
        let rejected = u64::try_from(report.rejected.len()).unwrap_or(u64::MAX);
        let forks = u64::try_from(report.forks.len()).unwrap_or(u64::MAX);
        m.count_import("rejected", rejected);
        m.count_import("fork", forks);
        m.rejections.inc_by(rejected);
        Ok(report)
    }
}

/// Entries handed to the store per call: large enough to batch signature checks and share
/// one fdatasync, small enough to bound the memory of one call's outcomes.
pub const IMPORT_BATCH_ENTRIES: usize = 4096;

/// Imports CSV from `input` into `store`. Blocking. `spill_dir` holds the sort's temporary
/// files (unnamed, gone when the import ends). Entries whose author `refuse`s are not offered
/// (rejected as [`RejectReason::ForkedAuthor`]). For the first fork the store reports in each
/// feed, `on_fork` receives the offered entry (the held one is in the store).
pub fn import_csv(
    store: &Store,
    input: impl Read,
    spill_dir: &Path,
    refuse: impl Fn(&Author) -> bool,
    on_fork: impl FnMut(Entry) -> Result<(), NodeError>,
) -> Result<ImportReport, ImportError> {
    import_csv_with_progress(store, input, spill_dir, refuse, on_fork, &NoProgress)
}

/// [`import_csv`], reporting to `progress`: [`Stage::Read`] in bytes of input as the parser
/// reads them (one report per read buffer), then [`Stage::Store`] in entries, with the
/// number parsed as the total, as each batch has been offered to the store.
pub fn import_csv_with_progress(
    store: &Store,
    input: impl Read,
    spill_dir: &Path,
    refuse: impl Fn(&Author) -> bool,
    on_fork: impl FnMut(Entry) -> Result<(), NodeError>,
    progress: &dyn Progress,
) -> Result<ImportReport, ImportError> {
    let sorter = SpillSorter::new(spill_dir);
    let apply = Apply::new(store, IMPORT_BATCH_ENTRIES, refuse, on_fork);
    import_sorted(input, sorter, apply, progress)
}

/// [`import_csv`] with a given sorter and entries per store call (tests use a small budget
/// to exercise the merge, small batches to fail an import between two of them, and a
/// sorter with their own [`crate::store::io::LogIo`]).
pub fn import_with_sorter(
    store: &Store,
    input: impl Read,
    sorter: SpillSorter,
    batch_entries: usize,
    refuse: impl Fn(&Author) -> bool,
    on_fork: impl FnMut(Entry) -> Result<(), NodeError>,
) -> Result<ImportReport, ImportError> {
    let apply = Apply::new(store, batch_entries, refuse, on_fork);
    import_sorted(input, sorter, apply, &NoProgress)
}

/// The three steps of the module docs: parse into `sorter`, then merge, drop repeats and
/// offer the entries to the store through `apply`.
fn import_sorted<R, F>(
    input: impl Read,
    mut sorter: SpillSorter,
    mut apply: Apply<'_, R, F>,
    progress: &dyn Progress,
) -> Result<ImportReport, ImportError>
where
    R: Fn(&Author) -> bool,
    F: FnMut(Entry) -> Result<(), NodeError>,
{
    progress.begin(Stage::Read, None);
    let mut parsed_entries = 0u64;
    let mut parser = CsvParser::new(CountedRead { input, progress });
    while let Some(line) = parser.next_line().map_err(ImportError::Read)? {
        match line {
            // Counted as parsed, not kept: garbage costs a counter, not a record per row.
            ParsedLine::Rejected(rejection) => apply.report.rejected.push(rejection),
            ParsedLine::Entry(parsed) => {
                sorter.push(parsed).map_err(spill_error(0))?;
                parsed_entries += 1;
            }
        }
    }
    progress.begin(Stage::Store, Some(parsed_entries));
    let mut dedup = Dedup::default();
    // Entries taken from the sort since the last report, repeats included, so the count
    // reaches the total.
    let mut taken = 0u64;
    let sorted = sorter.finish().map_err(spill_error(0))?;
    for parsed in sorted {
        let parsed = parsed.map_err(spill_error(apply.report.added))?;
        taken += 1;
        if dedup.is_repeat(&parsed) {
            continue;
        }
        apply.batch.push(parsed);
        if apply.batch.len() >= apply.batch_entries {
            apply.offer()?;
            progress.advance(std::mem::take(&mut taken));
        }
    }
    apply.offer()?;
    progress.advance(taken);
    let mut report = apply.report;
    report.duplicates = report.duplicates.saturating_add(dedup.duplicates);
    report.forks = apply.tracker.finish();
    Ok(report)
}

/// The input as the parser reads it, each read's bytes reported to `progress`. The parser
/// reads through a buffer of its own, so this reports once per buffer, not per record.
struct CountedRead<'p, I> {
    input: I,
    progress: &'p dyn Progress,
}

impl<I: Read> Read for CountedRead<'_, I> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.input.read(buf)?;
        self.progress.advance(crate::progress::units(n));
        Ok(n)
    }
}

fn spill_error(added: u64) -> impl FnOnce(std::io::Error) -> ImportError {
    move |source| ImportError::Spill { source, added }
}

/// The apply step's state across batches.
struct Apply<'a, R, F> {
    store: &'a Store,
    refuse: R,
    on_fork: F,
    report: ImportReport,
    tracker: ForkTracker,
    /// The last author a proof was handed over for: one proof rejects a feed, and entries
    /// come author by author, so this bounds proofs to one per forked feed.
    proved: Option<Author>,
    /// Entries offered to the store per call.
    batch_entries: usize,
    batch: Vec<ParsedEntry>,
}

/// The import stopped after `added` durable entries because of `source`.
fn stopped(added: u64, source: NodeError) -> ImportError {
    ImportError::Stopped {
        source: Box::new(source),
        added,
    }
}

impl<'a, R, F> Apply<'a, R, F>
where
    R: Fn(&Author) -> bool,
    F: FnMut(Entry) -> Result<(), NodeError>,
{
    fn new(store: &'a Store, batch_entries: usize, refuse: R, on_fork: F) -> Self {
        Apply {
            store,
            refuse,
            on_fork,
            report: ImportReport::default(),
            tracker: ForkTracker::default(),
            proved: None,
            batch_entries: batch_entries.max(1),
            batch: Vec::new(),
        }
    }

    /// Offers the batch (plan order) to the store and folds each outcome in; empties it.
    fn offer(&mut self) -> Result<(), ImportError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let refused: Vec<bool> = self
            .batch
            .iter()
            .map(|p| (self.refuse)(&p.entry.author))
            .collect();
        let entries = self
            .batch
            .iter()
            .zip(&refused)
            .filter(|(_, refused)| !**refused)
            .map(|(p, _)| p.entry.clone())
            .collect();
        let mut outcomes = self
            .store
            .append_entries(entries)
            .wait()
            .map_err(|e: AppendError| stopped(self.report.added, e.into()))?
            .into_iter();
        // The offered side of each new fork, handed over once the whole batch is counted.
        let mut proofs = Vec::new();
        for (parsed, refused) in std::mem::take(&mut self.batch).into_iter().zip(refused) {
            if refused {
                self.tracker.observe(&parsed, false);
                self.report.rejected.push(Rejection {
                    line: parsed.line,
                    reason: RejectReason::ForkedAuthor {
                        author: parsed.entry.author,
                    },
                });
                continue;
            }
            let Some(outcome) = outcomes.next() else {
                return Err(ImportError::Internal(
                    "the store answered fewer outcomes than entries offered",
                ));
            };
            // Every outcome but a rejection comes from an entry whose signature checked.
            let signed = !matches!(outcome, Outcome::Rejected(_));
            self.tracker.observe(&parsed, signed);
            if let Outcome::Fork { held, .. } = &outcome {
                self.tracker.held(*held);
                let author = parsed.entry.author;
                if self.proved != Some(author) {
                    self.proved = Some(author);
                    proofs.push(parsed.entry.clone());
                }
            }
            record(&mut self.report, &parsed, outcome);
        }
        self.batch = Vec::with_capacity(self.batch_entries);
        for offered in proofs {
            (self.on_fork)(offered).map_err(|e| stopped(self.report.added, e))?;
        }
        Ok(())
    }
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
        // Forks are folded in by the tracker, which sees every side of the position.
        Outcome::Fork { .. } => {}
    }
}
