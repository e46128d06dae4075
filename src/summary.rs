//! The summary view: count, sum, min, max and mean of the entry values, one line per feed,
//! and a digest that two nodes compare to know they hold the same entries.
//!
//! # What the summary says
//!
//! [`Summary`] is the JSON `kappalog summary` prints and `GET /summary` serves:
//!
//! - `count`, `sum`, `min`, `max`, `mean` over the values of every entry of every feed that is
//!   not forked. `sum` is an `i128` (it cannot overflow: 2^64 entries of `i64::MAX` still fit)
//!   serialised as a plain JSON integer; `min`, `max` and `mean` are `null` when `count` is 0.
//!   `mean` is an IEEE double, the only field that is rounded, and is not covered by the digest.
//! - `feeds`: one object per known feed, sorted by author bytes: `author` (hex), `length`,
//!   `head` (hash hex of the last entry), `first_timestamp`, `last_timestamp`, `status`
//!   (`"ok"` or `"forked"`). A forked feed shows only its author and status; its other fields
//!   are `null`, because how much of a forked feed a node holds is not something honest nodes
//!   agree on.
//! - `digest`: lowercase hex sha256 of the canonical state below.
//!
//! # Forks
//!
//! A forked feed is excluded from every aggregate. Because [`SummaryView`] keeps aggregates
//! per feed (count, `i128` sum, min, max) and combines them when the summary is read, removing
//! a feed needs no log scan. Entries of a feed that arrive after it was marked forked are
//! ignored. So the summary depends only on the set of entries held and the set of forked
//! authors, wherever in the feed the fork was noticed.
//!
//! # Canonical state (digest input), version 1
//!
//! All integers are big-endian and fixed width; the digest is `sha256` of these bytes:
//!
//! | size | field                                                          |
//! |------|----------------------------------------------------------------|
//! | 16   | tag: the ASCII bytes `kappalog/summary`                        |
//! | 1    | version: `0x01`                                                |
//! | 8    | count: u64                                                     |
//! | 16   | sum: i128, two's complement                                    |
//! | 9    | min: `0x00` + 8 zero bytes when count is 0, else `0x01` + i64  |
//! | 9    | max: same encoding as min                                      |
//! | 8    | number of feeds: u64                                           |
//! | ..   | one record per feed, in ascending order of author bytes        |
//!
//! A feed record is 32 bytes of author, then a status byte: `0x01` (forked) ends the record;
//! `0x00` (ok) is followed by length (u64), head hash (32 bytes), first timestamp (u64) and
//! last timestamp (u64): 121 bytes in all, 33 for a forked feed. The head hash commits to the
//! whole chain, so equal digests mean equal entries.
//!
//! # Cost
//!
//! `apply` and `mark_forked` are O(log feeds). `summary` is O(feeds) (combine the per-feed
//! aggregates, hash the state) and is cached until the next change, so serving it repeatedly
//! costs nothing in the size of the log.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::entry::{Entry, Seq};
use crate::hash::Hash;
use crate::identity::Author;
use crate::view::View;

/// Domain-separation tag at the start of the digest input.
pub const SUMMARY_DIGEST_TAG: &[u8; 16] = b"kappalog/summary";
/// Version byte of the digest input layout.
pub const SUMMARY_DIGEST_VERSION: u8 = 1;

/// The summary of the view: see the module docs for every field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    pub sum: i128,
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub mean: Option<f64>,
    pub feeds: Vec<FeedSummary>,
    pub digest: Hash,
}

/// One feed's line in the summary. Every field but `author` and `status` is `None` (JSON
/// `null`) for a forked feed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedSummary {
    pub author: Author,
    pub length: Option<Seq>,
    pub head: Option<Hash>,
    pub first_timestamp: Option<u64>,
    pub last_timestamp: Option<u64>,
    pub status: FeedStatus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedStatus {
    Ok,
    Forked,
}

/// Count, sum, min and max of a set of values. Combining two is associative and
/// commutative, which is what makes the summary independent of arrival order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Aggregate {
    count: u64,
    sum: i128,
    /// `Some((min, max))` once at least one value was added.
    range: Option<(i64, i64)>,
}

impl Aggregate {
    fn add(&mut self, value: i64) {
        self.combine(&Aggregate {
            count: 1,
            sum: i128::from(value),
            range: Some((value, value)),
        });
    }

    fn combine(&mut self, other: &Aggregate) {
        // Saturating, not wrapping: neither bound can be reached by a real log (2^64
        // entries), and a saturated figure is less wrong than a wrapped one.
        self.count = self.count.saturating_add(other.count);
        self.sum = self.sum.saturating_add(other.sum);
        self.range = match (self.range, other.range) {
            (Some((a_min, a_max)), Some((b_min, b_max))) => {
                Some((a_min.min(b_min), a_max.max(b_max)))
            }
            (a, b) => a.or(b),
        };
    }

    fn mean(&self) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        // Integer division first keeps the mean exact to the last bit of the double even
        // when the sum is far beyond 2^53; the casts are the intended rounding to f64.
        let count = i128::from(self.count);
        let quotient = self.sum / count;
        let remainder = self.sum % count;
        Some(quotient as f64 + remainder as f64 / count as f64)
    }
}

