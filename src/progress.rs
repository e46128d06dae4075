//! How far a long one-shot job has come: an import, a verify, an export, an index rebuild. The library counts
//! and reports to a [`Progress`] the caller passes in; what is shown, and where, is the
//! caller's business (the CLI draws a bar on stderr when it is a terminal; HTTP handlers and
//! tests pass [`NoProgress`]). Library code never prints.
//!
//! Work is reported in steps of many units (a chunk of the log, a batch of entries, a read
//! buffer of input), never once per entry, so a sink's cost does not show next to the work.

/// A stage of a job, and the unit its counts are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading and parsing an import's input; bytes.
    Read,
    /// Offering an import's sorted entries to the store; entries.
    Store,
    /// Re-checking the log's records; entries.
    Verify,
    /// Writing the log as CSV; entries.
    Export,
    /// Rebuilding the SQL index from the log; entries read.
    Index,
}

/// Where a job reports how far it has come. `Sync`: a job may report from the thread that
/// applies a chunk while others decode the next.
pub trait Progress: Sync {
    /// `stage` begins, with `total` units when the job knows it. The job cannot know the
    /// length of a reader, so [`Stage::Read`] comes with `None`: a caller that knows it (the
    /// size of the files it opened) supplies it itself.
    fn begin(&self, stage: Stage, total: Option<u64>);
    /// `units` more of the current stage are done.
    fn advance(&self, units: u64);
}

/// Reports to nobody: what every caller without a display passes.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&self, _stage: Stage, _total: Option<u64>) {}
    fn advance(&self, _units: u64) {}
}

/// A count as a progress unit: counts are `usize` in memory, `u64` in reports.
pub fn units(count: usize) -> u64 {
    u64::try_from(count).unwrap_or(u64::MAX)
}
