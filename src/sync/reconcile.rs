//! Range-based set reconciliation of feed states (in the style of negentropy and Willow's
//! range-based sync): two nodes find out what the other holds by comparing fingerprints of
//! ranges of the sorted author space and exchanging item lists only where ranges differ.
//! Two nodes holding the same feeds settle with one round of [`RECONCILE_BUCKETS`]
//! fingerprints and a one-range answer. Pure: frames in, frames out, no I/O.
//!
//! # Items and fingerprints
//!
//! An item is one [`FeedHave`] `(author, length >= 1, head)`; a side holds at most one item
//! per author, sorted ascending by author. The **item hash** is sha256 of 93 bytes:
//!
//! | offset | bytes | field                                         |
//! |--------|-------|-----------------------------------------------|
//! | 0      | 21    | the ASCII tag `kappalog/reconcile/v2`         |
//! | 21     | 32    | author                                        |
//! | 53     | 8     | length, u64 big-endian                        |
//! | 61     | 32    | head                                          |
//!
//! The **fingerprint** of a set of items (the empty set included): read each item hash as a
//! 256-bit little-endian unsigned integer and add them modulo 2^256; the fingerprint is the
//! first 16 bytes of sha256 of 40 bytes: that sum (32 bytes, little-endian), then the number
//! of items (u64 big-endian). The sum is order-free and subtractable, so [`Reconciler::new`]
//! keeps prefix sums and a range's fingerprint costs two binary searches and a subtraction.
//!
//! # Ranges and rounds
//!
//! A range is `[lower, upper)` over authors compared as bytes. A [`Bound`] is an exclusive
//! upper bound: an author, or [`Bound::End`] (past the last possible author). A **round** is
//! one or more [`Reconcile`] frames from one side, the last with `last: true`. Its ranges,
//! concatenated over its frames, tile the author space: the first starts at the all-zero
//! author (inclusive), each next one starts at the previous `upper`, every range is non-empty
//! (`upper` above its start, so uppers strictly ascend across the round) and the round ends at
//! `End`. A sender may cut a range into consecutive sub-ranges; big item lists are cut so that
//! each frame holds at most [`MAX_RECONCILE_RANGES_PER_FRAME`] ranges and
//! [`MAX_RECONCILE_ITEMS_PER_FRAME`] items.
//!
//! # What the receiver of a round answers, range by range
//!
//! - `Skip`: `Skip`.
//! - `Fingerprint(fp)`: equal to ours over the range -> `Skip`. Otherwise, if we hold at most
//!   [`RECONCILE_ITEMS_THRESHOLD`] items there, `Items(ours)`; else the range is cut at our
//!   item authors into [`RECONCILE_BUCKETS`] sub-ranges of nearly equal counts, each answered
//!   with its `Fingerprint`.
//! - `Items(theirs)` (the peer's complete list for the range): `ItemsReply(ours)`.
//! - `ItemsReply(theirs)`: `Skip`.
//!
//! Consecutive `Skip`s merge. An answer that is all `Skip` is the single frame
//! `[Skip up to End], last: true`; its sender is then done, and so is its receiver, which sends
//! nothing more. The initiator (the dialer) opens with its whole list as `Items` if it holds at
//! most [`RECONCILE_ITEMS_THRESHOLD`] items (an empty list included), else with
//! [`RECONCILE_BUCKETS`] fingerprints.
//!
//! # What each side learns
//!
//! A range is settled when a fingerprint we received equals ours, when the peer answers `Skip`
//! to a fingerprint we sent (in both cases the peer holds exactly our items there), or when
//! the peer lists its items there (`Items` or `ItemsReply`). An honest exchange settles the
//! whole author space, and [`Reconciler::peer_feeds`] is then exactly the peer's set.
//!
//! # Rules a received frame must meet (each its own [`ReconcileError`] variant)
//!
//! - a round is expected: no frame once reconciliation ended or failed;
//! - the frame has at least one range, at most [`MAX_RECONCILE_RANGES_PER_FRAME`] ranges and
//!   at most [`MAX_RECONCILE_ITEMS_PER_FRAME`] items;
//! - at most [`MAX_RECONCILE_ROUNDS`] rounds, [`MAX_RECONCILE_PEER_RANGES`] ranges and
//!   [`MAX_RECONCILE_PEER_ITEMS`] items from the peer per session;
//! - every range is non-empty and starts where the previous one ended (also across frames);
//! - a `last` frame ends at `End`;
//! - listed items lie in their range, ascend strictly by author and have `length >= 1`;
//! - every range answers what our previous round sent over the part of the author space it
//!   covers, as an honest [`Reconciler`] would (the answer rules, next).
//!
//! # The answer rules
//!
//! A peer's range may cover several of the ranges of our previous round (consecutive `Skip`s
//! merge) or part of one (a split, or a list cut by the frame limits). Against each of ours it
//! overlaps, its mode must be one an honest answer gives there:
//!
//! | we sent over that part        | the peer may send there         | else                   |
//! |-------------------------------|---------------------------------|------------------------|
//! | nothing (its opening round)   | `Fingerprint`, `Items`          | [`ReconcileError::NotAnOpening`] |
//! | `Skip` or `ItemsReply`        | `Skip`                          | [`ReconcileError::SettledRangeReopened`] |
//! | `Fingerprint`                 | `Skip`, `Fingerprint`, `Items`  | [`ReconcileError::ReplyWithoutItems`] (an `ItemsReply`) |
//! | `Items`                       | `ItemsReply`                    | [`ReconcileError::ItemsUnanswered`] |
//!
//! A range settles once: where both sides listed their items, or where a fingerprint matched,
//! each side sends `Skip` from then on, and a peer may not reopen it. Without these rules a
//! peer could keep a settled range (or the whole author space) in play round after round
//! until [`MAX_RECONCILE_ROUNDS`], each round costing us a pass over its ranges and an
//! answer. With them a peer can only cut unsettled ranges finer: its `Fingerprint` lies
//! inside one of ours, where we hold a sixteenth of the items of the range we split, and
//! where we hold at most [`RECONCILE_ITEMS_THRESHOLD`] we list them, which it must answer with
//! its list. So even a peer that never splits a range itself ends the exchange within about
//! two rounds per factor of 16 in our item count, plus four (12 rounds for a million feeds),
//! and the round cap is a backstop that no exchange within these rules reaches.

