//! The tree cache's follower: a thread of its own (SQLite calls block) woken by the node's
//! events, as the SQL indexer is ([`crate::index::follow`], whose pacing, priority and
//! shutdown it shares). Each pass reads the log's records from where the trees stop to the
//! committed end (the entries' bytes, neither decoded nor hashed by the store), appends each
//! entry's leaf hash to its feed's [`Edge`], writes the rows that completes in one
//! transaction, commits, and only then publishes the feeds' new edges: a reader never sees
//! a size whose nodes it cannot read. Edges and `covered` are flushed at most every
//! [`MIN_FLUSH_INTERVAL_MS`] and at stop (see [`super`], "The flush rule").
//!
//! A pass that grew the node's own feed signs one checkpoint of it.
//!
//! On an SQLite error the state says `failed` with the reason, the pass is tried again
//! after [`RETRY_AFTER_FAILURE_MS`] from the published state (what the failed transaction
//! held was never published), and the node serves everything else meanwhile.
//!
//! A reader that finds a row or edge failing its checksum marks the cache damaged, which
//! wakes the thread: it drops the file and rebuilds it from the log, as for a cache that
//! contradicts the log.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;

use crate::identity::Author;
use crate::node::follower::LogFollower;
use crate::node::Node;
use crate::poison::lock;
use crate::store::StoreReader;
use crate::tlog::checkpoint::{origin_for, Checkpoint, SignedCheckpoint};

use super::batch::{Batch, PassError};
use super::db::{self, tree_path, Covered, EdgeRow, FeedRow, TreeDb};
use super::edge::Edge;
use super::{FeedEdge, FeedSlot, TreeState, Trees};

/// How long a failed follower waits before it tries again.
pub const RETRY_AFTER_FAILURE_MS: u64 = 1_000;

/// The shortest time between two flushes of the edges and `covered` while entries arrive.
/// Each flush rewrites the edge of every feed changed since the last (up to ~4 KiB a feed):
/// once a second bounds that cost, and a crash loses at most a second of work, recomputed.
pub const MIN_FLUSH_INTERVAL_MS: u64 = 1_000;

/// The shortest time from one pass's start to the next's, as the indexer's
/// ([`crate::index::follow::MIN_PASS_INTERVAL_MS`]): a pass per group commit costs a
/// transaction each.
const MIN_PASS_INTERVAL_MS: u64 = crate::index::follow::MIN_PASS_INTERVAL_MS;

/// The most log bytes one pass reads: a rebuild commits and publishes as it goes.
const PASS_BYTES: u64 = 8 << 20;

/// Log bytes read at a time.
const CHUNK_BYTES: usize = 1 << 20;

/// Starts `node`'s tree follower (on a tokio runtime: its waking task is one of the node's
/// tasks) and returns the read side at once; the cache opens and catches up meanwhile.
pub fn start(node: &Node) -> Trees {
    let trees = Trees::new(
        node.reader().clone(),
        node.author(),
        tree_path(node.data_dir()),
    );
    let follower = LogFollower::new();
    let thread = Follower {
        trees: trees.clone(),
        path: tree_path(node.data_dir()),
        reader: node.reader().clone(),
        key: node.identity().signing_key().clone(),
        stop: follower.stop_flag(),
    };
    // Idle priority, as the indexer: the log's writers first. The node's shutdown waits for
    // the thread's last flush.
    let damage = Some(trees.shared.damage.subscribe());
    let started = follower.start(node, "tree", damage, move |woken| thread.run(woken));
    if let Err(e) = started {
        trees.set_state(TreeState::Failed {
            reason: format!("starting the tree thread: {e}"),
        });
    }
    trees
}

impl Trees {
    fn set_state(&self, state: TreeState) {
        *lock(&self.shared.state) = state;
    }
}

/// What the follower thread owns.
struct Follower {
    trees: Trees,
    path: std::path::PathBuf,
    reader: StoreReader,
    key: SigningKey,
    stop: Arc<AtomicBool>,
}

/// The follower's position and what it has not flushed yet.
struct Position {
    covered: Covered,
    next_id: u64,
    /// Feeds whose edge changed since the last flush.
    dirty: BTreeSet<Author>,
    last_flush: Instant,
}

impl Follower {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Opens and follows until stopped, retrying after failures.
    fn run(&self, woken: &mpsc::Receiver<()>) {
        loop {
            let (db, position) = loop {
                match self.open() {
                    Ok(opened) => break opened,
                    Err(reason) => {
                        tracing::warn!(%reason, "the tree cache cannot open; the log is unaffected, retrying");
                        self.trees.set_state(TreeState::Failed { reason });
                        if !self.pause(woken) {
                            return;
                        }
                    }
                }
            };
            // The connection is closed when `follow` returns: only then is the file removed.
            let Err(reason) = self.follow(db, position, woken) else {
                return;
            };
            tracing::warn!(%reason, "the tree cache is damaged or contradicts the log: rebuilding it");
            if let Err(e) = db::remove(&self.path) {
                tracing::warn!(reason = %e, "removing the tree cache");
            }
        }
    }

