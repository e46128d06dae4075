//! The light client's memory on disk (`kappalog get --state DIR`): per feed, the newest
//! checkpoint it verified, as the signed note the node sent, in `DIR/<author hex>.checkpoint`.
//! [`super::remembered`] decides what a new answer must prove against it.
//!
//! A note is its own integrity check: what is read back must parse as a checkpoint of the
//! feed's origin signed by the feed's key, else the file is refused with its path (a damaged
//! or swapped file is never trusted, nor silently forgotten: the user deletes it to start
//! afresh). A file is replaced by a snapshot (tmp, fsync, rename, directory fsync), so a
//! crash leaves the old note or the new one. When an answer fails against the remembered
//! note, the answer's note is kept beside it as `DIR/<author hex>.conflict`: with a split view
//! (one size, two roots) the two files are a proof anyone can check with the author's key.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::durable_file::replace_with_snapshot_via;
use crate::identity::Author;
use crate::store::io::SystemIo;
use crate::tlog::checkpoint::{author_vkey, origin_for, SignedCheckpoint};
use crate::tlog::note::MAX_NOTE_BYTES;

/// Why the remembered checkpoint could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading the file failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file is not a checkpoint of the feed signed by its author.
    #[error("{path} is not a checkpoint of this feed signed by its author ({reason}); delete it to start afresh")]
    NotTheFeeds {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The remembered checkpoint's file of `author` in `dir`.
pub fn checkpoint_path(dir: &Path, author: &Author) -> PathBuf {
    dir.join(format!("{}.checkpoint", author.to_hex()))
}

/// The file an answer that failed against the remembered checkpoint is kept in.
pub fn conflict_path(dir: &Path, author: &Author) -> PathBuf {
    dir.join(format!("{}.conflict", author.to_hex()))
}

/// The checkpoint remembered for `author` in `dir`, checked; `None` if there is none yet.
pub fn load(dir: &Path, author: &Author) -> Result<Option<SignedCheckpoint>, StateError> {
    let path = checkpoint_path(dir, author);
    let io = |source| StateError::Io {
        path: path.clone(),
        source,
    };
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    // One byte over the cap is enough for the parser to refuse the file as too large.
    let mut bytes = Vec::new();
    file.take(MAX_NOTE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let not_the_feeds = |reason: String| StateError::NotTheFeeds {
        path: path.clone(),
        reason,
    };
    let signed = SignedCheckpoint::parse(&bytes).map_err(|e| not_the_feeds(e.to_string()))?;
    let origin = origin_for(author.as_bytes());
    if signed.checkpoint().origin() != origin {
        return Err(not_the_feeds(format!(
            "its origin is {:?}, not {origin}",
            signed.checkpoint().origin()
        )));
    }
    let key = ed25519_dalek::VerifyingKey::from_bytes(author.as_bytes())
        .map_err(|e| not_the_feeds(format!("the author is not a key: {e}")))?;
    signed
        .verify_author(&author_vkey(&key))
        .map_err(|e| not_the_feeds(e.to_string()))?;
    Ok(Some(signed))
}

/// Remembers `note` (a verified checkpoint's note) for `author` in `dir`, creating `dir`.
pub fn store(dir: &Path, author: &Author, note: &[u8]) -> io::Result<()> {
    write(dir, &checkpoint_path(dir, author), note)
}

/// Keeps `note`, an answer's checkpoint that failed against the remembered one, as evidence;
/// returns where.
pub fn keep_conflict(dir: &Path, author: &Author, note: &[u8]) -> io::Result<PathBuf> {
    let path = conflict_path(dir, author);
    write(dir, &path, note)?;
    Ok(path)
}

fn write(dir: &Path, path: &Path, note: &[u8]) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::other("a state file's name is not UTF-8"))?;
    replace_with_snapshot_via(&SystemIo, dir, name, note).map(drop)
}
