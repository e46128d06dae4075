//! [`IndexDb`]: the index database of one data directory, opened by its one writer.
//!
//! [`IndexDb::open`] resumes the file when [`super::check`] says it is this log's index,
//! and otherwise deletes it and starts an empty one (rebuilt, never repaired);
//! [`IndexDb::catch_up`] then reads the log from where `meta` says the index covers it to
//! the store's committed end and writes the rows in batches, one transaction each, with
//! `meta` in the same transaction. Dropping it leaves `clean` at 0, as a crash does: only
//! [`IndexDb::close`] marks the file closed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use rusqlite::{Connection, OpenFlags};

use crate::entry::Entry;
use crate::hash::Hash;
use crate::identity::Author;
use crate::store::format::FILE_HEADER_BYTES;
use crate::store::{StoreError, StoreReader};

pub use super::batch::{BATCH_DATA_BYTES, BATCH_ROWS};

use super::batch::{read_batches, Batch};
use super::check::{self, Stale};
use super::indexes;
use super::row::Row;
use super::schema::{self, Meta};
use super::wal::{self, Checkpoint};

/// The index's directory inside the data directory; nothing else lives in it.
pub const INDEX_DIR: &str = "index";
/// The database file in [`INDEX_DIR`] (SQLite keeps `-wal` and `-shm` beside it).
pub const INDEX_FILE: &str = "index.sqlite";

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
    /// An entry could not be written as a row: an index expression failed on it (the
    /// caller finds which index, drops it and tries again: see [`super::indexes`]).
    #[error("the entry {author}/{seq} could not be indexed: {message}")]
    RowRefused {
        /// The entry's author, hex.
        author: String,
        /// Its seq.
        seq: u64,
        /// SQLite's message.
        message: String,
        /// The entry and its hash, to try it again.
        entry: Box<(Entry, Hash)>,
    },
    /// The thread reading the log panicked.
    #[error("the log reader thread panicked")]
    ReaderPanicked,
}

impl IndexError {
    /// Whether this is a write the disk refused (full, an I/O error, no memory) rather than
    /// something wrong with the file: SQLite rolled the transaction back, the file and
    /// `meta` are as the last commit left them, and the same connection can try again once
    /// the disk has room. Never a reason to rebuild.
    pub fn is_write_refused(&self) -> bool {
        matches!(self, IndexError::Sqlite(e) if write_refused(e))
    }
}

