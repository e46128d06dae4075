//! The durable fork-proof log: `DATA_DIR/forks`, the proofs a node has recorded.
//!
//! # Format
//!
//! The file is the concatenation of proof records in their fixed encoding
//! ([`ForkProof::encode`], documented in `src/fork.rs` and docs/PROTOCOL.md section 8); there
//! is no header. A record is appended with one `write_all` and made durable with `sync_data`
//! before [`ForkLog::record`] returns, so a recorded proof survives a crash.
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
//! (durable, checksummed, covered by the log's recovery rule, see
//! [`crate::store::format`]), then appends the proof here. An author with a note stays
//! forked even if this file loses its proof.
//!
//! # Invariants
//!
//! Only one proof per author is kept, the first recorded ([`ForkSet::insert`]); a proof for
//! an author already known forked is not written again.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::fork::{self, ForkProof, ForkProofError, ForkSet};

/// The file name inside the data directory.
pub const FORKS_FILE: &str = "forks";

#[derive(Debug, thiserror::Error)]
pub enum ForkLogError {
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is corrupt: {error}")]
    Corrupt {
        path: PathBuf,
        error: fork::CorruptProof,
    },
    #[error("{path} holds an invalid proof at record {index}: {error}")]
    InvalidProof {
        path: PathBuf,
        index: usize,
        error: ForkProofError,
    },
    #[error("proof does not check: {0}")]
    Rejected(#[from] ForkProofError),
}

/// What opening the fork log found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForkLogReport {
    pub proofs: usize,
    /// Bytes of a torn tail cut off.
    pub truncated_bytes: u64,
}

/// The open fork log: the file and the set of proofs it holds.
pub struct ForkLog {
    path: PathBuf,
    file: File,
    set: ForkSet,
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
    let bytes = match std::fs::read(&path) {
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
    /// Opens (creating if missing) `dir/forks`, truncating a torn tail.
    pub fn open(dir: &Path) -> Result<(ForkLog, ForkLogReport), ForkLogError> {
        let path = dir.join(FORKS_FILE);
        let io_err = |context, source| ForkLogError::Io {
            context,
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| io_err("open", e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| io_err("read", e))?;
        let decoded = fork::decode_all(&bytes).map_err(|error| ForkLogError::Corrupt {
            path: path.clone(),
            error,
        })?;
        let mut report = ForkLogReport::default();
        if decoded.torn_tail {
            let valid = u64::try_from(decoded.valid_len).unwrap_or(u64::MAX);
            let total = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
            file.set_len(valid).map_err(|e| io_err("truncate", e))?;
            file.sync_all().map_err(|e| io_err("sync", e))?;
            report.truncated_bytes = total.saturating_sub(valid);
            tracing::warn!(
                path = %path.display(),
                at = valid,
                bytes = report.truncated_bytes,
                "fork log: cut off a torn tail"
            );
        }
        let set = checked_set(&path, decoded.proofs)?;
        report.proofs = set.len();
        Ok((ForkLog { path, file, set }, report))
    }

    /// Checks `proof` and, if its author was not known forked, appends it durably. Returns
    /// whether it was new. Blocking (one `fdatasync`).
    pub fn record(&mut self, proof: ForkProof) -> Result<bool, ForkLogError> {
        proof.check()?;
        if self.set.contains(&proof.author()) {
            return Ok(false);
        }
        let bytes = proof.encode();
        let io_err = |context, source| ForkLogError::Io {
            context,
            path: self.path.clone(),
            source,
        };
        self.file
            .write_all(&bytes)
            .map_err(|e| io_err("append to", e))?;
        self.file.sync_data().map_err(|e| io_err("sync", e))?;
        // Checked above, so the insert cannot fail; it returns true as the author was absent.
        self.set.insert(proof)?;
        Ok(true)
    }

    pub fn set(&self) -> &ForkSet {
        &self.set
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
    fn proofs_survive_reopen_and_are_kept_once() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, report) = ForkLog::open(dir.path()).unwrap();
        assert_eq!(report.proofs, 0);
        assert!(log.record(proof(1)).unwrap());
        assert!(!log.record(proof(1)).unwrap());
        assert!(log.record(proof(2)).unwrap());
        drop(log);
        let (log, report) = ForkLog::open(dir.path()).unwrap();
        assert_eq!(report.proofs, 2);
        assert!(log.set().contains(&proof(1).author()));
        let len = std::fs::metadata(dir.path().join(FORKS_FILE))
            .unwrap()
            .len();
        assert_eq!(
            len,
            u64::try_from(proof(1).encode().len() + proof(2).encode().len()).unwrap()
        );
    }

    #[test]
    fn torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = proof(1).encode();
        let second = proof(2).encode();
        bytes.extend_from_slice(&second[..second.len() - 3]);
        std::fs::write(dir.path().join(FORKS_FILE), &bytes).unwrap();
        let (_, report) = ForkLog::open(dir.path()).unwrap();
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
            ForkLog::open(dir.path()),
            Err(ForkLogError::Corrupt { .. })
        ));
    }

    #[test]
    fn an_invalid_proof_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = ForkLog::open(dir.path()).unwrap();
        let p = proof(1);
        let swapped = ForkProof { a: p.b, b: p.a };
        assert!(matches!(
            log.record(swapped),
            Err(ForkLogError::Rejected(ForkProofError::NotCanonicalOrder))
        ));
    }
}
