//! The log file's byte layout, and the scan that recovers it on open.
//!
//! The format and the recovery rule are specified once, in docs/STORE.md ("On-disk
//! format" and "Recovery rule"): the file header, the record kinds the length field's flags
//! select, the checksum, the versions each kappalog reads, and when bytes that are not an
//! intact record are a torn tail and when they are damage. This module implements that
//! text, and its constants carry the names of the doc's table. `format_doc_tests.rs` reads
//! the doc and checks the table, the worked example and the recovery examples against this
//! code, so a change on one side that the other does not follow fails `cargo test`: change
//! both in the same commit (and a new record kind bumps the header version).
//!
//! Where each part of the doc lives here:
//!
//! - the file header: [`file_header`] (what a new file gets) and [`parse_file_header`]
//!   (which versions this code reads, and how it refuses the others);
//! - records: [`encode_keyed_record`] for entries with or without a key, [`encode_marker`]
//!   and [`encode_fork_note`] for the meta records; [`parse_record_header`] checks a length
//!   against the range of its flags before anything is allocated for the payload, and
//!   [`decode_payload`] and [`check_marker`] check the checksum and what the payload holds;
//! - recovery: [`walk`] scans the file in chunks of [`SCAN_CHUNK_BYTES`] (decoded on all
//!   cores, applied in file order) and stops at the first record that is not intact;
//!   [`classify_fault`] applies the torn-tail shapes (rules 1-3) and [`find_marker`] the
//!   "unless a marker follows" search; `super::open` runs them and checks the hash chains.

use std::io;

use rayon::prelude::*;

use super::io::{read_exact_at, LogFile, LogIo};

use crate::entry::{Entry, MAX_ENCODED_BYTES, MIN_ENCODED_BYTES};
use crate::hash::Hash;
use crate::idempotency::{IdempotencyKey, MAX_KEY_BYTES};
use crate::identity::Author;

/// The file's first 8 bytes.
pub const MAGIC: &[u8; 8] = b"kappalog";
/// The version of a file that holds entry records only (the kappalogs before commit
/// markers created files as one; this code creates [`STORE_FORMAT_VERSION`]).
pub const STORE_FORMAT_V1: u32 = 1;
/// The version of a file that may hold keyed records.
pub const STORE_FORMAT_V2: u32 = 2;
/// The version of a file that may hold keyed records and commit markers.
pub const STORE_FORMAT_V3: u32 = 3;
/// The version of a file that may hold replacement records too (another signature of an
/// entry already in the log, chosen by its author's checkpoint).
pub const STORE_FORMAT_V4: u32 = 4;
/// The newest version this code reads and writes.
pub const STORE_FORMAT_VERSION: u32 = STORE_FORMAT_V4;
/// Bytes of the file header: magic + version.
pub const FILE_HEADER_BYTES: u64 = 12;
/// Where the version sits in the header (the writer rewrites it when it upgrades the file).
pub const VERSION_OFFSET: u64 = 8;
/// Bytes of a record header: length field + checksum.
pub const RECORD_HEADER_BYTES: usize = 8;
/// Bit 31 of the length field: the payload ends with an idempotency key.
pub const KEY_FLAG: u32 = 1 << 31;
/// Bit 30 of the length field: the record is a meta record, a commit marker or a fork note
/// (format version 3).
pub const MARKER_FLAG: u32 = 1 << 30;
/// Bits 0-29 of the length field: the payload length, below both flags.
pub const LENGTH_MASK: u32 = !(KEY_FLAG | MARKER_FLAG);
/// A commit marker's payload: the u64 (little-endian) byte offset the marker starts at.
pub const MARKER_PAYLOAD_BYTES: usize = 8;
/// A fork note's payload: its own offset as in a marker, then the forked author's 32 bytes.
pub const FORK_NOTE_PAYLOAD_BYTES: usize = MARKER_PAYLOAD_BYTES + 32;
/// A commit marker on disk.
pub const MARKER_RECORD_BYTES: u64 = (RECORD_HEADER_BYTES + MARKER_PAYLOAD_BYTES) as u64;
/// The shortest keyed payload: the shortest entry, a 1-byte key and its length byte.
pub const MIN_KEYED_PAYLOAD_BYTES: usize = MIN_ENCODED_BYTES + 2;
/// The longest keyed payload: the longest entry, a 64-byte key and its length byte.
pub const MAX_KEYED_PAYLOAD_BYTES: usize = MAX_ENCODED_BYTES + MAX_KEY_BYTES + 1;
/// The longest record on disk.
pub const MAX_RECORD_BYTES: usize = RECORD_HEADER_BYTES + MAX_KEYED_PAYLOAD_BYTES;
/// How much of the file the scan reads (and decodes in parallel) at a time. Two chunks'
/// decoded records are alive at once (one applied while the next decodes), and memory the
/// allocator keeps after a scan scales with this, so it is kept small: 2 MiB is ~12,000
/// value-only records, plenty to keep both cores busy.
pub const SCAN_CHUNK_BYTES: usize = 2 << 20;

