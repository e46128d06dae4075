//! The log file's byte layout, and the scan that recovers it on open.
//!
//! # File layout, format version 1
//!
//! The log is one file, `entries.log`, in the data directory. All integers in the framing are
//! **little-endian** (the entry bytes inside a payload keep their own big-endian layout, see
//! [`crate::entry`]).
//!
//! File header, 12 bytes, written once when the file is created:
//!
//! | offset | size | field                                   |
//! |--------|------|-----------------------------------------|
//! | 0      | 8    | magic: the ASCII bytes `kappalog`       |
//! | 8      | 4    | u32 store format version, currently `1` |
//!
//! Then zero or more records, back to back, each:
//!
//! | offset | size | field                                                        |
//! |--------|------|--------------------------------------------------------------|
//! | 0      | 4    | u32 payload length `n`, in `[MIN_ENCODED_BYTES, MAX_ENCODED_BYTES]` |
//! | 4      | 4    | u32 crc32c (Castagnoli) of the `n` payload bytes             |
//! | 8      | n    | payload: one encoded entry, [`Entry::encode`] (`body || signature`) |
//!
//! A value-only entry (no data) is 158 payload bytes, 166 bytes on disk. Records of all feeds
//! are interleaved in commit order; within a feed, seqs appear in order 1, 2, 3, ... and each
//! record's `prev` is the hash of the feed's previous record (the hash chain).
//!
//! # Recovery rule
//!
//! The scan walks records from offset 12. A record is *intact* when its 8-byte header and its
//! payload lie inside the file, its length is within the limits, and its checksum matches.
//! Let `o` be the offset of the first record that is not intact. The bytes from `o` to the
//! end of the file are a **torn tail** (a write cut short by a crash) exactly when one of:
//!
//! 1. the header or the payload extends past the end of the file;
//! 2. every byte from `o` to the end of the file is zero (the file system extended the file
//!    but the data never reached the disk);
//! 3. the length is within limits, the checksum does not match, and the record ends at the
//!    end of the file or is followed only by zero bytes.
//!
//! A writable open truncates a torn tail (and syncs the truncation), logs a warning with the
//! offset and byte count, and reports both in the [`super::OpenReport`]. A read-only open
//! treats the tail as the end of the log and leaves the file alone (a writer may be in the
//! middle of appending it).
//!
//! Anything else is **damage** and the open fails with [`super::StoreError::Corrupt`] naming
//! the byte offset of the record: a bad checksum or an out-of-range length with non-zero
//! bytes after it, an intact record whose payload does not decode, or an intact record that
//! breaks its feed's hash chain (seq not next, prev not the previous hash, recomputed from
//! the bytes). Entries are never dropped silently: only a torn tail is cut, and that is
//! reported. Signatures are not re-verified on open (every record was verified before it was
//! written); [`super::StoreReader::verify_all`] re-checks them.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use rayon::prelude::*;

use crate::entry::{Entry, MAX_ENCODED_BYTES, MIN_ENCODED_BYTES};
use crate::hash::Hash;

/// The file's first 8 bytes.
pub const MAGIC: &[u8; 8] = b"kappalog";
/// The store format version in the file header.
pub const STORE_FORMAT_VERSION: u32 = 1;
/// Bytes of the file header: magic + version.
pub const FILE_HEADER_BYTES: u64 = 12;
/// Bytes of a record header: length + checksum.
pub const RECORD_HEADER_BYTES: usize = 8;
/// The longest record on disk.
pub const MAX_RECORD_BYTES: usize = RECORD_HEADER_BYTES + MAX_ENCODED_BYTES;
/// How much of the file the scan reads (and decodes in parallel) at a time. Two chunks'
/// decoded records are alive at once (one applied while the next decodes), and memory the
/// allocator keeps after a scan scales with this, so it is kept small: 2 MiB is ~12,000
/// value-only records, plenty to keep both cores busy.
pub const SCAN_CHUNK_BYTES: usize = 2 << 20;

/// The 12 header bytes of a new file.
pub fn file_header() -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..8].copy_from_slice(MAGIC);
    out[8..].copy_from_slice(&STORE_FORMAT_VERSION.to_le_bytes());
    out
}

/// Appends one record (header + encoded entry) to `out`.
pub fn encode_record(entry: &Entry, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER_BYTES]);
    entry.encode_to(out);
    let payload = &out[start + RECORD_HEADER_BYTES..];
    // Encoded entries of validated data are at most MAX_ENCODED_BYTES, far below u32::MAX.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let crc = crc32c::crc32c(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Parses a record header: the payload length if it is within limits, and the checksum.
