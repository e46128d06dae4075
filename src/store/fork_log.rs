//! The durable fork-proof log: `DATA_DIR/forks`, the proofs a node has recorded.
//!
//! # Format
//!
//! The file is the concatenation of proof records in their fixed encoding
//! ([`ForkProof::encode`], documented in `src/fork.rs` and docs/PROTOCOL.md section 8); there
//! is no header. The store's writer appends records ([`ForkLog::append`]): one positional write
//! at the end of the durable records and one `fdatasync` before the proof is acknowledged, so
//! a recorded proof survives a crash. The writer checks the set first, so a proof for an
//! author already known forked is not written again.
//!
//! # Recovery
//!
//! On open the file is decoded with [`fork::decode_all`]. An incomplete last record (a crash
//! during an append) is a torn tail: it is cut off and the cut is logged. A complete record
//! that does not decode, or a proof that does not check, is corruption and fails the open
//! with its byte offset: the node must not forget a fork it once proved.
//!
//! # A lost proof
//!
//! Nothing in this file can tell that a whole record was cut off at a record boundary. So
//! the node ([`crate::node`]) first writes a *fork note* for the author into the entries log
//! (durable, checksummed, covered by the log's recovery rule, see docs/STORE.md), then
//! appends the proof here. An author with a note stays forked even if this file loses its
//! proof.
//!
//! # Invariants
//!
//! Only one proof per author is kept, the first recorded ([`ForkSet::insert`]); a proof for
//! an author already known forked is not written again.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use crate::fork::{self, ForkProof, ForkProofError, ForkSet};
use crate::identity::Author;
use crate::store::io::{self as log_io, LogFile, LogIo, OpenMode, SystemIo};

/// The file name inside the data directory.
pub const FORKS_FILE: &str = "forks";

/// Why the forks file could not be opened, read or appended to.
#[derive(Debug, thiserror::Error)]
pub enum ForkLogError {
    /// An I/O call on the file failed.
    #[error("{context} {path}: {source}")]
    Io {
        /// What was being done, e.g. "opening".
        context: &'static str,
        /// The forks file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The file's records do not decode, before any torn tail.
    #[error("{path} is corrupt: {error}")]
    Corrupt {
        /// The forks file.
        path: PathBuf,
        /// What the decoder found.
        error: fork::CorruptProof,
    },
    /// A record decodes but its proof does not check.
    #[error("{path} holds an invalid proof at record {index}: {error}")]
    InvalidProof {
        /// The forks file.
        path: PathBuf,
        /// The record's position in the file, counting from 0.
        index: usize,
        /// Why the proof does not check.
        error: ForkProofError,
    },
    /// A proof offered for recording does not check: nothing written.
    #[error("proof does not check: {0}")]
    Rejected(#[from] ForkProofError),
}

/// What opening the fork log found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForkLogReport {
    /// Checked proofs in the file after recovery.
    pub proofs: usize,
    /// Bytes of a torn tail cut off.
    pub truncated_bytes: u64,
}

/// Who is known forked, as the store's writer last made durable: the proofs held, and the
/// authors the log has a fork note for. A note is written (and synced) before its proof, so
/// an author is noted from the moment the node starts recording a proof of it, and stays
/// noted if the proof is later lost. Readers (every push and HTTP read) take a read lock on
/// this for an in-memory lookup; the writer takes the write lock only to insert, after the
/// `fsync`, never across it.
#[derive(Clone, Debug, Default)]
pub struct Forked {
    proofs: ForkSet,
    noted: BTreeSet<Author>,
}

impl Forked {
    /// Who is forked after an open: the proofs read and the authors with a fork note.
    pub fn new(proofs: ForkSet, noted: BTreeSet<Author>) -> Forked {
        Forked { proofs, noted }
    }

    /// Whether `author` is forked: with a proof, or noted with its proof lost (or not yet
    /// written).
    pub fn contains(&self, author: &Author) -> bool {
        self.proofs.contains(author) || self.noted.contains(author)
    }

    /// The proofs held.
    pub fn proofs(&self) -> &ForkSet {
        &self.proofs
    }

    /// Every forked author, ascending.
    pub fn authors(&self) -> BTreeSet<Author> {
        self.proofs.authors().chain(&self.noted).copied().collect()
    }

    /// How many authors are forked (with a proof or only noted).
    pub fn count(&self) -> usize {
        self.proofs.len() + self.unproven().count()
    }

    /// Authors noted forked whose proof is not held.
    pub fn unproven(&self) -> impl Iterator<Item = &Author> {
        self.noted.iter().filter(|a| !self.proofs.contains(a))
    }

    pub(crate) fn is_noted(&self, author: &Author) -> bool {
        self.noted.contains(author)
    }

    pub(crate) fn note(&mut self, author: Author) {
        self.noted.insert(author);
    }