    /// Follows the log on an open cache until stopped (`Ok`), or until the cache is found
    /// to contradict the log (`Err`: why; the caller rebuilds it).
    fn follow(
        &self,
        mut db: TreeDb,
        mut position: Position,
        woken: &mpsc::Receiver<()>,
    ) -> Result<(), String> {
        self.sign_own();
        let mut building = true;
        let mut failing: Option<String> = None;
        loop {
            if let Some(reason) = self.trees.shared.damage.borrow().clone() {
                return Err(reason);
            }
            if let Some(reason) = self.trees.replaced_since_built() {
                return Err(reason);
            }
            let pass_start = Instant::now();
            let end = self.reader.committed_end();
            if building {
                self.trees.set_state(TreeState::Building {
                    covered: position.covered.offset,
                    end,
                });
            }
            let flush_due = self.stopped()
                || position.last_flush.elapsed() >= Duration::from_millis(MIN_FLUSH_INTERVAL_MS);
            match self.pass(&mut db, &mut position, end, flush_due) {
                Ok(caught_up) => {
                    if failing.take().is_some() || (caught_up && building) {
                        self.trees.set_state(TreeState::Ready);
                    }
                    building &= !caught_up;
                    if !caught_up && !self.stopped() {
                        continue;
                    }
                }
                Err(PassError {
                    reason,
                    corrupt: true,
                }) => return Err(reason),
                Err(PassError { reason, .. }) => {
                    if failing.as_ref() != Some(&reason) {
                        tracing::warn!(%reason, "the tree cache failed; the log is unaffected, retrying");
                    }
                    self.trees.set_state(TreeState::Failed {
                        reason: reason.clone(),
                    });
                    failing = Some(reason);
                    if !self.pause(woken) {
                        break;
                    }
                    continue;
                }
            }
            if self.stopped() {
                break;
            }
            // Wait for a commit; with edges not yet flushed, no longer than the flush is due.
            let woke = match position.dirty.is_empty() {
                true => woken.recv().map_err(|_| ()),
                false => {
                    let due = (position.last_flush + Duration::from_millis(MIN_FLUSH_INTERVAL_MS))
                        .saturating_duration_since(Instant::now());
                    match woken.recv_timeout(due) {
                        Err(mpsc::RecvTimeoutError::Disconnected) => Err(()),
                        _ => Ok(()),
                    }
                }
            };
            if woke.is_err() {
                break;
            }
            std::thread::sleep(
                (pass_start + Duration::from_millis(MIN_PASS_INTERVAL_MS))
                    .saturating_duration_since(Instant::now()),
            );
        }
        // Stopping: the last flush, so the next open resumes where this one ended.
        if !position.dirty.is_empty() {
            let end = position.covered.offset;
            if let Err(PassError { reason, .. }) = self.pass(&mut db, &mut position, end, true) {
                tracing::warn!(%reason, "the tree cache's last flush failed; it resumes from its previous one");
            }
        }
        Ok(())
    }

    /// Opens the file (resumed or rebuilt) and publishes its feeds, unloaded.
    fn open(&self) -> Result<(TreeDb, Position), String> {
        let (db, covered, feeds) = TreeDb::open(&self.path, &self.reader)?;
        let next_id = feeds.values().map(|f| f.id + 1).max().unwrap_or(1);
        self.publish_opened(covered, &feeds, db.replacements());
        Ok((
            db,
            Position {
                covered,
                next_id,
                dirty: BTreeSet::new(),
                last_flush: Instant::now(),
            },
        ))
    }

    fn publish_opened(
        &self,
        covered: Covered,
        feeds: &BTreeMap<Author, FeedRow>,
        replacements: u64,
    ) {
        let shared = &self.trees.shared;
        // Before the generation: a reader of the new generation checks it.
        shared.replacements.store(replacements, Ordering::Release);
        // First the generation, then what the old file left in memory: a read of the old
        // generation finishing after this answers `Rebuilding` and caches nothing.
        let generation = shared.generation.fetch_add(1, Ordering::AcqRel) + 1;
        shared.pool.clear();
        lock(&shared.rows).clear();
        // Cleared only if set: clearing wakes the thread.
        shared
            .damage
            .send_if_modified(|damage| damage.take().is_some());
        let slots = feeds
            .iter()
            .map(|(author, row)| {
                let slot = FeedSlot {
                    id: row.id,
                    generation,
                    edge: Mutex::new(FeedEdge::Unloaded { size: row.size }),
                };
                (*author, Arc::new(slot))
            })
            .collect();
        *shared.feeds.write().unwrap_or_else(PoisonError::into_inner) = slots;
        shared.covered.store(covered.offset, Ordering::Release);
        shared.published.send_modify(|n| *n += 1);
    }