pub fn parse_record_header(header: &[u8; RECORD_HEADER_BYTES]) -> (Option<usize>, u32) {
    let mut len = [0u8; 4];
    len.copy_from_slice(&header[..4]);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&header[4..]);
    let len = usize::try_from(u32::from_le_bytes(len))
        .ok()
        .filter(|len| (MIN_ENCODED_BYTES..=MAX_ENCODED_BYTES).contains(len));
    (len, u32::from_le_bytes(crc))
}

/// Why a record's payload was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordFault {
    BadChecksum,
    Undecodable(String),
}

/// Checks a payload's checksum and decodes it.
pub fn decode_payload(payload: &[u8], crc: u32) -> Result<(Entry, Hash), RecordFault> {
    if crc32c::crc32c(payload) != crc {
        return Err(RecordFault::BadChecksum);
    }
    Entry::decode(payload).map_err(|e| RecordFault::Undecodable(e.to_string()))
}

/// Reads one record at `offset` with positional reads; `end` bounds it (the committed end).
pub fn read_record_at(file: &File, offset: u64, end: u64) -> Result<(Entry, Hash), ReadFault> {
    let mut header = [0u8; RECORD_HEADER_BYTES];
    let payload_at = offset
        .checked_add(RECORD_HEADER_BYTES as u64)
        .filter(|&p| p <= end)
        .ok_or(ReadFault::Bad(
            "record header past the end of the log".into(),
        ))?;
    file.read_exact_at(&mut header, offset)
        .map_err(ReadFault::Io)?;
    let (len, crc) = parse_record_header(&header);
    let len = len.ok_or(ReadFault::Bad("record length out of range".into()))?;
    if payload_at.saturating_add(len as u64) > end {
        return Err(ReadFault::Bad(
            "record payload past the end of the log".into(),
        ));
    }
    let mut payload = vec![0u8; len];
    file.read_exact_at(&mut payload, payload_at)
        .map_err(ReadFault::Io)?;
    decode_payload(&payload, crc).map_err(|f| ReadFault::Bad(fault_reason(&f)))
}

/// Why a positional read of a record failed.
#[derive(Debug)]
pub enum ReadFault {
    Io(io::Error),
    Bad(String),
}

pub fn fault_reason(fault: &RecordFault) -> String {
    match fault {
        RecordFault::BadChecksum => "checksum mismatch".into(),
        RecordFault::Undecodable(e) => format!("undecodable entry: {e}"),
    }
}

/// One complete record found by the walk, decoded (or not) in parallel.
pub struct Scanned {
    pub offset: u64,
    /// Offset just past the record.
    pub end: u64,
    pub decoded: Result<(Entry, Hash), RecordFault>,
}

/// Where the walk of the file stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanStop {
    /// Every byte up to the end of the file is an intact record.
    Clean,
    /// The record at `offset` is not intact; classify it with [`classify_fault`].
    Fault { offset: u64, kind: FaultKind },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Header or payload extends past the end of the file.
    PastEof,
    /// The length field is outside the limits.
    BadLength(u32),
    /// The checksum does not match; the record spans up to `end`.
    BadChecksum { end: u64 },
}

/// The verdict on a non-intact record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// A torn tail from `offset` to the end of the file.
    TornTail { offset: u64 },
    /// Damage before the tail: the open must fail.
    Corrupt { offset: u64, reason: String },
}

/// Applies the module's recovery rule to a non-intact record.
pub fn classify_fault(
    file: &File,
    file_len: u64,
    offset: u64,
    kind: &FaultKind,
) -> io::Result<Damage> {
    let torn = match kind {
        FaultKind::PastEof => true,
        FaultKind::BadLength(_) => is_zero_from(file, offset, file_len)?,
        FaultKind::BadChecksum { end } => *end >= file_len || is_zero_from(file, *end, file_len)?,
    };
    if torn {
        return Ok(Damage::TornTail { offset });
    }
    let reason = match kind {
        FaultKind::PastEof => unreachable_reason(),
        FaultKind::BadLength(len) => format!(
            "record length {len} outside [{MIN_ENCODED_BYTES}, {MAX_ENCODED_BYTES}] with data after it"
        ),
        FaultKind::BadChecksum { .. } => "checksum mismatch with data after the record".into(),
    };
    Ok(Damage::Corrupt { offset, reason })
}

