//! Rebuilding the book from `DATA_DIR/checkpoints` at open, without reading the log.

use std::collections::BTreeMap;

use crate::identity::Author;
use crate::poison::lock;
use crate::tlog::checkpoint::SignedCheckpoint;
use crate::tlog::feed_checkpoints::{FeedCheckpoints, Offer};

use super::{CheckpointBook, Feed, Served};

impl CheckpointBook {
    /// Rebuilds the state from the journal's notes, trusting each note's root (it was
    /// checked against the tree when kept) but checking its signatures again.
    pub(super) fn replay(&self, notes: BTreeMap<Author, Vec<u8>>) {
        let mut state = lock(&self.inner.state);
        let mut dropped = 0usize;
        for (author, bytes) in notes {
            let Ok(signed) = SignedCheckpoint::parse(&bytes) else {
                dropped += 1;
                continue;
            };
            let (size, root) = (signed.checkpoint().size(), *signed.checkpoint().root());
            let own_root = |s: u64| if s == size { Ok(root) } else { Err(()) };
            let mut feed = FeedCheckpoints::new(author);
            if !matches!(feed.offer_author(&signed, size, own_root), Ok(Offer::Kept)) {
                dropped += 1;
                continue;
            }
            let origin = signed.checkpoint().origin();
            for line in signed
                .note()
                .signatures()
                .iter()
                .filter(|l| l.name() != origin)
            {
                if let Some(vkey) = self.inner.keys.resolve(line) {
                    let own_key = *self.inner.own.as_bytes();
                    let keys = &self.inner.keys;
                    let _ = feed.offer_cosignature(
                        &vkey,
                        signed.checkpoint(),
                        line,
                        size,
                        own_root,
                        |k| keys.is_trusted(k) || *k.key().as_bytes() == own_key,
                    );
                }
            }
            let served = feed.served().map(Served::new);
            if author != self.inner.own {
                // Cosigned again at the first tick: a repeat of what the witness journal
                // holds costs no write, and brings back a cosignature the journal lost.
                state.to_cosign.insert(author);
            }
            state.feeds.insert(
                author,
                Feed {
                    checkpoints: feed,
                    served,
                },
            );
        }
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "checkpoints journal: notes that no longer verify were dropped"
            );
        }
    }
}