/// The 12 header bytes of a new file: the newest version (docs/STORE.md, "The header
/// version").
pub fn file_header() -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..8].copy_from_slice(MAGIC);
    out[8..].copy_from_slice(&STORE_FORMAT_VERSION.to_le_bytes());
    out
}

/// Checks a file header; returns its version (1 to 4), or why the file cannot be read.
pub fn parse_file_header(header: &[u8; 12]) -> Result<u32, String> {
    if &header[..8] != MAGIC {
        return Err("magic bytes are not \"kappalog\"".into());
    }
    let mut version = [0u8; 4];
    version.copy_from_slice(&header[8..]);
    match u32::from_le_bytes(version) {
        v @ (STORE_FORMAT_V1 | STORE_FORMAT_V2 | STORE_FORMAT_V3 | STORE_FORMAT_V4) => Ok(v),
        v if v > STORE_FORMAT_VERSION => Err(format!(
            "store format version {v} was written by a newer kappalog (this one reads versions 1 to 4): use a newer kappalog"
        )),
        v => Err(format!("unsupported store format version {v}")),
    }
}

/// Appends one record to `out`: keyed (flag set, `entry || key || k`) when `key` is given.
pub fn encode_keyed_record(entry: &Entry, key: Option<&IdempotencyKey>, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER_BYTES]);
    entry.encode_to(out);
    let mut field = 0;
    if let Some(key) = key {
        out.extend_from_slice(key.as_bytes());
        // A valid key is at most MAX_KEY_BYTES (64) long, so its length fits a byte.
        out.push(u8::try_from(key.len()).unwrap_or(u8::MAX));
        field = KEY_FLAG;
    }
    let payload = &out[start + RECORD_HEADER_BYTES..];
    // Payloads of validated entries and keys are at most MAX_KEYED_PAYLOAD_BYTES, far below
    // the flag bit.
    field |= u32::try_from(payload.len()).unwrap_or(!KEY_FLAG) & !KEY_FLAG;
    let crc = crc32c::crc32c(payload);
    out[start..start + 4].copy_from_slice(&field.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Appends a replacement record (both flags, format version 4) to `out`: `entry` is another
/// copy of the entry the log already holds at its author and seq, the same entry hash under
/// another signature, which from this record on is the copy every read returns.
pub fn encode_replacement(entry: &Entry, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER_BYTES]);
    entry.encode_to(out);
    let payload = &out[start + RECORD_HEADER_BYTES..];
    // An encoded entry is at most MAX_ENCODED_BYTES, far below the flag bits.
    let field = KEY_FLAG | MARKER_FLAG | (u32::try_from(payload.len()).unwrap_or(0) & LENGTH_MASK);
    let crc = crc32c::crc32c(payload);
    out[start..start + 4].copy_from_slice(&field.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Appends a commit marker for byte `offset` (where it is written) to `out`.
pub fn encode_marker(offset: u64, out: &mut Vec<u8>) {
    encode_meta(offset, &[], out);
}

/// Appends a fork note for `author`, written at byte `offset`, to `out`.
pub fn encode_fork_note(offset: u64, author: &Author, out: &mut Vec<u8>) {
    encode_meta(offset, &author.0, out);
}

/// A meta record: the flag, its own offset, then `tail`.
fn encode_meta(offset: u64, tail: &[u8], out: &mut Vec<u8>) {
    let mut payload = offset.to_le_bytes().to_vec();
    payload.extend_from_slice(tail);
    // Meta payloads are 8 or 40 bytes: far below the flag bits.
    let field = MARKER_FLAG | u32::try_from(payload.len()).unwrap_or(0);
    out.extend_from_slice(&field.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

/// The first byte offset in `[from, to)` where an intact commit marker naming that very
/// offset starts, if any. Used only when the open finds a record that is not intact: a
/// marker after it proves the bytes before the marker were synced (the recovery rule,
/// docs/STORE.md).
/// The search reads the file in chunks and tests every byte offset, because a damaged
/// length field leaves no framing to follow.
pub fn find_marker(io: &dyn LogIo, file: &LogFile, from: u64, to: u64) -> io::Result<Option<u64>> {
    let field = (MARKER_FLAG | MARKER_PAYLOAD_BYTES as u32).to_le_bytes();
    let record = usize::try_from(MARKER_RECORD_BYTES).unwrap_or(16);
    let mut buf = vec![0u8; SCAN_CHUNK_BYTES];
    let mut at = from;
    while at.saturating_add(MARKER_RECORD_BYTES) <= to {
        let n = usize::try_from((to - at).min(SCAN_CHUNK_BYTES as u64)).unwrap_or(record);
        read_exact_at(io, file, &mut buf[..n], at)?;
        let chunk = &buf[..n];
        for i in 0..=n.saturating_sub(record) {
            if chunk[i..i + 4] != field {
                continue;
            }
            let mut crc = [0u8; 4];
            crc.copy_from_slice(&chunk[i + 4..i + 8]);
            let payload = &chunk[i + 8..i + record];
            let mut named = [0u8; 8];
            named.copy_from_slice(payload);
            if crc32c::crc32c(payload) == u32::from_le_bytes(crc)
                && u64::from_le_bytes(named) == at + i as u64
            {
                return Ok(Some(at + i as u64));
            }
        }
        // Overlap by one record less a byte, so a marker across the chunk edge is seen.
        let step = n.saturating_sub(record - 1).max(1);
        at += step as u64;
    }
    Ok(None)
}

/// A parsed record header whose length is within the limits for its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Payload bytes.
    pub len: usize,
    /// The key flag: the payload ends with `key || k`.
    pub keyed: bool,
    /// The marker flag alone: a commit marker or a fork note, no entry.
    pub marker: bool,
    /// Both flags: a replacement record, whose payload is an encoded entry (no key) that
    /// replaces the copy of the same entry already in the log (`keyed` and `marker` are then
    /// false: the payload is laid out as an unkeyed entry's).
    pub replacement: bool,
    /// The CRC-32C the header claims for the payload (not yet checked).
    pub crc: u32,
}

/// Parses a record header. `Err` carries the raw length field when the length is outside
/// the limits for its flag (checked here, before anything is allocated for the payload).
pub fn parse_record_header(header: &[u8; RECORD_HEADER_BYTES]) -> Result<RecordHeader, u32> {
    let mut field = [0u8; 4];
    field.copy_from_slice(&header[..4]);
    let field = u32::from_le_bytes(field);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&header[4..]);
    // Both flags: a replacement record, laid out as an unkeyed entry (format version 4).
    let (keyed, marker, replacement, limits) =
        match (field & KEY_FLAG != 0, field & MARKER_FLAG != 0) {
            (false, false) => (false, false, false, MIN_ENCODED_BYTES..=MAX_ENCODED_BYTES),
            (true, false) => (
                true,
                false,
                false,
                MIN_KEYED_PAYLOAD_BYTES..=MAX_KEYED_PAYLOAD_BYTES,
            ),
            (false, true) => (
                false,
                true,
                false,
                MARKER_PAYLOAD_BYTES..=FORK_NOTE_PAYLOAD_BYTES,
            ),
            (true, true) => (false, false, true, MIN_ENCODED_BYTES..=MAX_ENCODED_BYTES),
        };
    let len = usize::try_from(field & LENGTH_MASK)
        .ok()
        .filter(|len| limits.contains(len))
        .filter(|&len| !marker || len == MARKER_PAYLOAD_BYTES || len == FORK_NOTE_PAYLOAD_BYTES)
        .ok_or(field)?;
    Ok(RecordHeader {
        len,
        keyed,
        marker,
        replacement,
        crc: u32::from_le_bytes(crc),
    })
}

/// One decoded record: the entry, its hash (computed from the bytes), the key it was
/// appended under, if any, and whether it is a replacement record (another copy of an entry
/// already in the log, not a new entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The decoded entry.
    pub entry: Entry,
    /// Its hash, computed from the record's entry bytes.
    pub hash: Hash,
    /// The idempotency key of a keyed record (own appends only).
    pub key: Option<IdempotencyKey>,
    /// A replacement record: `entry` replaces the copy of the same (author, seq, hash)
    /// earlier in the log; it is not a new entry.
    pub replacement: bool,
}

