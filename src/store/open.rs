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
//! Every read the open makes (the header, the recovery scan, and the searches that tell a
//! torn tail from damage) goes through `io` too. A failed read fails the open: it is never
//! taken for a torn tail, so nothing is cut because the disk could not be read.
//!
//! Any failure fails the open with [`StoreError::Io`], naming the operation, the file and
//! the OS error. Nothing an open does can lose an acknowledged record: the cut only
//! removes bytes past the last intact record (never acknowledged, see the recovery rule),
//! so a later open that finds the cut undone, or half done, simply makes it again.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::path::Path;

use super::format::{self, classify_fault, Damage, FaultKind, RecordFault, ScanStop};
use super::index::Index;
use super::io::{read_exact_at, LogFile, LogIo, OpenMode};
use super::{OpenReport, StoreError};
use crate::identity::Author;
use crate::validate;

/// The log file's name inside the data directory.
pub const LOG_FILE: &str = "entries.log";

/// An open log file with its index, ready for a reader or the writer.
pub struct Opened {
    /// The log file, open for reading (and writing, for the writer).
    pub file: LogFile,
    /// The header's store format version (the writer raises a 1 or 2 to 3 before its first
    /// write).
    pub version: u32,
    /// The index of every intact entry, `end` just past the last one kept.
    pub index: Index,
    /// What the open found, for the caller to log.
    pub report: OpenReport,
}

/// Opens (creating if `writable` and missing) and recovers the log in `dir`. A writable open
/// makes its changes through `io`; every open reads through it.
pub fn open_log(dir: &Path, writable: bool, io: &dyn LogIo) -> Result<Opened, StoreError> {
    let path = dir.join(LOG_FILE);
    let file = open_file(dir, &path, writable, io)?;
    let len = io
        .len(&file)
        .map_err(|e| StoreError::io(format!("stat {}", path.display()), e))?;
    if len < format::FILE_HEADER_BYTES {
        let opened = open_short(&path, file, len, writable, io)?;
        if writable {
            sync_dir(dir, io)?;
        }
        return Ok(opened);
    }
    let log = Log {
        path: &path,
        file: &file,
        len,
        io,
    };
    let version = log.read_header()?;
    let mut report = OpenReport::default();
    let Scan {
        mut index,
        mut valid_end,
        stop,
    } = scan(&log, writable, &mut report.fork_notes)?;
    match judge(&log, stop)? {
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
            let dropped = len - offset;
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

/// Opens the file through `io` (a writable open creates it, and its directory, when
/// missing).
fn open_file(
    dir: &Path,
    path: &Path,
    writable: bool,
    io: &dyn LogIo,
) -> Result<LogFile, StoreError> {
    let mode = if writable {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::io(format!("create directory {}", dir.display()), e))?;
        OpenMode::ReadWrite
    } else {
        OpenMode::Read
    };
    io.open(path, mode)
        .map_err(|e| StoreError::io(format!("open {}", path.display()), e))
}

/// The log file being opened, at least a header long, with the seam its reads go through.
struct Log<'a> {
    path: &'a Path,
    file: &'a LogFile,
    len: u64,
    io: &'a dyn LogIo,
}

impl Log<'_> {
    /// A failed read fails the open: it is never taken for a torn tail.
    fn read_error(&self, e: std::io::Error) -> StoreError {
        StoreError::io(format!("read {}", self.path.display()), e)
    }

    /// The header's store format version.
    fn read_header(&self) -> Result<u32, StoreError> {
        let mut header = [0u8; 12];
        read_exact_at(self.io, self.file, &mut header, 0)
            .map_err(|e| StoreError::io(format!("read header of {}", self.path.display()), e))?;
        format::parse_file_header(&header).map_err(|reason| StoreError::BadHeader {
            path: self.path.to_path_buf(),
            reason,
        })
    }
}

/// What the recovery scan found.
struct Scan {
    index: Index,
    /// Where the intact records end.
    valid_end: u64,
    /// The first record that is not intact, if any.
    stop: Option<Stop>,
}

/// Why the scan stopped before the end of the file.
enum Stop {
    /// Damage whatever follows: an undecodable record, a broken hash chain.
    Damage(Damage),
    /// A record that is not intact: torn tail or damage, by the recovery rule.
    Fault { offset: u64, kind: FaultKind },
    /// A read the scan made besides the walk's failed (a replacement's current copy): the
    /// open fails, as for any failed read.
    Read(std::io::Error),
}

/// Walks every record into a new index (a writable open also keeps the idempotency keys),
/// stopping at the first that is not intact or breaks its feed's chain.
fn scan(
    log: &Log<'_>,
    writable: bool,
    fork_notes: &mut BTreeSet<Author>,
) -> Result<Scan, StoreError> {
    let mut index = Index::new(format::FILE_HEADER_BYTES);
    // A value-only record is 166 bytes; most logs are close to that, and the map is shrunk
    // to fit after the scan anyway.
    index.reserve(usize::try_from(log.len / 166).unwrap_or(0));
    let mut valid_end = format::FILE_HEADER_BYTES;
    let mut stop = None;
    let walked = format::walk(log.io, log.file, log.len, |records| {
        for record in records {
            match admit(log, &mut index, record, writable, fork_notes) {
                Ok(end) => valid_end = end,
                Err(found) => {
                    stop = Some(found);
                    return Ok(ControlFlow::Break(()));
                }
            }
        }
        Ok(ControlFlow::Continue(()))
    })
    .map_err(|e| log.read_error(e))?;
    let stop = match (stop, walked) {
        (Some(found), _) => Some(found),
        (None, ScanStop::Fault { offset, kind }) => Some(Stop::Fault { offset, kind }),
        (None, ScanStop::Clean) => {
            // Every byte is an intact record, trailing commit markers included.
            valid_end = log.len;
            None
        }
    };
    Ok(Scan {
        index,
        valid_end,
        stop,
    })
}

