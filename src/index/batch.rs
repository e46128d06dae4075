//! The log read for the indexer in batches, on a thread of its own while the last batch is
//! written: each batch at most [`BATCH_ROWS`] rows or [`BATCH_DATA_BYTES`] of data, with
//! the log position it covers once written.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::mpsc;

use crate::entry::Entry;
use crate::hash::Hash;
use crate::identity::Author;
use crate::store::format::SCAN_CHUNK_BYTES;
use crate::store::{StoreError, StoreReader};

/// Rows written per transaction, at most: large enough that a commit's cost does not show
/// per row, small enough that a reader sees progress and a stop is prompt.
pub const BATCH_ROWS: usize = 10_000;
/// Data bytes per transaction, at most: bounds a batch's memory when entries are large.
pub const BATCH_DATA_BYTES: usize = 8 << 20;

/// Records read from the log and the coverage once they are written.
pub(super) struct Batch {
    /// The entries to index, with the offset of each one's record.
    pub rows: Vec<(u64, Entry, Hash)>,
    /// Entry records read for this batch (forked ones included).
    pub read: u64,
    /// Where the next record after this batch starts (or the end read to).
    pub covered: u64,
}

/// The log's records in `[from, to)` as batches on `send`, entries of `forked` authors
/// left out. Ends early, without error, when the receiver is gone.
pub(super) fn read_batches(
    reader: &StoreReader,
    from: u64,
    to: u64,
    forked: &BTreeSet<Author>,
    send: &mpsc::SyncSender<Batch>,
) -> Result<(), StoreError> {
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