/// Why a record's payload was not accepted (or, `Note`, why it holds no entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordFault {
    /// The payload's CRC-32C is not the header's.
    BadChecksum,
    /// The checksum matches but the bytes are not an entry: why, as the decoder says it.
    Undecodable(String),
    /// An intact fork note: not an entry, not a fault (see [`Scanned::note`]).
    Note,
}

/// Checks a meta record found at `offset` (its checksum, and that it names `offset`), and
/// returns the fork note's author if it is one, `None` for a commit marker.
pub fn check_marker(
    payload: &[u8],
    header: &RecordHeader,
    offset: u64,
) -> Result<Option<Author>, RecordFault> {
    if crc32c::crc32c(payload) != header.crc {
        return Err(RecordFault::BadChecksum);
    }
    let mut named = [0u8; 8];
    named.copy_from_slice(payload.get(..8).ok_or(RecordFault::BadChecksum)?);
    match u64::from_le_bytes(named) {
        n if n == offset => {}
        n => {
            return Err(RecordFault::Undecodable(format!(
                "a meta record at offset {offset} names offset {n}"
            )))
        }
    }
    match payload.get(8..) {
        Some([]) => Ok(None),
        Some(author) => Author::try_from(author)
            .map(Some)
            .map_err(|e| RecordFault::Undecodable(format!("fork note: {e}"))),
        None => Err(RecordFault::BadChecksum),
    }
}

/// Checks a payload's checksum and decodes it (entry, and key if the header says keyed).
pub fn decode_payload(payload: &[u8], header: &RecordHeader) -> Result<Record, RecordFault> {
    let (entry_bytes, key) = entry_payload(payload, header)?;
    let (entry, hash) =
        Entry::decode(entry_bytes).map_err(|e| RecordFault::Undecodable(e.to_string()))?;
    Ok(Record {
        entry,
        hash,
        key,
        replacement: header.replacement,
    })
}