    /// One pass over the log from the covered offset, up to `end` and at most
    /// [`PASS_BYTES`]; `Ok(true)` when it reached `end`.
    fn pass(
        &self,
        db: &mut TreeDb,
        position: &mut Position,
        end: u64,
        flush: bool,
    ) -> Result<bool, PassError> {
        let from = position.covered.offset;
        let to = end.min(from.saturating_add(PASS_BYTES));
        let mut batch = Batch::new(position.covered, position.next_id);
        let mut failure: Option<PassError> = None;
        self.reader
            .for_each_entry_bytes_between(from, to, CHUNK_BYTES, |record| {
                match batch.add(&self.trees, record) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(e) => {
                        failure = Some(e);
                        ControlFlow::Break(())
                    }
                }
            })
            .map_err(|e| format!("reading the log: {e}"))?;
        if let Some(failure) = failure {
            return Err(failure);
        }
        if batch.working.is_empty() && (!flush || position.dirty.is_empty()) {
            // Markers only (or nothing), and no flush owed: nothing to write.
            return Ok(to == end);
        }
        let mut dirty = position.dirty.clone();
        dirty.extend(batch.working.keys().copied());
        let edges = match flush {
            true => Some(self.edges(&dirty, &batch.working)?),
            false => None,
        };
        let covered = batch.covered;
        db.write_pass(
            &batch.new_feeds,
            &batch.rows,
            edges.as_ref().map(|e| (e.as_slice(), &covered)),
        )?;
        // Committed: now the readers may see it.
        let own_grew = batch.working.contains_key(&self.trees.shared.own);
        position.next_id = batch.next_id;
        self.publish(batch);
        position.covered = covered;
        position.dirty = dirty;
        if flush {
            position.dirty.clear();
            position.last_flush = Instant::now();
        }
        if own_grew {
            self.sign_own();
        }
        Ok(to == end)
    }

    /// The edges to flush: this pass's working copies, else the published ones.
    fn edges(
        &self,
        dirty: &BTreeSet<Author>,
        working: &HashMap<Author, (Arc<FeedSlot>, Edge)>,
    ) -> Result<Vec<EdgeRow>, String> {
        dirty
            .iter()
            .map(|author| {
                if let Some((slot, edge)) = working.get(author) {
                    return Ok((slot.id, edge.size(), edge.encode()));
                }
                let slot = self
                    .trees
                    .slot(author)
                    .ok_or_else(|| format!("feed {author} went missing"))?;
                let guard = lock(&slot.edge);
                match &*guard {
                    FeedEdge::Loaded(edge) => Ok((slot.id, edge.size(), edge.encode())),
                    FeedEdge::Unloaded { .. } => Err(format!("feed {author} changed unloaded")),
                }
            })
            .collect()
    }

    /// Publishes a committed pass: new feeds, new edges, the upper rows into the LRU, the
    /// covered offset, and a wake-up for [`Trees::wait_for_size`].
    fn publish(&self, batch: Batch) {
        let shared = &self.trees.shared;
        {
            let mut rows = lock(&shared.rows);
            for (key, row) in batch.upper_rows {
                rows.put(key, Arc::new(row));
            }
        }
        for (slot, edge) in batch.working.values() {
            *lock(&slot.edge) = FeedEdge::Loaded(Arc::new(edge.clone()));
        }
        if !batch.new_feeds.is_empty() {
            let mut feeds = shared.feeds.write().unwrap_or_else(PoisonError::into_inner);
            for (_, author) in &batch.new_feeds {
                if let Some((slot, _)) = batch.working.get(author) {
                    feeds.insert(*author, Arc::clone(slot));
                }
            }
        }
        shared
            .covered
            .store(batch.covered.offset, Ordering::Release);
        shared.published.send_modify(|n| *n += 1);
    }

    /// Signs a checkpoint of the own feed as covered now (nothing while it is empty).
    fn sign_own(&self) {
        let own = self.trees.shared.own;
        let size = self.trees.size(&own);
        if size == 0 {
            return;
        }
        let signed = self
            .trees
            .root(&own, size)
            .map_err(|e| e.to_string())
            .and_then(|root| {
                let checkpoint = Checkpoint::new(&origin_for(own.as_bytes()), size, root)
                    .map_err(|e| e.to_string())?;
                SignedCheckpoint::sign(checkpoint, &self.key).map_err(|e| e.to_string())
            });
        match signed {
            Ok(signed) => *lock(&self.trees.shared.checkpoint) = Some(Arc::new(signed)),
            Err(reason) => {
                tracing::warn!(%reason, size, "signing the own feed's checkpoint failed")
            }
        }
    }

    /// Waits [`RETRY_AFTER_FAILURE_MS`] whatever wakes the thread; `false` once stopped.
    fn pause(&self, woken: &mpsc::Receiver<()>) -> bool {
        let until = Instant::now() + Duration::from_millis(RETRY_AFTER_FAILURE_MS);
        loop {
            if self.stopped() {
                return false;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            if woken.recv_timeout(left) == Err(mpsc::RecvTimeoutError::Disconnected) {
                return false;
            }
        }
    }
}
