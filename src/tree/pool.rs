//! The readers' pool of read-only connections to `tree.sqlite` ([`super::db`] owns the
//! file and its writes): row and edge reads, each checked against its seal
//! ([`super::checksum`]) before it is handed on.

use std::path::PathBuf;
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::poison::lock;

use super::checksum::unseal;
use super::db::{edge_context, row_context, sql, to_i64};

/// Read connections kept open for reuse; more are opened under a burst and closed after.
const POOLED_READERS: usize = 8;

/// Why a read through the [`ReadPool`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheReadError {
    /// SQLite failed (could not open, read, or begin a snapshot).
    #[error("{0}")]
    Sql(String),
    /// What SQLite returned fails its seal: the file is damaged.
    #[error("{0}")]
    Damaged(String),
}

/// Read-only connections to the cache for the readers, reused (a connection is opened
/// once, its statement prepared once: a row read is then a few µs).
///
/// Row reads share a **held read transaction** per connection: a complete row never changes
/// once written, so an older snapshot can only lack rows, never give a wrong one. A row
/// missing from the snapshot is looked up again in a fresh one (the follower commits rows
/// before it publishes the sizes that need them), and a snapshot older than
/// [`SNAPSHOT_MAX_AGE`] is renewed first, so the follower's WAL checkpoints are held back by
/// at most that long. Each read transaction costs SQLite a lock on the WAL index (`fcntl`
/// on `-shm`); one per row read was the largest part of an inclusion proof's cost over HTTP
/// (docs/BENCHMARKS.md, issue 22's targets). Edge reads, which must see the last flush, run
/// outside any held snapshot.
pub struct ReadPool {
    path: PathBuf,
    idle: Mutex<Idle>,
}

/// The pooled connections, and the file's generation they were opened on: bumped by
/// [`ReadPool::clear`] when the file is replaced, so a connection still in use then, open
/// on the old (deleted) file, is closed when handed back, never pooled for a reader of the
/// new file, whose feeds may be numbered otherwise.
#[derive(Default)]
struct Idle {
    readers: Vec<Reader>,
    generation: u64,
}

/// How long a reader keeps one snapshot for row reads.
pub const SNAPSHOT_MAX_AGE: std::time::Duration = std::time::Duration::from_millis(100);

/// A pooled connection and when its held read transaction began (`None`: none held).
struct Reader {
    conn: Connection,
    snapshot: Option<std::time::Instant>,
    generation: u64,
}

impl Reader {
    /// Ends the held read transaction, if any.
    fn release(&mut self) -> Result<(), String> {
        if self.snapshot.take().is_some() {
            self.conn
                .execute_batch("COMMIT")
                .map_err(sql("ending a read snapshot"))?;
        }
        Ok(())
    }

    /// Holds a read transaction no older than [`SNAPSHOT_MAX_AGE`].
    fn hold(&mut self) -> Result<(), String> {
        if self
            .snapshot
            .is_some_and(|began| began.elapsed() < SNAPSHOT_MAX_AGE)
        {
            return Ok(());
        }
        self.release()?;
        self.conn
            .execute_batch("BEGIN")
            .map_err(sql("starting a read snapshot"))?;
        self.snapshot = Some(std::time::Instant::now());
        Ok(())
    }
}

/// The row at `key` in the connection's current view.
fn select_row(conn: &Connection, key: i64) -> Result<Option<Vec<u8>>, String> {
    conn.prepare_cached("SELECT hashes FROM nodes WHERE key = ?1")
        .and_then(|mut stmt| stmt.query_row([key], |r| r.get(0)).optional())
        .map_err(sql("reading a row"))
}

impl ReadPool {
    /// A pool over the cache at `path` (nothing opened yet).
    pub fn new(path: PathBuf) -> ReadPool {
        ReadPool {
            path,
            idle: Mutex::new(Idle::default()),
        }
    }

    /// Runs `f` on a connection from the pool (opened if none is idle). A connection whose
    /// `f` failed is dropped, not pooled: its transaction state is unknown.
    fn with<T>(&self, f: impl FnOnce(&mut Reader) -> Result<T, String>) -> Result<T, String> {
        let (reader, generation) = {
            let mut idle = lock(&self.idle);
            (idle.readers.pop(), idle.generation)
        };
        let mut reader = match reader {
            Some(reader) => reader,
            None => Reader {
                conn: Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(sql("opening the tree cache to read"))?,
                snapshot: None,
                generation,
            },
        };
        let out = f(&mut reader);
        if out.is_ok() {
            let mut idle = lock(&self.idle);
            if idle.readers.len() < POOLED_READERS && reader.generation == idle.generation {
                idle.readers.push(reader);
            }
        }
        out
    }

    /// The complete row at `key`, its seal checked and cut off; `None` if absent.
    pub fn row(&self, key: i64) -> Result<Option<Vec<u8>>, CacheReadError> {
        let stored = self
            .with(|reader| {
                reader.hold()?;
                if let Some(row) = select_row(&reader.conn, key)? {
                    return Ok(Some(row));
                }
                // Written after this snapshot began, perhaps: look again in a fresh one.
                reader.release()?;
                reader.hold()?;
                select_row(&reader.conn, key)
            })
            .map_err(CacheReadError::Sql)?;
        stored
            .map(|stored| unseal(&row_context(key), stored))
            .transpose()
            .map_err(|e| CacheReadError::Damaged(format!("row {key}: {e}")))
    }

