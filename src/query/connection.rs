//! One read-only connection to the index, set up so that whatever a client's statement
//! says, it only reads, and only within its bounds:
//!
//! - opened `SQLITE_OPEN_READ_ONLY` (no URI filenames), with `PRAGMA query_only`;
//! - SQLite's authorizer applies [`super::guard::check`] to every client statement as it is
//!   prepared (the engine's own `BEGIN`, `meta` read and `ROLLBACK` are not the client's);
//! - limits: a statement of at most [`MAX_STATEMENT_BYTES`], strings and blobs of at most
//!   [`QueryConfig::max_value_bytes`] (`randomblob(1e9)`, `zeroblob`, a huge `printf`, a
//!   `group_concat` of everything fail with "too big"), no attached databases;
//! - temporary storage in memory (`temp_store = MEMORY`): a sort that spills never writes a
//!   temporary file, so no query can fill the disk the log and the index write to;
//! - a progress handler, every [`PROGRESS_OPS`] virtual-machine steps, that interrupts the
//!   statement inside SQLite past its deadline or once the process's resident memory has
//!   grown by [`QueryConfig::max_memory_growth_bytes`] since it began. The thread is free
//!   as soon as the statement is interrupted: nothing is abandoned.
//!
//! Each statement runs in its own read transaction, which first reads `meta`, so `as_of`
//! and the rows come from one snapshot of the index.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rusqlite::config::DbConfig;
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::coverage::{Coverage, MetaRows};
use super::digest::Digester;
use super::{guard, Answer, Cell, QueryConfig, QueryError, Statement, MAX_STATEMENT_BYTES};
use crate::poison::lock;

/// Virtual-machine steps between two looks at the deadline: a few microseconds of work, so
/// an interrupted statement stops well within a millisecond of its deadline.
pub const PROGRESS_OPS: i32 = 1_000;
/// Client statements each connection keeps prepared (by their text), at most.
const STATEMENT_CACHE: usize = 64;
/// Progress calls between two looks at the process's memory (reading it costs a system
/// call and a parse; the deadline is cheap).
const MEMORY_CHECK_EVERY: u32 = 16;

/// Whether the statement being prepared is the client's, and what the authorizer refused.
#[derive(Default)]
struct Gate {
    client: bool,
    refused: Option<String>,
}

/// What the progress handler watches while a client statement runs.
#[derive(Default)]
struct Watch {
    deadline: Option<Instant>,
    resident_base: Option<u64>,
    memory_limit: u64,
    calls: u32,
    tripped: Option<Trip>,
}

/// Why the progress handler interrupted a statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trip {
    Deadline,
    Memory,
}

/// A read-only connection to the index with the guard and the bounds installed (see the
/// module docs).
pub struct QueryConnection {
    conn: Connection,
    gate: Arc<Mutex<Gate>>,
    watch: Arc<Mutex<Watch>>,
    config: QueryConfig,
    /// The file opened, to tell a replaced index (rebuilt) from this one.
    file: Option<FileId>,
}

/// A file's identity on disk (device and inode on Unix).
type FileId = (u64, u64);

/// The identity of the file at `path`, where the platform has one.
fn file_id(path: &Path) -> Option<FileId> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

impl QueryConnection {
    /// Opens the index at `path` read-only. [`QueryError::NoIndex`] when there is none.
    pub fn open(path: &Path, config: &QueryConfig) -> Result<QueryConnection, QueryError> {
        if !path.is_file() {
            return Err(QueryError::NoIndex(format!(
                "{} does not exist",
                path.display()
            )));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| QueryError::NoIndex(format!("opening {}: {e}", path.display())))?;
        Self::guarded(conn, config, file_id(path))
            .map_err(|e| QueryError::Internal(format!("setting up: {e}")))
    }