use serde::{Deserialize, Serialize};

use crate::identity::Author;

use super::feed_have::FeedHave;
use super::limits::MAX_FRAME_BYTES;
use super::plan::{FeedState, Feeds};
use super::raw;

mod fingerprint;

use fingerprint::PrefixSums;
pub use fingerprint::{fingerprint, Fingerprint};

/// The most ranges in one [`Reconcile`] frame.
pub const MAX_RECONCILE_RANGES_PER_FRAME: usize = 4096;
/// The most items, over all its ranges, in one [`Reconcile`] frame.
pub const MAX_RECONCILE_ITEMS_PER_FRAME: usize = 8192;
/// How many sub-ranges a differing range is cut into.
pub const RECONCILE_BUCKETS: usize = 16;
/// A differing range where we hold at most this many items is answered with its item list.
pub const RECONCILE_ITEMS_THRESHOLD: usize = 32;
/// The most rounds a node receives in one session. Each split divides a range's items by
/// [`RECONCILE_BUCKETS`], so an honest exchange needs few (2^20 differing items, evenly
/// spread: 7 rounds in all); the cap stops a peer that never lets the exchange end.
pub const MAX_RECONCILE_ROUNDS: usize = 64;
/// The most items the peer may list in one session: it bounds the memory the recorded peer
/// feeds take, whatever a peer claims to hold.
pub const MAX_RECONCILE_PEER_ITEMS: usize = 1 << 20;
/// The most ranges the peer may send in one session: each costs us a binary search and a
/// buffered answer range until its round ends, so an endless round of empty ranges would
/// otherwise grow without bound. Honest sessions within the item cap stay far below it.
pub const MAX_RECONCILE_PEER_RANGES: usize = 1 << 21;
/// The most `Reconcile` frames a peer may send in one session. The receiving half hands
/// frames to the sending half without waiting on it, so this bounds what can queue between
/// them: the peer item limit fills 128 frames, and fingerprint rounds are small.
pub const MAX_RECONCILE_FRAMES_PER_SESSION: usize = 512;