    /// A feed's edge blob as of the last flush, its seal checked and cut off.
    pub fn edge(&self, id: u64) -> Result<Option<(u64, Vec<u8>)>, CacheReadError> {
        let stored = self
            .with(|reader| {
                reader.release()?;
                reader
                    .conn
                    .prepare_cached("SELECT size, edge FROM feeds WHERE id = ?1")
                    .and_then(|mut stmt| {
                        stmt.query_row([to_i64(id).unwrap_or(-1)], |r| {
                            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                        })
                        .optional()
                    })
                    .map_err(sql("reading an edge"))
            })
            .map_err(CacheReadError::Sql)?;
        let Some((size, stored)) = stored else {
            return Ok(None);
        };
        let size = u64::try_from(size)
            .map_err(|_| CacheReadError::Damaged(format!("feed {id}'s size is {size}")))?;
        let edge = unseal(&edge_context(id, size), stored)
            .map_err(|e| CacheReadError::Damaged(format!("feed {id}'s edge: {e}")))?;
        Ok(Some((size, edge)))
    }

    /// Closes the idle connections, and those in use once handed back (the file is about
    /// to be replaced).
    pub fn clear(&self) {
        let mut idle = lock(&self.idle);
        idle.readers.clear();
        idle.generation += 1;
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::checksum::seal;
    use crate::tree::db::tests::{put_row, writer};
    use crate::tree::db::{edge_context, TREE_FILE};
    use rusqlite::params;

    /// Writes feed `id`'s edge of `size`, sealed.
    fn put_edge(w: &Connection, id: u64, size: u64, edge: &[u8]) {
        w.execute(
            "INSERT OR REPLACE INTO feeds VALUES (?1, ?2, ?3, ?4)",
            params![
                id as i64,
                vec![id as u8; 32],
                size as i64,
                seal(&edge_context(id, size), edge)
            ],
        )
        .unwrap();
    }

    /// Flips one bit of column `column` of the rows `filter` selects in `table`.
    fn flip_bit(w: &Connection, table: &str, column: &str, filter: &str, byte: usize) {
        let (rowid, mut blob): (i64, Vec<u8>) = w
            .query_row(
                &format!("SELECT rowid, {column} FROM {table} WHERE {filter}"),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        blob[byte] ^= 0x10;
        w.execute(
            &format!("UPDATE {table} SET {column} = ?1 WHERE rowid = ?2"),
            params![blob, rowid],
        )
        .unwrap();
    }

    /// A row committed after a reader's snapshot began is found at once, not after the
    /// snapshot ages out: readers are published sizes only once their rows are committed,
    /// so a held snapshot that hid the row would answer "row missing" for a valid proof.
    #[test]
    fn a_row_written_after_the_snapshot_began_is_read_from_a_fresh_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TREE_FILE);
        let w = writer(&path);
        put_row(&w, 1, &[1]);
        let pool = ReadPool::new(path);
        // Holds a snapshot in which row 2 does not exist yet.
        assert_eq!(pool.row(1).unwrap(), Some(vec![1]));
        put_row(&w, 2, &[2]);
        assert_eq!(pool.row(2).unwrap(), Some(vec![2]));
        assert_eq!(pool.row(3).unwrap(), None, "an absent row is still absent");
    }

    /// An edge read sees the last flush even while row reads hold an older snapshot.
    #[test]
    fn an_edge_read_sees_the_last_commit_whatever_snapshot_rows_hold() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TREE_FILE);
        let w = writer(&path);
        put_row(&w, 1, &[1]);
        put_edge(&w, 7, 1, &[0x10]);
        let pool = ReadPool::new(path);
        assert_eq!(pool.row(1).unwrap(), Some(vec![1]));
        put_edge(&w, 7, 2, &[0x20]);
        assert_eq!(pool.edge(7).unwrap(), Some((2, vec![0x20])));
    }

    /// A flipped bit anywhere in a stored row or edge, a row under another key, or an
    /// edge under another size reads as damage, never as hashes.
    #[test]
    fn a_damaged_row_or_edge_reads_as_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TREE_FILE);
        let w = writer(&path);
        let row: Vec<u8> = (0..super::super::layout::ROW_BYTES)
            .map(|i| i as u8)
            .collect();
        for key in [1, 2, 3] {
            put_row(&w, key, &row);
        }
        put_edge(&w, 7, 3, &[0x33; 64]);
        put_edge(&w, 8, 5, &[0x55; 96]);
        let pool = ReadPool::new(path);
        assert_eq!(pool.row(1).unwrap().as_deref(), Some(row.as_slice()));
        assert_eq!(pool.edge(8).unwrap(), Some((5, vec![0x55; 96])));

        flip_bit(&w, "nodes", "hashes", "key = 1", 1_000);
        w.execute("UPDATE nodes SET key = 9 WHERE key = 2", [])
            .unwrap();
        flip_bit(&w, "feeds", "edge", "id = 7", 63);
        w.execute("UPDATE feeds SET size = 6 WHERE id = 8", [])
            .unwrap();
        for key in [1, 9] {
            assert!(
                matches!(pool.row(key), Err(CacheReadError::Damaged(_))),
                "row {key}: {:?}",
                pool.row(key)
            );
        }
        for id in [7, 8] {
            assert!(
                matches!(pool.edge(id), Err(CacheReadError::Damaged(_))),
                "edge {id}"
            );
        }
        assert_eq!(pool.row(3).unwrap().as_deref(), Some(row.as_slice()));
    }

    /// A connection in use when the file is replaced is closed when handed back: it would
    /// read the old file's rows under the new file's numbering.
    #[test]
    fn a_connection_opened_before_a_clear_is_not_pooled_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TREE_FILE);
        let w = writer(&path);
        put_row(&w, 1, &[1]);
        let pool = ReadPool::new(path);
        let in_use = pool
            .with(|reader| {
                pool.clear();
                Ok(reader.generation)
            })
            .unwrap();
        let idle = lock(&pool.idle);
        assert_eq!(idle.readers.len(), 0, "the old connection was dropped");
        assert_eq!(idle.generation, in_use + 1);
    }
}
