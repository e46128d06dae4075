//! Claims of a longer own feed, by peer key, across sessions (docs/PROTOCOL.md section 8).
//!
//! A trusted peer that says it holds more of our own feed than we do (the "restored from an
//! old backup" case) holds our appends while it delivers. A claim is nobody's signature, so
//! its power is bounded in time, and the bound belongs to the **key**, not to a session:
//!
//! - A key's first claim gets a deadline `timeout` from now. Our own feed growing (signed
//!   entries arriving) moves the deadline to `timeout` from then ([`ClaimBook::renew`]); a
//!   claim met (we hold what it claimed) is dropped.
//! - A new claim from a key that still has one keeps the old deadline: closing the session
//!   just before the deadline and claiming again on the next session gains nothing.
//! - A claim whose deadline passed unmet marks the key **failed** ([`ClaimBook::expire`], or
//!   lazily on its next claim): its claims hold nothing until it delivers signed entries of
//!   our feed ([`ClaimBook::delivered`]), which is the only way to regain fence power.
//!
//! Threat: a configured peer (or anyone holding its key) claiming a longer feed and never
//! delivering; it holds appends for at most one `timeout` without progress, in total over
//! any number of sessions, until it delivers. Pure: the caller passes the clock.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::entry::Seq;
use crate::identity::Author;

/// Claims records kept at most: one per trusted key, and trusted keys come from the
/// operator, so this only bounds a misuse.
const MAX_CLAIM_RECORDS: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Record {
    need: Seq,
    deadline: Instant,
}

/// What became of a claim or of a renewal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimState {
    /// Hold appends until the feed reaches `need` or `deadline` passes.
    Holding {
        /// The length of our own feed the claim says exists.
        need: Seq,
        /// When the claim fails unless renewed by progress.
        deadline: Instant,
    },
    /// The claim is met: we hold what it claimed.
    Met,
    /// The key failed an earlier claim and has not delivered since: the claim holds nothing.
    Failed,
}

/// See the module docs.
#[derive(Debug)]
pub struct ClaimBook {
    timeout: Duration,
    records: BTreeMap<Author, Record>,
    failed: BTreeSet<Author>,
}

impl ClaimBook {
    /// No claims; each claim holds appends for at most `timeout` without progress.
    pub fn new(timeout: Duration) -> ClaimBook {
        ClaimBook {
            timeout,
            records: BTreeMap::new(),
            failed: BTreeSet::new(),
        }
    }

    /// `peer` claims `need` entries of our feed, of which we hold `held`.
    pub fn claim(&mut self, peer: Author, need: Seq, held: Seq, now: Instant) -> ClaimState {
        if self.failed.contains(&peer) {
            return ClaimState::Failed;
        }
        match self.records.get_mut(&peer) {
            Some(record) if held >= record.need => {
                // The old claim was met; this one starts afresh.
                self.records.remove(&peer);
            }
            Some(record) if record.deadline <= now => {
                self.records.remove(&peer);
                self.failed.insert(peer);
                return ClaimState::Failed;
            }
            Some(record) => {
                record.need = record.need.max(need);
                return self.state(peer, held);
            }
            None => {}
        }
        if held >= need {
            return ClaimState::Met;
        }
        if self.records.len() >= MAX_CLAIM_RECORDS {
            // Forget the record with the earliest deadline: it lapses first anyway.
            if let Some(oldest) = self
                .records
                .iter()
                .min_by_key(|(_, r)| r.deadline)
                .map(|(a, _)| *a)
            {
                self.records.remove(&oldest);
            }
        }
        self.records.insert(
            peer,
            Record {
                need,
                deadline: now + self.timeout,
            },
        );
        self.state(peer, held)
    }

    /// Our feed grew to `held`: `peer`'s claim is met, or it is being delivered and its
    /// deadline moves to `timeout` from `now`.
    pub fn renew(&mut self, peer: Author, held: Seq, now: Instant) -> ClaimState {
        if self.failed.contains(&peer) {
            return ClaimState::Failed;
        }
        let timeout = self.timeout;
        match self.records.get_mut(&peer) {
            None => ClaimState::Met,
            Some(record) if held >= record.need => {
                self.records.remove(&peer);
                ClaimState::Met
            }
            Some(record) => {
                record.deadline = now + timeout;
                self.state(peer, held)
            }
        }
    }

