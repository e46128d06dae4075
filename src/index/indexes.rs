//! The views' indexes in the index database (docs/QUERY.md, "Named views"): which exist,
//! dropping one, building one with an estimate of its progress, and finding which one
//! refused an entry. Called by the indexer, the database's one writer, between batches.
//!
//! An index is named by its statement as SQLite keeps it in `sqlite_master` (the form
//! [`crate::query::vet`] stores in a view's definition), so "the index the views want"
//! and "the index the database has" compare as text: same name, other columns, and it is
//! dropped and built again.
//!
//! An index expression can fail on an entry (`json_extract` of data that is not JSON). A
//! claim nobody checked must not stop the index for everyone: the batch is retried without
//! the index that failed, and the views that need it are marked failed, with the entry.

use rusqlite::{Connection, ErrorCode};

/// Virtual-machine steps between two progress reports while an index builds.
const PROGRESS_OPS: i32 = 10_000;

/// Why an index was not built.
#[derive(Debug)]
pub enum BuildError {
    /// Asked to stop (the node stops, or the views no longer want it).
    Stopped,
    /// The statement failed on the rows (an expression error): the views' fault, not the
    /// disk's; the message says why.
    Refused(String),
    /// The database failed (a full disk, an I/O error).
    Sqlite(rusqlite::Error),
}

/// Whether `error` is about a statement or a row (the index's definition meeting the data)
/// rather than the database or its disk.
pub fn is_statement_error(error: &rusqlite::Error) -> bool {
    match error {
        rusqlite::Error::SqliteFailure(e, _) => matches!(
            e.code,
            ErrorCode::Unknown
                | ErrorCode::ConstraintViolation
                | ErrorCode::TooBig
                | ErrorCode::TypeMismatch
        ),
        _ => false,
    }
}

/// The views' indexes on `entries` that exist: name and statement, by name. (SQLite's own
/// index for the primary key has no statement and is not listed.)
pub fn present(conn: &Connection) -> rusqlite::Result<Vec<(String, String)>> {
    let mut statement = conn.prepare(
        "SELECT name, sql FROM sqlite_master \
         WHERE type = 'index' AND tbl_name = 'entries' AND sql IS NOT NULL ORDER BY name",
    )?;
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    rows.collect()
}

/// `name` quoted as an SQL identifier.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Drops the index `name`.
pub fn drop_index(conn: &Connection, name: &str) -> rusqlite::Result<()> {
    conn.execute_batch(&format!("DROP INDEX IF EXISTS {}", quoted(name)))
}

/// What a build reports its progress to: the share done (an estimate), answering whether
/// to go on. It runs inside SQLite, on the building thread.
pub type Progress = Box<dyn FnMut(f64) -> bool + Send + 'static>;

/// Builds the index `statement` (one `CREATE INDEX`, vetted), telling `progress` the share
/// done now and then (an estimate: SQLite's steps against the steps its program takes per
/// row); `progress` answering `false` stops the build, which leaves nothing behind.
pub fn build(
    conn: &mut Connection,
    statement: &str,
    mut progress: Progress,
) -> Result<(), BuildError> {
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM entries", [], |row| row.get(0))
        .map_err(BuildError::Sqlite)?;
    let per_row = steps_per_row(conn, statement).map_err(classify)?;
    let total = (rows.max(1) as f64) * per_row as f64;
    let mut calls = 0u64;
    conn.progress_handler(
        PROGRESS_OPS,
        Some(move || {
            calls += 1;
            let share = (calls as f64 * f64::from(PROGRESS_OPS) / total).min(0.99);
            !progress(share)
        }),
    )
    .map_err(BuildError::Sqlite)?;
    let result = conn.execute_batch(statement);
    conn.progress_handler(PROGRESS_OPS, None::<fn() -> bool>)
        .map_err(BuildError::Sqlite)?;
    match result {
        Ok(()) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == ErrorCode::OperationInterrupted => {
            Err(BuildError::Stopped)
        }
        Err(e) => Err(classify(e)),
    }
}

fn classify(error: rusqlite::Error) -> BuildError {
    if is_statement_error(&error) {
        BuildError::Refused(match &error {
            rusqlite::Error::SqliteFailure(_, Some(message)) => message.clone(),
            other => other.to_string(),
        })
    } else {
        BuildError::Sqlite(error)
    }
}

/// Which of `indexes` (name, in the order given) makes inserting the row `params` fail,
/// found by dropping them one by one inside a transaction that is then rolled back (DDL is
/// transactional in SQLite): the first whose drop lets the row in. `None` when the row
/// fails without any of them (then it is not an index's fault).
pub fn culprit(
    conn: &mut Connection,
    insert: &str,
    params: &[&dyn rusqlite::ToSql],
    indexes: &[String],
) -> rusqlite::Result<Option<String>> {
    let tx = conn.transaction()?;
    let mut found = None;
    for name in indexes {
        drop_index(&tx, name)?;
        match tx.execute(insert, rusqlite::params_from_iter(params.iter())) {
            Ok(_) => {
                found = Some(name.clone());
                break;
            }
            Err(e) if is_statement_error(&e) => continue,
            Err(e) => return Err(e),
        }
    }
    tx.rollback()?;
    Ok(found)
}

/// SQLite's steps per row for `statement`: the lengths of its program's loops (each runs
/// once per row: the scan, then the sorted insert).
fn steps_per_row(conn: &Connection, statement: &str) -> rusqlite::Result<u64> {
    let mut explain = conn.prepare(&format!("EXPLAIN {statement}"))?;
    let mut rows = explain.query([])?;
    let mut steps = 0u64;
    while let Some(row) = rows.next()? {
        let addr: i64 = row.get(0)?;
        let opcode: String = row.get(1)?;
        let target: i64 = row.get(3)?;
        if matches!(opcode.as_str(), "Next" | "Prev" | "SorterNext") && target <= addr {
            steps += u64::try_from(addr - target + 1).unwrap_or(0);
        }
    }
    Ok(steps.max(1))
}
