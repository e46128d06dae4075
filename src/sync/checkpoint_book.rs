//! What a v3 session needs from the node's checkpoints (docs/PROTOCOL.md section 7,
//! "Checkpoints"): the items of the checkpoint reconciliation, the note a feed serves, a
//! place to hand the notes a peer sends, and a wake-up when a served note changes. The node
//! implements [`CheckpointBook`]; sessions only move bytes and never parse or verify a note
//! themselves, so every rule about which checkpoint a node keeps lives behind the trait.

use std::fmt;
use std::sync::Arc;

use tokio::sync::broadcast;

use super::feed_have::FeedHave;
use crate::hash::Hash;
use crate::identity::Author;

/// The node's checkpoints as sync sees them.
pub trait CheckpointBook: Send + Sync + 'static {
    /// One item per feed with a served checkpoint, sorted by author: `length` the
    /// checkpoint's tree size (at least 1), `head` [`note_digest`] of the served note.
    fn items(&self) -> Vec<FeedHave>;
    /// The served note of a feed: the author's checkpoint and its cosignature lines, the
    /// bytes `GET /feeds/AUTHOR/checkpoint` serves.
    fn served(&self, author: &Author) -> Option<Arc<[u8]>>;
    /// A note the authenticated peer `peer` sent: `Ok(true)` if it changed what this node
    /// serves (the sessions then push it on), `Ok(false)` if it was dropped (stale, of a feed
    /// the node does not hold, a split view it recorded as evidence: none of them the peer's
    /// fault), an error if it is malformed or the book failed.
    fn offer(&self, peer: &Author, note: &[u8]) -> Result<bool, CheckpointOfferError>;
    /// Wakes with a feed's author whenever its served note changes.
    fn subscribe(&self) -> broadcast::Receiver<Author>;
}

/// Why [`CheckpointBook::offer`] refused a note.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointOfferError {
    /// Not a signed checkpoint note, or its author signature does not verify: a note no
    /// honest node serves, so the session ends with `Bye(ProtocolViolation)`.
    #[error("malformed checkpoint note: {0}")]
    Malformed(String),
    /// The book could not take the note (storage): not the peer's fault.
    #[error("checkpoint book failed: {0}")]
    Internal(String),
}

/// The `head` of a checkpoint item: SHA-256 of the served note's bytes, so two nodes serving
/// the same size with different cosignatures see different items.
pub fn note_digest(note: &[u8]) -> Hash {
    Hash::digest_parts(&[note])
}

/// The feed a note names in its first line (its origin), unverified: only for keeping track
/// of which note a peer holds, never for deciding what the node serves. `None` if the first
/// line is no feed origin.
pub fn note_author(note: &[u8]) -> Option<Author> {
    let origin = note.split(|b| *b == b'\n').next()?;
    crate::tlog::author_checkpoint::author_of_origin(std::str::from_utf8(origin).ok()?)
}

/// The book a [`super::SyncConfig`] carries; `None` there is a book with nothing.
#[derive(Clone)]
pub struct SharedBook(pub Arc<dyn CheckpointBook>);

impl fmt::Debug for SharedBook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedBook(..)")
    }
}
