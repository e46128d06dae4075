//! Whether the store can write right now, shared by the writer and whoever reports it
//! (`GET /health`, `/metrics`).
//!
//! The writer is the only one that changes it:
//!
//! - a failed write, `fdatasync` or cut-back makes the store **degraded**, with the error
//!   as the reason, and counts the failure;
//! - while degraded, every batch is preceded by a recovery (cut the file back to the last
//!   durable end, sync that, re-read the last durable record); a batch written and synced
//!   after it makes the store **ok** again.
//!
//! The forks file (`DATA_DIR/forks`) has a spell of its own: a fork proof that could not be
//! appended (or synced) degrades the store with that error, and the writer retries the
//! proofs it could not record (see [`super::writer`]); the spell ends when they are durable.
//! The log's spell is reported first when both files fail.
//!
//! So "ok" means the last attempt to make something durable succeeded in each file, and
//! "degraded" that the last one failed: appends are answered with an error until one
//! succeeds, and an unrecorded proof is retried until it is recorded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::poison::lock;

/// Which file a failure or a success is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// `entries.log`.
    Log = 0,
    /// `forks`.
    Forks = 1,
}

/// The store's write health. One per open store, behind an `Arc`.
#[derive(Debug, Default)]
pub struct StoreHealth {
    /// The current spell of each [`Part`], by its index.
    spells: Mutex<[Option<Degraded>; 2]>,
    failures: AtomicU64,
    recoveries: AtomicU64,
}

/// Why the store is not writing, since when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Degraded {
    /// The failed operation and its error, e.g. `fdatasync: No space left on device`.
    pub reason: String,
    /// Milliseconds since the Unix epoch of the failure that began this spell.
    pub since_ms: u64,
}

impl StoreHealth {
    /// `None` while both files write; otherwise why not (the log's spell first).
    pub fn degraded(&self) -> Option<Degraded> {
        lock(&self.spells).iter().flatten().next().cloned()
    }

    /// Failed writes, syncs or recoveries since the store was opened.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Times a file went from degraded back to writing.
    pub fn recoveries(&self) -> u64 {
        self.recoveries.load(Ordering::Relaxed)
    }

    /// Records a failure; the first of a spell sets `since_ms`, later ones update the reason.
    pub(super) fn fail(&self, part: Part, reason: String, now_ms: u64) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut spells = lock(&self.spells);
        let spell = &mut spells[part as usize];
        let since_ms = spell.as_ref().map_or(now_ms, |d| d.since_ms);
        *spell = Some(Degraded { reason, since_ms });
    }

    /// Records a durable write; returns the spell it ended, if any.
    pub(super) fn succeed(&self, part: Part) -> Option<Degraded> {
        let ended = lock(&self.spells)[part as usize].take();
        if ended.is_some() {
            self.recoveries.fetch_add(1, Ordering::Relaxed);
        }
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spell_keeps_its_start_and_ends_on_success() {
        let health = StoreHealth::default();
        assert_eq!(health.degraded(), None);
        assert_eq!(health.succeed(Part::Log), None, "no spell to end");
        health.fail(Part::Log, "write: disk full".into(), 10);
        health.fail(Part::Log, "fdatasync: I/O error".into(), 20);
        let spell = health.degraded().unwrap();
        assert_eq!(spell.since_ms, 10);
        assert_eq!(spell.reason, "fdatasync: I/O error");
        assert_eq!(health.failures(), 2);
        assert_eq!(health.succeed(Part::Log), Some(spell));
        assert_eq!(health.degraded(), None);
        assert_eq!(health.recoveries(), 1);
    }

    #[test]
    fn each_file_has_its_own_spell_and_the_logs_is_reported_first() {
        let health = StoreHealth::default();
        health.fail(Part::Forks, "append to forks: disk full".into(), 5);
        assert_eq!(health.degraded().unwrap().since_ms, 5);
        health.fail(Part::Log, "write the log: disk full".into(), 7);
        assert_eq!(health.degraded().unwrap().since_ms, 7);
        // A write of the log does not end the forks file's spell.
        assert!(health.succeed(Part::Log).is_some());
        assert_eq!(
            health.degraded().unwrap().reason,
            "append to forks: disk full"
        );
        assert!(health.succeed(Part::Forks).is_some());
        assert_eq!(health.degraded(), None);
        assert_eq!(health.recoveries(), 2);
    }
}
