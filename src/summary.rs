//! The summary view: count, sum, min, max and mean of the entry values, the number of feeds
//! (and of forked feeds), and a digest that two nodes compare to know they hold the same
//! entries; beside it, one line per feed, served a page at a time.
//!
//! [docs/SUMMARY.md](../docs/SUMMARY.md) is the specification: every JSON field, what
//! `first_timestamp` and `last_timestamp` mean, and the digest's input byte by byte (version
//! 2), with a golden vector a third party can check against.
//!
//! # What the summary says
//!
//! [`Summary`] is the constant-size JSON `kappalog summary` prints and `GET /summary` serves
//! (the latter adds `own_feed`, which is about the node, not the entries):
//!
//! - `count`, `sum`, `min`, `max`, `mean` over the values of every entry of every feed that is
//!   not forked. `sum` is an `i128` (it cannot overflow: 2^64 entries of `i64::MAX` still fit)
//!   serialised as a plain JSON integer; `min`, `max` and `mean` are `null` when `count` is 0.
//!   `mean` is an IEEE double, the only field that is rounded, and is not covered by the digest.
//! - `feed_count`: feeds known, forked ones included; `forked_feed_count`: those forked.
//! - `digest`: lowercase hex sha256 over the aggregates and a hash tree of every feed's record.
//!
//! [`SummaryView::feeds_page`] lists the feeds ([`FeedSummary`]) in author order from a
//! cursor, for `GET /feeds`.
//!
//! # Forks
//!
//! A forked feed is excluded from every aggregate and shows only its author and status.
//! Entries of a feed that arrive after it was marked forked are ignored. So the summary
//! depends only on the set of entries held and the set of forked authors, wherever in the
//! feed the fork was noticed.
//!
//! # Cost
//!
//! `apply` is O(log feeds): it folds the value into the running totals and marks the feed's
//! leaf of the digest tree ([`tree`]) dirty. `summary` after a change re-hashes only the
//! dirty leaves and their ancestors (one leaf and ~2 KB of node hashes per changed feed),
//! then caches the result until the next change. Marking a live feed forked is the one
//! change that recombines the totals over every feed (its min or max may have been the
//! total's): O(feeds), once, and forks are rare.

mod aggregate;
pub mod tree;

use std::collections::BTreeMap;
use std::ops::Bound;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::entry::{Entry, Seq};
use crate::hash::Hash;
use crate::identity::Author;
use crate::view::View;
use aggregate::Aggregate;
use tree::{bucket_of, first_author_of, DigestTree};

/// Domain-separation tag at the start of the digest input.
pub const SUMMARY_DIGEST_TAG: &[u8; 16] = b"kappalog/summary";
/// Version byte of the digest input layout (1: every feed record in one hash; 2: the hash
/// tree of docs/SUMMARY.md).
pub const SUMMARY_DIGEST_VERSION: u8 = 2;
/// Feed record status byte of a live feed.
const STATUS_OK: u8 = 0x00;
/// Feed record status byte of a forked feed.
const STATUS_FORKED: u8 = 0x01;

/// The summary of the view: see the module docs for every field.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// Entries held in feeds that are not forked.
    pub count: u64,
    /// The sum of their values; an `i128` so it cannot overflow.
    pub sum: i128,
    /// The smallest value; `None` when `count` is 0.
    pub min: Option<i64>,
    /// The largest value; `None` when `count` is 0.
    pub max: Option<i64>,
    /// `sum / count`, rounded to a double (the one rounded field, left out of the digest);
    /// `None` when `count` is 0.
    pub mean: Option<f64>,
    /// Feeds known, forked ones included.
    pub feed_count: u64,
    /// Feeds known to be forked.
    pub forked_feed_count: u64,
    /// sha256 over the aggregates and the feed hash tree (docs/SUMMARY.md): equal on two
    /// nodes exactly when they hold the same entries and forked authors.
    pub digest: Hash,
}

/// One feed's line in `GET /feeds`. Every field but `author` and `status` is `None` (JSON
/// `null`) for a forked feed: how much of a forked feed a node holds is not something
/// honest nodes agree on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FeedSummary {
    /// The feed's author.
    pub author: Author,
    /// Entries held, which are seqs 1..=length (a feed is held without gaps).
    pub length: Option<Seq>,
    /// The hash of entry `length`.
    pub head: Option<Hash>,
    /// The `timestamp` of entry 1, as its author claims it.
    pub first_timestamp: Option<u64>,
    /// The `timestamp` of the head; may be below `first_timestamp` (author clocks are not
    /// checked).
    pub last_timestamp: Option<u64>,
    /// Whether the feed is forked.
    pub status: FeedStatus,
}

/// Whether a feed counts in the aggregates (JSON: `"ok"` or `"forked"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedStatus {
    /// No fork proof is recorded: the feed counts.
    Ok,
    /// A fork proof is recorded: the feed is left out of every aggregate.
    Forked,
}

/// A page of feeds in author order; `next` is the cursor (the `after`) of the next page,
/// `None` on the last page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FeedsPage {
    /// At most the requested page size, ascending by author.
    pub feeds: Vec<FeedSummary>,
    /// The last author of this page when more follow; `None` on the last page.
    pub next: Option<Author>,
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

