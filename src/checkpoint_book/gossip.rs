//! The book as peer sync sees it: [`crate::sync::checkpoint_book::CheckpointBook`], the
//! trait a v3 session reconciles checkpoint items over, fetches served notes from, offers
//! received notes to and subscribes to for live pushes. Only the types differ from the
//! book's own methods; the rules are the book's ([`super`]).

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::hash::Hash;
use crate::identity::Author;
use crate::sync::checkpoint_book::{self as sync_book, CheckpointOfferError};
use crate::sync::feed_have::FeedHave;

use super::CheckpointBook;

impl sync_book::CheckpointBook for CheckpointBook {
    fn items(&self) -> Vec<FeedHave> {
        CheckpointBook::items(self)
            .into_iter()
            // A served checkpoint covers at least one entry (the book keeps none of size
            // 0), and a reconciliation item's length is at least 1.
            .filter(|item| item.size >= 1)
            .map(|item| FeedHave {
                author: item.author,
                length: item.size,
                head: Hash(item.note_sha256),
            })
            .collect()
    }

    fn served(&self, author: &Author) -> Option<Arc<[u8]>> {
        CheckpointBook::served(self, author)
    }

    fn offer(&self, peer: &Author, note: &[u8]) -> Result<bool, CheckpointOfferError> {
        CheckpointBook::offer(self, peer, note).map_err(|e| {
            if e.is_violation() {
                CheckpointOfferError::Malformed(e.to_string())
            } else {
                CheckpointOfferError::Internal(e.to_string())
            }
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<Author> {
        CheckpointBook::subscribe(self)
    }
}