    /// Records a proof the writer made durable. [`ForkSet::insert`] checks it once more: two
    /// signature checks per new proof, which are rare.
    pub(crate) fn insert_proof(&mut self, proof: ForkProof) -> Result<bool, ForkProofError> {
        self.proofs.insert(proof)
    }
}

/// The open fork log, owned by the store's writer ([`crate::store::writer`]), which is the
/// only code that appends to it: a proof becomes durable in the same path as the entries
/// and the fork note before it, so no lock that readers take is held across its `fsync`.
pub struct ForkLog {
    path: PathBuf,
    file: LogFile,
    /// Bytes of whole, durable records: where the next record goes.
    len: u64,
    /// An append failed after this many bytes may have reached the file: cut back to `len`
    /// before the next one, so a record never follows half of an earlier one.
    cut_needed: bool,
}

/// Checks every decoded proof into a set (first proof per author wins).
fn checked_set(path: &Path, proofs: Vec<ForkProof>) -> Result<ForkSet, ForkLogError> {
    let mut set = ForkSet::new();
    for (index, proof) in proofs.into_iter().enumerate() {
        set.insert(proof)
            .map_err(|error| ForkLogError::InvalidProof {
                path: path.to_owned(),
                index,
                error,
            })?;
    }
    Ok(set)
}

/// What a read-only look at `dir/forks` found: the checked proofs, and a torn tail if the
/// file ends in an incomplete record (a crash while appending it: never acknowledged).
pub struct ForkFileCheck {
    /// The proofs before any torn tail, each checked.
    pub set: ForkSet,
    /// Offset and length of the torn tail.
    pub torn_tail: Option<(u64, u64)>,
}

/// The proofs recorded in `dir/forks`, each checked (both sides signed, same position,
/// different entries), for read-only commands: takes no lock, creates and truncates nothing
/// (a torn tail being written by a running node is simply not read yet). A record that does
/// not decode, or a proof that does not check, is an error naming where.
pub fn check_file(dir: &Path) -> Result<ForkFileCheck, ForkLogError> {
    let path = dir.join(FORKS_FILE);
    let read = SystemIo
        .open(&path, OpenMode::Read)
        .and_then(|file| log_io::read_to_end(&SystemIo, &file));
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(ForkFileCheck {
                set: ForkSet::new(),
                torn_tail: None,
            })
        }
        Err(source) => {
            return Err(ForkLogError::Io {
                context: "read",
                path,
                source,
            })
        }
    };
    let decoded = fork::decode_all(&bytes).map_err(|error| ForkLogError::Corrupt {
        path: path.clone(),
        error,
    })?;
    let torn_tail = decoded.torn_tail.then(|| {
        let at = u64::try_from(decoded.valid_len).unwrap_or(u64::MAX);
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        (at, len.saturating_sub(at))
    });
    Ok(ForkFileCheck {
        set: checked_set(&path, decoded.proofs)?,
        torn_tail,
    })
}

/// The checked proofs of `dir/forks` ([`check_file`]).
pub fn read_set(dir: &Path) -> Result<ForkSet, ForkLogError> {
    check_file(dir).map(|check| check.set)
}

impl ForkLog {
    /// Opens (creating if missing) `dir/forks`, truncating a torn tail; returns the log and
    /// the proofs it holds, every call through `io`. The caller holds the directory lock
    /// ([`crate::store::lock`]).
    pub fn open(
        dir: &Path,
        io: &dyn LogIo,
    ) -> Result<(ForkLog, ForkSet, ForkLogReport), ForkLogError> {
        let path = dir.join(FORKS_FILE);
        let io_err = |context, source| ForkLogError::Io {
            context,
            path: path.clone(),
            source,
        };
        // Not in append mode: records are written at `len`, so a failed append can be cut
        // back and overwritten.
        let file = io
            .open(&path, OpenMode::ReadWrite)
            .map_err(|e| io_err("open", e))?;
        // The file may have just been created, after the log's open synced the directory:
        // its name must be durable before a proof in it is acknowledged.
        io.sync_dir(dir)
            .map_err(|e| io_err("sync the directory of", e))?;
        let bytes = log_io::read_to_end(io, &file).map_err(|e| io_err("read", e))?;
        let decoded = fork::decode_all(&bytes).map_err(|error| ForkLogError::Corrupt {
            path: path.clone(),
            error,
        })?;
        let mut report = ForkLogReport::default();
        let len = u64::try_from(decoded.valid_len).unwrap_or(u64::MAX);
        if decoded.torn_tail {
            let total = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
            io.set_len(&file, len).map_err(|e| io_err("truncate", e))?;
            // fdatasync covers the new length: it is the metadata a later read needs.
            io.sync_data(&file).map_err(|e| io_err("sync", e))?;
            report.truncated_bytes = total.saturating_sub(len);
            tracing::warn!(
                path = %path.display(),
                at = len,
                bytes = report.truncated_bytes,
                "fork log: cut off a torn tail"
            );
        }
        let set = checked_set(&path, decoded.proofs)?;
        report.proofs = set.len();
        let log = ForkLog {
            path,
            file,
            len,
            cut_needed: false,
        };
        Ok((log, set, report))
    }