    /// `peer`'s deadline passed at `now` (its session's timer): true, and the key is failed,
    /// if its claim is still unmet.
    pub fn expire(&mut self, peer: Author, held: Seq, now: Instant) -> bool {
        match self.records.get(&peer) {
            Some(record) if held < record.need && record.deadline <= now => {
                self.records.remove(&peer);
                self.failed.insert(peer);
                true
            }
            _ => false,
        }
    }

    /// `peer` delivered signed entries of our feed: it may hold appends again.
    pub fn delivered(&mut self, peer: &Author) {
        self.failed.remove(peer);
    }

    /// Whether `peer` failed a claim and has not delivered since.
    pub fn is_failed(&self, peer: &Author) -> bool {
        self.failed.contains(peer)
    }

    fn state(&self, peer: Author, held: Seq) -> ClaimState {
        match self.records.get(&peer) {
            Some(r) if held < r.need => ClaimState::Holding {
                need: r.need,
                deadline: r.deadline,
            },
            _ => ClaimState::Met,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(5);

    fn a(n: u8) -> Author {
        Author([n; 32])
    }

    #[test]
    fn a_claim_holds_until_its_deadline_and_a_reclaim_keeps_the_deadline() {
        let mut book = ClaimBook::new(T);
        let t0 = Instant::now();
        let first = book.claim(a(1), 100, 2, t0);
        assert_eq!(
            first,
            ClaimState::Holding {
                need: 100,
                deadline: t0 + T
            }
        );
        // The session closed at 4.5 s; the claim on the next session keeps the deadline.
        let again = book.claim(a(1), 100, 2, t0 + Duration::from_millis(4500));
        assert_eq!(again, first);
        // Past the deadline, the next claim finds the key failed.
        assert_eq!(book.claim(a(1), 100, 2, t0 + T), ClaimState::Failed);
        assert!(book.is_failed(&a(1)));
        assert_eq!(book.claim(a(1), 100, 2, t0 + 2 * T), ClaimState::Failed);
        // Another key is not affected.
        assert!(matches!(
            book.claim(a(2), 100, 2, t0 + T),
            ClaimState::Holding { .. }
        ));
    }

    #[test]
    fn delivery_renews_and_meets_and_restores_fence_power() {
        let mut book = ClaimBook::new(T);
        let t0 = Instant::now();
        book.claim(a(1), 10, 2, t0);
        let t1 = t0 + Duration::from_secs(4);
        assert_eq!(
            book.renew(a(1), 5, t1),
            ClaimState::Holding {
                need: 10,
                deadline: t1 + T
            }
        );
        assert_eq!(book.renew(a(1), 10, t1), ClaimState::Met);
        // A met claim leaves no record: a later claim starts afresh.
        let t2 = t0 + Duration::from_secs(60);
        assert!(matches!(
            book.claim(a(1), 20, 10, t2),
            ClaimState::Holding { need: 20, .. }
        ));
        // The timer expires it: failed until the key delivers.
        assert!(!book.expire(a(1), 10, t2 + Duration::from_secs(1)));
        assert!(book.expire(a(1), 10, t2 + T));
        assert_eq!(book.claim(a(1), 20, 10, t2 + T), ClaimState::Failed);
        book.delivered(&a(1));
        assert!(matches!(
            book.claim(a(1), 20, 10, t2 + T),
            ClaimState::Holding { .. }
        ));
    }

    #[test]
    fn a_claim_we_already_meet_holds_nothing() {
        let mut book = ClaimBook::new(T);
        assert_eq!(book.claim(a(1), 3, 3, Instant::now()), ClaimState::Met);
        assert_eq!(book.renew(a(1), 3, Instant::now()), ClaimState::Met);
    }
}
