//! Each feed's Merkle tree (docs/TLOG.md): a **cache** in `DATA_DIR/tree.sqlite` derived
//! from the log by a follower thread, and [`Trees`], the read side every other part uses
//! (roots, inclusion and consistency proofs, tlog-tiles hash tiles, the node's own signed
//! checkpoint).
//!
//! # Layout
//!
//! Leaf `i` of a feed's tree is its entry at seq `i + 1`, hashed `SHA-256(0x00 || body ||
//! signature)`. Leaf hashes are **not stored**: a reader that needs one reads the entry from
//! the log ([`StoreReader`], by seq) and hashes it, which saves 32 of the 64 bytes an entry
//! would otherwise cost. Interior nodes are stored in rows of height-7 subtrees
//! ([`layout`]): layer `t` holds levels `7t+1 ..= 7t+7`, its row `j` the 127 nodes under
//! node `(7t+7, j)`, 4,064 bytes (4,068 with their checksum), written once, when its top
//! node is made. A feed of `n` entries so stores `n/128` layer-0 rows and `n/16,384`
//! layer-1 rows: about 32 bytes an entry. The rows being filled on each layer (the right edge) live in memory, sized to
//! what they hold ([`edge`]).
//!
//! # The flush rule
//!
//! `meta.covered` says how far the cache covers the log. The edges (`feeds.edge`) and
//! `covered` are written together in one transaction at a *flush*: at most once a second
//! while entries arrive, and when the node stops. So the file always describes exactly the
//! prefix of the log before `covered`; complete rows written after the last flush are
//! harmless, a node never changes once its subtree is complete. After a crash the follower
//! resumes at `covered` and recomputes what it lost. A file that fails a check at open
//! (missing, another layout, unreadable, `covered` past the log's committed end or not just
//! past the entry it names, a feed's size not its entries before `covered`) is deleted and
//! rebuilt from the log, with a log line saying why ([`db`]). `synchronous = NORMAL`: no
//! fsync on any commit; the log's own commit path never waits for this file.
//!
//! # Damage
//!
//! Every stored row and edge carries a CRC32C ([`checksum`]), checked as it leaves SQLite.
//! A read that finds one failing answers [`TreeReadError::Rebuilding`] (HTTP 503, never a
//! hash), marks the cache damaged (logged once) and wakes the follower, which drops the
//! file and rebuilds it from the log as it does for damage found at open. Each rebuild is a
//! new *generation*: a read begun on the old file that ends after the new one is published
//! answers `Rebuilding` too, and the read connections and upper rows of the old file are
//! dropped, so no read mixes one file's rows with the other's feed numbering.
//!
//! # Opening lazily
//!
//! Opening reads `meta` and the `feeds` table (id and size, not the edges): a feed's edge
//! is loaded when the follower next touches it or a reader asks for it (one row read, and
//! for an odd size the last entry from the log), never all at open.
//!
//! # The read path
//!
//! [`Trees`] reads stored hashes for the [`crate::tlog::merkle`] algorithms through a
//! [`crate::tlog::merkle::HashReader`]: level 0 from the log, a partial row's nodes from
//! memory, a complete row's from SQLite through a small pool of read-only connections with
//! prepared statements, or from an LRU of rows of layers >= 1 ([`rows`]). A proof in a feed
//! of a million entries costs about one row read and one log read: a few µs (about 13 µs a
//! proof measured, docs/BENCHMARKS.md), so async handlers call the readers inline, as they do the store's reads. A reader holds its feed's lock
//! while it reads; the follower writes complete rows and commits *before* it publishes a
//! feed's new size under that lock, so a reader never sees a size whose nodes it cannot
//! read.
//!
//! # Own checkpoints
//!
//! After each pass that grew the node's own feed the follower signs one checkpoint of it
//! ([`Trees::own_checkpoint`]); at start, one for the covered size. They are not stored:
//! Ed25519 signatures are deterministic, so the checkpoint of size `n` is recomputable bit
//! for bit from the key and entries `1..=n`, which are durable in the log before the
//! follower reads them.
//!
//! # Files
//!
//! - [`layout`]: where node `(level, n)` lives: layer, row, position, row key (pure).
//! - [`edge`]: a feed's right edge in memory, the rows an append completes, its flush blob
//!   (pure).
//! - [`db`]: `tree.sqlite`: tables, the checks at open, the follower's writes.
//! - [`pool`]: the readers' connections to it, each row and edge read checked.
//! - [`checksum`]: the CRC32C seal on every stored row and edge (pure).
//! - `batch`: one follower pass, gathered before its commit.
//! - [`follow`]: the follower thread and its waking task ([`start`]).
//! - `read`: a feed's tree as a `HashReader`, complete rows read and checked, damage
//!   marked; [`rows`]: the LRU of upper rows.
//!
//! A feed found forked stays in its tree: the tree covers what the log holds, and the log
//! keeps one branch of a feed.
//!
//! # Replaced copies
//!
//! A leaf hash covers the entry's signature, and the store may replace an entry's copy with
//! another signature of the same entry hash (docs/STORE.md, "Replacement records"). Leaves
//! are always hashed from the current copy, but stored rows above a replaced leaf would
//! still cover the old one. So the file records the log's replacement count it was built
//! under (`meta.replacements`, [`db`]), and any other count means rebuild: at open, at the
//! top of each follower pass, and in every read, which answers
//! [`TreeReadError::Rebuilding`] (and wakes the follower) from the moment the replacement is
//! visible to readers until the rebuilt file is published. Replacements happen only for a
//! misbehaving author, so a rebuild each is acceptable; the count is read when the new file
//! is created, before its first pass, so a rebuild ends unless another replacement came.