// A full frame fits in one protocol frame. Per range at most 34 bytes of bound (variant tag,
// length prefix, 32 author bytes) and 17 of mode (tag and 16 fingerprint bytes, or tag and a
// list length of at most 3 bytes); per item at most 33 + 9 + 33 bytes (as in a `Have`); 16
// bytes of slack for the vector length, `last` and an enclosing message tag.
const _: () = assert!(
    (34 + 17) * MAX_RECONCILE_RANGES_PER_FRAME + (33 + 9 + 33) * MAX_RECONCILE_ITEMS_PER_FRAME + 16
        < MAX_FRAME_BYTES
);
// A range cut into buckets has more items than buckets, so no bucket is empty.
const _: () = assert!(RECONCILE_ITEMS_THRESHOLD >= RECONCILE_BUCKETS);

/// The lowest author: where the first range of a round starts.
const FIRST_AUTHOR: Author = Author([0; 32]);

/// The exclusive upper end of a range. `Author(a) < End` for every `a`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Bound {
    /// Up to this author, not including it.
    Author(#[serde(with = "raw")] Author),
    /// Up to and including the highest author: the last range of every round ends here.
    End,
}

/// What a range carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RangeMode {
    /// Settled, or nothing to say about it.
    Skip,
    /// The sender's fingerprint over the range.
    Fingerprint(Fingerprint),
    /// The sender's complete list for the range; answer with yours.
    Items(Vec<FeedHave>),
    /// The sender's complete list for the range, answering an `Items`.
    ItemsReply(Vec<FeedHave>),
}

impl RangeMode {
    /// The items a range lists (none for `Skip` and `Fingerprint`).
    pub fn item_count(&self) -> usize {
        self.items().len()
    }

    fn items(&self) -> &[FeedHave] {
        match self {
            RangeMode::Items(items) | RangeMode::ItemsReply(items) => items,
            RangeMode::Skip | RangeMode::Fingerprint(_) => &[],
        }
    }
}

/// One range of a round: from where the previous range ended (or the all-zero author) up to
/// `upper`, exclusive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// Where the range ends, exclusive; above the previous range's `upper`.
    pub upper: Bound,
    /// What the sender says about the feeds in the range.
    pub mode: RangeMode,
}

/// One frame of a round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconcile {
    /// 1 to `MAX_RECONCILE_RANGES_PER_FRAME` ranges, ascending and adjacent.
    pub ranges: Vec<Range>,
    /// This frame ends the round.
    pub last: bool,
}

/// What to do once a received round is complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these frames. If they are the all-`Skip` frame, reconciliation is done.
    Reply(Vec<Reconcile>),
    /// The peer's round was all `Skip`: reconciliation is done, send nothing.
    Done,
}

