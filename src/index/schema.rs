//! The index database's layout (docs/QUERY.md): the `entries` and `meta` tables, the
//! pragmas a writer sets, and `meta` read and written as a [`Meta`]. The table and key
//! names are a contract with the query side, which reads this file through read-only
//! connections: renaming one breaks it.

use std::str::FromStr;

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::hash::Hash;
use crate::identity::Author;

/// `PRAGMA user_version` of the layout this build writes; any other is rebuilt.
pub const LAYOUT_VERSION: i64 = 1;

/// The tables. `timestamp` is declared without a type (so with no affinity): a column
/// declared INTEGER would turn the 20-digit TEXT of a timestamp above 2^63-1 into a REAL,
/// rounding it and losing the order [`super::row::SqlU64`] keeps. `seq` is INTEGER: a seq
/// is at most a feed's length, never near 2^63. WITHOUT ROWID: the rows live in the primary
/// key's own b-tree, so `(author, seq)` is not stored a second time in an index.
const CREATE_ENTRIES: &str = "
CREATE TABLE entries (
    author    TEXT    NOT NULL,
    seq       INTEGER NOT NULL,
    timestamp         NOT NULL,
    prev      TEXT,
    value     INTEGER NOT NULL,
    data      TEXT    NOT NULL,
    hash      TEXT    NOT NULL,
    PRIMARY KEY (author, seq)
)";
const CREATE_META: &str = "CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;";

/// One row; a row written twice (replayed after a crash) is the same row, so it replaces.
pub const INSERT_ROW: &str = "INSERT OR REPLACE INTO entries \
     (author, seq, timestamp, prev, value, data, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// Page cache of the indexer's connection, in KiB (SQLite's negative `cache_size`): bounds
/// its memory whatever the log's size.
pub const CACHE_KIB: i64 = 32 * 1024;

/// The largest string or blob the writer makes (an entry's data is at most 4 KiB).
pub const WRITER_MAX_VALUE_BYTES: i32 = 1 << 20;

/// The connection settings of the one writer: WAL so readers never block it nor it them,
/// and no `fsync` ever (`synchronous = OFF`): the index is a cache, rebuilt from the log
/// when a power cut damages it (docs/QUERY.md).
pub fn configure_writer(conn: &Connection) -> rusqlite::Result<()> {
    // A view's index expression could make values of any size on every row (a
    // `zeroblob(1e9)`): past this it fails, on that row, and only that view fails.
    conn.set_limit(
        rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH,
        WRITER_MAX_VALUE_BYTES,
    )?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

/// Creates the tables in an empty database, with `meta` as given (a new index: covering
/// nothing of the log yet, open).
pub fn create(conn: &mut Connection, meta: &Meta) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute_batch(&format!("{CREATE_ENTRIES} WITHOUT ROWID; {CREATE_META}"))?;
    write_meta(&tx, meta)?;
    tx.pragma_update(None, "user_version", LAYOUT_VERSION)?;
    tx.commit()
}

/// The same tables in a scratch database (query::vet), but `entries` a rowid table with its
/// primary key as a separate index: a scan then runs in the order rows were inserted, which
/// the order check varies. Same columns, same answers; only the undecided order differs.
pub fn create_scratch(conn: &Connection, meta: &Meta) -> rusqlite::Result<()> {
    conn.execute_batch(&format!("{CREATE_ENTRIES}; {CREATE_META}"))?;
    let tx = conn.unchecked_transaction()?;
    write_meta(&tx, meta)?;
    tx.commit()
}

/// What `meta` says: whose log, how far it is covered, and whether the file was closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// The node whose log this indexes.
    pub node: Author,
    /// Every record before this byte offset of the log has been read.
    pub covered: u64,
    /// Where the record of the last entry indexed starts, and that entry's hash.
    pub last: Option<(u64, Hash)>,
    /// Whether the writer closed the file cleanly.
    pub clean: bool,
}

