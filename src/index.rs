//! The SQL index over the log (docs/QUERY.md): every entry of every feed not found forked,
//! one row of the `entries` table in `DATA_DIR/index/index.sqlite` (SQLite), with a `meta`
//! table saying how far the log is covered. It is a cache of the log: written without
//! fsync, resumed from what `meta` says after a crash, rebuilt from the log when missing,
//! of another layout or log, or damaged; deleting it loses nothing.
//!
//! - [`row`]: the row an entry projects to (pure), and how a u64 keeps its order in SQLite.
//! - [`schema`]: the tables, the writer's pragmas, `meta` read and written.
//! - [`check`]: whether an index found on disk is this log's and can be resumed (pure).
//! - `batch`: the log read in batches on a second thread while the indexer writes.
//! - [`db`]: [`IndexDb`], the database opened by its one writer: open (resume or start
//!   over), catch up with the log in batches, forget a forked author, close cleanly.
//! - [`wal`]: the `-wal` file checkpointed and truncated past a bound, so readers that
//!   never stop cannot make it grow without end.
//! - [`follow`]: a running node's indexer, a thread woken by commits ([`start`]).
//! - [`handle`]: [`IndexHandle`], what the node's other parts see of it: the path, the
//!   coverage as a `watch`, the state and the lag.
//! - [`rebuild`](mod@rebuild): `kappalog index rebuild`.
//!
//! Data flow: store commit -> [`crate::node::NodeEvent`] -> wake-up -> the indexer reads the
//! log from `covered` to the committed end -> rows and `meta` in one transaction per batch
//! -> coverage published -> queries read the file through read-only connections.

mod batch;
pub mod check;
pub mod db;
pub mod follow;
pub mod handle;
pub mod indexes;
pub mod rebuild;
pub mod row;
pub mod schema;
pub mod wal;

pub use batch::BATCH_DATA_BYTES;
pub use db::{index_path, Coverage, IndexDb, IndexError, INDEX_DIR, INDEX_FILE};
pub use follow::start;
pub use handle::{IndexHandle, IndexState};
pub use rebuild::{rebuild, Rebuilt};
