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
//! Forked feeds: each pass compares the node's forked set with the authors it has already
//! excluded and deletes the rows of any new one before reading on; the first pass after an
//! open therefore deletes the rows of every author already forked.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::oneshot;

use crate::identity::Author;
use crate::node::Node;
use crate::store::{Store, StoreReader};

use super::db::{index_path, IndexDb, IndexError};
use super::handle::{IndexHandle, IndexState};

/// How long a failed or degraded indexer waits before it tries again (commits meanwhile do
/// not shorten it).
pub const RETRY_AFTER_FAILURE_MS: u64 = 1_000;

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
                    if e.is_write_refused() {
                        // Opening on a full disk: the file is left in place, as in a pass.
                        self.handle.degrade(reason.clone(), crate::clock::now_ms());
                    } else {
                        self.handle.set_state(IndexState::Failed {
                            reason: reason.clone(),
                        });
                    }
                    last_failure = Some(reason);
                    self.pause(woken)
                }
            };
            if !wait {
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
            let forked = self.store.forked().authors();
            if let Err(e) = db.forget(forked.difference(&excluded)) {
                match self.wait_to_retry(e, woken)? {
                    true => continue,
                    false => break,
                }
            }
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
            });
            let pass = match pass {
                Ok(pass) => pass,
                Err(e) => match self.wait_to_retry(e, woken)? {
                    true => continue,
                    false => break,
                },
            };
            if !pass.stopped {
                building = false;
                self.handle.set_state(IndexState::Ready);
            }
            if self.stopped() || woken.recv().is_err() {
                break;
            }
        }
        db.close()
    }

    /// After a pass failed with `e`: a write the disk refused (full, an I/O error) leaves
    /// the open index sound and as its last commit left it, so the state says degraded and
    /// the pass is tried again on the same connection after a pause (`Ok(true)`; `Ok(false)`
    /// once the node stops). Reopening instead would check the whole file each time, and
    /// could not even mark it open on a full disk. Any other error is returned: the index
    /// is then reopened, checked, and rebuilt if damaged.
    fn wait_to_retry(&self, e: IndexError, woken: &mpsc::Receiver<()>) -> Result<bool, IndexError> {
        if !e.is_write_refused() {
            return Err(e);
        }
        let reason = e.to_string();
        if !matches!(self.handle.state(), IndexState::Degraded { .. }) {
            tracing::warn!(error = %reason, "the index cannot write; the log is unaffected, retrying");
        }
        self.handle.degrade(reason, crate::clock::now_ms());
        Ok(self.pause(woken))
    }

    /// Waits [`RETRY_AFTER_FAILURE_MS`] whatever commits wake the thread meanwhile (under
    /// steady appends every commit would otherwise retry at once, and a commit frees no
    /// disk); `false` when the node stops meanwhile.
    fn pause(&self, woken: &mpsc::Receiver<()>) -> bool {
        let until = crate::clock::instant() + Duration::from_millis(RETRY_AFTER_FAILURE_MS);
        loop {
            if self.stopped() {
                return false;
            }
            let left = until.saturating_duration_since(crate::clock::instant());
            if left.is_zero() {
                return true;
            }
            if woken.recv_timeout(left) == Err(mpsc::RecvTimeoutError::Disconnected) {
                return false;
            }
        }
    }
}
