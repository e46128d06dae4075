//! `DATA_DIR/checkpoints`: the journal of the book's served notes. Foreign author
//! checkpoints and the cosignatures over them cannot be derived from the log, so the book
//! appends each served note as it changes and replays the journal at open.
//!
//! # Format (version 1)
//!
//! - a header, the 24 bytes `kappalog checkpoints v1\n`;
//! - then records, each: `len` (u32, little-endian: the payload's bytes, at most
//!   [`MAX_PAYLOAD_BYTES`]), `crc` (u32, little-endian: CRC-32C of the payload), and the
//!   payload: the feed's author (32 bytes) then the served note's bytes.
//!
//! A later record of one author replaces the earlier one; replay keeps the last of each.
//!
//! # Torn tails and damage
//!
//! Records are appended without a flush of their own; the book flushes the file at most once
//! a second ([`Journal::flush`]). A power loss so loses at most the last second of gossip,
//! which peers send again; a crash of the process loses nothing written. At open, the
//! first record that is short, over the cap or fails its checksum ends the journal: the file
//! is truncated there and the loss reported. Everything in it is gossip a peer can resend,
//! so dropping a damaged tail is always safe; nothing here is trusted more than a peer's
//! note (the book verifies replayed notes as it does offered ones).
//!
//! # Compaction
//!
//! At open, when the file is more than twice the size of its live records (and over
//! [`COMPACT_MIN_BYTES`]), it is rewritten with the live records alone: a tmp file, fsync,
//! rename, directory fsync, so a crash leaves the old file or the new one whole. Open never
//! reads the log.
//!
//! # One file backend
//!
//! Every read, write, flush, cut and rename of the file goes through a [`LogIo`]
//! ([`JournalOptions::io`]): the real system calls for the node, and in the power-cut test
//! (`tests/it/checkpoint_book_crash.rs`) a file in memory that loses what was not flushed,
//! cut at every call. Records are positional writes at the journal's known length, as
//! `DATA_DIR/witness`'s are.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::durable_file::replace_with_snapshot_via;
use crate::identity::Author;
use crate::store::io::{read_to_end, LogFile, LogIo, OpenMode, SystemIo};
use crate::tlog::note::MAX_NOTE_BYTES;

/// The journal's name in the data directory.
pub const CHECKPOINTS_FILE: &str = "checkpoints";

/// The first bytes of the file: its format and version.
pub const HEADER: &[u8] = b"kappalog checkpoints v1\n";

/// The largest payload: an author and a note of the signed-note cap.
pub const MAX_PAYLOAD_BYTES: usize = 32 + MAX_NOTE_BYTES;

/// Below this size the journal is never compacted: rewriting a small file saves nothing
/// worth a rename and two flushes at every start.
pub const COMPACT_MIN_BYTES: u64 = 64 * 1024;

/// Bytes of a record's framing: length and checksum.
const FRAME_BYTES: usize = 8;

/// How [`Journal::open_with_options`] keeps its file.
#[derive(Clone, Debug)]
pub struct JournalOptions {
    /// The file backend: [`SystemIo`] for the node; the power-cut tests' files in memory
    /// (`tests/it/checkpoint_book_crash.rs`).
    pub io: Arc<dyn LogIo>,
    /// Below this size the journal is not compacted at open ([`COMPACT_MIN_BYTES`]; tests
    /// lower it to compact a short journal).
    pub compact_min_bytes: u64,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            io: Arc::new(SystemIo),
            compact_min_bytes: COMPACT_MIN_BYTES,
        }
    }
}

/// What opening the journal found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Replayed {
    /// The last served note of each author.
    pub notes: BTreeMap<Author, Vec<u8>>,
    /// Records read (all of them, not only the live ones).
    pub records: u64,
    /// Bytes of a torn or damaged tail, dropped.
    pub dropped_tail_bytes: u64,
    /// Whether the file was rewritten with its live records alone.
    pub compacted: bool,
}

/// Why the journal could not be opened: I/O only (damage is a dropped tail).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct JournalOpenError {
    /// The file.
    pub path: PathBuf,
    /// The cause.
    pub source: io::Error,
}

/// The journal, open for appending.
#[derive(Debug)]
pub struct Journal {
    io: Arc<dyn LogIo>,
    file: LogFile,
    /// The file's length: where the next record goes.
    len: u64,
    /// Appended since the last flush.
    dirty: bool,
}

