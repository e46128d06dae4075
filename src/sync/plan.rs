//! The plan of one session: from our feeds, the peer's feeds (as reconciliation found them)
//! and the forked authors, what we
//! send, which forks the heads already reveal, and the own-feed fence
//! (docs/PROTOCOL.md sections 7 and 8). Pure and deterministic: every list is in ascending
//! author order because it is built by walking `BTreeMap`s.
//!
//! # Rules, for a feed of author X: ours `(n, Hn)`, the peer's `(m, Hm)`, `m = 0` if absent
//!
//! - X is known forked: skip it (nothing sent, no fork check) whichever side listed it;
//! - `n = m`, `Hn = Hm`, or both 0: nothing;
//! - `n = m`, `Hn != Hm`: fork at `n`, known from the heads alone: send our entry `n` as a
//!   witness; the peer, seeing the same, sends its own ([`ForkCheck::want_theirs`] false);
//! - `n > m = 0`: send `1..=n`;
//! - `n > m > 0`: look up our hash at `m`: equal to `Hm` -> send `m+1..=n`; different -> fork
//!   at `m`: send our entry `m` and ask for the peer's with `Want` (the shorter peer cannot
//!   see the fork itself);
//! - `n < m`: we cannot tell from `(length, head)` whether the peer's copy extends ours (that
//!   needs its entry `n`, which the longer peer compares for us): nothing to do; the peer's
//!   own plan sends `n+1..=m`, whose first entry must link to our head (what we receive is
//!   checked entry by entry, not against a plan, so the plan keeps no list of it).
//!
//! # Own-feed fence, for our own author A
//!
//! - [`Fence::Current`]: the peer lacks A's feed, holds the same, or holds a prefix of ours;
//! - [`Fence::PeerAhead`]: the peer holds more (`n < m`): do not sign until the expected
//!   entries are stored (they must link to our head; if the peer instead sends a conflicting
//!   witness, the feed has diverged);
//! - [`Fence::Diverged`]: heads or our hash lookup show a different entry of A at a position
//!   we hold, or A is already known forked: stop appending for good.

use std::collections::{BTreeMap, BTreeSet};

use crate::entry::Seq;
use crate::hash::Hash;
use crate::identity::Author;

use super::feed_have::FeedHave;

/// What one side holds of one feed: `length` entries (at least 1), the last with hash `head`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedState {
    /// Entries held: the feed's last position.
    pub length: Seq,
    /// The hash of entry `length`.
    pub head: Hash,
}

/// Feed states by author.
pub type Feeds = BTreeMap<Author, FeedState>;

impl From<&crate::store::FeedInfo> for FeedState {
    fn from(info: &crate::store::FeedInfo) -> FeedState {
        FeedState {
            length: info.length,
            head: info.head,
        }
    }
}

/// Our feed states as reconciliation items ([`super::reconcile`]), leaving out forked
/// authors, in ascending author order.
pub fn have_lines(ours: &Feeds, forked: &BTreeSet<Author>) -> Vec<FeedHave> {
    ours.iter()
        .filter(|(author, state)| !forked.contains(author) && state.length > 0)
        .map(|(author, state)| FeedHave {
            author: *author,
            length: state.length,
            head: state.head,
        })
        .collect()
}

/// Entries `from..=to` of one author's feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqRange {
    /// The feed.
    pub author: Author,
    /// The first position to send; the peer's length plus one.
    pub from: Seq,
    /// The last position to send, inclusive; our length.
    pub to: Seq,
}

/// A fork revealed by the two `Have`s: the peer holds a different entry of `author` at `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForkCheck {
    /// The forked feed.
    pub author: Author,
    /// Send our entry at `seq` (always: it lets the peer build the proof).
    pub seq: Seq,
    /// Also send `Want { author, seq }`: the peer cannot see the fork on its side.
    pub want_theirs: bool,
}

/// The own-feed fence for our own author.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fence {
    /// Nothing the peer holds conflicts with or extends our own feed.
    Current,
    /// The peer holds a longer copy of our feed: catch up to `their_length` before signing.
    PeerAhead {
        /// The length of the peer's copy; ours is shorter.
        their_length: Seq,
    },
    /// The peer holds a different entry of our feed at `seq` (0: our author is already known
    /// forked): never append again.
    Diverged {
        /// The position where the peer holds a different entry, or 0 (already known forked).
        seq: Seq,
    },
}

/// Everything one side does after the `Have` exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Ranges to send, ascending by author; each starts right after the peer's length.
    pub send: Vec<SeqRange>,
    /// Forks the heads reveal, ascending by author.
    pub forks: Vec<ForkCheck>,
    /// The own-feed fence.
    pub fence: Fence,
}