/// Takes one scanned record: `Ok` with the offset just past it, or why the scan stops at it.
fn admit(
    log: &Log<'_>,
    index: &mut Index,
    record: format::Scanned,
    writable: bool,
    fork_notes: &mut BTreeSet<Author>,
) -> Result<u64, Stop> {
    let format::Record {
        entry,
        hash,
        key,
        replacement,
    } = match record.decoded {
        Ok(decoded) => decoded,
        Err(RecordFault::Note) => {
            if let Some(author) = record.note {
                fork_notes.insert(author);
            }
            return Ok(record.end);
        }
        Err(RecordFault::BadChecksum) => {
            return Err(Stop::Fault {
                offset: record.offset,
                kind: FaultKind::BadChecksum { end: record.end },
            })
        }
        Err(fault @ RecordFault::Undecodable(_)) => {
            return Err(Stop::Damage(Damage::Corrupt {
                offset: record.offset,
                reason: format::fault_reason(&fault),
            }))
        }
    };
    if replacement {
        admit_replacement(log, index, &entry, &hash, record.offset)?;
        return Ok(record.end);
    }
    let head = index.head(&entry.author);
    if let Err(e) =
        validate::check_shape(&entry).and_then(|()| validate::check_link(&entry, head.as_ref()))
    {
        return Err(Stop::Damage(Damage::Corrupt {
            offset: record.offset,
            reason: format!("broken hash chain of feed {}: {e}", entry.author),
        }));
    }
    index.insert(&entry, &hash, record.offset);
    // Only the writer looks keys up (to answer retries); a read-only open keeps no table.
    if let (Some(key), true) = (&key, writable) {
        index.keys.insert(key, record.offset);
    }
    Ok(record.end)
}

/// Takes a replacement record (docs/STORE.md, "Recovery rule"): it must name an entry the
/// log holds before it, with the same entry hash (recomputed from the bytes) and a
/// signature other than the current copy's, or it is damage, like a chain break. The current
/// copy is read back to compare (one read per replacement record, which only a misbehaving
/// author's feed has). Signatures are not verified here, as for every record on open.
fn admit_replacement(
    log: &Log<'_>,
    index: &mut Index,
    entry: &crate::entry::Entry,
    hash: &crate::hash::Hash,
    offset: u64,
) -> Result<(), Stop> {
    let damage = |reason: String| {
        Stop::Damage(Damage::Corrupt {
            offset,
            reason: format!(
                "replacement record of feed {} seq {}: {reason}",
                entry.author, entry.seq
            ),
        })
    };
    let original = index
        .feeds
        .get(&entry.author)
        .and_then(|feed| feed.offset_of(entry.seq))
        .ok_or_else(|| damage("the log holds no such entry before it".into()))?;
    let current = index.current(original);
    let held =
        format::read_record_at(log.io, log.file, current, offset).map_err(|fault| match fault {
            format::ReadFault::Io(e) => Stop::Read(e),
            format::ReadFault::Bad(reason) => damage(format!("the copy it replaces: {reason}")),
        })?;
    if held.hash != *hash {
        return Err(damage(format!(
            "entry hash {hash}, the log holds {} at that seq",
            held.hash
        )));
    }
    if held.entry.signature == entry.signature {
        return Err(damage("the same signature as the copy it replaces".into()));
    }
    index.replace(original, offset);
    Ok(())
}

/// The recovery rule's verdict on what stopped the scan (`None`: nothing did).
fn judge(log: &Log<'_>, stop: Option<Stop>) -> Result<Option<Damage>, StoreError> {
    let damage = match stop {
        None => return Ok(None),
        Some(Stop::Damage(damage)) => damage,
        Some(Stop::Read(e)) => return Err(log.read_error(e)),
        Some(Stop::Fault { offset, kind }) => {
            classify_fault(log.io, log.file, log.len, offset, &kind)
                .map_err(|e| log.read_error(e))?
        }
    };
    Ok(Some(match damage {
        Damage::TornTail { offset } => tail_or_damage(log, offset)?,
        corrupt => corrupt,
    }))
}

/// Cuts the torn tail at `offset`, syncs the cut and checks the file's length: the cut is
/// reported done only when all three succeeded.
fn cut_torn_tail(
    path: &Path,
    file: &LogFile,
    offset: u64,
    io: &dyn LogIo,
) -> Result<(), StoreError> {
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
fn tail_or_damage(log: &Log<'_>, offset: u64) -> Result<Damage, StoreError> {
    let marker = format::find_marker(log.io, log.file, offset + 1, log.len)
        .map_err(|e| log.read_error(e))?;
    Ok(match marker {
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
    file: LogFile,
    file_len: u64,
    writable: bool,
    io: &dyn LogIo,
) -> Result<Opened, StoreError> {
    let ctx = |what: &str| format!("{what} {}", path.display());
    let mut existing = vec![0u8; usize::try_from(file_len).unwrap_or(0)];
    read_exact_at(io, &file, &mut existing, 0)
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
