//! [`IndexHandle`]: what the rest of the node sees of a running indexer: where the
//! database is, how far it covers the log (a `watch` the query side waits on for
//! read-your-writes), its state and its lag.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::watch;

use crate::poison::lock;
use crate::store::StoreReader;
use crate::views::Views;

use super::db::Coverage;

/// What the indexer is doing, as `/health` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum IndexState {
    /// Rebuilding from the log (a new, missing, stale or damaged index): `covered` of the
    /// log's `end` bytes read so far.
    Building {
        /// Log bytes read.
        covered: u64,
        /// The log's committed end when the pass began.
        end: u64,
    },
    /// Following the log (it may lag: see [`IndexHandle::lag_bytes`]).
    Ready,
    /// The disk refused the last write (full, an I/O error): the index is open and sound,
    /// covering what it covered before; queries answer from that (`as_of` behind) while the
    /// indexer tries again every [`super::follow::RETRY_AFTER_FAILURE_MS`], and it catches up
    /// by itself once a write succeeds. The log is not affected.
    Degraded {
        /// SQLite's error, e.g. `index database: database or disk is full`.
        reason: String,
        /// Milliseconds since the Unix epoch of the first failure of this spell.
        since_ms: u64,
    },
    /// The last attempt to open the index failed (or something other than the disk failed
    /// it); it is opened again, checked, and rebuilt if damaged. Queries answer from what
    /// was indexed before, if anything was.
    Failed {
        /// What failed.
        reason: String,
    },
}

impl IndexState {
    /// The state after a write the disk refused at `now_ms`, from this one.
    fn degraded(&self, reason: String, now_ms: u64) -> IndexState {
        let since_ms = match self {
            IndexState::Degraded { since_ms, .. } => *since_ms,
            _ => now_ms,
        };
        IndexState::Degraded { reason, since_ms }
    }
}

/// A cheap, cloneable view of a node's running indexer.
#[derive(Clone, Debug)]
pub struct IndexHandle {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    coverage: watch::Sender<Coverage>,
    state: Mutex<IndexState>,
    reader: StoreReader,
    views: Views,
}

impl IndexHandle {
    /// A handle to the index at `path` of the log `reader` reads, covering nothing yet.
    pub(crate) fn new(path: PathBuf, reader: StoreReader, views: Views) -> IndexHandle {
        IndexHandle {
            shared: Arc::new(Shared {
                path,
                coverage: watch::Sender::new(Coverage::default()),
                state: Mutex::new(IndexState::Building { covered: 0, end: 0 }),
                reader,
                views,
            }),
        }
    }

    /// The database file (`DATA_DIR/index/index.sqlite`); open it read-only to query.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// How far the index covers the log, updated after every committed batch: wait on it
    /// (`wait_for(|c| c.covers(offset))`) to read your writes.
    pub fn coverage(&self) -> watch::Receiver<Coverage> {
        self.shared.coverage.subscribe()
    }

    /// The coverage now.
    pub fn covered_now(&self) -> Coverage {
        *self.shared.coverage.borrow()
    }

    /// The node's named views, whose indexes this indexer keeps.
    pub fn views(&self) -> &Views {
        &self.shared.views
    }

    /// What the indexer is doing now.
    pub fn state(&self) -> IndexState {
        lock(&self.shared.state).clone()
    }

    /// Log bytes committed but not yet covered by the index: 0 once the last entry is
    /// covered, whatever follows it (a commit marker written after the last append wakes
    /// no indexer, and holds no entry to index).
    pub fn lag_bytes(&self) -> u64 {
        let (end, last_entry) = self.shared.reader.end_and_last_entry();
        let covered = self.covered_now().covered;
        match last_entry {
            Some((offset, _)) if covered > offset => 0,
            None => 0,
            Some(_) => end.saturating_sub(covered),
        }
    }

    pub(crate) fn publish(&self, coverage: Coverage) {
        self.shared.coverage.send_replace(coverage);
    }

    pub(crate) fn set_state(&self, state: IndexState) {
        *lock(&self.shared.state) = state;
    }

    /// Records a write the disk refused: the first of a spell sets `since_ms`, later ones
    /// only the reason. Any other state ends the spell.
    pub(crate) fn degrade(&self, reason: String, now_ms: u64) {
        let mut state = lock(&self.shared.state);
        *state = state.degraded(reason, now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_degraded_spell_keeps_its_start_until_another_state_ends_it() {
        let first = IndexState::Ready.degraded("full".into(), 10);
        let again = first.degraded("i/o".into(), 20);
        assert_eq!(
            again,
            IndexState::Degraded {
                reason: "i/o".into(),
                since_ms: 10
            }
        );
        let building = IndexState::Building { covered: 1, end: 2 };
        assert_eq!(
            building.degraded("full".into(), 30),
            IndexState::Degraded {
                reason: "full".into(),
                since_ms: 30
            }
        );
        let json = serde_json::to_value(&again).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"state": "degraded", "reason": "i/o", "since_ms": 10})
        );
    }
}