/// Checks a payload's checksum and that it holds an entry; returns the encoded entry's bytes
/// (not decoded) and the key if the header says keyed.
fn entry_payload<'a>(
    payload: &'a [u8],
    header: &RecordHeader,
) -> Result<(&'a [u8], Option<IdempotencyKey>), RecordFault> {
    if crc32c::crc32c(payload) != header.crc {
        return Err(RecordFault::BadChecksum);
    }
    if header.marker {
        return Err(RecordFault::Undecodable(
            "a commit marker where an entry was expected".into(),
        ));
    }
    if header.keyed {
        let (entry_bytes, key) = split_key(payload).map_err(RecordFault::Undecodable)?;
        Ok((entry_bytes, Some(key)))
    } else {
        Ok((payload, None))
    }
}

/// The encoded entry of the record at byte `at` of `bytes`, a copy of the log from some
/// offset up to at most the committed end: the same checks as [`read_record_span`] (the
/// record lies inside `bytes`, a length within its limits, its checksum, an entry rather than
/// a marker), but the entry is neither decoded nor hashed. For a reader that only passes the
/// bytes on (sync sends them as they are; the receiver decodes, hashes and verifies).
pub fn entry_bytes_at(bytes: &[u8], at: usize) -> Result<&[u8], String> {
    let header: &[u8; RECORD_HEADER_BYTES] = bytes
        .get(at..)
        .and_then(|rest| rest.get(..RECORD_HEADER_BYTES))
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| "record header past the end of the log".to_string())?;
    let header =
        parse_record_header(header).map_err(|_| "record length out of range".to_string())?;
    let payload = bytes
        .get(at + RECORD_HEADER_BYTES..)
        .and_then(|rest| rest.get(..header.len))
        .ok_or_else(|| "record payload past the end of the log".to_string())?;
    entry_payload(payload, &header)
        .map(|(entry_bytes, _)| entry_bytes)
        .map_err(|f| fault_reason(&f))
}

/// Splits a keyed payload into the entry bytes and the key.
fn split_key(payload: &[u8]) -> Result<(&[u8], IdempotencyKey), String> {
    let (&k, rest) = payload
        .split_last()
        .ok_or_else(|| "keyed payload is empty".to_string())?;
    let k = usize::from(k);
    if k == 0 || k > MAX_KEY_BYTES {
        return Err(format!("key length {k} outside [1, {MAX_KEY_BYTES}]"));
    }
    let at = rest
        .len()
        .checked_sub(k)
        .filter(|&at| at >= MIN_ENCODED_BYTES)
        .ok_or_else(|| format!("key length {k} leaves less than one entry before it"))?;
    let key = IdempotencyKey::try_from(&rest[at..]).map_err(|e| format!("bad key: {e}"))?;
    Ok((&rest[..at], key))
}

/// Reads one record at `offset` with positional reads through `io`; `end` bounds it (the
/// committed end).
pub fn read_record_at(
    io: &dyn LogIo,
    file: &LogFile,
    offset: u64,
    end: u64,
) -> Result<Record, ReadFault> {
    read_record_span(io, file, offset, end).map(|(record, _)| record)
}

/// As [`read_record_at`], also returning the offset just past the record.
pub fn read_record_span(
    io: &dyn LogIo,
    file: &LogFile,
    offset: u64,
    end: u64,
) -> Result<(Record, u64), ReadFault> {
    let mut header = [0u8; RECORD_HEADER_BYTES];
    let payload_at = offset
        .checked_add(RECORD_HEADER_BYTES as u64)
        .filter(|&p| p <= end)
        .ok_or(ReadFault::Bad(
            "record header past the end of the log".into(),
        ))?;
    read_exact_at(io, file, &mut header, offset).map_err(ReadFault::Io)?;
    let header = parse_record_header(&header)
        .map_err(|_| ReadFault::Bad("record length out of range".into()))?;
    if payload_at.saturating_add(header.len as u64) > end {
        return Err(ReadFault::Bad(
            "record payload past the end of the log".into(),
        ));
    }
    let mut payload = vec![0u8; header.len];
    read_exact_at(io, file, &mut payload, payload_at).map_err(ReadFault::Io)?;
    let record = decode_payload(&payload, &header).map_err(|f| ReadFault::Bad(fault_reason(&f)))?;
    Ok((record, payload_at + header.len as u64))
}

/// Why a positional read of a record failed.
#[derive(Debug)]
pub enum ReadFault {
    /// The read itself failed.
    Io(io::Error),
    /// The bytes read are not an intact entry record: why, as [`fault_reason`] words it.
    Bad(String),
}

/// Words a [`RecordFault`] for an error message (lowercase, no period).
pub fn fault_reason(fault: &RecordFault) -> String {
    match fault {
        RecordFault::BadChecksum => "checksum mismatch".into(),
        RecordFault::Undecodable(e) => format!("undecodable entry: {e}"),
        RecordFault::Note => "a fork note, not an entry".into(),
    }
}