    /// `conn` set up to run client statements, whatever it is a connection to: the limits,
    /// the pragmas, the statement cache, the authorizer and the progress handler (see the
    /// module docs).
    fn guarded(
        conn: Connection,
        config: &QueryConfig,
        file: Option<FileId>,
    ) -> rusqlite::Result<QueryConnection> {
        // A reader waits out a writer's checkpoint rather than failing at once.
        conn.busy_timeout(config.timeout)?;
        // The query planner stability guarantee: a statement's plan never depends on the
        // values bound to it. Without it (SQLite is built with STAT4) a parameter compared
        // with an indexed expression (a view's `:sensor`) marks the prepared statement for a
        // new parse and plan at every new value: a quarter of a point query's time on its
        // statement thread. And a plan that cannot change with the values is one thing
        // fewer that could differ between two nodes.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        conn.pragma_update(None, "query_only", true)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.pragma_update(None, "cache_size", -i64::from(config.cache_kib))?;
        let statement_limit = i32::try_from(MAX_STATEMENT_BYTES).unwrap_or(i32::MAX);
        for (limit, value) in [
            (Limit::SQLITE_LIMIT_LENGTH, value_limit(config)),
            (Limit::SQLITE_LIMIT_SQL_LENGTH, statement_limit),
            (Limit::SQLITE_LIMIT_ATTACHED, 0),
            (Limit::SQLITE_LIMIT_WORKER_THREADS, 0),
        ] {
            conn.set_limit(limit, value)?;
        }
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let mut connection = QueryConnection {
            conn,
            gate: Arc::new(Mutex::new(Gate::default())),
            watch: Arc::new(Mutex::new(Watch::default())),
            config: config.clone(),
            file,
        };
        connection.install_hooks()?;
        Ok(connection)
    }

