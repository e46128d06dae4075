//! What the book did with one note, part by part: the author checkpoint's outcome and a
//! tally of its cosignature lines. Sync needs only whether the served note changed; an
//! operator submitting a note (`POST /feeds/AUTHOR/checkpoint`) is told all of it. Pure.

use serde::Serialize;

use crate::identity::Author;
use crate::tlog::feed_checkpoints::{CosignatureOffer, Offer};

/// What became of a note's author checkpoint of a held feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorOutcome {
    /// Consistent with the entries and larger than the one kept: now served.
    Kept,
    /// Consistent with the entries, not larger than the one kept.
    NotNewer,
    /// Beyond the entries held: waits for them.
    Pending,
    /// Beyond the entries held, and a larger one waits: dropped.
    Superseded,
    /// Disagrees with the entries held: dropped.
    Inconsistent,
    /// Conflicts with an author checkpoint the node keeps: a split view, recorded.
    Fork,
}

impl AuthorOutcome {
    /// The outcome of an [`Offer`] the book did not refuse (`Invalid` and `WrongFeed` are
    /// refusals: None).
    pub(super) fn of(offer: &Offer) -> Option<AuthorOutcome> {
        Some(match offer {
            Offer::Kept => AuthorOutcome::Kept,
            Offer::NotNewer => AuthorOutcome::NotNewer,
            Offer::Pending => AuthorOutcome::Pending,
            Offer::Superseded => AuthorOutcome::Superseded,
            Offer::Inconsistent => AuthorOutcome::Inconsistent,
            Offer::Fork(_) => AuthorOutcome::Fork,
            Offer::Invalid(_) | Offer::WrongFeed(_) => return None,
        })
    }
}

/// How a note's cosignature lines (the author's own line not counted) fared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CosignatureTally {
    /// Kept: a new cosigner, or a larger checkpoint of a kept one.
    pub kept: usize,
    /// The cosigner already has one at least as large kept.
    pub not_newer: usize,
    /// Under a name whose key the book does not know: dropped unchecked.
    pub unknown_key: usize,
    /// Under a known key, but it does not verify.
    pub invalid: usize,
    /// Over a checkpoint beyond the entries held: not kept (peers send it again).
    pub ahead: usize,
    /// Over a checkpoint that disagrees with the entries held.
    pub inconsistent: usize,
    /// The feed's cosigner set is full of cosigners ranked above this one.
    pub over_cap: usize,
}

impl CosignatureTally {
    pub(super) fn count(&mut self, offer: CosignatureOffer) {
        let slot = match offer {
            CosignatureOffer::Kept => &mut self.kept,
            CosignatureOffer::NotNewer => &mut self.not_newer,
            CosignatureOffer::Invalid => &mut self.invalid,
            CosignatureOffer::Ahead => &mut self.ahead,
            CosignatureOffer::Inconsistent => &mut self.inconsistent,
            CosignatureOffer::OverCap => &mut self.over_cap,
        };
        *slot += 1;
    }

    /// Lines not kept, whatever the reason.
    pub fn dropped(&self) -> usize {
        self.unknown_key + self.invalid + self.ahead + self.inconsistent + self.over_cap
    }
}

/// What the book did with a note it parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoteOutcome {
    /// Of a feed the node does not hold: dropped unchecked.
    UnknownFeed(Author),
    /// Of a forked feed: the book takes no notes for it.
    Forked(Author),
    /// Of a held feed: checked, part by part.
    Checked(NoteReport),
}

impl NoteOutcome {
    /// Whether the feed's served note changed.
    pub fn changed(&self) -> bool {
        matches!(self, NoteOutcome::Checked(report) if report.changed)
    }
}

/// A checked note of a held feed, part by part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteReport {
    /// The feed.
    pub author: Author,
    /// The author checkpoint's size.
    pub size: u64,
    /// What became of the author checkpoint.
    pub checkpoint: AuthorOutcome,
    /// What became of the cosignature lines.
    pub cosignatures: CosignatureTally,
    /// Whether the feed's served note changed (and was journalled and announced).
    pub changed: bool,
}