mod batch;
pub mod checksum;
pub mod db;
pub mod edge;
mod error;
pub mod follow;
pub mod layout;
pub mod pool;
mod read;
#[cfg(test)]
mod replace_tests;
pub mod rows;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::identity::Author;
use crate::poison::lock;
use crate::store::StoreReader;
use crate::tlog::checkpoint::SignedCheckpoint;
use crate::tlog::merkle::{
    leaf_hash, prove_consistency, prove_inclusion, stored_hash_index, tree_hash, Hash, HashReader,
};
use crate::tlog::tiles::{hash_tile_bytes, HashTileError, Tile, TileKind};

pub use db::{tree_path, TREE_FILE};
pub use edge::Edge;
pub use error::TreeReadError;
pub use follow::{start, MIN_FLUSH_INTERVAL_MS, RETRY_AFTER_FAILURE_MS};
use pool::CacheReadError;
pub use rows::ROW_CACHE_ROWS;

/// What the follower is doing, as `/health` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TreeState {
    /// Opening, or catching up with the log after a (re)build: `covered` of `end` bytes.
    Building {
        /// Log bytes covered.
        covered: u64,
        /// The log's committed end when the catch-up began.
        end: u64,
    },
    /// Following the log.
    Ready,
    /// The last attempt failed (SQLite refused a write, the file could not be opened); tried
    /// again every [`RETRY_AFTER_FAILURE_MS`]. Readers answer from what is covered.
    Failed {
        /// What failed.
        reason: String,
    },
}

/// A cheap, cloneable handle on the node's trees (see the module docs).
#[derive(Clone)]
pub struct Trees {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Trees {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trees")
            .field("covered", &self.covered_offset())
            .finish_non_exhaustive()
    }
}