/// What the view holds for one live (not forked) feed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FeedState {
    length: Seq,
    head: Hash,
    first_timestamp: u64,
    last_timestamp: u64,
    values: Aggregate,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Feed {
    Live(FeedState),
    Forked,
}

/// The summary view. Feed it with [`View::apply`] and [`View::mark_forked`], read it with
/// [`SummaryView::summary`].
#[derive(Debug, Default)]
pub struct SummaryView {
    feeds: BTreeMap<Author, Feed>,
    /// The summary as of the last change; emptied by every change.
    cached: OnceLock<Summary>,
}

impl SummaryView {
    pub fn new() -> SummaryView {
        SummaryView::default()
    }

    /// The current summary: computed in O(feeds) after a change, then served from a cache.
    pub fn summary(&self) -> Summary {
        self.cached.get_or_init(|| self.compute()).clone()
    }

    fn compute(&self) -> Summary {
        let mut total = Aggregate::default();
        let mut feeds = Vec::with_capacity(self.feeds.len());
        for (author, feed) in &self.feeds {
            feeds.push(match feed {
                Feed::Live(state) => {
                    total.combine(&state.values);
                    FeedSummary {
                        author: *author,
                        length: Some(state.length),
                        head: Some(state.head),
                        first_timestamp: Some(state.first_timestamp),
                        last_timestamp: Some(state.last_timestamp),
                        status: FeedStatus::Ok,
                    }
                }
                Feed::Forked => FeedSummary {
                    author: *author,
                    length: None,
                    head: None,
                    first_timestamp: None,
                    last_timestamp: None,
                    status: FeedStatus::Forked,
                },
            });
        }
        let digest = digest(&total, &feeds);
        Summary {
            count: total.count,
            sum: total.sum,
            min: total.range.map(|(min, _)| min),
            max: total.range.map(|(_, max)| max),
            mean: total.mean(),
            feeds,
            digest,
        }
    }
}

impl View for SummaryView {
    fn apply(&mut self, entry: &Entry, hash: &Hash) {
        let expected = match self.feeds.get(&entry.author) {
            None => 1,
            Some(Feed::Live(state)) => state.length.saturating_add(1),
            Some(Feed::Forked) => return,
        };
        if entry.seq != expected {
            // The store hands each entry over once, in seq order; a replayed or out-of-order
            // entry is a caller bug that must not corrupt the aggregates.
            tracing::warn!(
                author = %entry.author,
                seq = entry.seq,
                expected,
                "summary view ignored an entry out of feed order"
            );
            return;
        }
        self.cached = OnceLock::new();
        match self.feeds.get_mut(&entry.author) {
            Some(Feed::Live(state)) => {
                state.length = entry.seq;
                state.head = *hash;
                state.last_timestamp = entry.timestamp;
                state.values.add(entry.value);
            }
            _ => {
                let mut values = Aggregate::default();
                values.add(entry.value);
                self.feeds.insert(
                    entry.author,
                    Feed::Live(FeedState {
                        length: entry.seq,
                        head: *hash,
                        first_timestamp: entry.timestamp,
                        last_timestamp: entry.timestamp,
                        values,
                    }),
                );
            }
        }
    }

    fn mark_forked(&mut self, author: &Author) {
        if self.feeds.insert(*author, Feed::Forked) != Some(Feed::Forked) {
            self.cached = OnceLock::new();
        }
    }
}

/// sha256 of the canonical state (layout in the module docs).
fn digest(total: &Aggregate, feeds: &[FeedSummary]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(SUMMARY_DIGEST_TAG);
    hasher.update([SUMMARY_DIGEST_VERSION]);
    hasher.update(total.count.to_be_bytes());
    hasher.update(total.sum.to_be_bytes());
    let (min, max) = match total.range {
        Some((min, max)) => ((1u8, min), (1u8, max)),
        None => ((0, 0), (0, 0)),
    };
    for (flag, value) in [min, max] {
        hasher.update([flag]);
        hasher.update(value.to_be_bytes());
    }
    // usize -> u64 cannot lose bits on any supported target (at most 64-bit pointers).
    hasher.update(u64::try_from(feeds.len()).unwrap_or(u64::MAX).to_be_bytes());
    for feed in feeds {
        hasher.update(feed.author.as_bytes());
        match (
            feed.status,
            feed.length,
            feed.head,
            feed.first_timestamp,
            feed.last_timestamp,
        ) {
            (FeedStatus::Ok, Some(length), Some(head), Some(first), Some(last)) => {
                hasher.update([0u8]);
                hasher.update(length.to_be_bytes());
                hasher.update(head.as_bytes());
                hasher.update(first.to_be_bytes());
                hasher.update(last.to_be_bytes());
            }
            // `compute` fills every field of a live feed, so this arm is only ever a forked
            // feed.
            _ => hasher.update([1u8]),
        }
    }
    Hash(hasher.finalize().into())
}

#[cfg(test)]
mod tests;
