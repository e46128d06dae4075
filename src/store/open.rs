//! Opening the log file: header check, the recovery scan of [`super::format`], and the
//! rebuild of the in-memory index (with the hash-chain check, and the table of recent
//! idempotency keys for a writable open).
//!
//! # What a writable open changes, and how it fails
//!
//! A writable open changes the file in two cases only, and does so through the store's
//! [`LogIo`] (so tests can make each call fail):
//!
//! - a file shorter than its header (new, or a crash while creating it): the header is
//!   written at offset 0 and fdatasynced. If that write or sync fails, the open cuts the
//!   file back to 0 bytes (best effort) so the next open writes the header afresh instead
//!   of trusting bytes whose sync failed;
//! - a torn tail: cut with `set_len`, the cut fdatasynced, and the file's length checked
//!   against the cut. Only then is the cut reported in [`OpenReport`].
//!
//! Then every writable open fsyncs the directory, so the log file's directory entry is
//! durable before the writer acknowledges anything in it, even if the open that created
//! the file failed at that very step.
//!
//! Any failure fails the open with [`StoreError::Io`], naming the operation, the file and
//! the OS error. Nothing an open does can lose an acknowledged record: the cut only
//! removes bytes past the last intact record (never acknowledged, see the recovery rule),
//! so a later open that finds the cut undone, or half done, simply makes it again.

use std::fs::{File, OpenOptions};
use std::ops::ControlFlow;
use std::path::Path;

use super::format::{self, classify_fault, Damage, FaultKind, RecordFault, ScanStop};
use super::index::Index;
use super::io::LogIo;
use super::{OpenReport, StoreError};
use crate::validate;

/// The log file's name inside the data directory.
pub const LOG_FILE: &str = "entries.log";

/// An open log file with its index, ready for a reader or the writer.
pub struct Opened {
    pub file: File,
    /// The header's store format version (1 until a keyed record is written).
    pub version: u32,
    pub index: Index,
    pub report: OpenReport,
}

/// Opens (creating if `writable` and missing) and recovers the log in `dir`; a writable
/// open makes its changes through `io`.
pub fn open_log(dir: &Path, writable: bool, io: &dyn LogIo) -> Result<Opened, StoreError> {
    let path = dir.join(LOG_FILE);
    let ctx = |what: &str| format!("{what} {}", path.display());
    let file = if writable {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::io(format!("create directory {}", dir.display()), e))?;
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
    } else {
        File::open(&path)
    }
    .map_err(|e| StoreError::io(ctx("open"), e))?;
    let file_len = io.len(&file).map_err(|e| StoreError::io(ctx("stat"), e))?;
    let mut report = OpenReport::default();

    if file_len < format::FILE_HEADER_BYTES {
        let opened = open_short(&path, file, file_len, writable, io)?;
        if writable {
            sync_dir(dir, io)?;
        }
        return Ok(opened);
    }
    let mut header = [0u8; 12];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut header, 0)
        .map_err(|e| StoreError::io(ctx("read header of"), e))?;
    let version = format::parse_file_header(&header).map_err(|reason| StoreError::BadHeader {
        path: path.clone(),
        reason,
    })?;

    let mut index = Index::new(format::FILE_HEADER_BYTES);
    // A value-only record is 166 bytes; most logs are close to that, and the map is shrunk
    // to fit after the scan anyway.
    index.reserve(usize::try_from(file_len / 166).unwrap_or(0));
    let mut valid_end = format::FILE_HEADER_BYTES;
    let mut damage: Option<Result<Damage, FaultKind>> = None;
    let stop = format::walk(&file, file_len, |records| {
        for record in records {
            let format::Record { entry, hash, key } = match record.decoded {
                Ok(decoded) => decoded,
                Err(RecordFault::Note) => {
                    if let Some(author) = record.note {
                        report.fork_notes.insert(author);
                    }
                    valid_end = record.end;
                    continue;
                }
                Err(RecordFault::BadChecksum) => {
                    damage = Some(Err(FaultKind::BadChecksum { end: record.end }));
                    valid_end = record.offset;
                    return Ok(ControlFlow::Break(()));
                }
                Err(fault @ RecordFault::Undecodable(_)) => {
                    damage = Some(Ok(Damage::Corrupt {
                        offset: record.offset,
                        reason: format::fault_reason(&fault),
                    }));
                    return Ok(ControlFlow::Break(()));
                }
            };
            let head = index.head(&entry.author);
            if let Err(e) = validate::check_shape(&entry)
                .and_then(|()| validate::check_link(&entry, head.as_ref()))
            {
                damage = Some(Ok(Damage::Corrupt {
                    offset: record.offset,
                    reason: format!("broken hash chain of feed {}: {e}", entry.author),
                }));
                return Ok(ControlFlow::Break(()));
            }
            index.insert(&entry, &hash, record.offset);
            // Only the writer looks keys up (to answer retries); a read-only open keeps no
            // table.
            if let (Some(key), true) = (&key, writable) {
                index.keys.insert(key, record.offset);
            }
            valid_end = record.end;
        }
        Ok(ControlFlow::Continue(()))
    })
    .map_err(|e| StoreError::io(ctx("read"), e))?;

    if damage.is_none() && stop == ScanStop::Clean {
        // Every byte is an intact record, trailing commit markers included.
        valid_end = file_len;
    }
    let verdict = match (damage, stop) {
        (Some(Ok(damage)), _) => Some(damage),
        (Some(Err(kind)), _) => Some(
            classify_fault(&file, file_len, valid_end, &kind)
                .map_err(|e| StoreError::io(ctx("read"), e))?,
        ),
        (None, ScanStop::Clean) => None,
        (None, ScanStop::Fault { offset, kind }) => Some(
            classify_fault(&file, file_len, offset, &kind)
                .map_err(|e| StoreError::io(ctx("read"), e))?,
        ),
    };
    let verdict = match verdict {
        Some(Damage::TornTail { offset }) => Some(
            tail_or_damage(&file, file_len, offset).map_err(|e| StoreError::io(ctx("read"), e))?,
        ),
        other => other,
    };
    match verdict {
        None => {}
        Some(Damage::Corrupt { offset, reason }) => {
            return Err(StoreError::Corrupt {
                path,
                offset,
                reason,
            })
        }
        Some(Damage::TornTail { offset }) => {
            valid_end = offset;
            let dropped = file_len - offset;
            report.truncated_at = Some(offset);
            report.truncated_bytes = dropped;
            if writable {
                tracing::warn!(path = %path.display(), offset, bytes = dropped, "truncating a torn tail");
                cut_torn_tail(&path, &file, offset, io)?;
            } else {
                tracing::info!(path = %path.display(), offset, bytes = dropped, "ignoring an incomplete tail (read-only open)");
            }
        }
    }
    if writable {
        sync_dir(dir, io)?;
    }
    index.end = valid_end;
    index.shrink_to_fit();
    report.entries = index.entries;
    report.feeds = index.feeds.len();
    Ok(Opened {
        file,
        version,
        index,
        report,
    })
}