/// What the follower and the readers share.
struct Shared {
    reader: StoreReader,
    own: Author,
    pool: pool::ReadPool,
    rows: Mutex<rows::RowCache>,
    feeds: RwLock<HashMap<Author, Arc<FeedSlot>>>,
    /// The log offset the published trees cover (in memory: ahead of the file's between
    /// flushes).
    covered: AtomicU64,
    state: Mutex<TreeState>,
    /// Bumped after every publish: [`Trees::wait_for_size`] waits on it.
    published: watch::Sender<u64>,
    checkpoint: Mutex<Option<Arc<SignedCheckpoint>>>,
    /// Bumped each time a file is opened (resumed or rebuilt) and its feeds published: a
    /// feed's slot and a read through it belong to one generation.
    generation: AtomicU64,
    /// Why a reader found the file damaged (`None`: not found so); the follower wakes on it,
    /// rebuilds, and clears it.
    damage: watch::Sender<Option<String>>,
    /// The log's replacement count the published file's leaves were hashed under
    /// ([`db::TreeDb::replacements`]; see "Replaced copies" in the module docs).
    replacements: AtomicU64,
}

/// One feed: its number in row keys and its edge behind the lock readers and the follower
/// share.
struct FeedSlot {
    id: u64,
    /// The [`Shared::generation`] whose file numbered the feed `id`.
    generation: u64,
    edge: Mutex<FeedEdge>,
}

enum FeedEdge {
    /// Not read from the file yet: its size as of the last flush.
    Unloaded { size: u64 },
    /// Shared with readers: a reader takes its own reference under the lock and reads the
    /// tree without it (rows and leaves are immutable once covered), so a slow read (256
    /// leaves of a hash tile, hashed from the log) never holds up other readers or the
    /// follower, which publishes a new edge by replacing the reference.
    Loaded(Arc<Edge>),
}

impl Trees {
    fn new(reader: StoreReader, own: Author, path: std::path::PathBuf) -> Trees {
        Trees {
            shared: Arc::new(Shared {
                reader,
                own,
                pool: pool::ReadPool::new(path),
                rows: Mutex::new(rows::RowCache::default()),
                feeds: RwLock::new(HashMap::new()),
                covered: AtomicU64::new(0),
                state: Mutex::new(TreeState::Building { covered: 0, end: 0 }),
                published: watch::Sender::new(0),
                checkpoint: Mutex::new(None),
                generation: AtomicU64::new(0),
                damage: watch::Sender::new(None),
                replacements: AtomicU64::new(0),
            }),
        }
    }

    fn slot(&self, author: &Author) -> Option<Arc<FeedSlot>> {
        self.shared
            .feeds
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(author)
            .cloned()
    }

    /// Leaves covered so far of `author`'s feed: entries `1..=size` are in its tree.
    pub fn size(&self, author: &Author) -> u64 {
        self.slot(author)
            .map_or(0, |slot| match &*lock(&slot.edge) {
                FeedEdge::Unloaded { size } => *size,
                FeedEdge::Loaded(edge) => edge.size(),
            })
    }

    /// The root of the first `size` leaves of `author`'s tree (`size` at most covered).
    pub fn root(&self, author: &Author, size: u64) -> Result<Hash, TreeReadError> {
        self.with_feed(author, size, |view| match size == view.edge.size() {
            true => Ok(view.edge.root()),
            false => Ok(tree_hash(size, view)?),
        })
    }

    /// The inclusion proof of leaf `index` (the entry at seq `index + 1`) in the tree of
    /// `size` leaves.
    pub fn inclusion_proof(
        &self,
        author: &Author,
        index: u64,
        size: u64,
    ) -> Result<Vec<Hash>, TreeReadError> {
        self.with_feed(author, size, |view| Ok(prove_inclusion(size, index, view)?))
    }

    /// The consistency proof from the tree of `old` leaves to the tree of `new`.
    pub fn consistency_proof(
        &self,
        author: &Author,
        old: u64,
        new: u64,
    ) -> Result<Vec<Hash>, TreeReadError> {
        self.with_feed(author, new, |view| Ok(prove_consistency(old, new, view)?))
    }

