//! The index's write-ahead log, kept bounded while readers never stop (docs/QUERY.md).
//!
//! SQLite's automatic checkpoint (PASSIVE, when a commit leaves the WAL 1,000 pages long)
//! copies into the database only the frames no reader still needs, and the WAL starts over
//! from its beginning only when a checkpoint copied every frame and no reader uses any. A
//! node whose queries overlap, one starting before the last ends, never gives it that
//! moment ("checkpoint starvation"): every commit appends, and the `-wal` file grows with
//! every batch for as long as the queries keep coming.
//!
//! So after each batch the indexer looks at the `-wal` file's size, and once it is past
//! [`WAL_LIMIT_BYTES`] runs a TRUNCATE checkpoint: it copies every frame (waiting for the
//! readers of older snapshots to finish), then waits for the readers still on the WAL, then
//! empties the file. Readers that start meanwhile read the database file alone (the WAL is
//! all copied) and hold nothing up, so the wait is one query's length at most; it is
//! bounded by [`CHECKPOINT_WAIT_MS`] all the same, and a checkpoint that could not finish is
//! tried again after the next batch. Between two batches the file therefore stays under the
//! limit plus what one batch writes. Readers never wait for any of it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

/// Size of the `-wal` file past which the indexer checkpoints and truncates it after a
/// batch: 8 MiB, twice what SQLite's own checkpoint lets it reach when nothing reads, so a
/// node without steady readers never pays for it.
pub const WAL_LIMIT_BYTES: u64 = 8 << 20;

/// How long the checkpoint waits for readers still on the WAL: a query holds its snapshot
/// for at most its deadline, usually for milliseconds. The indexer, which waits, writes
/// nothing meanwhile (its lag grows by this much at most); appends never wait for it.
pub const CHECKPOINT_WAIT_MS: u64 = 250;

/// How long the index's writer waits for a lock otherwise (rusqlite's default, stated):
/// restored after a checkpoint.
pub const WRITER_BUSY_TIMEOUT_MS: u64 = 5_000;

/// What [`bound`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checkpoint {
    /// The file was under the limit: nothing to do.
    Under,
    /// Every frame copied and the file emptied.
    Truncated,
    /// Readers kept it from finishing within [`CHECKPOINT_WAIT_MS`]; tried again after the
    /// next batch.
    Busy,
}

/// The `-wal` file beside the database at `db`.
pub fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Checkpoints and truncates the WAL at `wal` of the writer `conn` when it is past
/// [`WAL_LIMIT_BYTES`]. Call it outside a transaction.
pub fn bound(conn: &Connection, wal: &Path) -> rusqlite::Result<Checkpoint> {
    // A missing file is an empty WAL (SQLite creates it at the next write).
    let size = std::fs::metadata(wal).map_or(0, |m| m.len());
    if size <= WAL_LIMIT_BYTES {
        return Ok(Checkpoint::Under);
    }
    conn.busy_timeout(Duration::from_millis(CHECKPOINT_WAIT_MS))?;
    let busy = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
        row.get::<_, i64>(0)
    });
    conn.busy_timeout(Duration::from_millis(WRITER_BUSY_TIMEOUT_MS))?;
    match busy {
        Ok(0) => Ok(Checkpoint::Truncated),
        Ok(_) => Ok(Checkpoint::Busy),
        // Another checkpoint under way (only this writer runs them, but a read-only
        // `kappalog query` recovering the WAL takes the same lock): try after the next batch.
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {
            Ok(Checkpoint::Busy)
        }
        Err(e) => Err(e),
    }
}