/// One complete record found by the walk, decoded (or not) in parallel. Commit markers are
/// checked and skipped by the walk; fork notes are passed on.
pub struct Scanned {
    /// Offset of the record's header from the start of the file.
    pub offset: u64,
    /// Offset just past the record.
    pub end: u64,
    /// The record, or why its payload is not an entry.
    pub decoded: Result<Record, RecordFault>,
    /// A fork note (no entry): `decoded` is then `Err(RecordFault::Note)`.
    pub note: Option<Author>,
}

/// Where the walk of the file stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanStop {
    /// Every byte up to the end of the file is an intact record.
    Clean,
    /// The record at `offset` is not intact; classify it with [`classify_fault`].
    Fault {
        /// Offset of the record's header.
        offset: u64,
        /// How it is not intact.
        kind: FaultKind,
    },
}

/// How a record found by the walk is not intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Header or payload extends past the end of the file.
    PastEof,
    /// The length field (raw, flag included) is outside the limits for its flag.
    BadLength(u32),
    /// The checksum does not match; the record spans up to `end`.
    BadChecksum {
        /// Offset just past the record, as its length field says.
        end: u64,
    },
}

/// The verdict on a non-intact record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// A torn tail from `offset` to the end of the file.
    TornTail {
        /// Where the torn tail starts: the file is valid up to here.
        offset: u64,
    },
    /// Damage before the tail: the open must fail.
    Corrupt {
        /// Offset of the damaged record.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
}