    /// The bytes of the tlog-tiles hash tile `level/index` of width `width` (256: full) of
    /// `author`'s tree as covered now; level-0 tiles from leaf hashes recomputed from the log.
    pub fn hash_tile(
        &self,
        author: &Author,
        level: u8,
        index: u64,
        width: u16,
    ) -> Result<Vec<u8>, TreeReadError> {
        let tile = Tile::new(TileKind::Hashes { level }, index, width)
            .map_err(|e| TreeReadError::OutOfRange(e.to_string()))?;
        self.with_feed(author, 0, |view| {
            hash_tile_bytes(&tile, view.edge.size(), view).map_err(|e| match e {
                HashTileError::Read(e) => e,
                e @ (HashTileError::NotInTree { .. } | HashTileError::NotHashTile) => {
                    TreeReadError::OutOfRange(e.to_string())
                }
                e @ HashTileError::ReaderCount { .. } => TreeReadError::Storage(e.to_string()),
            })
        })
    }

    /// The hashes of the complete subtrees `(level, index..index + count)` of `author`'s
    /// tree as covered now (RFC 6962 hashes: subtree `(level, n)` spans leaves `n * 2^level
    /// .. (n + 1) * 2^level`), in order: stored hashes for `level >= 1`, leaf hashes
    /// recomputed from the log (the current copies) for level 0. [`TreeReadError::OutOfRange`]
    /// when any is not complete within the covered size (or `count` is 0). For comparing a
    /// peer's tree with this one (sync's search for the author's copies): one read of the
    /// log or of a few rows, as a hash tile costs.
    pub fn subtree_hashes(
        &self,
        author: &Author,
        level: u8,
        index: u64,
        count: u16,
    ) -> Result<Vec<Hash>, TreeReadError> {
        let out_of_range = |size: u64| {
            TreeReadError::OutOfRange(format!(
                "subtrees ({level}, {index}..+{count}) are not all complete in a tree of {size} leaves"
            ))
        };
        self.with_feed(author, 0, |view| {
            let size = view.edge.size();
            // The last subtree's end, in leaves (None: past u64, so past any tree).
            index
                .checked_add(u64::from(count))
                .and_then(|end| end.checked_mul(1u64.checked_shl(u32::from(level))?))
                .filter(|&end| count > 0 && end <= size)
                .ok_or_else(|| out_of_range(size))?;
            let indexes: Vec<u64> = (index..index + u64::from(count))
                .map(|n| stored_hash_index(u32::from(level), n))
                .collect();
            view.read_hashes(&indexes)
        })
    }

    /// The node's newest signed checkpoint of its own feed (`None` before it has an entry
    /// in the tree).
    pub fn own_checkpoint(&self) -> Option<Arc<SignedCheckpoint>> {
        lock(&self.shared.checkpoint).clone()
    }

