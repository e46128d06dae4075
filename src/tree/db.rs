//! `DATA_DIR/tree.sqlite`: the tables, the checks an existing file must pass to be resumed,
//! and the follower's writes (the readers' connections: [`super::pool`]).
//!
//! - `meta(key, value)`: `covered` (every entry in the log before this offset is in the
//!   trees, and the edges below describe exactly that prefix), `last_offset` and
//!   `last_leaf` (the last covered entry's record offset and leaf hash: a cache beside
//!   another log, or a log cut back, fails to find it), `replacements` (the log's
//!   replacement records when the file was created: its leaves were hashed from the copies
//!   current then; a log with another count, that is another current copy of some entry,
//!   gets the file rebuilt; missing: 0); `PRAGMA user_version` is the layout.
//! - `feeds(id, author UNIQUE, size, edge)`: a feed's number in row keys, and its size and
//!   right edge ([`super::edge::Edge::encode`]) as of `covered`, sealed
//!   ([`super::checksum`]) under its id and size.
//! - `nodes(key INTEGER PRIMARY KEY, hashes)`: complete rows ([`super::layout`]), 4,064
//!   bytes each, sealed under their key: 4,068 bytes; `page_size` 8192 so two fit a page
//!   with no overflow page.
//!
//! Every row and edge read through [`super::pool::ReadPool`] is checked against its seal;
//! one that fails comes back as [`super::pool::CacheReadError::Damaged`], and the caller
//! has the cache rebuilt.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

use crate::identity::Author;
use crate::store::format::FILE_HEADER_BYTES;
use crate::store::StoreReader;
use crate::tlog::merkle::{leaf_hash, Hash};

use super::checksum::seal;

/// The cache's file name in the data directory.
pub const TREE_FILE: &str = "tree.sqlite";

/// `PRAGMA user_version` of the layout this build writes; any other is rebuilt. 2: rows and
/// edges sealed with a CRC32C.
pub const LAYOUT_VERSION: i64 = 2;

pub(super) const CREATE: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE feeds (id INTEGER PRIMARY KEY, author BLOB NOT NULL UNIQUE,
                    size INTEGER NOT NULL, edge BLOB NOT NULL);
CREATE TABLE nodes (key INTEGER PRIMARY KEY, hashes BLOB NOT NULL);
";

/// Deletes the cache at `path` with its WAL and shared-memory files (none open).
pub fn remove(path: &Path) -> Result<(), String> {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("removing {}: {e}", Path::new(&file).display())),
        }
    }
    Ok(())
}

/// The cache's path in `data_dir`.
pub fn tree_path(data_dir: &Path) -> PathBuf {
    data_dir.join(TREE_FILE)
}

/// Where the cache covers the log to (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Covered {
    /// Every entry before this offset is in the trees.
    pub offset: u64,
    /// The last covered entry's record offset and leaf hash.
    pub last: Option<(u64, Hash)>,
}

impl Covered {
    /// Nothing covered yet.
    pub fn start() -> Covered {
        Covered {
            offset: FILE_HEADER_BYTES,
            last: None,
        }
    }
}

/// A feed as the cache numbered it, with its size as of `covered`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedRow {
    /// Its number in row keys.
    pub id: u64,
    /// Its size as of `covered`.
    pub size: u64,
}

/// A feed's edge as a flush writes it: its id, size and [`super::edge::Edge::encode`] blob.
pub type EdgeRow = (u64, u64, Vec<u8>);

/// The follower's connection.
pub struct TreeDb {
    conn: Connection,
    /// The log's replacement count the file's leaves were hashed under (`meta`).
    replacements: u64,
}

/// An SQLite error, in words.
pub fn sql(context: &str) -> impl Fn(rusqlite::Error) -> String + '_ {
    move |e| format!("{context}: {e}")
}