/// A received frame that breaks a rule of the module docs. `range` and `item` index the
/// frame's ranges and that range's items. Every variant ends reconciliation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReconcileError {
    /// A frame after reconciliation ended, done or failed.
    #[error("reconcile frame received when no round is expected")]
    NotExpecting,
    /// A frame with no ranges, which would advance nothing.
    #[error("reconcile frame without ranges")]
    EmptyFrame,
    /// A frame with more than `MAX_RECONCILE_RANGES_PER_FRAME` ranges.
    #[error(
        "reconcile frame of {count} ranges exceeds the limit of {MAX_RECONCILE_RANGES_PER_FRAME}"
    )]
    TooManyRanges {
        /// Ranges in the frame.
        count: usize,
    },
    /// A frame listing more than `MAX_RECONCILE_ITEMS_PER_FRAME` items over all its ranges.
    #[error(
        "reconcile frame of {count} items exceeds the limit of {MAX_RECONCILE_ITEMS_PER_FRAME}"
    )]
    TooManyItems {
        /// Items in the frame.
        count: usize,
    },
    /// The peer kept reconciling past `MAX_RECONCILE_ROUNDS` rounds.
    #[error("more than {MAX_RECONCILE_ROUNDS} reconcile rounds")]
    TooManyRounds,
    /// The peer sent more than `MAX_RECONCILE_PEER_RANGES` ranges in the session.
    #[error("more than {MAX_RECONCILE_PEER_RANGES} reconcile ranges in the session")]
    TooManyPeerRanges,
    /// The peer listed more than `MAX_RECONCILE_PEER_ITEMS` items in the session.
    #[error("more than {MAX_RECONCILE_PEER_ITEMS} reconcile items in the session")]
    TooManyPeerItems,
    /// A range whose `upper` is not above the previous range's.
    #[error("range {range} does not end above where it starts")]
    RangesNotAscending {
        /// The range's index in its frame.
        range: usize,
    },
    /// The frame marked `last` does not end at [`Bound::End`].
    #[error("the last frame of the round ends before the end of the author space")]
    RoundNotEnded,
    /// An item whose author is not within its range's bounds.
    #[error("range {range}, item {item}: author {author} lies outside the range")]
    ItemOutsideRange {
        /// The range's index in its frame.
        range: usize,
        /// The item's index in its range.
        item: usize,
        /// The item's author.
        author: Author,
    },
    /// An item whose author is not above the previous item's (duplicates included).
    #[error("range {range}, item {item}: authors not strictly ascending")]
    ItemsNotAscending {
        /// The range's index in its frame.
        range: usize,
        /// The item's index in its range.
        item: usize,
    },
    /// An item stating length 0: an empty feed is not held, so it is never listed.
    #[error("range {range}, item {item}: length 0")]
    EmptyFeed {
        /// The range's index in its frame.
        range: usize,
        /// The item's index in its range.
        item: usize,
    },
    /// We sent `Items` for a range and the answer is not an `ItemsReply`.
    #[error("range {range} does not answer the items we sent with its own")]
    ItemsUnanswered {
        /// The range's index in its frame.
        range: usize,
    },
    /// The peer's first round has a range that is neither a fingerprint nor an item list.
    #[error("range {range}: an opening round holds only fingerprints and item lists")]
    NotAnOpening {
        /// The range's index in its frame.
        range: usize,
    },
    /// A range settled in an earlier round answered with anything but `Skip`.
    #[error("range {range} reopens a range settled in an earlier round (only skip may answer it)")]
    SettledRangeReopened {
        /// The range's index in its frame.
        range: usize,
    },
    /// An `ItemsReply` for a range where we sent no `Items`.
    #[error("range {range} is an items reply where we sent no item list")]
    ReplyWithoutItems {
        /// The range's index in its frame.
        range: usize,
    },
}

/// One side of a reconciliation (see the module docs).
#[derive(Debug)]
pub struct Reconciler {
    items: Vec<FeedHave>,
    prefix: PrefixSums,
    phase: Phase,
    /// The ranges of our last round and what we sent in each (empty before our first).
    sent: Vec<(Bound, Sent)>,
    /// The peer's items over the settled ranges.
    peer: Feeds,
    rounds: usize,
    peer_ranges: usize,
    peer_items: usize,
}

#[derive(Debug)]
enum Phase {
    /// Before the peer's next round.
    Waiting,
    /// Within a round of the peer's.
    Receiving(Round),
    Done,
    Failed,
}

/// A round of the peer's being received.
#[derive(Debug)]
struct Round {
    /// Where the next range starts; `None` once a range ended at `End`.
    start: Option<Author>,
    /// Our answer so far, consecutive `Skip`s merged.
    answer: Vec<Range>,
    only_skips: bool,
}

