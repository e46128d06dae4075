//! [`IndexDb`]: the index database of one data directory, opened by its one writer.
//!
//! [`IndexDb::open`] resumes the file when [`super::check`] says it is this log's index,
//! and otherwise deletes it and starts an empty one (rebuilt, never repaired);
//! [`IndexDb::catch_up`] then reads the log from where `meta` says the index covers it to
//! the store's committed end and writes the rows in batches, one transaction each, with
//! `meta` in the same transaction. Dropping it leaves `clean` at 0, as a crash does: only
//! [`IndexDb::close`] marks the file closed.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use rusqlite::{Connection, OpenFlags};

use crate::entry::Entry;
use crate::hash::Hash;
use crate::identity::Author;
use crate::store::format::{FILE_HEADER_BYTES, SCAN_CHUNK_BYTES};
use crate::store::{StoreError, StoreReader};

use super::check::{self, Stale};
use super::row::Row;
use super::schema::{self, Meta};

/// The index's directory inside the data directory; nothing else lives in it.
pub const INDEX_DIR: &str = "index";
/// The database file in [`INDEX_DIR`] (SQLite keeps `-wal` and `-shm` beside it).
pub const INDEX_FILE: &str = "index.sqlite";
/// Rows written per transaction, at most: large enough that a commit's cost does not show
/// per row, small enough that a reader sees progress and a stop is prompt.
pub const BATCH_ROWS: usize = 10_000;
/// Data bytes per transaction, at most: bounds a batch's memory when entries are large.
pub const BATCH_DATA_BYTES: usize = 8 << 20;

/// Why the index could not be opened, written or read.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// SQLite failed (a full disk, an I/O error).
    #[error("index database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Reading the log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Creating or deleting the index's files failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The thread reading the log panicked.
    #[error("the log reader thread panicked")]
    ReaderPanicked,
}

/// How far the index covers the log: what `meta` says after the last transaction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Every record before this byte offset of the log has been read (indexed, or skipped
    /// as a fork note or an entry of a forked author).
    pub covered: u64,
    /// Where the record of the last entry indexed (in log order) starts, and its hash:
    /// the tail cursor of `as_of`; `None` while no entry is indexed.
    pub last: Option<(u64, Hash)>,
}

impl Coverage {
    /// Whether the entry whose record starts at `offset` is covered (indexed or excluded).
    pub fn covers(&self, offset: u64) -> bool {
        self.covered > offset
    }
}

/// What one pass of [`IndexDb::catch_up`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaughtUp {
    /// Entry records read from the log.
    pub read: u64,
    /// Rows written (entries of forked authors are read, not written).
    pub indexed: u64,
    /// Whether the pass stopped early because it was asked to.
    pub stopped: bool,
}

/// The index database of one data directory, open for writing.
#[derive(Debug)]
pub struct IndexDb {
    conn: Connection,
    meta: Meta,
}

/// The index's file in `data_dir`.
pub fn index_path(data_dir: &Path) -> PathBuf {
    data_dir.join(INDEX_DIR).join(INDEX_FILE)
}

impl IndexDb {
    /// Opens the index of the log `reader` reads (node `node`) in `data_dir`: resumed when
    /// it is sound and this log's, else deleted and created empty; the second value says
    /// why it was (the caller logs it). The file is marked open (`clean` 0) until
    /// [`IndexDb::close`].
    pub fn open(
        data_dir: &Path,
        node: &Author,
        reader: &StoreReader,
    ) -> Result<(IndexDb, Option<Stale>), IndexError> {
        let path = index_path(data_dir);
        match Self::resume(&path, node, reader) {
            Ok(db) => Ok((db, None)),
            Err(stale) => Ok((Self::create(data_dir, node)?, Some(stale))),
        }
    }

    /// Deletes any index in `data_dir` and creates an empty one for node `node`.
    pub fn create(data_dir: &Path, node: &Author) -> Result<IndexDb, IndexError> {
        let dir = data_dir.join(INDEX_DIR);
        std::fs::create_dir_all(&dir).map_err(|source| IndexError::Io {
            what: "create",
            path: dir.clone(),
            source,
        })?;
        let path = dir.join(INDEX_FILE);
        remove_files(&path)?;
        let mut conn = Connection::open(&path)?;
        schema::configure_writer(&conn)?;
        // Covering nothing yet: the log's first record starts after its file header.
        let meta = Meta {
            node: *node,
            covered: FILE_HEADER_BYTES,
            last: None,
            clean: false,
        };
        schema::create(&mut conn, &meta)?;
        Ok(IndexDb { conn, meta })
    }

    /// The file at `path` if it can be resumed, or why not.
    fn resume(path: &Path, node: &Author, reader: &StoreReader) -> Result<IndexDb, Stale> {
        if !path.exists() {
            return Err(Stale::Missing);
        }
        let unreadable = |e: rusqlite::Error| Stale::Unreadable(e.to_string());
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(unreadable)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(unreadable)?;
        if version != schema::LAYOUT_VERSION {
            return Err(Stale::Layout { found: version });
        }
        let clean = schema::read_meta(&conn).map(|m| m.clean).unwrap_or(false);
        if !clean {
            let verdict: String = conn
                .pragma_query_value(None, "quick_check", |row| row.get(0))
                .map_err(unreadable)?;
            if verdict != "ok" {
                return Err(Stale::Damaged(verdict));
            }
        }
        let meta = schema::read_meta(&conn).map_err(Stale::BadMeta)?;
        let end = reader.committed_end();
        check::check(&meta, node, FILE_HEADER_BYTES, end, |offset| {
            reader
                .record_at(offset)
                .ok()
                .flatten()
                .map(|(_, hash, _)| hash)
        })?;
        schema::configure_writer(&conn).map_err(unreadable)?;
        schema::write_clean(&conn, false).map_err(unreadable)?;
        Ok(IndexDb {
            conn,
            meta: Meta {
                clean: false,
                ..meta
            },
        })
    }

