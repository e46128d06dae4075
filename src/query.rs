//! Queries over the SQL index (docs/QUERY.md): read-only, bounded statements a client sends
//! as SQL, answered with the rows, the index position they reflect (`as_of`) and a digest.
//!
//! - [`guard`]: what a statement may do (read), as SQLite's authorizer applies it (pure).
//! - [`cell`]: one value of an answer and its JSON and CSV forms (pure).
//! - [`digest`]: the canonical encoding of an answer and its SHA-256 (pure).
//! - [`render`]: an answer as CSV or as a text table, over `impl Write` (pure).
//! - [`coverage`]: how far the index covers the log, from its `meta` table (pure).
//! - [`connection`]: one read-only SQLite connection with the guard, the limits and the
//!   deadline installed, running one statement in one read transaction.
//! - [`client`]: `kappalog query --url`: a statement sent to a running node.
//! - [`engine`]: the bounded set of connections and the bounded queue before them, shared by
//!   the HTTP handlers; the CLI uses a [`connection`] directly.
//!
//! Every bound is in [`QueryConfig`]; docs/QUERY.md ("Limits") says why each is what it is.

pub mod cell;
pub mod client;
pub mod connection;
pub mod coverage;
pub mod digest;
pub mod engine;
pub mod guard;
pub mod render;
pub mod vet;
pub mod workers;

use std::time::Duration;

pub use cell::Cell;
pub use connection::QueryConnection;
pub use coverage::Coverage;
pub use engine::{QueryEngine, VetError};

/// The longest statement accepted, in bytes (also SQLite's `SQLITE_LIMIT_SQL_LENGTH` on
/// query connections).
pub const MAX_STATEMENT_BYTES: usize = crate::views::definition::MAX_SQL_BYTES;
/// `--query-timeout`'s default: how long one statement may run.
pub const QUERY_TIMEOUT_MS: u64 = 2_000;
/// `--query-wait`'s default: how long `after=CURSOR` waits for the index to cover it.
pub const QUERY_WAIT_MS: u64 = 2_000;

/// The index database's path in a data directory (docs/QUERY.md, "Where"): the index's own.
pub use crate::index::index_path;

/// The bounds every query runs under (defaults in docs/QUERY.md, "Limits").
#[derive(Clone, Debug)]
pub struct QueryConfig {
    /// How long one statement may run before it is interrupted inside SQLite.
    pub timeout: Duration,
    /// How long `after=CURSOR` waits for the index to cover the cursor.
    pub wait: Duration,
    /// Statements running at once: one read-only connection (and one statement thread) each.
    pub connections: usize,
    /// Statements waiting for a connection; one more is refused as busy.
    pub queued: usize,
    /// Rows an answer holds at most; past it the answer is `truncated`.
    pub max_rows: usize,
    /// Bytes an answer holds at most (payloads plus [`cell::CELL_OVERHEAD_BYTES`] per
    /// value); past it the answer is `truncated`.
    pub max_bytes: usize,
    /// The largest string or blob a statement may make (SQLite's `SQLITE_LIMIT_LENGTH`).
    pub max_value_bytes: usize,
    /// How much the process's resident memory may grow while one statement runs before it
    /// is interrupted (Linux; elsewhere the deadline alone bounds it).
    pub max_memory_growth_bytes: u64,
    /// Each connection's page cache, in KiB (SQLite's `cache_size`).
    pub cache_kib: u32,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            timeout: Duration::from_millis(QUERY_TIMEOUT_MS),
            wait: Duration::from_millis(QUERY_WAIT_MS),
            connections: 4,
            queued: 256,
            max_rows: 100_000,
            max_bytes: 16 * 1024 * 1024,
            max_value_bytes: 16 * 1024 * 1024,
            max_memory_growth_bytes: 256 * 1024 * 1024,
            cache_kib: 8 * 1024,
        }
    }
}

/// A statement and its named parameters (`:name` in the SQL, `name` here), every value
/// bound as TEXT.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Statement {
    /// The SQL: one statement.
    pub sql: String,
    /// Parameter names (without the `:`) and values.
    pub params: Vec<(String, String)>,
}

/// A query's answer (docs/QUERY.md, "What a query answers").
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Answer {
    /// The result's column names, in order.
    pub columns: Vec<String>,
    /// The rows returned, each a value per column.
    pub rows: Vec<Vec<Cell>>,
    /// The tail cursor of the last entry the index covered when the statement ran, or
    /// `start`.
    pub as_of: String,
    /// Whether a cap on rows or bytes stopped the answer before the statement's end.
    pub truncated: bool,
    /// [`digest::digest`] of the columns and the rows returned, lowercase hex.
    pub digest: String,
}

/// Why a query has no answer. Each variant's message is what the client reads.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The node has no index to query yet (being built, or never built).
    #[error("no index to query yet: {0}")]
    NoIndex(String),
    /// Every connection is busy and the queue is full.
    #[error("too many queries: {running} running and {queued} waiting; retry later")]
    Busy {
        /// Statements running.
        running: usize,
        /// Statements waiting.
        queued: usize,
    },
    /// The statement is longer than [`MAX_STATEMENT_BYTES`].
    #[error("the statement is {len} bytes, the limit is {MAX_STATEMENT_BYTES}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The statement would do something besides reading; the message names what.
    #[error("refused: {0}; a query may only read")]
    Refused(String),
    /// More than one statement was sent.
    #[error("refused: more than one statement; send one statement per query")]
    MultipleStatements,
    /// Nothing but whitespace or comments was sent.
    #[error("no statement: the SQL is empty")]
    Empty,
    /// SQLite could not prepare or run the statement (syntax, an unknown column...).
    #[error("{0}")]
    Sql(String),
    /// A parameter is missing, unknown or not named.
    #[error("{0}")]
    Parameter(String),
    /// The statement ran past its deadline and was interrupted.
    #[error("the statement ran past its deadline of {ms} ms and was interrupted")]
    Deadline {
        /// The deadline, in milliseconds.
        ms: u64,
    },
    /// The statement made the process's memory grow past the limit and was interrupted.
    #[error("the statement used more than {limit} bytes of memory and was interrupted")]
    Memory {
        /// [`QueryConfig::max_memory_growth_bytes`].
        limit: u64,
    },
    /// The statement made a string or blob past [`QueryConfig::max_value_bytes`].
    #[error("the statement made a string or blob longer than the limit of {limit} bytes")]
    ValueTooBig {
        /// The limit.
        limit: usize,
    },
    /// `after=` is not a cursor of this node's log.
    #[error("after: {0}")]
    Cursor(String),
    /// `after=CURSOR` was not covered within the wait.
    #[error("the index did not cover the cursor within {ms} ms; it is at {as_of}")]
    NotCovered {
        /// The wait, in milliseconds.
        ms: u64,
        /// The index's `as_of` when the wait ended.
        as_of: String,
    },
    /// Something failed inside (logged; the client reads only that).
    #[error("internal error: {0}")]
    Internal(String),
}
