//! The indexer of a running node: a thread of its own (SQLite calls block) that follows
//! the log, and a small task that wakes it ([`crate::node::follower`], shared with the tree
//! cache).
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
//! Priority: the thread and its decoding pool run under `SCHED_IDLE`
//! ([`crate::priority::idle_current_thread`]): only on a core that appends, sync, queries
//! and HTTP leave idle. At normal priority the indexer's SQLite work (about 3.5 µs of CPU a
//! row) came straight out of replication on two cores (0.73 of its rate without the index);
//! at idle priority it takes the time replication spends waiting (0.93), and its lag under
//! 64-connection `POST /add` stayed well under the target (docs/BENCHMARKS.md). What it
//! costs: under a load that keeps every core busy the index falls behind and catches up
//! when the load eases; `/health` and `/metrics` show the lag meanwhile.
//!
//! Forked feeds: each pass compares the node's forked set with the authors it has already
//! excluded and deletes the rows of any new one before reading on; the first pass after an
//! open therefore deletes the rows of every author already forked.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::identity::Author;
use crate::node::follower::LogFollower;
use crate::node::Node;
use crate::store::{Store, StoreReader};

use super::db::{index_path, IndexDb, IndexError};
use super::handle::{IndexHandle, IndexState};
use super::indexes::BuildError;
use crate::views::{Builds, ViewDef, Views};

/// How long a failed or degraded indexer waits before it tries again (commits meanwhile do
/// not shorten it).
pub const RETRY_AFTER_FAILURE_MS: u64 = 1_000;

/// The shortest time from the start of one pass to the start of the next. Each pass costs a
/// transaction (the rows, `meta`, a commit to SQLite's WAL) and a read of the log whatever
/// its size; at 64-connection `POST /add` load a pass per group commit (a few dozen entries)
/// cost ~15 µs of CPU per append, 6 µs with passes paced (docs/BENCHMARKS.md).
/// Bounded well below issue 21's lag target (p99 50 ms from commit to visible): a commit waits at most this long plus one pass.
pub const MIN_PASS_INTERVAL_MS: u64 = 10;

/// How long to wait before the pass a wake-up asked for at `now`, when the previous pass
/// started at `last_start`: nothing after a quiet spell, else the rest of the interval.
fn pause_before_pass(last_start: Instant, now: Instant) -> Duration {
    (last_start + Duration::from_millis(MIN_PASS_INTERVAL_MS)).saturating_duration_since(now)
}

/// Starts `node`'s indexer, keeping the indexes `views` need (call it on a tokio runtime:
/// the waking task is one of the node's tasks). Returns at once; the index opens, checks
/// and catches up in the background, then builds the views' indexes.
pub fn start(node: &Node, views: Views) -> IndexHandle {
    let handle = IndexHandle::new(index_path(node.data_dir()), node.reader().clone(), views);
    let follower = LogFollower::new();
    let thread = Follower {
        data_dir: node.data_dir().to_owned(),
        author: node.author(),
        store: node.store().clone(),
        reader: node.reader().clone(),
        handle: handle.clone(),
        stop: follower.stop_flag(),
        decode: rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "index-decode".into())
            .start_handler(|_| crate::priority::idle_current_thread())
            .build()
            .map(Arc::new)
            .ok(),
    };
    // Idle priority (the module docs say why); a view added or dropped wakes it too, so its
    // indexes are built or dropped. The thread closes the file cleanly before the node's
    // shutdown returns.
    let views_changed = handle.views().subscribe();
    let started = follower.start(node, "indexer", Some(views_changed), move |woken| {
        thread.run(woken)
    });
    if let Err(e) = started {
        handle.set_state(IndexState::Failed {
            reason: format!("starting the indexer thread: {e}"),
        });
    }
    handle
}

/// Views' indexes that could not be built or kept, by statement, with why: not tried again
/// until the views change (or the node restarts).
#[derive(Default)]
struct Failed {
    by_statement: BTreeMap<String, String>,
    /// The definitions the failures were found under.
    under: Option<Arc<Vec<ViewDef>>>,
}

/// What the indexer thread owns.
struct Follower {
    data_dir: std::path::PathBuf,
    author: Author,
    store: Store,
    reader: StoreReader,
    handle: IndexHandle,
    stop: Arc<AtomicBool>,
    /// The indexer's own one-thread pool for decoding the log (`None` if it could not be
    /// started: rayon's global pool then).
    decode: Option<Arc<rayon::ThreadPool>>,
}

impl Follower {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// An index expression failed on an entry (`refused`): drops that index, marks its views
    /// failed, so the next pass indexes the entry without it. `Err` (the same error) when no
    /// view's index is to blame.
    fn drop_refusing_index(
        &self,
        db: &mut IndexDb,
        failed: &mut Failed,
        refused: IndexError,
    ) -> Result<(), IndexError> {
        let IndexError::RowRefused {
            author,
            seq,
            message,
            entry,
        } = &refused
        else {
            return Err(refused);
        };
        let present = db.view_indexes()?;
        let names: Vec<String> = present.iter().map(|(n, _)| n.clone()).collect();
        let Some(name) = db.culprit(&entry.0, &entry.1, &names)? else {
            return Err(refused);
        };
        db.drop_index(&name)?;
        if let Some((_, statement)) = present.iter().find(|(n, _)| *n == name) {
            let reason = format!("index {name} failed on the entry {author}/{seq}: {message}");
            tracing::warn!(%reason, "a view's index was dropped");
            failed.by_statement.insert(statement.clone(), reason);
        }
        self.publish_builds(db, failed)
    }