    /// A scratch index in memory (the same tables, `entries` a rowid table) holding `rows`
    /// (each the seven columns of `entries` in order) inserted in the order given, so a
    /// table scan returns them in that order, with `indexes` created after them, each checked to be one
    /// `CREATE INDEX` on `entries` and nothing else; then set up like [`Self::open`]'s. Also
    /// returns each index's name and its statement as SQLite keeps it. For
    /// [`super::vet`]: the whole database is thrown away with the connection.
    pub(crate) fn scratch(
        config: &QueryConfig,
        rows: &[Vec<rusqlite::types::Value>],
        indexes: &[String],
    ) -> Result<(QueryConnection, Vec<(String, String)>), ScratchError> {
        let internal = |e: rusqlite::Error| ScratchError::Internal(format!("a scratch index: {e}"));
        let mut conn = Connection::open_in_memory().map_err(internal)?;
        let meta = crate::index::schema::Meta {
            node: crate::identity::Author([0; 32]),
            covered: 0,
            last: None,
            clean: true,
        };
        crate::index::schema::create_scratch(&conn, &meta).map_err(internal)?;
        {
            let tx = conn.transaction().map_err(internal)?;
            {
                let mut insert = tx
                    .prepare(crate::index::schema::INSERT_ROW)
                    .map_err(internal)?;
                for row in rows {
                    insert
                        .execute(rusqlite::params_from_iter(row.iter()))
                        .map_err(internal)?;
                }
            }
            tx.commit().map_err(internal)?;
        }
        // The value limit holds while the index statements run, as it will for queries.
        conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, value_limit(config))
            .map_err(internal)?;
        conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)
            .map_err(internal)?;
        let mut created = Vec::new();
        for (i, statement) in indexes.iter().enumerate() {
            let index = create_checked_index(&mut conn, statement, config).map_err(|reason| {
                ScratchError::Index {
                    number: i + 1,
                    reason,
                }
            })?;
            created.push(index);
        }
        let connection = Self::guarded(conn, config, None).map_err(internal)?;
        Ok((connection, created))
    }

    /// Up to `limit` rows of `entries` (all seven columns), the first in hash order: a
    /// sample spread over feeds, the same on every node holding the same entries.
    pub(crate) fn sample(
        &mut self,
        limit: usize,
    ) -> Result<Vec<Vec<rusqlite::types::Value>>, QueryError> {
        self.set_client(false);
        // An index whose tables are not yet created (the indexer, at idle priority, may not
        // have run its first transaction) has nothing to sample: `NoIndex`, as a query says.
        read_meta(&self.conn)?;
        self.arm();
        let sampled = (|| {
            let mut statement = self.conn.prepare(
                "SELECT author, seq, timestamp, prev, value, data, hash FROM entries \
                 ORDER BY hash LIMIT ?1",
            )?;
            let rows = statement.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
                (0..7).map(|i| row.get(i)).collect()
            })?;
            rows.collect::<rusqlite::Result<Vec<Vec<rusqlite::types::Value>>>>()
        })();
        self.disarm();
        sampled.map_err(|e| run_error(e, &self.watch, &self.config))
    }

    /// The names of `sql`'s parameters (without the `:`), prepared as a client's statement
    /// (so refused as one would be).
    pub(crate) fn parameters(&mut self, sql: &str) -> Result<Vec<String>, QueryError> {
        self.set_client(true);
        let prepared = self.conn.prepare(sql);
        let result = match prepared {
            Ok(prepared) => Ok((1..=prepared.parameter_count())
                .filter_map(|i| prepared.parameter_name(i))
                .map(|name| name.trim_start_matches([':', '@', '$']).to_owned())
                .collect()),
            Err(e) => Err(prepare_error(e, &self.gate)),
        };
        self.set_client(false);
        result
    }

    /// SQLite's `reverse_unordered_selects`: scans run backwards, so rows whose order no
    /// `ORDER BY` decides come out the other way round.
    pub(crate) fn reverse_unordered_selects(&mut self, on: bool) -> Result<(), QueryError> {
        self.set_client(false);
        self.conn
            .pragma_update(None, "reverse_unordered_selects", on)
            .map_err(|e| QueryError::Internal(format!("reverse_unordered_selects: {e}")))
    }

    fn install_hooks(&mut self) -> rusqlite::Result<()> {
        let gate = Arc::clone(&self.gate);
        self.conn
            .authorizer(Some(move |context: rusqlite::hooks::AuthContext<'_>| {
                let mut gate = lock(&gate);
                if !gate.client {
                    return rusqlite::hooks::Authorization::Allow;
                }
                let verdict = guard::check(&context.action);
                if let Err(what) = &verdict {
                    gate.refused.get_or_insert_with(|| what.clone());
                }
                guard::authorization(&verdict)
            }))?;
        let watch = Arc::clone(&self.watch);
        self.conn
            .progress_handler(PROGRESS_OPS, Some(move || interrupts(&mut lock(&watch))))
    }

    /// Whether `path` is still the file this connection opened (a rebuilt index is a new
    /// file: a connection to the old one is dropped, not reused).
    pub fn is_current(&self, path: &Path) -> bool {
        self.file.is_some() && file_id(path) == self.file
    }

    /// How far the index covers, read on its own (`after=CURSOR` polls this).
    pub fn coverage(&mut self) -> Result<Coverage, QueryError> {
        self.set_client(false);
        read_meta(&self.conn)
    }

    /// Runs one client statement in one read transaction with `meta` (see the module docs).
    pub fn run(&mut self, statement: &Statement) -> Result<Answer, QueryError> {
        if statement.sql.len() > MAX_STATEMENT_BYTES {
            return Err(QueryError::TooLong {
                len: statement.sql.len(),
            });
        }
        self.set_client(false);
        // Both kept prepared, like the client's statements: parsing them each time was 5% of
        // a point query's time on its statement thread.
        self.conn
            .prepare_cached("BEGIN")
            .and_then(|mut begin| begin.execute([]))
            .map_err(|e| QueryError::Internal(format!("BEGIN: {e}")))?;
        let answer = self.run_in_transaction(statement);
        self.set_client(false);
        self.disarm();
        // The transaction only read: ending it either way releases the snapshot.
        let rollback = self
            .conn
            .prepare_cached("ROLLBACK")
            .and_then(|mut rollback| rollback.execute([]));
        if let Err(e) = rollback {
            tracing::warn!(error = %e, "ending a query's read transaction failed");
        }
        answer
    }

    fn run_in_transaction(&mut self, statement: &Statement) -> Result<Answer, QueryError> {
        let coverage = read_meta(&self.conn)?;
        self.arm();
        self.set_client(true);
        // Cached by its text: a view or a repeated query is parsed and planned once per
        // connection. Only statements that passed the authorizer get in (a refused one fails
        // to prepare), and every use binds every parameter again.
        let mut prepared = match self.conn.prepare_cached(&statement.sql) {
            Ok(prepared) => prepared,
            Err(e) => return Err(prepare_error(e, &self.gate)),
        };
        if !prepared.readonly() {
            return Err(QueryError::Refused("a statement that writes".into()));
        }
        bind(&mut prepared, &statement.params)?;
        let columns: Vec<String> = prepared.column_names().map(String::from).collect();
        let mut digester = Digester::new(&columns);
        let (mut out, mut bytes, mut truncated) = (Vec::new(), 0usize, false);
        let mut rows = prepared.raw_query();
        loop {
            let row = match rows.next() {
                Ok(Some(row)) => row,
                Ok(None) => break,
                Err(e) => return Err(run_error(e, &self.watch, &self.config)),
            };
            if out.len() >= self.config.max_rows {
                truncated = true;
                break;
            }
            let cells = (0..columns.len())
                .map(|i| row.get_ref(i).map(Cell::from_sql))
                .collect::<Result<Vec<Cell>, _>>()
                .map_err(|e| QueryError::Internal(format!("reading a row: {e}")))?;
            let weight: usize = cells.iter().map(Cell::weight).sum();
            if bytes.saturating_add(weight) > self.config.max_bytes {
                truncated = true;
                break;
            }
            bytes += weight;
            digester.row(&cells);
            out.push(cells);
        }
        Ok(Answer {
            columns,
            rows: out,
            as_of: coverage.to_string(),
            truncated,
            digest: digester.finish(truncated),
        })
    }

    fn set_client(&self, client: bool) {
        let mut gate = lock(&self.gate);
        gate.client = client;
        gate.refused = None;
    }

    fn arm(&self) {
        let mut watch = lock(&self.watch);
        *watch = Watch {
            deadline: Some(Instant::now() + self.config.timeout),
            // Read at the handler's first call (after PROGRESS_OPS steps), not here: a short
            // statement, most of them, never pays for reading /proc.
            resident_base: None,
            memory_limit: self.config.max_memory_growth_bytes,
            ..Watch::default()
        };
    }

    fn disarm(&self) {
        *lock(&self.watch) = Watch::default();
    }
}

