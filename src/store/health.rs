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
//! So "ok" means the last attempt to make something durable succeeded, and "degraded" that
//! the last one failed: appends are answered with an error until one succeeds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::poison::lock;

/// The store's write health. One per open store, behind an `Arc`.
#[derive(Debug, Default)]
pub struct StoreHealth {
    degraded: Mutex<Option<Degraded>>,
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
    /// `None` while the store writes; otherwise why not.
    pub fn degraded(&self) -> Option<Degraded> {
        lock(&self.degraded).clone()
    }

    /// Failed writes, syncs or recoveries since the store was opened.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Times the store went from degraded back to writing.
    pub fn recoveries(&self) -> u64 {
        self.recoveries.load(Ordering::Relaxed)
    }

    /// Records a failure; the first of a spell sets `since_ms`, later ones update the reason.
    pub(super) fn fail(&self, reason: String, now_ms: u64) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut degraded = lock(&self.degraded);
        let since_ms = degraded.as_ref().map_or(now_ms, |d| d.since_ms);
        *degraded = Some(Degraded { reason, since_ms });
    }

    /// Records a durable write; returns the spell it ended, if any.
    pub(super) fn succeed(&self) -> Option<Degraded> {
        let ended = lock(&self.degraded).take();
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
        assert_eq!(health.succeed(), None, "no spell to end");
        health.fail("write: disk full".into(), 10);
        health.fail("fdatasync: I/O error".into(), 20);
        let spell = health.degraded().unwrap();
        assert_eq!(spell.since_ms, 10);
        assert_eq!(spell.reason, "fdatasync: I/O error");
        assert_eq!(health.failures(), 2);
        assert_eq!(health.succeed(), Some(spell));
        assert_eq!(health.degraded(), None);
        assert_eq!(health.recoveries(), 1);
    }
}