    /// Tells the views what exists, what failed (no build running).
    fn publish_builds(&self, db: &IndexDb, failed: &Failed) -> Result<(), IndexError> {
        let present = db.view_indexes()?.into_iter().map(|(_, sql)| sql).collect();
        self.publish(present, failed);
        Ok(())
    }

    /// Tells the views that the indexes `present` exist and `failed` failed.
    fn publish(&self, present: BTreeSet<String>, failed: &Failed) {
        self.handle.views().publish_builds(Builds {
            present,
            building: None,
            failed: failed.by_statement.clone(),
        });
    }

    /// Brings the views' indexes in line with the views: drops those no view needs, then
    /// builds at most one missing one. `true` when it built (or tried) one: the caller
    /// catches up with the log and comes back for the next.
    fn reconcile(&self, db: &mut IndexDb, failed: &mut Failed) -> Result<bool, IndexError> {
        let views = self.handle.views().clone();
        let defs = views.subscribe().borrow().clone();
        if !failed
            .under
            .as_ref()
            .is_some_and(|under| Arc::ptr_eq(under, &defs))
        {
            // The views changed since these failed: try them again.
            failed.by_statement.clear();
            failed.under = Some(Arc::clone(&defs));
        }
        let wanted: BTreeSet<&String> = defs.iter().flat_map(|d| d.indexes.iter()).collect();
        let mut present = BTreeSet::new();
        for (name, statement) in db.view_indexes()? {
            if wanted.contains(&statement) {
                present.insert(statement);
            } else {
                db.drop_index(&name)?;
            }
        }
        let next = wanted
            .iter()
            .find(|s| !present.contains(**s) && !failed.by_statement.contains_key(**s))
            .map(|s| (*s).clone());
        // What is left after the drops is what exists: no second look at the schema.
        self.publish(present.clone(), failed);
        let Some(statement) = next else {
            return Ok(false);
        };
        views.publish_progress(&statement, 0.0);
        let stop = Arc::clone(&self.stop);
        let (reporting, building) = (views.clone(), statement.clone());
        let progress = Box::new(move |share: f64| {
            let go_on = !stop.load(Ordering::Relaxed) && reporting.wants(&building);
            if go_on {
                reporting.publish_progress(&building, share);
            }
            go_on
        });
        match db.build_index(&statement, progress) {
            Ok(()) => {
                tracing::info!(index = %statement, "built a view's index");
                present.insert(statement);
            }
            Err(BuildError::Stopped) => {}
            Err(BuildError::Refused(message)) => {
                let reason = format!("building the index failed: {message}");
                tracing::warn!(index = %statement, %reason, "a view's index could not be built");
                failed.by_statement.insert(statement, reason);
            }
            Err(BuildError::Sqlite(e)) => {
                self.publish(present, failed);
                return Err(e.into());
            }
        }
        self.publish(present, failed);
        Ok(true)
    }

    /// Opens, follows, and on failure starts over, until stopped or the waker is gone.
    fn run(&self, woken: &mpsc::Receiver<()>) {
        let mut last_failure: Option<String> = None;
        let mut failed = Failed::default();
        while !self.stopped() {
            let result = self.open_and_follow(woken, &mut failed);
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
    fn open_and_follow(
        &self,
        woken: &mpsc::Receiver<()>,
        failed: &mut Failed,
    ) -> Result<(), IndexError> {
        let (mut db, stale) = IndexDb::open(&self.data_dir, &self.author, &self.reader)?;
        if let Some(pool) = &self.decode {
            db.decode_on(Arc::clone(pool));
        }
        let mut building = stale.is_some();
        match &stale {
            Some(super::check::Stale::Missing) => {
                tracing::info!("building the SQL index from the log")
            }
            Some(why) => tracing::warn!(reason = %why, "rebuilding the SQL index from the log"),
            None => self.handle.set_state(IndexState::Ready),
        }
        self.handle.publish(db.coverage());
        self.publish_builds(&db, failed)?;
        let mut excluded = BTreeSet::new();
        loop {
            let pass_start = Instant::now();
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
            let caught_up = db.catch_up(&self.reader, &excluded, &stop, &mut |coverage, _| {
                self.handle.publish(coverage);
                if building {
                    self.handle.set_state(IndexState::Building {
                        covered: coverage.covered,
                        end,
                    });
                }
            });
            let pass = match caught_up {
                Ok(pass) => pass,
                Err(refused @ IndexError::RowRefused { .. }) => {
                    self.drop_refusing_index(&mut db, failed, refused)?;
                    continue;
                }
                Err(e) => match self.wait_to_retry(e, woken)? {
                    true => continue,
                    false => break,
                },
            };
            if !pass.stopped {
                building = false;
                self.handle.set_state(IndexState::Ready);
            }
            if self.stopped() {
                break;
            }
            // Caught up: the views' indexes, one build per turn so the log is followed
            // between builds.
            let built_one = match self.reconcile(&mut db, failed) {
                Ok(built_one) => built_one,
                Err(e) => match self.wait_to_retry(e, woken)? {
                    true => continue,
                    false => break,
                },
            };
            if self.stopped() || (!built_one && woken.recv().is_err()) {
                break;
            }
            std::thread::sleep(pause_before_pass(pass_start, Instant::now()));
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