/// [`IndexError::is_write_refused`] of SQLite's error `e`.
fn write_refused(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::{DiskFull, OutOfMemory, SystemIoFailure};
    matches!(
        e.sqlite_error_code(),
        Some(DiskFull | SystemIoFailure | OutOfMemory)
    )
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
    /// The `-wal` file, whose size [`wal::bound`] keeps in check.
    wal: PathBuf,
    /// Where the log's records are decoded: rayon's global pool (all cores, for a rebuild
    /// by hand), or a pool of the caller's ([`IndexDb::decode_on`]).
    decode: Option<Arc<rayon::ThreadPool>>,
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
        match Self::resume(&path, node, reader)? {
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
        Ok(IndexDb {
            conn,
            meta,
            wal: wal::wal_path(&path),
            decode: None,
        })
    }

    /// The file at `path` if it can be resumed, or why not; `Err` when the disk refused a
    /// write ([`IndexError::is_write_refused`]): the file may be sound, and deleting it
    /// would lose what queries still answer from, so the caller tries again later.
    fn resume(
        path: &Path,
        node: &Author,
        reader: &StoreReader,
    ) -> Result<Result<IndexDb, Stale>, IndexError> {
        if !path.exists() {
            return Ok(Err(Stale::Missing));
        }
        let db = Self::resume_sound(path, node, reader);
        match db {
            Err(Resume::Refused(e)) => Err(e),
            Err(Resume::Stale(stale)) => Ok(Err(stale)),
            Ok(db) => Ok(Ok(db)),
        }
    }

    fn resume_sound(path: &Path, node: &Author, reader: &StoreReader) -> Result<IndexDb, Resume> {
        // A read that fails says the file is unreadable, unless the disk is full (opening
        // creates the `-wal` and `-shm` files); a write the disk refuses says nothing of it.
        let classify = |e: rusqlite::Error, refused: bool| {
            if refused {
                Resume::Refused(IndexError::Sqlite(e))
            } else {
                Resume::Stale(Stale::Unreadable(e.to_string()))
            }
        };
        let unreadable = |e: rusqlite::Error| {
            let full = e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull);
            classify(e, full)
        };
        let unwritable = |e: rusqlite::Error| {
            let refused = write_refused(&e);
            classify(e, refused)
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(unreadable)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(unreadable)?;
        if version != schema::LAYOUT_VERSION {
            return Err(Stale::Layout { found: version }.into());
        }
        let clean = schema::read_meta(&conn).map(|m| m.clean).unwrap_or(false);
        if !clean {
            let verdict: String = conn
                .pragma_query_value(None, "quick_check", |row| row.get(0))
                .map_err(unreadable)?;
            if verdict != "ok" {
                return Err(Stale::Damaged(verdict).into());
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
        schema::configure_writer(&conn).map_err(unwritable)?;
        schema::write_clean(&conn, false).map_err(unwritable)?;
        Ok(IndexDb {
            conn,
            meta: Meta {
                clean: false,
                ..meta
            },
            wal: wal::wal_path(path),
            decode: None,
        })
    }

    /// Decodes the log's records on `pool` rather than on rayon's global pool. A running
    /// node's indexer does: the global pool is where sync verifies the signatures of what it
    /// receives, and a walk of the log there makes replication wait for it.
    pub fn decode_on(&mut self, pool: Arc<rayon::ThreadPool>) {
        self.decode = Some(pool);
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
            let decode = self.decode.clone();
            let walk = scope.spawn(move || match decode {
                Some(pool) => pool.install(|| read_batches(reader, from, to, forked, &send)),
                None => read_batches(reader, from, to, forked, &send),
            });
            for batch in batches.iter() {
                self.write_batch(&batch)?;
                done.read += batch.read;
                done.indexed += batch.rows.len() as u64;
                committed(self.coverage(), batch.read);
                // After the coverage is published: a checkpoint that fails (a full disk)
                // does not hide from readers a batch already committed.
                self.bound_wal()?;
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
                match stmt.execute(Row::project(entry, hash).params().as_slice()) {
                    Ok(_) => {}
                    Err(e) if indexes::is_statement_error(&e) => {
                        return Err(IndexError::RowRefused {
                            author: entry.author.to_hex(),
                            seq: entry.seq,
                            message: match e {
                                rusqlite::Error::SqliteFailure(_, Some(m)) => m,
                                e => e.to_string(),
                            },
                            entry: Box::new((entry.clone(), *hash)),
                        })
                    }
                    Err(e) => return Err(e.into()),
                }
                meta.last = Some((*offset, *hash));
            }
        }
        meta.covered = batch.covered;
        schema::write_meta(&tx, &meta)?;
        tx.commit()?;
        self.meta = meta;
        Ok(())
    }

    /// The views' indexes that exist: name and statement ([`indexes::present`]).
    pub fn view_indexes(&self) -> Result<Vec<(String, String)>, IndexError> {
        Ok(indexes::present(&self.conn)?)
    }

    /// Drops the index `name`.
    pub fn drop_index(&self, name: &str) -> Result<(), IndexError> {
        Ok(indexes::drop_index(&self.conn, name)?)
    }

    /// Builds the index `statement` ([`indexes::build`]), then keeps the WAL under its
    /// bound: a build is one transaction that writes the whole index into the WAL, and
    /// readers look every page up there until it is checkpointed.
    pub fn build_index(
        &mut self,
        statement: &str,
        progress: indexes::Progress,
    ) -> Result<(), indexes::BuildError> {
        indexes::build(&mut self.conn, statement, progress)?;
        self.bound_wal().map_err(|e| match e {
            IndexError::Sqlite(e) => indexes::BuildError::Sqlite(e),
            other => indexes::BuildError::Refused(other.to_string()),
        })
    }

    /// Which of the indexes `names` refuses `entry` ([`indexes::culprit`]).
    pub fn culprit(
        &mut self,
        entry: &Entry,
        hash: &Hash,
        names: &[String],
    ) -> Result<Option<String>, IndexError> {
        let row = Row::project(entry, hash);
        Ok(indexes::culprit(
            &mut self.conn,
            schema::INSERT_ROW,
            row.params().as_slice(),
            names,
        )?)
    }

    /// Keeps the `-wal` file under its bound after a batch ([`wal`]).
    fn bound_wal(&self) -> Result<(), IndexError> {
        match wal::bound(&self.conn, &self.wal)? {
            Checkpoint::Under | Checkpoint::Truncated => {}
            Checkpoint::Busy => tracing::debug!(
                "readers kept the index's WAL checkpoint from finishing; retried after the next batch"
            ),
        }
        Ok(())
    }

    /// Marks the file closed cleanly (the next open skips its check) and closes it.
    pub fn close(self) -> Result<(), IndexError> {
        schema::write_clean(&self.conn, true)?;
        self.conn.close().map_err(|(_, e)| IndexError::Sqlite(e))
    }
}

/// Why [`IndexDb::resume_sound`] did not resume: the file is stale (rebuild it), or the
/// disk refused a write (leave it, try again).
enum Resume {
    Stale(Stale),
    Refused(IndexError),
}

impl From<Stale> for Resume {
    fn from(stale: Stale) -> Resume {
        Resume::Stale(stale)
    }
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