/// What we sent over a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sent {
    Skip,
    Fingerprint,
    Items,
    ItemsReply,
}

impl Reconciler {
    /// `items` sorted strictly ascending by author, each with `length >= 1`.
    pub fn new(items: Vec<FeedHave>) -> Reconciler {
        debug_assert!(items.windows(2).all(|w| w[0].author < w[1].author));
        debug_assert!(items.iter().all(|item| item.length >= 1));
        Reconciler {
            prefix: PrefixSums::new(&items),
            items,
            phase: Phase::Waiting,
            sent: Vec::new(),
            peer: Feeds::new(),
            rounds: 0,
            peer_ranges: 0,
            peer_items: 0,
        }
    }

    /// The initiator's first round. Call once, before receiving anything.
    pub fn initiate(&mut self) -> Vec<Reconcile> {
        debug_assert!(self.sent.is_empty() && self.rounds == 0);
        let mut ranges = Vec::new();
        self.describe(Bound::End, 0, self.items.len(), &mut ranges);
        self.send(ranges)
    }

    /// Takes one received frame: `Ok(None)` while its round goes on, `Ok(Some)` once the
    /// frame completes the round.
    pub fn receive(&mut self, frame: Reconcile) -> Result<Option<Step>, ReconcileError> {
        let round = match std::mem::replace(&mut self.phase, Phase::Failed) {
            Phase::Waiting if self.rounds >= MAX_RECONCILE_ROUNDS => {
                return Err(ReconcileError::TooManyRounds)
            }
            Phase::Waiting => {
                self.rounds += 1;
                Round {
                    start: Some(FIRST_AUTHOR),
                    answer: Vec::new(),
                    only_skips: true,
                }
            }
            Phase::Receiving(round) => round,
            done @ Phase::Done => {
                self.phase = done;
                return Err(ReconcileError::NotExpecting);
            }
            Phase::Failed => return Err(ReconcileError::NotExpecting),
        };
        // On an error the phase stays `Failed`.
        self.take_frame(frame, round)
    }

    /// Reconciliation ended: we sent or received an all-`Skip` round.
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// Once done, the peer's feeds: our own items where ranges matched, the peer's listed
    /// items elsewhere. `None` before.
    pub fn peer_feeds(&self) -> Option<&Feeds> {
        self.is_done().then_some(&self.peer)
    }

    /// [`Reconciler::peer_feeds`], by value.
    pub fn into_peer_feeds(self) -> Option<Feeds> {
        self.is_done().then_some(self.peer)
    }

    fn take_frame(
        &mut self,
        frame: Reconcile,
        mut round: Round,
    ) -> Result<Option<Step>, ReconcileError> {
        let ranges = frame.ranges.len();
        if ranges == 0 {
            return Err(ReconcileError::EmptyFrame);
        }
        if ranges > MAX_RECONCILE_RANGES_PER_FRAME {
            return Err(ReconcileError::TooManyRanges { count: ranges });
        }
        let items = frame
            .ranges
            .iter()
            .map(|r| r.mode.items().len())
            .fold(0, usize::saturating_add);
        if items > MAX_RECONCILE_ITEMS_PER_FRAME {
            return Err(ReconcileError::TooManyItems { count: items });
        }
        self.peer_ranges = self.peer_ranges.saturating_add(ranges);
        if self.peer_ranges > MAX_RECONCILE_PEER_RANGES {
            return Err(ReconcileError::TooManyPeerRanges);
        }
        self.peer_items = self.peer_items.saturating_add(items);
        if self.peer_items > MAX_RECONCILE_PEER_ITEMS {
            return Err(ReconcileError::TooManyPeerItems);
        }
        for (index, range) in frame.ranges.into_iter().enumerate() {
            let start = round
                .start
                .filter(|start| range.upper > Bound::Author(*start))
                .ok_or(ReconcileError::RangesNotAscending { range: index })?;
            check_items(index, start, range.upper, range.mode.items())?;
            self.check_answer(index, start, range.upper, &range.mode)?;
            self.answer(start, range, &mut round);
        }
        if !frame.last {
            self.phase = Phase::Receiving(round);
            return Ok(None);
        }
        if round.start.is_some() {
            return Err(ReconcileError::RoundNotEnded);
        }
        if round.only_skips {
            self.phase = Phase::Done;
            return Ok(Some(Step::Done));
        }
        let done = round.answer.iter().all(|r| r.mode == RangeMode::Skip);
        let frames = self.send(round.answer);
        self.phase = if done { Phase::Done } else { Phase::Waiting };
        Ok(Some(Step::Reply(frames)))
    }

