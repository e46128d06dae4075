//! How a note reaches the book: a peer's ([`CheckpointBook::offer`]), the own feed's
//! ([`CheckpointBook::offer_own`]) and, through [`CheckpointBook::offer_parsed`], an
//! operator's (`submit.rs`); each checked and offered line by line under the book's one
//! lock (the parent module's docs, "What a note does").

use std::sync::atomic::Ordering;

use super::{
    AuthorOutcome, CheckpointBook, CheckpointOfferError, CosignatureTally, Feed, NoteOutcome,
    NoteReport, State,
};
use crate::identity::Author;
use crate::poison::lock;
use crate::tlog::author_checkpoint::{author_of_origin, AuthorCheckpointError};
use crate::tlog::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::tlog::feed_checkpoints::{CosignatureOffer, FeedCheckpoints, Offer};
use crate::tlog::note::{NoteSignature, MAX_NOTE_BYTES, MAX_SIGNATURES};
use crate::tlog::vkey::VerifierKey;

impl CheckpointBook {
    /// Offers a checkpoint note a peer (`from`) sent (module docs): `Ok(true)` when the
    /// served note of its feed changed.
    pub fn offer(&self, from: &Author, note: &[u8]) -> Result<bool, CheckpointOfferError> {
        self.counted(&format!("peer {from}"), || {
            let (author, signed) = parse_note(note)?;
            self.offer_parsed(author, &signed)
        })
        .map(|outcome| outcome.changed())
    }

