//! Opening the log file: header check, the recovery scan of [`super::format`], and the
//! rebuild of the in-memory index (with the hash-chain check, and the table of recent
//! idempotency keys for a writable open).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::ControlFlow;
use std::path::Path;

use super::format::{self, classify_fault, Damage, FaultKind, RecordFault, ScanStop};
use super::index::Index;
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

/// Opens (creating if `writable` and missing) and recovers the log in `dir`.
pub fn open_log(dir: &Path, writable: bool) -> Result<Opened, StoreError> {
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
    let file_len = file
        .metadata()
        .map_err(|e| StoreError::io(ctx("stat"), e))?
        .len();
    let mut report = OpenReport::default();

    if file_len < format::FILE_HEADER_BYTES {
        return open_short(dir, &path, file, file_len, writable);
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
                file.set_len(offset)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| StoreError::io(ctx("truncate"), e))?;
            } else {
                tracing::info!(path = %path.display(), offset, bytes = dropped, "ignoring an incomplete tail (read-only open)");
            }
        }
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
    dir: &Path,
    path: &Path,
    mut file: File,
    file_len: u64,
    writable: bool,
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
        file.set_len(0)
            .and_then(|()| file.write_all(&header))
            .and_then(|()| file.sync_all())
            .map_err(|e| StoreError::io(ctx("write header of"), e))?;
        // Make the new file's directory entry durable too.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StoreError::io(format!("sync directory {}", dir.display()), e))?;
    }
    Ok(Opened {
        file,
        version: format::STORE_FORMAT_VERSION,
        index: Index::new(format::FILE_HEADER_BYTES),
        report,
    })
}