    /// How far the index covers the log now.
    pub fn coverage(&self) -> Coverage {
        Coverage {
            covered: self.meta.covered,
            last: self.meta.last,
        }
    }

    /// Deletes every row of `authors` (found forked), in one transaction.
    pub fn forget<'a>(
        &mut self,
        authors: impl IntoIterator<Item = &'a Author>,
    ) -> Result<u64, IndexError> {
        let tx = self.conn.transaction()?;
        let mut deleted = 0;
        {
            let mut stmt = tx.prepare_cached("DELETE FROM entries WHERE author = ?1")?;
            for author in authors {
                deleted += stmt.execute([author.to_hex()])? as u64;
            }
        }
        tx.commit()?;
        Ok(deleted)
    }

    /// Reads the log from what the index covers to the committed end at call time, skipping
    /// entries of `forked` authors, and writes the rest in batches of at most
    /// [`BATCH_ROWS`]. After each batch's commit `committed` is told the coverage and how
    /// many records the batch read; `stop` is asked between batches. The log is read and
    /// decoded on a second thread while this one writes.
    pub fn catch_up(
        &mut self,
        reader: &StoreReader,
        forked: &BTreeSet<Author>,
        stop: &dyn Fn() -> bool,
        committed: &mut dyn FnMut(Coverage, u64),
    ) -> Result<CaughtUp, IndexError> {
        let from = self.meta.covered;
        let to = reader.committed_end();
        let mut done = CaughtUp::default();
        if from >= to {
            return Ok(done);
        }
        // Two batches in flight: one being decoded, one being written.
        let (send, batches) = mpsc::sync_channel::<Batch>(1);
        std::thread::scope(|scope| -> Result<CaughtUp, IndexError> {
            let walk = scope.spawn(move || read_batches(reader, from, to, forked, &send));
            for batch in batches.iter() {
                self.write_batch(&batch)?;
                done.read += batch.read;
                done.indexed += batch.rows.len() as u64;
                committed(self.coverage(), batch.read);
                if stop() {
                    done.stopped = true;
                    break;
                }
            }
            // Dropping the receiver ends the walk at its next batch.
            drop(batches);
            walk.join().map_err(|_| IndexError::ReaderPanicked)??;
            Ok(done)
        })
    }

    fn write_batch(&mut self, batch: &Batch) -> Result<(), IndexError> {
        let tx = self.conn.transaction()?;
        let mut meta = self.meta.clone();
        {
            let mut stmt = tx.prepare_cached(schema::INSERT_ROW)?;
            for (offset, entry, hash) in &batch.rows {
                stmt.execute(Row::project(entry, hash).params().as_slice())?;
                meta.last = Some((*offset, *hash));
            }
        }
        meta.covered = batch.covered;
        schema::write_meta(&tx, &meta)?;
        tx.commit()?;
        self.meta = meta;
        Ok(())
    }

    /// Marks the file closed cleanly (the next open skips its check) and closes it.
    pub fn close(self) -> Result<(), IndexError> {
        schema::write_clean(&self.conn, true)?;
        self.conn.close().map_err(|(_, e)| IndexError::Sqlite(e))
    }
}

/// Records read from the log and the coverage once they are written.
struct Batch {
    /// The entries to index, with the offset of each one's record.
    rows: Vec<(u64, Entry, Hash)>,
    /// Entry records read for this batch (forked ones included).
    read: u64,
    /// Where the next record after this batch starts (or the end read to).
    covered: u64,
}

/// The log's records in `[from, to)` as batches on `send`, entries of `forked` authors
/// left out. Ends early, without error, when the receiver is gone.
fn read_batches(
    reader: &StoreReader,
    from: u64,
    to: u64,
    forked: &BTreeSet<Author>,
    send: &mpsc::SyncSender<Batch>,
) -> Result<(), IndexError> {
    let mut rows = Vec::new();
    let mut read = 0u64;
    let mut data_bytes = 0usize;
    let mut gone = false;
    // A follower's pass is usually a few commits' worth: a chunk of its own size, not a
    // zeroed 2 MiB buffer per pass (the walk raises it to one whole record at least).
    let chunk_bytes =
        usize::try_from(to - from).map_or(SCAN_CHUNK_BYTES, |span| span.min(SCAN_CHUNK_BYTES));
    reader.for_each_record_between(from, to, chunk_bytes, |offset, entry, hash| {
        if rows.len() >= BATCH_ROWS || data_bytes >= BATCH_DATA_BYTES {
            // Every record before this one is read: the batch covers up to here.
            let batch = Batch {
                rows: std::mem::take(&mut rows),
                read: std::mem::take(&mut read),
                covered: offset,
            };
            data_bytes = 0;
            if send.send(batch).is_err() {
                gone = true;
                return ControlFlow::Break(());
            }
        }
        read += 1;
        if !forked.contains(&entry.author) {
            data_bytes += entry.data.len();
            rows.push((offset, entry.clone(), *hash));
        }
        ControlFlow::Continue(())
    })?;
    if !gone {
        // A closed receiver here only means the writer stopped first.
        let _ = send.send(Batch {
            rows,
            read,
            covered: to,
        });
    }
    Ok(())
}

/// Deletes the database file and SQLite's files beside it, where present.
fn remove_files(path: &Path) -> Result<(), IndexError> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = PathBuf::from(name);
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(IndexError::Io {
                    what: "delete",
                    path: file,
                    source,
                })
            }
        }
    }
    Ok(())
}