    /// Appends the proofs' records with one positional write at the end of the durable
    /// records, then one `fdatasync`; returns once they are durable. Every call goes through
    /// `io`, so a test can make it slow or fail. On failure the file is cut back (now, or
    /// before the next append if the cut fails too), so the file never holds a record after
    /// a half-written one. The caller checked every proof ([`ForkProof::check`]): a proof
    /// that does not check would make the next open refuse the file.
    pub fn append(&mut self, io: &dyn LogIo, proofs: &[&ForkProof]) -> Result<(), ForkLogError> {
        if proofs.is_empty() {
            return Ok(());
        }
        if self.cut_needed {
            self.cut_back(io)?;
        }
        let bytes: Vec<u8> = proofs.iter().flat_map(|p| p.encode()).collect();
        let written = io
            .write_all_at(&self.file, &bytes, self.len)
            .and_then(|()| io.sync_data(&self.file));
        if let Err(source) = written {
            self.cut_needed = true;
            if let Err(e) = self.cut_back(io) {
                tracing::error!(error = %e, "fork log: cutting back a failed append failed; retried before the next one");
            }
            return Err(self.io_error("append to", source));
        }
        self.len += u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        Ok(())
    }

    /// Cuts the file back to its durable records and syncs the cut.
    fn cut_back(&mut self, io: &dyn LogIo) -> Result<(), ForkLogError> {
        io.set_len(&self.file, self.len)
            .and_then(|()| io.sync_data(&self.file))
            .map_err(|e| self.io_error("cut back", e))?;
        self.cut_needed = false;
        Ok(())
    }

    fn io_error(&self, context: &'static str, source: io::Error) -> ForkLogError {
        ForkLogError::Io {
            context,
            path: self.path.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Entry, UnsignedEntry};
    use crate::identity::Identity;

    fn proof(seed: u8) -> ForkProof {
        let id = Identity::from_seed([seed; 32]);
        let entry = |value| -> Entry {
            UnsignedEntry {
                author: id.author(),
                seq: 1,
                timestamp: 1,
                prev: None,
                value,
                data: String::new(),
            }
            .sign(&id)
            .0
        };
        ForkProof::new(entry(1), entry(2))
    }

    #[test]
    fn appended_proofs_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, set, report) = ForkLog::open(dir.path(), &SystemIo).unwrap();
        assert_eq!(report.proofs, 0);
        assert!(set.is_empty());
        log.append(&SystemIo, &[&proof(1)]).unwrap();
        log.append(&SystemIo, &[&proof(2)]).unwrap();
        drop(log);
        let (_, set, report) = ForkLog::open(dir.path(), &SystemIo).unwrap();
        assert_eq!(report.proofs, 2);
        assert!(set.contains(&proof(1).author()));
        let len = std::fs::metadata(dir.path().join(FORKS_FILE))
            .unwrap()
            .len();
        assert_eq!(
            len,
            u64::try_from(proof(1).encode().len() + proof(2).encode().len()).unwrap()
        );
    }

    /// Writes half of the first write it is given, then fails it.
    #[derive(Debug, Default)]
    struct HalfWrite(std::sync::atomic::AtomicBool);

    impl LogIo for HalfWrite {
        fn write_all_at(&self, file: &LogFile, buf: &[u8], offset: u64) -> io::Result<()> {
            if self.0.swap(true, std::sync::atomic::Ordering::SeqCst) {
                return file.write_all_at(buf, offset);
            }
            file.write_all_at(&buf[..buf.len() / 2], offset)?;
            Err(io::Error::other("injected: write cut short"))
        }
    }

    #[test]
    fn a_failed_append_leaves_no_half_record_behind() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _, _) = ForkLog::open(dir.path(), &SystemIo).unwrap();
        let io = HalfWrite::default();
        assert!(matches!(
            log.append(&io, &[&proof(1)]),
            Err(ForkLogError::Io { .. })
        ));
        log.append(&io, &[&proof(2)]).unwrap();
        drop(log);
        let (_, set, report) = ForkLog::open(dir.path(), &SystemIo).unwrap();
        assert_eq!(report.truncated_bytes, 0);
        assert_eq!(set.len(), 1);
        assert!(set.contains(&proof(2).author()));
    }

    #[test]
    fn torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = proof(1).encode();
        let second = proof(2).encode();
        bytes.extend_from_slice(&second[..second.len() - 3]);
        std::fs::write(dir.path().join(FORKS_FILE), &bytes).unwrap();
        let (_, _, report) = ForkLog::open(dir.path(), &SystemIo).unwrap();
        assert_eq!(report.proofs, 1);
        assert_eq!(
            report.truncated_bytes,
            u64::try_from(second.len() - 3).unwrap()
        );
        let len = std::fs::metadata(dir.path().join(FORKS_FILE))
            .unwrap()
            .len();
        assert_eq!(len, u64::try_from(proof(1).encode().len()).unwrap());
    }

    #[test]
    fn corruption_fails_the_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = proof(1).encode();
        bytes.extend_from_slice(b"XXXXXXXXXXXXXXXXX");
        std::fs::write(dir.path().join(FORKS_FILE), &bytes).unwrap();
        assert!(matches!(
            ForkLog::open(dir.path(), &SystemIo),
            Err(ForkLogError::Corrupt { .. })
        ));
    }
}