impl TreeDb {
    /// Opens the cache beside the log `reader` reads: resumed if it passes every check,
    /// else deleted and created empty (the warning says why). Returns it with what it
    /// covers and its feeds.
    pub fn open(
        path: &Path,
        reader: &StoreReader,
    ) -> Result<(TreeDb, Covered, BTreeMap<Author, FeedRow>), String> {
        if path.exists() {
            match TreeDb::resume(path, reader) {
                Ok(opened) => return Ok(opened),
                Err(reason) => {
                    tracing::warn!(%reason, path = %path.display(), "rebuilding the tree cache from the log");
                }
            }
        } else {
            tracing::info!(path = %path.display(), "building the tree cache from the log");
        }
        remove(path)?;
        let conn = Connection::open(path).map_err(sql("creating the tree cache"))?;
        // Before the first table: a complete row (4,064 bytes) then fits a page.
        conn.pragma_update(None, "page_size", 8192)
            .map_err(sql("page size"))?;
        configure(&conn)?;
        conn.execute_batch(CREATE).map_err(sql("creating tables"))?;
        conn.pragma_update(None, "user_version", LAYOUT_VERSION)
            .map_err(sql("layout version"))?;
        // Read before the first pass reads any entry: a replacement made after this is seen
        // as a count the file was not built under, and rebuilds it again (once a replacement).
        let replacements = reader.replacement_count();
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('replacements', ?1)",
            [to_i64(replacements)?],
        )
        .map_err(sql("writing meta"))?;
        let db = TreeDb { conn, replacements };
        db.write_covered(&Covered::start())?;
        Ok((db, Covered::start(), BTreeMap::new()))
    }

    /// Opens an existing file and checks it against the log (`Err`: why it is not resumed).
    fn resume(
        path: &Path,
        reader: &StoreReader,
    ) -> Result<(TreeDb, Covered, BTreeMap<Author, FeedRow>), String> {
        let conn = Connection::open(path).map_err(sql("opening"))?;
        configure(&conn)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sql("reading the layout version"))?;
        if version != LAYOUT_VERSION {
            return Err(format!(
                "layout version {version}, this build writes {LAYOUT_VERSION}"
            ));
        }
        let replacements: i64 = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'replacements'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("reading meta"))?
            .unwrap_or(0);
        let held = reader.replacement_count();
        if u64::try_from(replacements).ok() != Some(held) {
            return Err(format!(
                "the cache was built under {replacements} replacement records, the log holds {held}: some entry has another current copy"
            ));
        }
        let db = TreeDb {
            conn,
            replacements: held,
        };
        let covered = db.read_covered()?;
        check_against_log(&covered, reader)?;
        let mut feeds = BTreeMap::new();
        let mut stmt = db
            .conn
            .prepare("SELECT id, author, size FROM feeds")
            .map_err(sql("reading feeds"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(sql("reading feeds"))?;
        for row in rows {
            let (id, author, size) = row.map_err(sql("reading feeds"))?;
            let author = Author::try_from(author.as_slice())
                .map_err(|e| format!("a feed row's author: {e}"))?;
            let (id, size) = (
                u64::try_from(id).map_err(|_| "a negative feed id".to_string())?,
                u64::try_from(size).map_err(|_| "a negative feed size".to_string())?,
            );
            // The edges were written with `covered`: each feed's size is its entries before it.
            let held = reader.entries_before(&author, covered.offset);
            if held != size {
                return Err(format!(
                    "feed {author} has {size} leaves in the cache, {held} entries in the log before offset {}",
                    covered.offset
                ));
            }
            feeds.insert(author, FeedRow { id, size });
        }
        drop(stmt);
        Ok((db, covered, feeds))
    }

    /// The log's replacement count the file's leaves were hashed under.
    pub fn replacements(&self) -> u64 {
        self.replacements
    }

    fn read_covered(&self) -> Result<Covered, String> {
        let get = |key: &str| -> Result<Option<rusqlite::types::Value>, String> {
            self.conn
                .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
                .map_err(sql("reading meta"))
        };
        use rusqlite::types::Value;
        let offset = match get("covered")? {
            Some(Value::Integer(n)) => u64::try_from(n).map_err(|_| "a negative covered offset")?,
            _ => return Err("meta has no covered offset".into()),
        };
        let last = match (get("last_offset")?, get("last_leaf")?) {
            (Some(Value::Integer(o)), Some(Value::Blob(h))) => Some((
                u64::try_from(o).map_err(|_| "a negative last offset")?,
                Hash::try_from(h.as_slice()).map_err(|_| "a last leaf hash not 32 bytes")?,
            )),
            (None, None) => None,
            _ => return Err("meta's last entry is malformed".into()),
        };
        Ok(Covered { offset, last })
    }

    fn write_covered(&self, covered: &Covered) -> Result<(), String> {
        write_covered(&self.conn, covered)
    }

    /// One pass's writes in one transaction: feeds first numbered, complete rows, and (at a
    /// flush) the edges of the feeds changed since the last flush with `covered`.
    pub fn write_pass(
        &mut self,
        new_feeds: &[(u64, Author)],
        rows: &[(i64, Vec<u8>)],
        flush: Option<(&[EdgeRow], &Covered)>,
    ) -> Result<(), String> {
        let tx = self.conn.transaction().map_err(sql("beginning"))?;
        {
            let mut insert_feed = tx
                .prepare_cached(
                    "INSERT INTO feeds (id, author, size, edge) VALUES (?1, ?2, 0, x'')",
                )
                .map_err(sql("numbering a feed"))?;
            for (id, author) in new_feeds {
                insert_feed
                    .execute(params![to_i64(*id)?, author.as_bytes().as_slice()])
                    .map_err(sql("numbering a feed"))?;
            }
            // A row recomputed after a crash is the same row: it replaces.
            let mut insert_row = tx
                .prepare_cached("INSERT OR REPLACE INTO nodes (key, hashes) VALUES (?1, ?2)")
                .map_err(sql("writing a row"))?;
            for (key, hashes) in rows {
                insert_row
                    .execute(params![key, seal(&row_context(*key), hashes)])
                    .map_err(sql("writing a row"))?;
            }
            if let Some((edges, covered)) = flush {
                let mut update = tx
                    .prepare_cached("UPDATE feeds SET size = ?2, edge = ?3 WHERE id = ?1")
                    .map_err(sql("writing an edge"))?;
                for (id, size, edge) in edges {
                    let sealed = seal(&edge_context(*id, *size), edge);
                    update
                        .execute(params![to_i64(*id)?, to_i64(*size)?, sealed])
                        .map_err(sql("writing an edge"))?;
                }
                write_covered(&tx, covered)?;
            }
        }
        tx.commit().map_err(sql("committing"))
    }
}