impl Feed {
    fn line(&self, author: &Author) -> FeedSummary {
        match self {
            Feed::Live(state) => FeedSummary {
                author: *author,
                length: Some(state.length),
                head: Some(state.head),
                first_timestamp: Some(state.first_timestamp),
                last_timestamp: Some(state.last_timestamp),
                status: FeedStatus::Ok,
            },
            Feed::Forked => FeedSummary {
                author: *author,
                length: None,
                head: None,
                first_timestamp: None,
                last_timestamp: None,
                status: FeedStatus::Forked,
            },
        }
    }

    /// The feed's record in the digest input (docs/SUMMARY.md): 89 bytes live, 33 forked.
    fn hash_record(&self, author: &Author, hasher: &mut Sha256) {
        hasher.update(author.as_bytes());
        match self {
            Feed::Live(state) => {
                hasher.update([STATUS_OK]);
                hasher.update(state.length.to_be_bytes());
                hasher.update(state.head.as_bytes());
                hasher.update(state.first_timestamp.to_be_bytes());
                hasher.update(state.last_timestamp.to_be_bytes());
            }
            Feed::Forked => hasher.update([STATUS_FORKED]),
        }
    }
}

/// The summary view. Feed it with [`View::apply`] and [`View::mark_forked`], read it with
/// [`SummaryView::summary`] and [`SummaryView::feeds_page`].
#[derive(Debug, Default)]
pub struct SummaryView {
    feeds: BTreeMap<Author, Feed>,
    forked: u64,
    /// The aggregate over the live feeds; `None` after a live feed was forked, until the
    /// next read recombines it from the per-feed aggregates.
    totals: Option<Aggregate>,
    tree: DigestTree,
    /// The summary as of the last change; emptied by every change.
    cached: Option<Summary>,
}

impl SummaryView {
    /// The view of an empty log.
    pub fn new() -> SummaryView {
        SummaryView {
            totals: Some(Aggregate::default()),
            ..SummaryView::default()
        }
    }

    /// The current summary: brought up to date after a change (see the module docs for the
    /// cost), then served from a cache.
    pub fn summary(&mut self) -> Summary {
        if let Some(summary) = &self.cached {
            return summary.clone();
        }
        let feeds = &self.feeds;
        let totals = *self.totals.get_or_insert_with(|| {
            let mut totals = Aggregate::default();
            for feed in feeds.values() {
                if let Feed::Live(state) = feed {
                    totals.combine(&state.values);
                }
            }
            totals
        });
        let root = self.tree.root(|bucket, hasher| {
            let records = feeds
                .range(first_author_of(bucket)..)
                .take_while(|(author, _)| bucket_of(author) == bucket);
            for (author, feed) in records {
                feed.hash_record(author, hasher);
            }
        });
        // usize -> u64 cannot lose bits on any supported target (at most 64-bit pointers).
        let feed_count = u64::try_from(feeds.len()).unwrap_or(u64::MAX);
        let summary = Summary {
            count: totals.count,
            sum: totals.sum,
            min: totals.min(),
            max: totals.max(),
            mean: totals.mean(),
            feed_count,
            forked_feed_count: self.forked,
            digest: digest(&totals, feed_count, &root),
        };
        self.cached = Some(summary.clone());
        summary
    }

    /// Up to `limit` feeds in author order, starting after `after` (from the first feed
    /// without it). `after` need not be a feed the view holds. The caller bounds `limit`.
    pub fn feeds_page(&self, after: Option<&Author>, limit: usize) -> FeedsPage {
        let mut rest = match after {
            Some(after) => self
                .feeds
                .range((Bound::Excluded(*after), Bound::Unbounded)),
            None => self.feeds.range(..),
        };
        let feeds: Vec<FeedSummary> = rest
            .by_ref()
            .take(limit)
            .map(|(author, feed)| feed.line(author))
            .collect();
        let next = match rest.next() {
            Some(_) => feeds.last().map(|line| line.author),
            None => None,
        };
        FeedsPage { feeds, next }
    }

    fn changed(&mut self, author: &Author) {
        self.cached = None;
        self.tree.mark(bucket_of(author));
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
        self.changed(&entry.author);
        if let Some(totals) = &mut self.totals {
            totals.add(entry.value);
        }
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
        match self.feeds.insert(*author, Feed::Forked) {
            Some(Feed::Forked) => return,
            // Its values leave the totals; min and max cannot be un-combined, so the next
            // read recombines them all.
            Some(Feed::Live(_)) => self.totals = None,
            None => {}
        }
        self.forked = self.forked.saturating_add(1);
        self.changed(author);
    }
}

/// sha256 of the digest input (docs/SUMMARY.md): tag, version, the aggregates, the number
/// of feeds and the tree's root.
fn digest(totals: &Aggregate, feed_count: u64, root: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(SUMMARY_DIGEST_TAG);
    hasher.update([SUMMARY_DIGEST_VERSION]);
    hasher.update(totals.count.to_be_bytes());
    hasher.update(totals.sum.to_be_bytes());
    for bound in [totals.min(), totals.max()] {
        match bound {
            Some(value) => {
                hasher.update([1u8]);
                hasher.update(value.to_be_bytes());
            }
            None => hasher.update([0u8; 9]),
        }
    }
    hasher.update(feed_count.to_be_bytes());
    hasher.update(root.as_bytes());
    Hash(hasher.finalize().into())
}

#[cfg(test)]
mod tests;