/// Cuts the torn tail at `offset`, syncs the cut and checks the file's length: the cut is
/// reported done only when all three succeeded.
fn cut_torn_tail(path: &Path, file: &File, offset: u64, io: &dyn LogIo) -> Result<(), StoreError> {
    let ctx = |what: &str| {
        format!(
            "{what} the torn tail at offset {offset} of {}",
            path.display()
        )
    };
    io.set_len(file, offset)
        .map_err(|e| StoreError::io(ctx("cut"), e))?;
    // fdatasync covers the file's new length: it is the metadata a later read needs.
    io.sync_data(file)
        .map_err(|e| StoreError::io(ctx("sync the cut of"), e))?;
    let len = io
        .len(file)
        .map_err(|e| StoreError::io(ctx("check the length after cutting"), e))?;
    if len != offset {
        return Err(StoreError::io(
            ctx("check the length after cutting"),
            std::io::Error::other(format!("the file is {len} bytes after the cut")),
        ));
    }
    Ok(())
}

/// Makes the log file's directory entry durable (see the module docs for why on every
/// writable open).
fn sync_dir(dir: &Path, io: &dyn LogIo) -> Result<(), StoreError> {
    io.sync_dir(dir)
        .map_err(|e| StoreError::io(format!("sync directory {}", dir.display()), e))
}

/// A record at `offset` that the format's shape rules would call a torn tail is damage if
/// an intact commit marker follows it: the marker was written only after every byte before
/// it was synced, so those bytes were acknowledged, and a crash cannot have torn them.
fn tail_or_damage(file: &File, file_len: u64, offset: u64) -> std::io::Result<Damage> {
    Ok(match format::find_marker(file, offset + 1, file_len)? {
        None => Damage::TornTail { offset },
        Some(marker) => Damage::Corrupt {
            offset,
            reason: format!(
                "record is not intact, and a commit marker at offset {marker} shows it was synced before (acknowledged data, not a torn tail)"
            ),
        },
    })
}

/// A file shorter than its header: new, or a crash while creating it. A prefix of the header
/// (or zeros) is rewritten; anything else is not our file.
fn open_short(
    path: &Path,
    file: File,
    file_len: u64,
    writable: bool,
    io: &dyn LogIo,
) -> Result<Opened, StoreError> {
    let ctx = |what: &str| format!("{what} {}", path.display());
    let mut existing = vec![0u8; usize::try_from(file_len).unwrap_or(0)];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut existing, 0)
        .map_err(|e| StoreError::io(ctx("read header of"), e))?;
    let header = format::file_header();
    let is_prefix = header.starts_with(&existing) || existing.iter().all(|&b| b == 0);
    if !is_prefix {
        return Err(StoreError::BadHeader {
            path: path.to_path_buf(),
            reason: format!("file is {file_len} bytes, shorter than the 12-byte header"),
        });
    }
    let mut report = OpenReport::default();
    if file_len > 0 {
        report.truncated_at = Some(0);
        report.truncated_bytes = file_len;
    }
    if writable {
        if file_len > 0 {
            tracing::warn!(path = %path.display(), bytes = file_len, "rewriting a torn file header");
        }
        // The header covers every byte of the shorter file, so no cut is needed first.
        let written = io
            .write_all_at(&file, &header, 0)
            .map_err(|e| StoreError::io(ctx("write the header of"), e))
            .and_then(|()| {
                io.sync_data(&file)
                    .map_err(|e| StoreError::io(ctx("sync the header of"), e))
            });
        if let Err(e) = written {
            // After a failed sync the kernel may have dropped the header's page: leave an
            // empty file, which the next open fills afresh, rather than a header nobody
            // knows is on disk. Nothing else is in the file, so nothing is lost.
            if let Err(cut) = io.set_len(&file, 0) {
                tracing::warn!(path = %path.display(), error = %cut, "could not empty the log file after its header failed");
            }
            return Err(e);
        }
    }
    Ok(Opened {
        file,
        version: format::STORE_FORMAT_VERSION,
        index: Index::new(format::FILE_HEADER_BYTES),
        report,
    })
}