/// Applies the torn-tail shapes of the recovery rule (docs/STORE.md, rules 1-3) to a
/// non-intact record; the open then searches a tail for a marker ([`find_marker`]).
pub fn classify_fault(
    io: &dyn LogIo,
    file: &LogFile,
    file_len: u64,
    offset: u64,
    kind: &FaultKind,
) -> io::Result<Damage> {
    let torn = match kind {
        FaultKind::PastEof => true,
        FaultKind::BadLength(_) => is_zero_from(io, file, offset, file_len)?,
        FaultKind::BadChecksum { end } => {
            *end >= file_len || is_zero_from(io, file, *end, file_len)?
        }
    };
    if torn {
        return Ok(Damage::TornTail { offset });
    }
    let reason = match kind {
        FaultKind::PastEof => unreachable_reason(),
        FaultKind::BadLength(field) => format!(
            "record length field 0x{field:08x} outside [{MIN_ENCODED_BYTES}, {MAX_ENCODED_BYTES}] (keyed: [{MIN_KEYED_PAYLOAD_BYTES}, {MAX_KEYED_PAYLOAD_BYTES}]) with data after it"
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
pub fn is_zero_from(io: &dyn LogIo, file: &LogFile, from: u64, to: u64) -> io::Result<bool> {
    let mut buf = vec![0u8; 1 << 16];
    let mut at = from;
    while at < to {
        let n = usize::try_from((to - at).min(buf.len() as u64)).unwrap_or(buf.len());
        read_exact_at(io, file, &mut buf[..n], at)?;
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
    io: &dyn LogIo,
    file: &LogFile,
    file_len: u64,
    apply: impl FnMut(Vec<Scanned>) -> io::Result<std::ops::ControlFlow<()>> + Send,
) -> io::Result<ScanStop> {
    walk_from(
        io,
        file,
        FILE_HEADER_BYTES,
        file_len,
        SCAN_CHUNK_BYTES,
        apply,
    )
}

/// As [`walk`], from the record starting at `from` (a record boundary: the caller knows
/// one, for instance from a checked tail cursor), reading `chunk_bytes` at a time (raised to
/// [`MAX_RECORD_BYTES`] so every chunk holds a whole record). The live tail replays with
/// small chunks: many replays may run at once.
pub fn walk_from(
    io: &dyn LogIo,
    file: &LogFile,
    from: u64,
    file_len: u64,
    chunk_bytes: usize,
    mut apply: impl FnMut(Vec<Scanned>) -> io::Result<std::ops::ControlFlow<()>> + Send,
) -> io::Result<ScanStop> {
    let chunk_bytes = chunk_bytes.max(MAX_RECORD_BYTES);
    let mut pos = from;
    let mut buf = vec![0u8; chunk_bytes];
    // The previous chunk's records, applied while this chunk decodes.
    let mut decoded: Option<Vec<Scanned>> = None;
    while pos < file_len {
        let n = usize::try_from((file_len - pos).min(chunk_bytes as u64)).unwrap_or(chunk_bytes);
        read_exact_at(io, file, &mut buf[..n], pos)?;
        let chunk = &buf[..n];
        let (spans, stop) = split_chunk(chunk, pos + n as u64 >= file_len);
        let consumed = spans.last().map_or(0, |span| span.end);
        let previous = decoded.take();
        let (scanned, applied) = rayon::join(
            || decode_spans(chunk, pos, &spans),
            || previous.map_or(Ok(std::ops::ControlFlow::Continue(())), &mut apply),
        );
        if applied?.is_break() {
            return Ok(ScanStop::Clean);
        }
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
            // A chunk always holds at least one whole record (it is at least
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

/// One record's place in a chunk: bytes `start..end` of it, and its parsed header.
struct Span {
    start: usize,
    end: usize,
    header: RecordHeader,
}

/// The whole records at the front of `chunk`, and why the split stopped before the chunk's
/// end, if that is a fault: a header with an impossible length, or (in the file's last
/// chunk only: elsewhere the next chunk holds the rest) a record running past the end.
fn split_chunk(chunk: &[u8], chunk_is_last: bool) -> (Vec<Span>, Option<FaultKind>) {
    let mut spans = Vec::new();
    let mut at = 0usize;
    loop {
        let Some(header) = chunk.get(at..at + RECORD_HEADER_BYTES) else {
            let fault = (at < chunk.len() && chunk_is_last).then_some(FaultKind::PastEof);
            return (spans, fault);
        };
        let mut h = [0u8; RECORD_HEADER_BYTES];
        h.copy_from_slice(header);
        let header = match parse_record_header(&h) {
            Ok(header) => header,
            Err(field) => return (spans, Some(FaultKind::BadLength(field))),
        };
        let end = at + RECORD_HEADER_BYTES + header.len;
        if end > chunk.len() {
            return (spans, chunk_is_last.then_some(FaultKind::PastEof));
        }
        spans.push(Span {
            start: at,
            end,
            header,
        });
        at = end;
    }
}

/// Checksums and decodes the records of a chunk that starts at file offset `pos`, on all
/// cores, in file order. Intact markers are left out (they hold no entry); a fork note is
/// passed on; a bad marker is a fault like any.
fn decode_spans(chunk: &[u8], pos: u64, spans: &[Span]) -> Vec<Scanned> {
    spans
        .par_iter()
        .filter_map(|span| {
            let offset = pos + span.start as u64;
            let payload = &chunk[span.start + RECORD_HEADER_BYTES..span.end];
            let (decoded, note) = if span.header.marker {
                match check_marker(payload, &span.header, offset) {
                    Ok(None) => return None,
                    Ok(Some(author)) => (Err(RecordFault::Note), Some(author)),
                    Err(fault) => (Err(fault), None),
                }
            } else {
                (decode_payload(payload, &span.header), None)
            };
            Some(Scanned {
                offset,
                end: pos + span.end as u64,
                decoded,
                note,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::UnsignedEntry;
    use crate::identity::Identity;
    use proptest::prelude::*;

    fn entry(seq: u64, data: &str) -> Entry {
        let id = Identity::from_seed([3; 32]);
        UnsignedEntry {
            author: id.author(),
            seq,
            timestamp: 1_700_000_000_000,
            prev: (seq > 1).then_some(Hash([7; 32])),
            value: -5,
            data: data.into(),
        }
        .sign(&id)
        .0
    }

    fn key(text: &str) -> IdempotencyKey {
        text.parse().unwrap()
    }

    /// Splits one encoded record into its parsed header and payload.
    fn split(record: &[u8]) -> (Result<RecordHeader, u32>, &[u8]) {
        let mut h = [0u8; RECORD_HEADER_BYTES];
        h.copy_from_slice(&record[..RECORD_HEADER_BYTES]);
        (parse_record_header(&h), &record[RECORD_HEADER_BYTES..])
    }

    /// A keyed record whose payload is replaced by `payload`, checksum recomputed.
    fn keyed_with_payload(payload: &[u8]) -> Vec<u8> {
        let field = KEY_FLAG | u32::try_from(payload.len()).unwrap();
        let mut out = field.to_le_bytes().to_vec();
        out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn decode(record: &[u8]) -> Result<Record, RecordFault> {
        let (header, payload) = split(record);
        decode_payload(payload, &header.expect("length within limits"))
    }

    #[test]
    fn an_unkeyed_record_is_the_version_1_layout() {
        let e = entry(2, "hi");
        let mut record = Vec::new();
        encode_keyed_record(&e, None, &mut record);
        let encoded = e.encode();
        let len = u32::try_from(encoded.len()).unwrap();
        assert_eq!(&record[..4], &len.to_le_bytes());
        assert_eq!(&record[4..8], &crc32c::crc32c(&encoded).to_le_bytes());
        assert_eq!(&record[8..], &encoded[..]);
        let decoded = decode(&record).unwrap();
        assert_eq!((decoded.entry, decoded.key), (e.clone(), None));
        assert_eq!(decoded.hash, e.hash());
    }

    #[test]
    fn a_keyed_record_holds_the_same_entry_bytes_then_the_key_and_its_length() {
        let e = entry(1, "");
        let k = key("order-17");
        let mut record = Vec::new();
        encode_keyed_record(&e, Some(&k), &mut record);
        let encoded = e.encode();
        let n = encoded.len() + 8 + 1;
        let field = u32::from_le_bytes(record[..4].try_into().unwrap());
        assert_eq!(field, KEY_FLAG | u32::try_from(n).unwrap());
        assert_eq!(&record[8..8 + encoded.len()], &encoded[..]);
        assert_eq!(&record[8 + encoded.len()..], b"order-17\x08");
        assert_eq!(
            &record[4..8],
            &crc32c::crc32c(&record[8..]).to_le_bytes(),
            "the checksum covers the key"
        );
        let decoded = decode(&record).unwrap();
        assert_eq!(decoded.entry, e);
        assert_eq!(decoded.hash, e.hash(), "the key is not hashed");
        assert_eq!(decoded.key, Some(k));
    }

    #[test]
    fn lengths_are_checked_against_the_limits_of_their_flag() {
        let header = |field: u32| {
            let mut h = [0u8; RECORD_HEADER_BYTES];
            h[..4].copy_from_slice(&field.to_le_bytes());
            parse_record_header(&h).map(|h| (h.len, h.keyed))
        };
        let (min, max) = (MIN_ENCODED_BYTES as u32, MAX_ENCODED_BYTES as u32);
        assert_eq!(header(min), Ok((126, false)));
        assert_eq!(header(max), Ok((4254, false)));
        assert_eq!(header(min - 1), Err(min - 1));
        assert_eq!(header(max + 1), Err(max + 1));
        assert_eq!(header(KEY_FLAG | (min + 2)), Ok((128, true)));
        assert_eq!(header(KEY_FLAG | (max + 65)), Ok((4319, true)));
        assert_eq!(header(KEY_FLAG | (min + 1)), Err(KEY_FLAG | (min + 1)));
        assert_eq!(header(KEY_FLAG | (max + 66)), Err(KEY_FLAG | (max + 66)));
        // Any other high bit makes the length itself out of range.
        assert_eq!(header(1 << 30 | min), Err(1 << 30 | min));
        assert_eq!(header(u32::MAX), Err(u32::MAX));
    }

    #[test]
    fn each_bad_key_trailer_is_undecodable() {
        let encoded = entry(2, "x").encode();
        let with = |trailer: &[u8]| {
            let mut payload = encoded.clone();
            payload.extend_from_slice(trailer);
            decode(&keyed_with_payload(&payload))
        };
        let undecodable = |r: Result<Record, RecordFault>, needle: &str| match r {
            Err(RecordFault::Undecodable(reason)) => {
                assert!(reason.contains(needle), "{reason} lacks {needle:?}")
            }
            other => panic!("expected Undecodable({needle}), got {other:?}"),
        };
        assert_eq!(with(b"ok\x02").unwrap().key, Some(key("ok")));
        undecodable(with(b"ok\x00"), "key length 0");
        let long = [b'a'; 65];
        undecodable(with(&[&long[..], &[65]].concat()), "key length 65");
        undecodable(with(b"a b\x03"), "0x20");
        // A length byte claiming the whole payload leaves no entry before the key.
        undecodable(with(&[b'k', 64]), "leaves less than one entry");
        // The key boundary is wrong by one: the entry part has a trailing byte.
        undecodable(with(b"ok\x01"), "trailing");
    }

    #[test]
    fn a_flipped_key_byte_fails_the_checksum() {
        let mut record = Vec::new();
        encode_keyed_record(&entry(1, ""), Some(&key("abc")), &mut record);
        let at = record.len() - 2;
        record[at] ^= 1;
        assert_eq!(decode(&record), Err(RecordFault::BadChecksum));
    }

    #[test]
    fn file_headers_of_versions_1_to_4_are_read_and_others_refused() {
        let with_version = |v: u32| {
            let mut h = file_header();
            h[8..].copy_from_slice(&v.to_le_bytes());
            parse_file_header(&h)
        };
        assert_eq!(parse_file_header(&file_header()), Ok(STORE_FORMAT_V4));
        assert_eq!(with_version(1), Ok(STORE_FORMAT_V1));
        assert_eq!(with_version(2), Ok(STORE_FORMAT_V2));
        assert_eq!(with_version(3), Ok(STORE_FORMAT_V3));
        let newer = with_version(5).unwrap_err();
        assert!(
            newer.contains(
                "version 5 was written by a newer kappalog (this one reads versions 1 to 4)"
            ),
            "{newer}"
        );
        assert_eq!(
            with_version(0),
            Err("unsupported store format version 0".into())
        );
        let mut foreign = file_header();
        foreign[0] = b'K';
        assert!(parse_file_header(&foreign).unwrap_err().contains("magic"));
    }

    #[test]
    fn a_marker_names_its_own_offset_and_is_never_an_entry() {
        let mut bytes = vec![0xAAu8; 5];
        encode_marker(5, &mut bytes);
        assert_eq!(bytes.len() as u64, 5 + MARKER_RECORD_BYTES);
        let (header, payload) = split(&bytes[5..]);
        let header = header.unwrap();
        assert!(header.marker && !header.keyed);
        assert_eq!(check_marker(payload, &header, 5), Ok(None));
        assert!(matches!(
            check_marker(payload, &header, 6),
            Err(RecordFault::Undecodable(reason)) if reason.contains("names offset 5")
        ));
        assert!(matches!(
            decode_payload(payload, &header),
            Err(RecordFault::Undecodable(_))
        ));
        // A fork note names its author.
        let author = crate::identity::Identity::from_seed([4; 32]).author();
        let mut note = Vec::new();
        encode_fork_note(0, &author, &mut note);
        let (header, payload) = split(&note);
        assert_eq!(check_marker(payload, &header.unwrap(), 0), Ok(Some(author)));
        // Both flags with a marker's length (a replacement is an entry's length), or a meta
        // record of another length, are out of range.
        let both = (KEY_FLAG | MARKER_FLAG | 8).to_le_bytes();
        let long = (MARKER_FLAG | 9).to_le_bytes();
        let replacement_too_long =
            (KEY_FLAG | MARKER_FLAG | (MAX_ENCODED_BYTES as u32 + 1)).to_le_bytes();
        for field in [both, long, replacement_too_long] {
            let mut h = [0u8; RECORD_HEADER_BYTES];
            h[..4].copy_from_slice(&field);
            assert!(parse_record_header(&h).is_err());
        }
    }

    #[test]
    fn a_replacement_record_is_an_unkeyed_entry_under_both_flags() {
        let e = entry(1, "x");
        let mut plain = Vec::new();
        encode_keyed_record(&e, None, &mut plain);
        let mut bytes = Vec::new();
        encode_replacement(&e, &mut bytes);
        // The same payload and checksum as the entry record; only the flags differ.
        assert_eq!(bytes[4..], plain[4..]);
        let field = u32::from_le_bytes(bytes[..4].try_into().unwrap());
        assert_eq!(field, KEY_FLAG | MARKER_FLAG | (plain.len() - 8) as u32);
        let (header, payload) = split(&bytes);
        let header = header.unwrap();
        assert!(header.replacement && !header.keyed && !header.marker);
        let record = decode_payload(payload, &header).unwrap();
        assert!(record.replacement && record.key.is_none());
        assert_eq!(record.entry, e);
        assert_eq!(entry_bytes_at(&bytes, 0).unwrap(), &e.encode()[..]);
        let (plain_header, _) = split(&plain);
        assert!(
            !decode_payload(payload, &plain_header.unwrap())
                .unwrap()
                .replacement
        );
    }

    #[test]
    fn find_marker_finds_only_an_intact_marker_at_the_offset_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut bytes = vec![7u8; 3 * SCAN_CHUNK_BYTES];
        // A copy of a marker at the wrong place, then one with a flipped byte, then a good
        // one straddling a chunk edge.
        let mut wrong = Vec::new();
        encode_marker(100, &mut wrong);
        bytes[1_000..1_016].copy_from_slice(&wrong);
        let mut flipped = Vec::new();
        encode_marker(2_000, &mut flipped);
        flipped[12] ^= 1;
        bytes[2_000..2_016].copy_from_slice(&flipped);
        let at = SCAN_CHUNK_BYTES - 7;
        let mut good = Vec::new();
        encode_marker(at as u64, &mut good);
        bytes[at..at + 16].copy_from_slice(&good);
        std::fs::write(&path, &bytes).unwrap();
        let file = crate::store::io::LogFile::open_system(&path, crate::store::io::OpenMode::Read)
            .unwrap();
        let len = bytes.len() as u64;
        assert_eq!(
            find_marker(&crate::store::io::SystemIo, &file, 0, len).unwrap(),
            Some(at as u64)
        );
        assert_eq!(
            find_marker(&crate::store::io::SystemIo, &file, at as u64 + 1, len).unwrap(),
            None
        );
        assert_eq!(
            find_marker(&crate::store::io::SystemIo, &file, 0, at as u64 + 15).unwrap(),
            None
        );
    }

    fn arb_key() -> impl Strategy<Value = Option<IdempotencyKey>> {
        proptest::option::of(
            proptest::collection::vec(0x21u8..=0x7e, 1..=MAX_KEY_BYTES)
                .prop_map(|bytes| IdempotencyKey::try_from(&bytes[..]).unwrap()),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any entry with any (or no) key round-trips through a record, and a file of such
        /// records walks back in order, with each key on its own entry.
        #[test]
        fn records_round_trip_with_and_without_keys(
            records in proptest::collection::vec(
                ("[a-zé✓]{0,40}", 1u64..1000, arb_key()),
                1..20,
            )
        ) {
            let mut file_bytes = file_header().to_vec();
            let mut expected = Vec::new();
            for (data, seq, k) in records {
                let e = entry(seq, &data);
                let mut record = Vec::new();
                encode_keyed_record(&e, k.as_ref(), &mut record);
                let decoded = decode(&record).unwrap();
                prop_assert_eq!(&decoded.entry, &e);
                prop_assert_eq!(decoded.hash, e.hash());
                prop_assert_eq!(&decoded.key, &k);
                file_bytes.extend_from_slice(&record);
                expected.push(decoded);
            }
            let mut file = tempfile::tempfile().unwrap();
            std::io::Write::write_all(&mut file, &file_bytes).unwrap();
            let mut walked = Vec::new();
            let file = LogFile::from(file);
            let stop = walk(&crate::store::io::SystemIo, &file, file_bytes.len() as u64, |chunk| {
                walked.extend(chunk.into_iter().map(|s| s.decoded.unwrap()));
                Ok(std::ops::ControlFlow::Continue(()))
            })
            .unwrap();
            prop_assert_eq!(stop, ScanStop::Clean);
            prop_assert_eq!(walked, expected);
        }
    }
}

#[cfg(test)]
#[path = "format_doc_tests.rs"]
mod doc_tests;