    /// Counts a note received and what became of it.
    pub(super) fn counted(
        &self,
        from: &str,
        offer: impl FnOnce() -> Result<NoteOutcome, CheckpointOfferError>,
    ) -> Result<NoteOutcome, CheckpointOfferError> {
        let counters = &self.inner.counters;
        counters.notes_received.fetch_add(1, Ordering::Relaxed);
        let outcome = offer();
        match &outcome {
            Ok(outcome) if outcome.changed() => {
                counters.notes_kept.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if e.is_violation() => {
                counters.notes_refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("checkpoint note from {from} refused: {e}");
            }
            Err(e) => tracing::warn!("checkpoint note not checked: {e}"),
            Ok(_) => {}
        }
        outcome
    }

    /// Offers a parsed note of `author`'s feed, if the node holds it and it is not forked.
    pub(super) fn offer_parsed(
        &self,
        author: Author,
        signed: &SignedCheckpoint,
    ) -> Result<NoteOutcome, CheckpointOfferError> {
        if self.is_forked(&author) {
            self.inner
                .counters
                .notes_unknown_feed
                .fetch_add(1, Ordering::Relaxed);
            return Ok(NoteOutcome::Forked(author));
        }
        if self.inner.reader.head(&author).is_none() {
            self.inner
                .counters
                .notes_unknown_feed
                .fetch_add(1, Ordering::Relaxed);
            return Ok(NoteOutcome::UnknownFeed(author));
        }
        self.offer_signed(author, signed).map(NoteOutcome::Checked)
    }

    /// Offers the node's own newest checkpoint (the tree follower's).
    pub fn offer_own(&self) -> Result<bool, CheckpointOfferError> {
        let Some(own) = self.inner.trees.own_checkpoint() else {
            return Ok(false);
        };
        self.offer_signed(self.inner.own, &own)
            .map(|report| report.changed)
    }

    /// Offers `signed` of `author`'s (held) feed: steps 1 to 3 of the module docs.
    fn offer_signed(
        &self,
        author: Author,
        signed: &SignedCheckpoint,
    ) -> Result<NoteReport, CheckpointOfferError> {
        let trees = &self.inner.trees;
        let held_size = trees.size(&author);
        let root_at = |size| trees.root(&author, size);
        let mut state = lock(&self.inner.state);
        let feed = state.feeds.entry(author).or_insert_with(|| Feed {
            checkpoints: FeedCheckpoints::new(author),
            served: None,
        });
        let offered = feed
            .checkpoints
            .offer_author(signed, held_size, root_at)
            .map_err(CheckpointOfferError::Storage)?;
        let mut fork = None;
        let outcome = AuthorOutcome::of(&offered);
        match offered {
            Offer::Invalid(e) => return Err(e.into()),
            Offer::WrongFeed(_) => {
                return Err(AuthorCheckpointError::NotAFeedOrigin(
                    signed.checkpoint().origin().to_owned(),
                )
                .into())
            }
            Offer::Pending => {
                state.pending.insert(author);
            }
            Offer::Fork(evidence) => fork = Some(evidence),
            Offer::Kept | Offer::NotNewer | Offer::Superseded | Offer::Inconsistent => {}
        }
        let cosignatures = self.offer_cosignatures(&mut state, author, signed, held_size)?;
        let changed = self.settle(&mut state, author);
        drop(state);
        if let Some(evidence) = fork {
            self.fork_found(author, *evidence);
        }
        Ok(NoteReport {
            author,
            size: signed.checkpoint().size(),
            // Invalid and WrongFeed returned above; the fallback is never reached.
            checkpoint: outcome.unwrap_or(AuthorOutcome::Inconsistent),
            cosignatures,
            changed,
        })
    }

    /// Step 2: each line but the author's, whose key can be known.
    fn offer_cosignatures(
        &self,
        state: &mut State,
        author: Author,
        signed: &SignedCheckpoint,
        held_size: u64,
    ) -> Result<CosignatureTally, CheckpointOfferError> {
        let mut tally = CosignatureTally::default();
        let origin = signed.checkpoint().origin();
        let lines = signed.note().signatures();
        for line in lines
            .iter()
            .filter(|l| l.name() != origin)
            .take(MAX_SIGNATURES)
        {
            let Some(vkey) = self.inner.keys.resolve(line) else {
                self.inner
                    .counters
                    .cosignatures_unknown_key
                    .fetch_add(1, Ordering::Relaxed);
                tally.unknown_key += 1;
                continue;
            };
            tally.count(self.offer_cosignature(
                state,
                author,
                &vkey,
                signed.checkpoint(),
                line,
                held_size,
            )?);
        }
        Ok(tally)
    }

    fn offer_cosignature(
        &self,
        state: &mut State,
        author: Author,
        vkey: &VerifierKey,
        checkpoint: &Checkpoint,
        line: &NoteSignature,
        held_size: u64,
    ) -> Result<CosignatureOffer, CheckpointOfferError> {
        let trees = &self.inner.trees;
        let own_key = *self.inner.own.as_bytes();
        let keys = &self.inner.keys;
        let Some(feed) = state.feeds.get_mut(&author) else {
            return Ok(CosignatureOffer::Invalid);
        };
        feed.checkpoints
            .offer_cosignature(
                vkey,
                checkpoint,
                line,
                held_size,
                |size| trees.root(&author, size),
                |k| keys.is_trusted(k) || *k.key().as_bytes() == own_key,
            )
            .map_err(CheckpointOfferError::Storage)
    }

    /// Adds the node's own cosignature (made by [`cosign`]) over `checkpoint` of `author`.
    pub(super) fn add_own_cosignature(
        &self,
        author: Author,
        vkey: &VerifierKey,
        checkpoint: &Checkpoint,
        line: &NoteSignature,
    ) -> Result<bool, CheckpointOfferError> {
        let held_size = self.inner.trees.size(&author);
        let mut state = lock(&self.inner.state);
        let offered =
            self.offer_cosignature(&mut state, author, vkey, checkpoint, line, held_size)?;
        if offered == CosignatureOffer::Kept {
            self.inner
                .counters
                .cosignatures_made
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(self.settle(&mut state, author))
    }
}

/// Bounds and parses a note of a feed's origin (module docs, first paragraph).
pub(super) fn parse_note(note: &[u8]) -> Result<(Author, SignedCheckpoint), CheckpointOfferError> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(CheckpointOfferError::TooLarge { len: note.len() });
    }
    let signed = SignedCheckpoint::parse(note)?;
    let origin = signed.checkpoint().origin();
    let author = author_of_origin(origin)
        .ok_or_else(|| AuthorCheckpointError::NotAFeedOrigin(origin.to_owned()))?;
    Ok((author, signed))
}