    /// Checks that the peer's `mode` over `[start, upper)` answers what our previous round
    /// sent there (the answer rules of the module docs).
    fn check_answer(
        &self,
        range: usize,
        start: Author,
        upper: Bound,
        mode: &RangeMode,
    ) -> Result<(), ReconcileError> {
        if self.sent.is_empty() {
            return match mode {
                RangeMode::Fingerprint(_) | RangeMode::Items(_) => Ok(()),
                RangeMode::Skip | RangeMode::ItemsReply(_) => {
                    Err(ReconcileError::NotAnOpening { range })
                }
            };
        }
        for (_, _, sent) in self.sent_over(start, upper) {
            match (sent, mode) {
                (Sent::Skip | Sent::ItemsReply, RangeMode::Skip)
                | (Sent::Fingerprint, RangeMode::Skip)
                | (Sent::Fingerprint, RangeMode::Fingerprint(_))
                | (Sent::Fingerprint, RangeMode::Items(_))
                | (Sent::Items, RangeMode::ItemsReply(_)) => {}
                (Sent::Skip | Sent::ItemsReply, _) => {
                    return Err(ReconcileError::SettledRangeReopened { range })
                }
                (Sent::Fingerprint, RangeMode::ItemsReply(_)) => {
                    return Err(ReconcileError::ReplyWithoutItems { range })
                }
                (Sent::Items, _) => return Err(ReconcileError::ItemsUnanswered { range }),
            }
        }
        Ok(())
    }