fn unreachable_reason() -> String {
    // PastEof always classifies as a torn tail above; keep a truthful message regardless.
    "record extends past the end of the file".into()
}

/// Whether every byte of `file` in `[from, to)` is zero.
pub fn is_zero_from(file: &File, from: u64, to: u64) -> io::Result<bool> {
    let mut buf = vec![0u8; 1 << 16];
    let mut at = from;
    while at < to {
        let n = usize::try_from((to - at).min(buf.len() as u64)).unwrap_or(buf.len());
        file.read_exact_at(&mut buf[..n], at)?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

/// Walks the file from the first record to `file_len` in chunks, handing each chunk's
/// decoded records (checksummed and decoded in parallel, in file order) to `apply`. `apply`
/// returns `Break` to stop early (for instance at a broken chain). Returns where the walk
/// stopped. Memory is bounded by two chunks, not the file size.
///
/// `apply` (serial: index updates, chain checks) runs on one chunk while the next chunk is
/// decoded on the other cores, so the serial part does not leave them idle.
pub fn walk(
    file: &File,
    file_len: u64,
    mut apply: impl FnMut(Vec<Scanned>) -> io::Result<std::ops::ControlFlow<()>> + Send,
) -> io::Result<ScanStop> {
    let mut pos = FILE_HEADER_BYTES;
    let mut buf = vec![0u8; SCAN_CHUNK_BYTES];
    // The previous chunk's records, applied while this chunk decodes.
    let mut decoded: Option<Vec<Scanned>> = None;
    while pos < file_len {
        let n = usize::try_from((file_len - pos).min(SCAN_CHUNK_BYTES as u64))
            .unwrap_or(SCAN_CHUNK_BYTES);
        file.read_exact_at(&mut buf[..n], pos)?;
        let chunk = &buf[..n];
        let chunk_is_last = pos + n as u64 >= file_len;
        let mut at = 0usize;
        let mut spans = Vec::new();
        let mut stop = None;
        loop {
            let Some(header) = chunk.get(at..at + RECORD_HEADER_BYTES) else {
                if at < n && chunk_is_last {
                    stop = Some(FaultKind::PastEof);
                }
                break;
            };
            let mut h = [0u8; RECORD_HEADER_BYTES];
            h.copy_from_slice(header);
            let (len, crc) = parse_record_header(&h);
            let Some(len) = len else {
                let mut raw = [0u8; 4];
                raw.copy_from_slice(&h[..4]);
                stop = Some(FaultKind::BadLength(u32::from_le_bytes(raw)));
                break;
            };
            let end = at + RECORD_HEADER_BYTES + len;
            if end > n {
                if chunk_is_last {
                    stop = Some(FaultKind::PastEof);
                }
                break;
            }
            spans.push((at, end, crc));
            at = end;
        }
        let previous = decoded.take();
        let (scanned, applied) = rayon::join(
            || -> Vec<Scanned> {
                spans
                    .par_iter()
                    .map(|&(start, end, crc)| Scanned {
                        offset: pos + start as u64,
                        end: pos + end as u64,
                        decoded: decode_payload(&chunk[start + RECORD_HEADER_BYTES..end], crc),
                    })
                    .collect()
            },
            || previous.map_or(Ok(std::ops::ControlFlow::Continue(())), &mut apply),
        );
        if applied?.is_break() {
            return Ok(ScanStop::Clean);
        }
        let consumed = at;
        if stop.is_some() || consumed == 0 {
            // The walk ends in this chunk: its records go first, then the fault.
            if apply(scanned)?.is_break() {
                return Ok(ScanStop::Clean);
            }
        } else {
            decoded = Some(scanned);
        }
        if let Some(kind) = stop {
            return Ok(ScanStop::Fault {
                offset: pos + consumed as u64,
                kind,
            });
        }
        if consumed == 0 {
            // A chunk always holds at least one whole record (SCAN_CHUNK_BYTES is far above
            // MAX_RECORD_BYTES), so no progress means the tail past `pos` is incomplete.
            return Ok(ScanStop::Fault {
                offset: pos,
                kind: FaultKind::PastEof,
            });
        }
        pos += consumed as u64;
    }
    if let Some(last) = decoded {
        // A `Break` here needs no handling: the walk is over either way.
        let _ = apply(last)?;
    }
    Ok(ScanStop::Clean)
}