impl Journal {
    /// Opens (or creates) `dir/checkpoints`, replays it, drops a damaged tail and compacts
    /// it if worth it. The caller holds the data directory's lock.
    pub fn open(dir: &Path) -> Result<(Journal, Replayed), JournalOpenError> {
        Self::open_with_options(dir, &JournalOptions::default())
    }

    /// [`Journal::open`] on the file backend and compaction threshold `options` name.
    pub fn open_with_options(
        dir: &Path,
        options: &JournalOptions,
    ) -> Result<(Journal, Replayed), JournalOpenError> {
        let path = dir.join(CHECKPOINTS_FILE);
        let err = |source| JournalOpenError {
            path: path.clone(),
            source,
        };
        open_file(options, dir, &path).map_err(err)
    }

    /// Appends one record: `author`'s served note is now `note`. Not flushed
    /// ([`Journal::flush`]). A note over the cap is not written (the book never serves one).
    /// After a failed append the file's tail is unknown: the caller stops journalling (the
    /// book does), and the next open cuts whatever was torn.
    pub fn append(&mut self, author: &Author, note: &[u8]) -> io::Result<()> {
        let Some(record) = encode_record(author, note) else {
            return Ok(());
        };
        self.dirty = true;
        self.io.write_all_at(&self.file, &record, self.len)?;
        // A usize always fits in a u64 on the targets kappalog builds for.
        self.len += record.len() as u64;
        Ok(())
    }

    /// Makes every append so far durable, if any since the last flush (one fdatasync).
    pub fn flush(&mut self) -> io::Result<bool> {
        if !self.dirty {
            return Ok(false);
        }
        self.io.sync_data(&self.file)?;
        self.dirty = false;
        Ok(true)
    }
}

/// One record's bytes, or None for a payload over [`MAX_PAYLOAD_BYTES`].
pub fn encode_record(author: &Author, note: &[u8]) -> Option<Vec<u8>> {
    let len = 32 + note.len();
    if len > MAX_PAYLOAD_BYTES {
        return None;
    }
    let mut payload = Vec::with_capacity(FRAME_BYTES + len);
    payload.extend_from_slice(&u32::try_from(len).ok()?.to_le_bytes());
    payload.extend_from_slice(&[0; 4]);
    payload.extend_from_slice(author.as_bytes());
    payload.extend_from_slice(note);
    let crc = crc32c::crc32c(&payload[FRAME_BYTES..]);
    payload[4..8].copy_from_slice(&crc.to_le_bytes());
    Some(payload)
}

/// Reads records from `input` (after the header) until the end or the first damaged one:
/// the last note of each author, the records read, and the bytes of valid records.
pub fn read_records(input: impl Read) -> io::Result<(BTreeMap<Author, Vec<u8>>, u64, u64)> {
    let mut input = BufReader::new(input);
    let mut notes = BTreeMap::new();
    let (mut records, mut valid) = (0u64, 0u64);
    loop {
        let mut frame = [0u8; FRAME_BYTES];
        if !read_full(&mut input, &mut frame)? {
            break;
        }
        let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        if !(32..=MAX_PAYLOAD_BYTES).contains(&len) {
            break;
        }
        let mut payload = vec![0u8; len];
        if !read_full(&mut input, &mut payload)? || crc32c::crc32c(&payload) != crc {
            break;
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&payload[..32]);
        notes.insert(Author(key), payload[32..].to_vec());
        records += 1;
        valid += (FRAME_BYTES + len) as u64;
    }
    Ok((notes, records, valid))
}