    /// Changes after every publish (a pass that grew some tree, or a flush): the checkpoint
    /// book re-offers checkpoints that waited for entries, and the own checkpoint, on it.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.published.subscribe()
    }

    /// Waits until `author`'s tree covers `size` leaves, at most `timeout`; whether it does.
    /// For read-your-writes: an append returns before the follower has read it.
    pub async fn wait_for_size(&self, author: &Author, size: u64, timeout: Duration) -> bool {
        let mut published = self.shared.published.subscribe();
        let reached = async {
            published
                .wait_for(|_| self.size(author) >= size)
                .await
                .is_ok()
        };
        matches!(tokio::time::timeout(timeout, reached).await, Ok(true))
    }

    /// What the follower is doing.
    pub fn state(&self) -> TreeState {
        lock(&self.shared.state).clone()
    }

    /// The log offset the trees cover (in memory; the file's may be behind until a flush).
    pub fn covered_offset(&self) -> u64 {
        self.shared.covered.load(Ordering::Acquire)
    }

    /// Log bytes committed but not yet in the trees: 0 once the last entry is covered.
    pub fn lag_bytes(&self) -> u64 {
        let (end, last_entry) = self.shared.reader.end_and_last_entry();
        let covered = self.covered_offset();
        match last_entry {
            Some((offset, _)) if covered > offset => 0,
            None => 0,
            Some(_) => end.saturating_sub(covered),
        }
    }

    /// Runs `f` on `author`'s tree as published now (its edge taken under the feed's lock,
    /// loaded first if needed; read without it), after checking `size` is covered.
    fn with_feed<T>(
        &self,
        author: &Author,
        size: u64,
        f: impl FnOnce(&read::FeedView<'_>) -> Result<T, TreeReadError>,
    ) -> Result<T, TreeReadError> {
        let slot = self
            .slot(author)
            .ok_or(TreeReadError::UnknownFeed { author: *author })?;
        if let Some(reason) = self.replaced_since_built() {
            return Err(self.damaged(slot.generation, reason));
        }
        // The lock covers taking the edge (loading it first if needed), not the read.
        let edge = {
            let mut guard = lock(&slot.edge);
            Arc::clone(self.loaded(author, &slot, &mut guard)?)
        };
        if edge.size() == 0 {
            return Err(TreeReadError::UnknownFeed { author: *author });
        }
        if size > edge.size() {
            return Err(TreeReadError::BeyondCovered {
                size,
                covered: edge.size(),
            });
        }
        f(&read::FeedView {
            trees: self,
            author,
            id: slot.id,
            generation: slot.generation,
            edge: &edge,
        })
    }

    /// Why the published file's hashes may cover a copy that is no longer current: the log
    /// holds another number of replacement records than it was built under (`None`: same).
    fn replaced_since_built(&self) -> Option<String> {
        let built = self.shared.replacements.load(Ordering::Acquire);
        let held = self.shared.reader.replacement_count();
        (built != held).then(|| {
            format!(
                "the log holds {held} replacement records, the cache was built under {built}: an entry has another current copy"
            )
        })
    }

    /// The feed's edge, read from the file first if not yet loaded.
    fn loaded<'a>(
        &self,
        author: &Author,
        slot: &FeedSlot,
        edge: &'a mut FeedEdge,
    ) -> Result<&'a Arc<Edge>, TreeReadError> {
        if let FeedEdge::Unloaded { size } = *edge {
            *edge = FeedEdge::Loaded(Arc::new(self.load_edge(author, slot, size)?));
        }
        match edge {
            FeedEdge::Loaded(edge) => Ok(edge),
            FeedEdge::Unloaded { .. } => unreachable!("loaded just above"),
        }
    }

    fn load_edge(
        &self,
        author: &Author,
        slot: &FeedSlot,
        size: u64,
    ) -> Result<Edge, TreeReadError> {
        if size == 0 {
            return Ok(Edge::new());
        }
        let read = self.shared.pool.edge(slot.id);
        self.same_generation(slot.generation)?;
        let (stored, blob) = match read {
            Ok(Some(found)) => found,
            Ok(None) => {
                return Err(TreeReadError::Storage(format!(
                    "feed {author} has no edge row"
                )))
            }
            Err(CacheReadError::Sql(e)) => return Err(TreeReadError::Storage(e)),
            Err(CacheReadError::Damaged(reason)) => {
                return Err(self.damaged(slot.generation, reason))
            }
        };
        if stored != size {
            return Err(TreeReadError::Storage(format!(
                "feed {author}'s edge is of size {stored}, {size} expected"
            )));
        }
        let last = match size % 2 {
            1 => Some(self.leaves(author, size - 1, 1)?[0]),
            _ => None,
        };
        Edge::decode(size, &blob, last).map_err(TreeReadError::Storage)
    }

    /// The hashes of leaves `first..first + count` of `author`'s tree, from the log.
    fn leaves(
        &self,
        author: &Author,
        first: u64,
        count: usize,
    ) -> Result<Vec<Hash>, TreeReadError> {
        let mut hashes = Vec::with_capacity(count);
        self.shared
            .reader
            .for_each_encoded(author, first + 1, count, |bytes| {
                hashes.push(leaf_hash(bytes));
            })
            .map_err(|e| TreeReadError::Storage(e.to_string()))?;
        if hashes.len() != count {
            return Err(TreeReadError::Storage(format!(
                "the log holds {} of the {count} entries of {author} from seq {}",
                hashes.len(),
                first + 1
            )));
        }
        Ok(hashes)
    }
}