/// What a row's seal covers besides its bytes: its key, so a row read under another key
/// fails too.
pub(super) fn row_context(key: i64) -> [u8; 8] {
    key.to_le_bytes()
}

/// What an edge's seal covers besides its bytes: its feed's id and the size it is of.
pub(super) fn edge_context(id: u64, size: u64) -> [u8; 16] {
    let mut context = [0u8; 16];
    context[..8].copy_from_slice(&id.to_le_bytes());
    context[8..].copy_from_slice(&size.to_le_bytes());
    context
}

pub(super) fn to_i64(n: u64) -> Result<i64, String> {
    i64::try_from(n).map_err(|_| format!("{n} does not fit SQLite's integers"))
}

fn write_covered(conn: &Connection, covered: &Covered) -> Result<(), String> {
    let mut put = conn
        .prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")
        .map_err(sql("writing meta"))?;
    put.execute(params!["covered", to_i64(covered.offset)?])
        .map_err(sql("writing meta"))?;
    match covered.last {
        Some((offset, leaf)) => {
            put.execute(params!["last_offset", to_i64(offset)?])
                .map_err(sql("writing meta"))?;
            put.execute(params!["last_leaf", leaf.as_slice()])
                .map_err(sql("writing meta"))?;
        }
        None => {
            conn.execute(
                "DELETE FROM meta WHERE key IN ('last_offset', 'last_leaf')",
                [],
            )
            .map_err(sql("writing meta"))?;
        }
    }
    Ok(())
}

/// WAL, and `synchronous = NORMAL`: a commit is not fsynced (only a WAL checkpoint is), so
/// a power cut may lose the last transactions, which the follower recomputes from the log;
/// never an fsync on the log's commit path, which this file is off.
fn configure(conn: &Connection) -> Result<(), String> {
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql("journal mode"))?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sql("synchronous"))?;
    Ok(())
}

/// `covered` describes a prefix of this log: within its committed end, on a record
/// boundary just past the entry `meta` names, whose leaf hash it holds.
fn check_against_log(covered: &Covered, reader: &StoreReader) -> Result<(), String> {
    let end = reader.committed_end();
    if covered.offset > end {
        return Err(format!(
            "the cache covers the log to offset {}, past its end at {end}",
            covered.offset
        ));
    }
    match covered.last {
        None if covered.offset == FILE_HEADER_BYTES => Ok(()),
        None => Err(format!(
            "the cache covers to offset {} but names no last entry",
            covered.offset
        )),
        Some((offset, leaf)) => {
            let found = reader
                .record_at(offset)
                .map_err(|e| format!("reading the log: {e}"))?;
            match found {
                Some((entry, _, next))
                    if next == covered.offset && leaf_hash(&entry.encode()) == leaf =>
                {
                    Ok(())
                }
                _ => Err(format!(
                    "the log does not hold the entry the cache says it covered last, at offset {offset}"
                )),
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A writer on a fresh cache file in WAL mode, with the layout's tables.
    pub(in crate::tree) fn writer(path: &Path) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.pragma_update(None, "page_size", 8192).unwrap();
        conn.execute_batch("PRAGMA journal_mode=WAL;").unwrap();
        conn.execute_batch(CREATE).unwrap();
        conn
    }

    /// Writes `bytes` as the row at `key`, sealed as [`TreeDb::write_pass`] seals it.
    pub(in crate::tree) fn put_row(w: &Connection, key: i64, bytes: &[u8]) {
        w.execute(
            "INSERT OR REPLACE INTO nodes VALUES (?1, ?2)",
            params![key, seal(&row_context(key), bytes)],
        )
        .unwrap();
    }

    /// Sealed, a complete row is 4,068 bytes: two still share a page of 8,192 with no
    /// overflow page, so the cache costs what it did (about 32 bytes an entry).
    #[test]
    fn two_sealed_rows_fit_a_page() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TREE_FILE);
        let w = writer(&path);
        let row = vec![0xab; super::super::layout::ROW_BYTES];
        let rows = 200i64;
        for row_index in 0..rows {
            // Keys as large as a real feed's: the feed id sits in the high bits.
            let key = super::super::layout::row_key(5_000_000, 0, row_index as u64).unwrap();
            put_row(&w, key, &row);
        }
        w.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
        let pages: i64 = w
            .pragma_query_value(None, "page_count", |r| r.get(0))
            .unwrap();
        // Two rows a leaf page, plus interior pages and the tables' roots.
        assert!(pages <= rows / 2 + 8, "{pages} pages for {rows} rows");
    }
}