/// Fills `buf`, or returns false at the end of input (also mid-buffer: a torn record).
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn open_file(options: &JournalOptions, dir: &Path, path: &Path) -> io::Result<(Journal, Replayed)> {
    let io = &options.io;
    let mut file = io.open(path, OpenMode::ReadWrite)?;
    let bytes = read_to_end(&**io, &file)?;
    let file_len = bytes.len() as u64;
    let journal = |file, len| Journal {
        io: io.clone(),
        file,
        len,
        dirty: false,
    };
    if !bytes.starts_with(HEADER) {
        // New, or not this format's: a file that is not a journal holds nothing the node
        // can use, and gossip refills it. The header is durable (file and directory) before
        // any record goes after it.
        if file_len > 0 {
            tracing::warn!(path = %path.display(), "checkpoints journal unreadable; starting it afresh");
        }
        io.set_len(&file, 0)?;
        io.write_all_at(&file, HEADER, 0)?;
        io.sync_data(&file)?;
        io.sync_dir(dir)?;
        let replayed = Replayed {
            dropped_tail_bytes: file_len,
            ..Replayed::default()
        };
        return Ok((journal(file, HEADER.len() as u64), replayed));
    }
    let (notes, records, valid) = read_records(&bytes[HEADER.len()..])?;
    let valid_len = HEADER.len() as u64 + valid;
    let mut replayed = Replayed {
        dropped_tail_bytes: file_len - valid_len,
        records,
        notes,
        compacted: false,
    };
    let live: u64 = HEADER.len() as u64
        + replayed
            .notes
            .values()
            .map(|n| (FRAME_BYTES + 32 + n.len()) as u64)
            .sum::<u64>();
    let mut len = valid_len;
    if valid_len > options.compact_min_bytes && valid_len > 2 * live {
        let snapshot = encode_snapshot(&replayed.notes);
        file = replace_with_snapshot_via(&**io, dir, CHECKPOINTS_FILE, &snapshot)?;
        len = snapshot.len() as u64;
        replayed.compacted = true;
    } else if replayed.dropped_tail_bytes > 0 {
        io.set_len(&file, valid_len)?;
        io.sync_data(&file)?;
    }
    if replayed.dropped_tail_bytes > 0 {
        tracing::warn!(
            bytes = replayed.dropped_tail_bytes,
            "checkpoints journal: dropped a torn or damaged tail (gossip peers send again)"
        );
    }
    Ok((journal(file, len), replayed))
}

/// The journal holding `notes` alone, what compaction writes.
fn encode_snapshot(notes: &BTreeMap<Author, Vec<u8>>) -> Vec<u8> {
    let mut bytes = HEADER.to_vec();
    for (author, note) in notes {
        if let Some(record) = encode_record(author, note) {
            bytes.extend_from_slice(&record);
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;

    use super::*;

    fn author(n: u8) -> Author {
        Author([n; 32])
    }

    #[test]
    fn replays_the_last_note_of_each_author() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, replayed) = Journal::open(dir.path()).unwrap();
        assert!(replayed.notes.is_empty());
        journal.append(&author(1), b"one").unwrap();
        journal.append(&author(2), b"two").unwrap();
        journal.append(&author(1), b"one again").unwrap();
        assert!(journal.flush().unwrap());
        assert!(!journal.flush().unwrap(), "nothing new: no fdatasync");
        drop(journal);
        let (_, replayed) = Journal::open(dir.path()).unwrap();
        assert_eq!(replayed.records, 3);
        assert_eq!(replayed.notes[&author(1)], b"one again");
        assert_eq!(replayed.notes[&author(2)], b"two");
        assert_eq!(replayed.dropped_tail_bytes, 0);
    }

    #[test]
    fn a_torn_or_damaged_tail_is_dropped_and_the_file_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(dir.path()).unwrap();
        journal.append(&author(1), b"kept").unwrap();
        journal.append(&author(2), b"torn").unwrap();
        drop(journal);
        let path = dir.path().join(CHECKPOINTS_FILE);
        let len = std::fs::metadata(&path).unwrap().len();
        // Torn: the last record loses its last byte.
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        let (mut journal, replayed) = Journal::open(dir.path()).unwrap();
        assert_eq!(replayed.notes.len(), 1);
        assert_eq!(replayed.notes[&author(1)], b"kept");
        assert_eq!(
            replayed.dropped_tail_bytes,
            (FRAME_BYTES + 32 + 4 - 1) as u64
        );
        // Appends go after the cut, and read back.
        journal.append(&author(3), b"after").unwrap();
        drop(journal);
        // Damaged: a flipped payload byte ends the journal at that record.
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let (_, replayed) = Journal::open(dir.path()).unwrap();
        assert_eq!(
            replayed.notes.keys().copied().collect::<Vec<_>>(),
            [author(1)]
        );
        assert!(replayed.dropped_tail_bytes > 0);
    }

    #[test]
    fn a_journal_twice_its_live_size_is_compacted_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(dir.path()).unwrap();
        let note = vec![b'x'; 1000];
        for _ in 0..200 {
            journal.append(&author(1), &note).unwrap();
        }
        journal.append(&author(2), b"other").unwrap();
        drop(journal);
        let path = dir.path().join(CHECKPOINTS_FILE);
        let before = std::fs::metadata(&path).unwrap().len();
        let (_, replayed) = Journal::open(dir.path()).unwrap();
        assert!(replayed.compacted);
        let after = std::fs::metadata(&path).unwrap().len();
        assert!(after < before / 100, "{after} of {before}");
        let (_, again) = Journal::open(dir.path()).unwrap();
        assert!(!again.compacted);
        assert_eq!(again.notes, replayed.notes);
        assert_eq!(again.notes[&author(1)], note);
    }
}