/// Writes every key of `meta` (in the caller's transaction, with the rows it describes).
pub fn write_meta(tx: &Transaction<'_>, meta: &Meta) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?;
    stmt.execute(params!["node", meta.node.to_hex()])?;
    stmt.execute(params!["covered", sql_offset(meta.covered)])?;
    stmt.execute(params![
        "last_offset",
        meta.last.map(|(o, _)| sql_offset(o))
    ])?;
    stmt.execute(params!["last_hash", meta.last.map(|(_, h)| h.to_hex())])?;
    stmt.execute(params!["clean", i64::from(meta.clean)])?;
    Ok(())
}

/// Sets only the `clean` flag.
pub fn write_clean(conn: &Connection, clean: bool) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('clean', ?1)",
        [i64::from(clean)],
    )?;
    Ok(())
}

/// A log offset as an SQLite integer: a log is never 2^63 bytes long.
fn sql_offset(offset: u64) -> i64 {
    i64::try_from(offset).unwrap_or(i64::MAX)
}

/// Reads `meta`; `Err` with what is wrong when a key is missing or malformed (the index is
/// then rebuilt, never repaired).
pub fn read_meta(conn: &Connection) -> Result<Meta, String> {
    let get = |key: &str| -> Result<Option<rusqlite::types::Value>, String> {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
            row.get(0)
        })
        .optional()
        .map_err(|e| format!("reading meta {key}: {e}"))
    };
    use rusqlite::types::Value;
    let offset = |key: &str, value: Option<Value>| match value {
        Some(Value::Integer(i)) => u64::try_from(i).map_err(|_| format!("meta {key} is {i}")),
        other => Err(format!("meta {key} is {other:?}, not an offset")),
    };
    let hex = |key: &str, value: Option<Value>| match value {
        Some(Value::Text(text)) => Ok(text),
        other => Err(format!("meta {key} is {other:?}, not hex")),
    };
    let node =
        Author::from_str(&hex("node", get("node")?)?).map_err(|e| format!("meta node: {e}"))?;
    let covered = offset("covered", get("covered")?)?;
    let last = match (get("last_offset")?, get("last_hash")?) {
        (Some(Value::Null), Some(Value::Null)) => None,
        (at, hash) => Some((
            offset("last_offset", at)?,
            Hash::from_str(&hex("last_hash", hash)?).map_err(|e| format!("meta last_hash: {e}"))?,
        )),
    };
    let clean = match get("clean")? {
        Some(Value::Integer(flag)) => flag == 1,
        other => return Err(format!("meta clean is {other:?}")),
    };
    Ok(Meta {
        node,
        covered,
        last,
        clean,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::row::SqlU64;

    /// The real table keeps a timestamp above 2^63-1 as the TEXT it was given (a column
    /// declared INTEGER would make it a rounded REAL) and sorts it after every INTEGER.
    #[test]
    fn the_timestamp_column_keeps_big_u64s_as_text_in_order() {
        let mut conn = Connection::open_in_memory().unwrap();
        let meta = Meta {
            node: Author([1; 32]),
            covered: 12,
            last: None,
            clean: false,
        };
        create(&mut conn, &meta).unwrap();
        assert_eq!(read_meta(&conn), Ok(meta));
        for (seq, timestamp) in [(1, u64::MAX), (2, 5), (3, i64::MAX as u64 + 1), (4, 0)] {
            conn.execute(
                INSERT_ROW,
                params!["a", seq, SqlU64::new(timestamp), None::<String>, 0, "", "h"],
            )
            .unwrap();
        }
        let mut stmt = conn
            .prepare(
                "SELECT typeof(timestamp), CAST(timestamp AS TEXT) FROM entries ORDER BY timestamp",
            )
            .unwrap();
        let rows: Vec<(String, String)> = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            rows,
            [
                ("integer".into(), "0".into()),
                ("integer".into(), "5".into()),
                ("text".into(), "09223372036854775808".into()),
                ("text".into(), "18446744073709551615".into()),
            ]
        );
    }
}