    /// The ranges of our previous round that overlap `[start, upper)`: each one's start,
    /// upper bound and what we sent over it.
    fn sent_over(
        &self,
        start: Author,
        upper: Bound,
    ) -> impl Iterator<Item = (Author, Bound, Sent)> + '_ {
        // Our round tiles the author space with ascending uppers: skip those at or below
        // `start`, then take ranges until one starts at or past `upper`.
        let first = self
            .sent
            .partition_point(|(u, _)| *u <= Bound::Author(start));
        self.sent[first..]
            .iter()
            .enumerate()
            .map_while(move |(offset, &(sent_upper, sent))| {
                let sent_start = match (first + offset)
                    .checked_sub(1)
                    .map(|previous| self.sent[previous].0)
                {
                    None => FIRST_AUTHOR,
                    Some(Bound::Author(author)) => author,
                    Some(Bound::End) => return None,
                };
                (Bound::Author(sent_start) < upper).then_some((sent_start, sent_upper, sent))
            })
    }

    /// Learns from one checked range `[start, range.upper)` and appends our answer.
    fn answer(&mut self, start: Author, range: Range, round: &mut Round) {
        let upper = range.upper;
        round.start = match upper {
            Bound::Author(author) => Some(author),
            Bound::End => None,
        };
        round.only_skips &= range.mode == RangeMode::Skip;
        let (lo, hi) = self.span(&start, &upper);
        let answer = match range.mode {
            RangeMode::Skip => {
                self.learn_from_skip(start, upper);
                RangeMode::Skip
            }
            RangeMode::Fingerprint(theirs) if theirs == self.fingerprint(lo, hi) => {
                settle(&mut self.peer, start, upper, ours(&self.items, lo, hi));
                RangeMode::Skip
            }
            RangeMode::Fingerprint(_) => {
                self.describe(upper, lo, hi, &mut round.answer);
                return;
            }
            RangeMode::Items(theirs) => {
                settle(&mut self.peer, start, upper, &theirs);
                RangeMode::ItemsReply(ours(&self.items, lo, hi).to_vec())
            }
            RangeMode::ItemsReply(theirs) => {
                settle(&mut self.peer, start, upper, &theirs);
                RangeMode::Skip
            }
        };
        match (round.answer.last_mut(), answer) {
            (
                Some(Range {
                    upper: merged,
                    mode: RangeMode::Skip,
                }),
                RangeMode::Skip,
            ) => *merged = upper,
            (_, mode) => round.answer.push(Range { upper, mode }),
        }
    }

    /// The peer answered `Skip` over `[start, upper)`: where we had sent a fingerprint, it
    /// holds exactly our items; where we had sent `Skip` or `ItemsReply` the range was
    /// settled before (the answer rules allow `Skip` nowhere else).
    fn learn_from_skip(&mut self, start: Author, upper: Bound) {
        let fingerprinted: Vec<(Author, Bound)> = self
            .sent_over(start, upper)
            .filter(|(_, _, sent)| *sent == Sent::Fingerprint)
            .map(|(sent_start, sent_upper, _)| (start.max(sent_start), upper.min(sent_upper)))
            .collect();
        for (from, to) in fingerprinted {
            let (lo, hi) = self.span(&from, &to);
            settle(&mut self.peer, from, to, ours(&self.items, lo, hi));
        }
    }

    /// Describes our items `lo..hi` over a range ending at `upper`: the list if short,
    /// else [`RECONCILE_BUCKETS`] fingerprints cut at our item authors.
    fn describe(&self, upper: Bound, lo: usize, hi: usize, out: &mut Vec<Range>) {
        let count = hi - lo;
        if count <= RECONCILE_ITEMS_THRESHOLD {
            out.push(Range {
                upper,
                mode: RangeMode::Items(ours(&self.items, lo, hi).to_vec()),
            });
            return;
        }
        // `count` is at most our own item count, far below usize::MAX / RECONCILE_BUCKETS.
        let cut = |k: usize| lo + k * count / RECONCILE_BUCKETS;
        for k in 0..RECONCILE_BUCKETS {
            let (from, to) = (cut(k), cut(k + 1));
            let bucket_upper = if k + 1 == RECONCILE_BUCKETS {
                upper
            } else {
                // `to < hi <= items.len()` for every bucket but the last.
                Bound::Author(self.items[to].author)
            };
            out.push(Range {
                upper: bucket_upper,
                mode: RangeMode::Fingerprint(self.fingerprint(from, to)),
            });
        }
    }

    /// Packs a round into frames and remembers what it sent where.
    fn send(&mut self, ranges: Vec<Range>) -> Vec<Reconcile> {
        let frames = pack(ranges);
        self.sent = frames
            .iter()
            .flat_map(|frame| &frame.ranges)
            .map(|range| {
                let sent = match range.mode {
                    RangeMode::Skip => Sent::Skip,
                    RangeMode::Fingerprint(_) => Sent::Fingerprint,
                    RangeMode::Items(_) => Sent::Items,
                    RangeMode::ItemsReply(_) => Sent::ItemsReply,
                };
                (range.upper, sent)
            })
            .collect();
        frames
    }

    /// The indices `lo..hi` of our items in `[start, upper)`.
    fn span(&self, start: &Author, upper: &Bound) -> (usize, usize) {
        let lo = self.items.partition_point(|item| item.author < *start);
        let hi = match upper {
            Bound::Author(upper) => self.items.partition_point(|item| item.author < *upper),
            Bound::End => self.items.len(),
        };
        (lo, hi.max(lo))
    }

    /// The fingerprint of our items `lo..hi` (indices from [`Reconciler::span`]).
    fn fingerprint(&self, lo: usize, hi: usize) -> Fingerprint {
        self.prefix.fingerprint(lo, hi)
    }
}

