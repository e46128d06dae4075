//! The indexer of a running node: a thread of its own (SQLite calls block) that follows
//! the log, and a small task that wakes it.
//!
//! The task turns the node's events into wake-ups: every [`NodeEvent`] (a commit, a fork
//! proof) and a lagged receiver alike mean "look at the log again", because the thread reads
//! the log and the forked set, never the events' contents; a missed event is only a missed
//! wake-up, and wake-ups coalesce. When the node stops ([`Node::stopping`]), the task tells
//! the thread, which finishes its batch, marks the file clean and ends; the task waits for
//! that, so [`Node::shutdown`] (which waits for the node's tasks) returns with the index
//! closed. Neither ever appends or waits for the store's writer.
//!
//! Pacing: under a stream of commits a pass starts at most every [`MIN_PASS_INTERVAL_MS`],
//! so it takes that interval's commits in one transaction instead of one transaction per
//! group commit; after a quiet spell a wake-up starts a pass at once.
//!
//! Forked feeds: each pass compares the node's forked set with the authors it has already
//! excluded and deletes the rows of any new one before reading on; the first pass after an
//! open therefore deletes the rows of every author already forked.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::oneshot;

use crate::identity::Author;
use crate::node::Node;
use crate::store::{Store, StoreReader};

use super::db::{index_path, IndexDb, IndexError};
use super::handle::{IndexHandle, IndexState};

/// How long a failed indexer waits before it tries again, unless a commit wakes it first.
pub const RETRY_AFTER_FAILURE_MS: u64 = 1_000;

/// The shortest time from the start of one pass to the start of the next. Each pass costs a
/// transaction (the rows, `meta`, a commit to SQLite's WAL) and a read of the log whatever
/// its size; at 64-connection `POST /add` load a pass per group commit (a few dozen entries)
/// cost ~15 µs of CPU per append, 6 µs with passes paced (docs/BENCHMARKS.md). Bounded well below issue 21's lag target (p99
/// 50 ms from commit to visible): a commit waits at most this long plus one pass.
pub const MIN_PASS_INTERVAL_MS: u64 = 10;

/// How long to wait before the pass a wake-up asked for at `now`, when the previous pass
/// started at `last_start`: nothing after a quiet spell, else the rest of the interval.
fn pause_before_pass(last_start: Instant, now: Instant) -> Duration {
    (last_start + Duration::from_millis(MIN_PASS_INTERVAL_MS)).saturating_duration_since(now)
}

/// Starts `node`'s indexer (call it on a tokio runtime: the waking task is one of the
/// node's tasks). Returns at once; the index opens, checks and catches up in the background.
pub fn start(node: &Node) -> IndexHandle {
    let handle = IndexHandle::new(index_path(node.data_dir()), node.reader().clone());
    // Subscribed before the thread reads the log: a commit after that read wakes it.
    let mut events = node.subscribe();
    let mut stopping = node.stopping();
    let (wake, woken) = mpsc::sync_channel::<()>(1);
    let stop = Arc::new(AtomicBool::new(false));
    let (done, finished) = oneshot::channel::<()>();
    let follower = Follower {
        data_dir: node.data_dir().to_owned(),
        author: node.author(),
        store: node.store().clone(),
        reader: node.reader().clone(),
        handle: handle.clone(),
        stop: stop.clone(),
    };
    let spawned = std::thread::Builder::new()
        .name("indexer".into())
        .spawn(move || {
            follower.run(&woken);
            let _ = done.send(());
        });
    if let Err(e) = spawned {
        handle.set_state(IndexState::Failed {
            reason: format!("starting the indexer thread: {e}"),
        });
        return handle;
    }
    node.spawn(async move {
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    // Full means a wake-up is pending already: they coalesce.
                    Ok(_) | Err(RecvError::Lagged(_)) => { let _ = wake.try_send(()); }
                    Err(RecvError::Closed) => break,
                },
                _ = stopping.wait_for(|stopping| *stopping) => break,
            }
        }
        stop.store(true, Ordering::Relaxed);
        let _ = wake.try_send(());
        drop(wake);
        // The thread closes the file cleanly; the node's shutdown waits for this task.
        let _ = finished.await;
    });
    handle
}

/// What the indexer thread owns.
struct Follower {
    data_dir: std::path::PathBuf,
    author: Author,
    store: Store,
    reader: StoreReader,
    handle: IndexHandle,
    stop: Arc<AtomicBool>,
}

impl Follower {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Opens, follows, and on failure starts over, until stopped or the waker is gone.
    fn run(&self, woken: &mpsc::Receiver<()>) {
        let mut last_failure: Option<String> = None;
        while !self.stopped() {
            let result = self.open_and_follow(woken);
            let wait = match result {
                Ok(()) => break,
                Err(e) => {
                    let reason = e.to_string();
                    if last_failure.as_ref() != Some(&reason) {
                        tracing::warn!(error = %reason, "the index failed; the log is unaffected, retrying");
                    }
                    self.handle.set_state(IndexState::Failed {
                        reason: reason.clone(),
                    });
                    last_failure = Some(reason);
                    woken.recv_timeout(Duration::from_millis(RETRY_AFTER_FAILURE_MS))
                }
            };
            if wait == Err(mpsc::RecvTimeoutError::Disconnected) {
                break;
            }
        }
    }

    /// One life of the open database: returns `Ok` when stopped (the file closed cleanly).
    fn open_and_follow(&self, woken: &mpsc::Receiver<()>) -> Result<(), IndexError> {
        let (mut db, stale) = IndexDb::open(&self.data_dir, &self.author, &self.reader)?;
        let mut building = stale.is_some();
        match &stale {
            Some(super::check::Stale::Missing) => {
                tracing::info!("building the SQL index from the log")
            }
            Some(why) => tracing::warn!(reason = %why, "rebuilding the SQL index from the log"),
            None => self.handle.set_state(IndexState::Ready),
        }
        self.handle.publish(db.coverage());
        let mut excluded = BTreeSet::new();
        loop {
            let pass_start = Instant::now();
            let forked = self.store.forked().authors();
            db.forget(forked.difference(&excluded))?;
            excluded = forked;
            let end = self.reader.committed_end();
            if building {
                self.handle.set_state(IndexState::Building {
                    covered: db.coverage().covered,
                    end,
                });
            }
            let stop = || self.stopped();
            let pass = db.catch_up(&self.reader, &excluded, &stop, &mut |coverage, _| {
                self.handle.publish(coverage);
                if building {
                    self.handle.set_state(IndexState::Building {
                        covered: coverage.covered,
                        end,
                    });
                }
            })?;
            if !pass.stopped {
                building = false;
                self.handle.set_state(IndexState::Ready);
            }
            if self.stopped() || woken.recv().is_err() {
                break;
            }
            std::thread::sleep(pause_before_pass(pass_start, Instant::now()));
        }
        db.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_up_after_a_quiet_spell_starts_a_pass_at_once() {
        let last = Instant::now();
        let now = last + Duration::from_millis(MIN_PASS_INTERVAL_MS + 1);
        assert_eq!(pause_before_pass(last, now), Duration::ZERO);
    }

    #[test]
    fn a_wake_up_during_a_stream_of_commits_waits_for_the_rest_of_the_interval() {
        let last = Instant::now();
        let now = last + Duration::from_millis(3);
        assert_eq!(
            pause_before_pass(last, now),
            Duration::from_millis(MIN_PASS_INTERVAL_MS - 3)
        );
    }
}
