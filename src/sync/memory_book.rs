//! A [`CheckpointBook`] in memory, a test double until the node's own book exists: it keeps
//! per feed the note of the largest tree size it was given (of equal sizes, the longer note,
//! which carries more cosignatures). It parses every note offered ([`SignedCheckpoint::parse`])
//! and refuses one that does not parse as malformed; it does **not** verify signatures or
//! consistency, which the node's book will.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::checkpoint_book::{note_digest, CheckpointBook, CheckpointOfferError};
use super::feed_have::FeedHave;
use crate::identity::Author;
use crate::poison::lock;
use crate::tlog::checkpoint::SignedCheckpoint;

/// Served-note changes buffered per subscriber.
const CHANGES_CAPACITY: usize = 1024;

/// A served note and its checkpoint's tree size.
type Served = (u64, Arc<[u8]>);

/// See the module docs.
pub struct MemoryBook {
    notes: Mutex<BTreeMap<Author, Served>>,
    changes: broadcast::Sender<Author>,
}

impl Default for MemoryBook {
    fn default() -> Self {
        MemoryBook {
            notes: Mutex::default(),
            changes: broadcast::channel(CHANGES_CAPACITY).0,
        }
    }
}

impl MemoryBook {
    /// Serves `note` for its feed as the node's own choice (as a newly signed checkpoint or
    /// cosignature would), whatever it served before; `Err` if the note does not parse.
    pub fn serve(&self, note: &[u8]) -> Result<(), CheckpointOfferError> {
        let (author, size) = feed_of(note)?.ok_or_else(|| {
            CheckpointOfferError::Malformed("origin is not a kappalog feed".into())
        })?;
        lock(&self.notes).insert(author, (size, note.into()));
        let _ = self.changes.send(author);
        Ok(())
    }
}

/// The feed and tree size of a note; `None` for an origin that names no kappalog feed.
fn feed_of(note: &[u8]) -> Result<Option<(Author, u64)>, CheckpointOfferError> {
    let parsed = SignedCheckpoint::parse(note)
        .map_err(|e| CheckpointOfferError::Malformed(e.to_string()))?;
    let checkpoint = parsed.checkpoint();
    let author = checkpoint
        .origin()
        .strip_prefix("kappalog/feed/")
        .and_then(|hex| hex.parse::<Author>().ok());
    Ok(author.map(|a| (a, checkpoint.size())))
}

impl CheckpointBook for MemoryBook {
    fn items(&self) -> Vec<FeedHave> {
        lock(&self.notes)
            .iter()
            .filter(|(_, (size, _))| *size >= 1)
            .map(|(author, (size, note))| FeedHave {
                author: *author,
                length: *size,
                head: note_digest(note),
            })
            .collect()
    }

    fn served(&self, author: &Author) -> Option<Arc<[u8]>> {
        lock(&self.notes).get(author).map(|(_, note)| note.clone())
    }

    fn offer(&self, _peer: &Author, note: &[u8]) -> Result<bool, CheckpointOfferError> {
        let Some((author, size)) = feed_of(note)? else {
            return Ok(false);
        };
        let mut notes = lock(&self.notes);
        let newer = match notes.get(&author) {
            None => true,
            Some((held, served)) => size > *held || (size == *held && note.len() > served.len()),
        };
        if newer {
            notes.insert(author, (size, note.into()));
            drop(notes);
            let _ = self.changes.send(author);
        }
        Ok(newer)
    }

    fn subscribe(&self) -> broadcast::Receiver<Author> {
        self.changes.subscribe()
    }
}