/// Why a scratch index could not be made.
#[derive(Debug)]
pub(crate) enum ScratchError {
    /// Index statement `number` (from 1) is refused or failed: why.
    Index {
        /// Its place in the view's list, from 1.
        number: usize,
        /// Why.
        reason: String,
    },
    /// Setting up the scratch database failed.
    Internal(String),
}

/// Creates the index `statement` on the scratch `conn` after checking, with the authorizer,
/// that it is exactly one `CREATE INDEX` on `main.entries` that reads and calls allowed
/// functions only; its name and its statement as SQLite keeps it. The statement runs under
/// the query deadline.
fn create_checked_index(
    conn: &mut Connection,
    statement: &str,
    config: &QueryConfig,
) -> Result<(String, String), String> {
    use rusqlite::hooks::{AuthAction, Authorization};
    let seen = Arc::new(Mutex::new(SeenIndex::default()));
    let hook = Arc::clone(&seen);
    conn.authorizer(Some(move |context: rusqlite::hooks::AuthContext<'_>| {
        let mut seen = lock(&hook);
        let verdict = match context.action {
            AuthAction::CreateIndex {
                index_name,
                table_name,
            } if table_name == "entries" && context.database_name == Some("main") => {
                if seen.index.replace(index_name.to_owned()).is_some() {
                    Err("more than one index".to_owned())
                } else {
                    Ok(())
                }
            }
            AuthAction::CreateIndex { table_name, .. } => Err(format!(
                "an index on {table_name}: views index entries only"
            )),
            // Creating an index writes its row into the schema table and fills it (SQLite
            // asks for that as a REINDEX of the new index).
            AuthAction::Insert { table_name } | AuthAction::Update { table_name, .. }
                if table_name == "sqlite_master" =>
            {
                Ok(())
            }
            AuthAction::Reindex { .. } if seen.index.is_some() => Ok(()),
            ref action => guard::check(action),
        };
        match verdict {
            Ok(()) => Authorization::Allow,
            Err(what) => {
                seen.refused.get_or_insert(what);
                Authorization::Deny
            }
        }
    }))
    .map_err(|e| e.to_string())?;
    let refused = |error: String| -> String {
        match lock(&seen).refused.take() {
            Some(what) => format!(
                "refused: {what}; an index statement is one CREATE INDEX ... ON entries(...)"
            ),
            None => error,
        }
    };
    let deadline = Instant::now() + config.timeout;
    conn.progress_handler(PROGRESS_OPS, Some(move || Instant::now() >= deadline))
        .map_err(|e| e.to_string())?;
    let executed = execute_checked(conn, statement, &seen, refused);
    conn.progress_handler(PROGRESS_OPS, None::<fn() -> bool>)
        .map_err(|e| e.to_string())?;
    conn.authorizer(None::<fn(rusqlite::hooks::AuthContext<'_>) -> Authorization>)
        .map_err(|e| e.to_string())?;
    let name = executed?;
    let (kept, unique): (String, bool) = conn
        .query_row(
            "SELECT m.sql, l.\"unique\" FROM sqlite_master m, pragma_index_list('entries') l \
             WHERE m.type = 'index' AND m.name = ?1 AND l.name = ?1",
            [&name],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(|e| format!("reading the index back: {e}"))?;
    if unique {
        return Err(format!(
            "UNIQUE index {name}: an entry that broke it could not be indexed; views take plain indexes"
        ));
    }
    if crate::views::index_name::index_name(&kept).as_deref() != Some(name.as_str()) {
        return Err(format!(
            "index {name}: name it with a plain word or a quoted name, without a schema"
        ));
    }
    Ok((name, kept))
}

/// Prepares and runs one index statement on the scratch database; the index's name.
fn execute_checked(
    conn: &Connection,
    statement: &str,
    seen: &Mutex<SeenIndex>,
    refused: impl Fn(String) -> String,
) -> Result<String, String> {
    let mut prepared = match conn.prepare(statement) {
        Ok(prepared) => prepared,
        Err(rusqlite::Error::MultipleStatement) => {
            return Err("more than one statement; give each index its own".into())
        }
        Err(rusqlite::Error::SqliteFailure(_, Some(message))) => return Err(refused(message)),
        Err(e) => return Err(refused(e.to_string())),
    };
    let Some(name) = lock(seen).index.clone() else {
        return Err("not a CREATE INDEX statement; an index statement is one CREATE INDEX ... ON entries(...)".into());
    };
    prepared.raw_execute().map_err(|e| match e {
        rusqlite::Error::SqliteFailure(e, _) if e.code == ErrorCode::OperationInterrupted => {
            "building it on sample rows ran past the query deadline".to_owned()
        }
        rusqlite::Error::SqliteFailure(_, Some(message)) => message,
        e => e.to_string(),
    })?;
    Ok(name)
}

/// What the authorizer saw of an index statement.
#[derive(Default)]
struct SeenIndex {
    index: Option<String>,
    refused: Option<String>,
}

/// [`QueryConfig::max_value_bytes`] as SQLite's `SQLITE_LIMIT_LENGTH`.
fn value_limit(config: &QueryConfig) -> i32 {
    i32::try_from(config.max_value_bytes).unwrap_or(i32::MAX)
}

/// The progress handler's decision: `true` interrupts the statement.
fn interrupts(watch: &mut Watch) -> bool {
    let Some(deadline) = watch.deadline else {
        return false;
    };
    if Instant::now() >= deadline {
        watch.tripped = Some(Trip::Deadline);
        return true;
    }
    watch.calls = watch.calls.wrapping_add(1);
    if watch.resident_base.is_none() {
        watch.resident_base = resident_bytes();
    }
    if watch.calls.is_multiple_of(MEMORY_CHECK_EVERY) {
        if let (Some(base), Some(now)) = (watch.resident_base, resident_bytes()) {
            if now.saturating_sub(base) > watch.memory_limit {
                watch.tripped = Some(Trip::Memory);
                return true;
            }
        }
    }
    false
}

/// The process's resident memory, from `/proc/self/status` (Linux); `None` elsewhere.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Reads `meta` in the current transaction.
fn read_meta(conn: &Connection) -> Result<Coverage, QueryError> {
    let no_index = |e: rusqlite::Error| QueryError::NoIndex(format!("reading meta: {e}"));
    let mut statement = conn
        .prepare_cached("SELECT key, value FROM meta WHERE key IN ('node', 'covered', 'last_offset', 'last_hash')")
        .map_err(no_index)?;
    let mut rows = statement.raw_query();
    let mut meta = MetaRows::default();
    while let Some(row) = rows.next().map_err(no_index)? {
        let key = row.get_ref(0).map_err(no_index)?;
        let value = row.get_ref(1).map_err(no_index)?;
        let text = || value.as_str().ok().map(String::from);
        let integer = match value {
            ValueRef::Integer(i) => Some(i),
            _ => None,
        };
        match key.as_str().unwrap_or_default() {
            "node" => meta.node = text(),
            "covered" => meta.covered = integer,
            "last_offset" => meta.last_offset = integer,
            "last_hash" => meta.last_hash = text(),
            _ => {}
        }
    }
    meta.coverage()
        .map_err(|e| QueryError::NoIndex(e.to_string()))
}

/// Binds every parameter of `prepared` by name from `params`, as TEXT: each must be named
/// (`:name`), given, and each given one used.
fn bind(
    prepared: &mut rusqlite::Statement<'_>,
    params: &[(String, String)],
) -> Result<(), QueryError> {
    for index in 1..=prepared.parameter_count() {
        let Some(name) = prepared.parameter_name(index) else {
            return Err(QueryError::Parameter(format!(
                "parameter {index} has no name: write parameters as :name"
            )));
        };
        let Some(bare) = name.strip_prefix(':').map(String::from) else {
            return Err(QueryError::Parameter(format!(
                "parameter {name}: write parameters as :name"
            )));
        };
        let Some((_, value)) = params.iter().find(|(n, _)| *n == bare) else {
            return Err(QueryError::Parameter(format!(
                "parameter :{bare} has no value: add &:{bare}=VALUE"
            )));
        };
        prepared
            .raw_bind_parameter(index, value.as_str())
            .map_err(|e| QueryError::Parameter(format!("parameter :{bare}: {e}")))?;
    }
    for (name, _) in params {
        let used = prepared
            .parameter_index(&format!(":{name}"))
            .map_err(|e| QueryError::Parameter(format!("parameter :{name}: {e}")))?;
        if used.is_none() {
            return Err(QueryError::Parameter(format!(
                "parameter :{name} is not in the statement"
            )));
        }
    }
    Ok(())
}

/// Why a client statement did not prepare.
fn prepare_error(error: rusqlite::Error, gate: &Mutex<Gate>) -> QueryError {
    // A function the authorizer denied fails as a plain error ("not authorized to use
    // function"), not SQLITE_AUTH: what the authorizer recorded decides.
    if let Some(refused) = lock(gate).refused.take() {
        return QueryError::Refused(refused);
    }
    match error {
        rusqlite::Error::MultipleStatement => QueryError::MultipleStatements,
        rusqlite::Error::Empty => QueryError::Empty,
        rusqlite::Error::SqliteFailure(e, message)
            if e.code == ErrorCode::AuthorizationForStatementDenied =>
        {
            QueryError::Refused(message.unwrap_or_else(|| "not authorized".into()))
        }
        rusqlite::Error::SqliteFailure(_, Some(message)) => QueryError::Sql(message),
        other => QueryError::Sql(other.to_string()),
    }
}

/// Why a client statement stopped while running.
fn run_error(error: rusqlite::Error, watch: &Mutex<Watch>, config: &QueryConfig) -> QueryError {
    let tripped = lock(watch).tripped;
    match &error {
        rusqlite::Error::SqliteFailure(e, _) if e.code == ErrorCode::OperationInterrupted => {
            match tripped {
                Some(Trip::Memory) => QueryError::Memory {
                    limit: config.max_memory_growth_bytes,
                },
                _ => QueryError::Deadline {
                    ms: u64::try_from(config.timeout.as_millis()).unwrap_or(u64::MAX),
                },
            }
        }
        rusqlite::Error::SqliteFailure(e, _) if e.code == ErrorCode::TooBig => {
            QueryError::ValueTooBig {
                limit: config.max_value_bytes,
            }
        }
        rusqlite::Error::SqliteFailure(e, _) if e.code == ErrorCode::OutOfMemory => {
            QueryError::Memory {
                limit: config.max_memory_growth_bytes,
            }
        }
        rusqlite::Error::SqliteFailure(_, Some(message)) => QueryError::Sql(message.clone()),
        other => QueryError::Sql(other.to_string()),
    }
}