/// Our items `lo..hi` (empty if the indices are out of order or past the end).
fn ours(items: &[FeedHave], lo: usize, hi: usize) -> &[FeedHave] {
    items.get(lo..hi).unwrap_or_default()
}

/// Checks the item list of range `index`, `[start, upper)`.
fn check_items(
    range: usize,
    start: Author,
    upper: Bound,
    items: &[FeedHave],
) -> Result<(), ReconcileError> {
    let mut previous: Option<Author> = None;
    for (item, feed) in items.iter().enumerate() {
        if feed.length == 0 {
            return Err(ReconcileError::EmptyFeed { range, item });
        }
        if feed.author < start || Bound::Author(feed.author) >= upper {
            return Err(ReconcileError::ItemOutsideRange {
                range,
                item,
                author: feed.author,
            });
        }
        if previous.is_some_and(|previous| feed.author <= previous) {
            return Err(ReconcileError::ItemsNotAscending { range, item });
        }
        previous = Some(feed.author);
    }
    Ok(())
}

/// Records that the peer holds exactly `items` in `[start, upper)`, replacing what an earlier
/// statement said there.
fn settle(peer: &mut Feeds, start: Author, upper: Bound, items: &[FeedHave]) {
    let stale: Vec<Author> = peer
        .range(start..)
        .map(|(author, _)| *author)
        .take_while(|author| Bound::Author(*author) < upper)
        .collect();
    for author in stale {
        peer.remove(&author);
    }
    peer.extend(items.iter().map(|item| {
        (
            item.author,
            FeedState {
                length: item.length,
                head: item.head,
            },
        )
    }));
}

/// Cuts a round into frames within the per-frame limits, cutting item lists into
/// consecutive sub-ranges at the first author of each next share.
fn pack(ranges: Vec<Range>) -> Vec<Reconcile> {
    let mut frames = Vec::new();
    let mut frame: Vec<Range> = Vec::new();
    let mut frame_items = 0;
    for Range { upper, mode } in ranges {
        let (mut items, make): (_, fn(Vec<FeedHave>) -> RangeMode) = match mode {
            RangeMode::Items(items) => (items, RangeMode::Items),
            RangeMode::ItemsReply(items) => (items, RangeMode::ItemsReply),
            mode => {
                if frame.len() == MAX_RECONCILE_RANGES_PER_FRAME {
                    flush(&mut frames, &mut frame, &mut frame_items);
                }
                frame.push(Range { upper, mode });
                continue;
            }
        };
        loop {
            if frame.len() == MAX_RECONCILE_RANGES_PER_FRAME {
                flush(&mut frames, &mut frame, &mut frame_items);
            }
            let room = MAX_RECONCILE_ITEMS_PER_FRAME - frame_items;
            if items.len() <= room {
                frame_items += items.len();
                frame.push(Range {
                    upper,
                    mode: make(items),
                });
                break;
            }
            if room == 0 {
                flush(&mut frames, &mut frame, &mut frame_items);
                continue;
            }
            let rest = items.split_off(room);
            // `rest` is not empty: the list was longer than `room`.
            let share_upper = Bound::Author(rest[0].author);
            frame.push(Range {
                upper: share_upper,
                mode: make(items),
            });
            flush(&mut frames, &mut frame, &mut frame_items);
            items = rest;
        }
    }
    if !frame.is_empty() {
        flush(&mut frames, &mut frame, &mut frame_items);
    }
    if let Some(last) = frames.last_mut() {
        last.last = true;
    }
    frames
}

fn flush(frames: &mut Vec<Reconcile>, frame: &mut Vec<Range>, frame_items: &mut usize) {
    frames.push(Reconcile {
        ranges: std::mem::take(frame),
        last: false,
    });
    *frame_items = 0;
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