/// The store could not give the hash of an entry it claims to hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no hash for entry {seq} of {author} although the feed holds it")]
pub struct MissingHash {
    /// The feed asked about.
    pub author: Author,
    /// The position the store has no hash for, within the length it reported.
    pub seq: Seq,
}

/// Computes the plan (see the module docs). `hash_at(author, seq)` is our hash of entry `seq`
/// of `author`'s feed; it is only asked for `1 <= seq <= our length`.
pub fn plan(
    own: &Author,
    ours: &Feeds,
    theirs: &Feeds,
    forked: &BTreeSet<Author>,
    hash_at: impl Fn(&Author, Seq) -> Option<Hash>,
) -> Result<Plan, MissingHash> {
    let mut result = Plan {
        send: Vec::new(),
        forks: Vec::new(),
        fence: Fence::Current,
    };
    let authors: BTreeSet<&Author> = ours.keys().chain(theirs.keys()).collect();
    for author in authors {
        if forked.contains(author) {
            continue;
        }
        let (n, hn) = state_of(ours, author);
        let (m, hm) = state_of(theirs, author);
        let outcome = if n == m {
            if n == 0 || hn == hm {
                Outcome::InSync
            } else {
                Outcome::Fork {
                    seq: n,
                    want_theirs: false,
                }
            }
        } else if n > m {
            let prefix_matches = match m {
                0 => true,
                _ => {
                    let held = hash_at(author, m).ok_or(MissingHash {
                        author: *author,
                        seq: m,
                    })?;
                    Some(held) == hm
                }
            };
            if prefix_matches {
                Outcome::Send { from: m + 1, to: n }
            } else {
                Outcome::Fork {
                    seq: m,
                    want_theirs: true,
                }
            }
        } else {
            // The peer holds more; its own plan sends n+1..=m (m + 1 above cannot overflow:
            // there m < n).
            Outcome::PeerLonger { their_length: m }
        };
        match outcome {
            Outcome::InSync | Outcome::PeerLonger { .. } => {}
            Outcome::Send { from, to } => result.send.push(SeqRange {
                author: *author,
                from,
                to,
            }),
            Outcome::Fork { seq, want_theirs } => result.forks.push(ForkCheck {
                author: *author,
                seq,
                want_theirs,
            }),
        }
        if author == own {
            result.fence = match outcome {
                Outcome::InSync | Outcome::Send { .. } => Fence::Current,
                Outcome::PeerLonger { their_length } => Fence::PeerAhead { their_length },
                Outcome::Fork { seq, .. } => Fence::Diverged { seq },
            };
        }
    }
    if forked.contains(own) {
        result.fence = Fence::Diverged { seq: 0 };
    }
    Ok(result)
}

enum Outcome {
    InSync,
    Send { from: Seq, to: Seq },
    PeerLonger { their_length: Seq },
    Fork { seq: Seq, want_theirs: bool },
}

fn state_of(feeds: &Feeds, author: &Author) -> (Seq, Option<Hash>) {
    feeds
        .get(author)
        .map_or((0, None), |s| (s.length, Some(s.head)))
}

/// What a session believes the peer holds, per feed, for live pushes: the peer's `Have`, then
/// every entry sent to or received from it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerProgress {
    lengths: BTreeMap<Author, Seq>,
}

/// Whether to push newly stored entries of one feed to a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Push {
    /// The peer already holds them all (it may have sent them to us).
    AlreadyHeld,
    /// They reach the peer's next entry: push those past `held`, the length the peer holds.
    Next {
        /// Entries the peer holds of the feed, as far as we know.
        held: Seq,
    },
    /// The peer lacks earlier entries too: send `from..=last` from the store.
    Behind {
        /// The first position the peer lacks.
        from: Seq,
    },
}

impl PeerProgress {
    /// Adds what reconciliation found the peer holds, keeping any longer length already
    /// noted (entries may have been exchanged while reconciliation ran).
    pub fn merge_feeds(&mut self, theirs: &Feeds) {
        for (author, state) in theirs {
            self.note(author, state.length);
        }
    }

    /// The length we believe the peer holds of `author`'s feed.
    pub fn length(&self, author: &Author) -> Seq {
        self.lengths.get(author).copied().unwrap_or(0)
    }

    /// The peer now holds `author`'s feed up to `seq` (sent to it or received from it).
    pub fn note(&mut self, author: &Author, seq: Seq) {
        let length = self.lengths.entry(*author).or_insert(0);
        *length = (*length).max(seq);
    }

    /// What to do with our newly stored entries `first..=last` of `author`'s feed.
    pub fn push(&self, author: &Author, first: Seq, last: Seq) -> Push {
        let length = self.length(author);
        if last <= length {
            Push::AlreadyHeld
        } else if first <= length.saturating_add(1) {
            Push::Next { held: length }
        } else {
            Push::Behind {
                from: length.saturating_add(1),
            }
        }
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
