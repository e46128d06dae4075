//! A v4 session's copy-search state (docs/PROTOCOL.md section 7, "Copy searches"), pure:
//! the receiving half does the I/O and the blocking calls.
//!
//! - [`SearchSlot`]: the one search the session runs with the peer at a time, the wants it
//!   sent that are still unanswered (answers come in the order of the wants, so each must
//!   match the oldest exactly), and its deadline. A search that ended or expired while
//!   wants were outstanding leaves them behind: their answers are still matched, then
//!   dropped, and no new search starts until they are in (the peer is not blamed for
//!   answering what it was asked).
//! - [`SessionSearch`]: that slot, with the bound on the peer's wants
//!   ([`super::peer_wants`]), as the receiving half keeps them.

use std::collections::VecDeque;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::checkpoint_gossip::NoteBucket;
use super::config::SyncConfig;
use super::copy_searches::{CopySearchRun, SearchEnd, SharedCopySearches};
use super::error::SessionError;
use super::limits::{MAX_SUBTREE_WANTS_OUTSTANDING, SUBTREE_WANTS_BURST, SUBTREE_WANTS_PER_SECOND};
use super::peer_wants::PeerWants;
use super::subtrees::{Subtrees, WantSubtrees};
use crate::identity::Author;

/// A v4 session's copy-search state, kept by the receiving half.
pub(super) struct SessionSearch {
    /// The node's copy searches; `None`: no search starts, every want is answered empty.
    pub(super) searches: Option<SharedCopySearches>,
    /// The search running with this peer, if any.
    pub(super) slot: SearchSlot,
    /// The bound on the peer's wants.
    pub(super) peer_wants: PeerWants,
}

/// What the sending half needs to answer the peer's wants.
pub(super) struct Answering {
    /// Where answers come from; `None`: the empty answer.
    pub(super) searches: Option<SharedCopySearches>,
    /// The peer's wants not answered yet: counted up by the receiving half (its bound),
    /// down by the sending half once answered.
    pub(super) unanswered: Arc<AtomicUsize>,
}

impl SessionSearch {
    pub(super) fn new(config: &SyncConfig, now: Instant) -> SessionSearch {
        SessionSearch {
            searches: config.copy_searches.clone(),
            slot: SearchSlot::new(config.copy_search_timeout, now),
            peer_wants: PeerWants::new(
                config.subtree_wants_burst,
                config.subtree_wants_per_second,
                now,
            ),
        }
    }

    /// The sending half's share.
    pub(super) fn answering(&self) -> Answering {
        Answering {
            searches: self.searches.clone(),
            unanswered: self.peer_wants.unanswered.clone(),
        }
    }
}

/// The session's search, if any (see the module docs).
pub(super) struct SearchSlot {
    running: Option<Running>,
    /// How long a search may run.
    timeout: Duration,
    /// What the peer's bucket takes from us, mirrored: a search whose wants would overflow
    /// it gives up rather than be taken for a flood.
    sent: NoteBucket,
}

struct Running {
    /// `None` once the search ended or expired, while its wants are still outstanding.
    run: Option<Box<dyn CopySearchRun>>,
    author: Author,
    outstanding: VecDeque<WantSubtrees>,
    deadline: Instant,
}

/// What to do with a matched answer.
pub(super) enum Matched {
    /// Hand it to the search (taken out of the slot meanwhile; put back with
    /// [`SearchSlot::resume`]).
    Step(Box<dyn CopySearchRun>, WantSubtrees),
    /// The search is gone: the answer is dropped.
    Dropped,
}

impl SearchSlot {
    pub(super) fn new(timeout: Duration, now: Instant) -> SearchSlot {
        SearchSlot {
            running: None,
            timeout,
            sent: NoteBucket::new(SUBTREE_WANTS_BURST, SUBTREE_WANTS_PER_SECOND, now),
        }
    }

    /// Whether a search runs or its wants are still outstanding: no other starts.
    pub(super) fn is_busy(&self) -> bool {
        self.running.is_some()
    }

    /// Until when the running search may go on, if one runs.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.running
            .as_ref()
            .filter(|r| r.run.is_some())
            .map(|r| r.deadline)
    }

    /// Takes a started search and its first wants (or its end); returns the wants to send.
    pub(super) fn begin(
        &mut self,
        run: Box<dyn CopySearchRun>,
        first: Result<Vec<WantSubtrees>, SearchEnd>,
        now: Instant,
    ) -> Result<Vec<WantSubtrees>, SearchEnd> {
        self.running = Some(Running {
            author: run.author(),
            run: None,
            outstanding: VecDeque::new(),
            deadline: now + self.timeout,
        });
        self.resume(run, first, now)
    }

    /// The peer's answer: it must answer the oldest outstanding want exactly.
    pub(super) fn take_answer(&mut self, answer: &Subtrees) -> Result<Matched, SessionError> {
        let Some(running) = self.running.as_mut() else {
            return Err(SessionError::Subtrees(
                "a Subtrees answer with no want outstanding".into(),
            ));
        };
        // `running` exists only with wants outstanding or a search to ask more.
        let Some(want) = running.outstanding.front().copied() else {
            return Err(SessionError::Subtrees(
                "a Subtrees answer with no want outstanding".into(),
            ));
        };
        if !want.is_answered_by(answer) {
            return Err(SessionError::Subtrees(format!(
                "a Subtrees answer for level {} index {} count {} of {}, the oldest want is level {} index {} count {} of {}",
                answer.level, answer.index, answer.count, answer.author,
                want.level, want.index, want.count, want.author
            )));
        }
        running.outstanding.pop_front();
        match running.run.take() {
            Some(run) => Ok(Matched::Step(run, want)),
            None => {
                if running.outstanding.is_empty() {
                    self.running = None;
                }
                Ok(Matched::Dropped)
            }
        }
    }

    /// Puts the search back after a step with what it returned: the wants to send, or its
    /// end (the slot then only waits for the outstanding answers).
    pub(super) fn resume(
        &mut self,
        run: Box<dyn CopySearchRun>,
        step: Result<Vec<WantSubtrees>, SearchEnd>,
        now: Instant,
    ) -> Result<Vec<WantSubtrees>, SearchEnd> {
        let Some(running) = self.running.as_mut() else {
            return Err(SearchEnd::GaveUp("the search's slot is gone".into()));
        };
        let step = step.and_then(|wants| {
            if running.outstanding.len() + wants.len() > MAX_SUBTREE_WANTS_OUTSTANDING {
                return Err(SearchEnd::GaveUp(format!(
                    "the search asked for more than {MAX_SUBTREE_WANTS_OUTSTANDING} subtree ranges at once"
                )));
            }
            if !self.sent.take(wants.len(), now) {
                return Err(SearchEnd::GaveUp(
                    "the search asked for more subtree ranges than a peer answers at this rate"
                        .into(),
                ));
            }
            Ok(wants)
        });
        match step {
            Ok(wants) if !wants.is_empty() || !running.outstanding.is_empty() => {
                running.outstanding.extend(wants.iter().copied());
                running.run = Some(run);
                Ok(wants)
            }
            // Nothing outstanding and nothing asked: the search could never go on.
            Ok(_) => {
                self.running = None;
                Err(SearchEnd::GaveUp(
                    "the search asked for nothing and waits for nothing".into(),
                ))
            }
            Err(end) => {
                if running.outstanding.is_empty() {
                    self.running = None;
                }
                Err(end)
            }
        }
    }

    /// Drops the running search if its deadline passed; returns the feed it searched.
    pub(super) fn expire(&mut self, now: Instant) -> Option<Author> {
        let running = self.running.as_mut()?;
        if running.run.is_none() || now < running.deadline {
            return None;
        }
        running.run = None;
        let author = running.author;
        if running.outstanding.is_empty() {
            self.running = None;
        }
        Some(author)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::copy_searches::SearchEnd;
    use crate::sync::subtrees::SubtreeData;

    /// A search that asks for `wants` first, then one more per answer until `rounds` ran out.
    struct Scripted {
        rounds: usize,
    }

    fn want(index: u64) -> WantSubtrees {
        WantSubtrees {
            author: Author([4; 32]),
            level: 8,
            index,
            count: 1,
        }
    }

    impl CopySearchRun for Scripted {
        fn author(&self) -> Author {
            Author([4; 32])
        }
        fn start(&mut self) -> Result<Vec<WantSubtrees>, SearchEnd> {
            Ok(vec![want(0), want(1)])
        }
        fn on_reply(
            &mut self,
            want_: &WantSubtrees,
            _: Option<SubtreeData>,
        ) -> Result<Vec<WantSubtrees>, SearchEnd> {
            if self.rounds == 0 {
                return Err(SearchEnd::Done);
            }
            self.rounds -= 1;
            Ok(vec![want(want_.index + 10)])
        }
    }

    fn slot(now: Instant) -> SearchSlot {
        SearchSlot::new(Duration::from_secs(30), now)
    }

    fn step(
        slot: &mut SearchSlot,
        index: u64,
        now: Instant,
    ) -> Result<Vec<WantSubtrees>, SearchEnd> {
        let answer = Subtrees::answer(&want(index), None);
        match slot.take_answer(&answer).unwrap() {
            Matched::Step(mut run, w) => {
                let r = run.on_reply(&w, answer.data());
                slot.resume(run, r, now)
            }
            Matched::Dropped => Ok(vec![]),
        }
    }

    #[test]
    fn answers_must_match_the_oldest_want_and_unsolicited_ones_are_refused() {
        let now = Instant::now();
        let mut s = slot(now);
        let unsolicited = Subtrees::answer(&want(0), None);
        assert!(matches!(
            s.take_answer(&unsolicited),
            Err(SessionError::Subtrees(_))
        ));
        let mut run = Box::new(Scripted { rounds: 1 });
        let first = run.start();
        assert_eq!(s.begin(run, first, now), Ok(vec![want(0), want(1)]));
        assert!(s.is_busy());
        // The second want's answer before the first's.
        let early = Subtrees::answer(&want(1), None);
        assert!(matches!(
            s.take_answer(&early),
            Err(SessionError::Subtrees(_))
        ));
    }

    #[test]
    fn a_search_runs_to_its_end_and_late_answers_are_dropped() {
        let now = Instant::now();
        let mut s = slot(now);
        let mut run = Box::new(Scripted { rounds: 1 });
        let first = run.start();
        s.begin(run, first, now).unwrap();
        assert_eq!(step(&mut s, 0, now), Ok(vec![want(10)]));
        // Done while want(10) is outstanding: still busy until it is answered.
        assert_eq!(step(&mut s, 1, now), Err(SearchEnd::Done));
        assert!(s.is_busy());
        assert_eq!(s.deadline(), None);
        assert_eq!(step(&mut s, 10, now), Ok(vec![]));
        assert!(!s.is_busy());
    }

    #[test]
    fn an_expired_search_is_dropped_and_its_answers_still_match() {
        let now = Instant::now();
        let mut s = slot(now);
        let mut run = Box::new(Scripted { rounds: 5 });
        let first = run.start();
        s.begin(run, first, now).unwrap();
        assert_eq!(s.expire(now + Duration::from_secs(29)), None);
        assert_eq!(s.deadline(), Some(now + Duration::from_secs(30)));
        assert_eq!(
            s.expire(now + Duration::from_secs(30)),
            Some(Author([4; 32]))
        );
        assert!(s.is_busy());
        assert_eq!(step(&mut s, 0, now), Ok(vec![]));
        assert_eq!(step(&mut s, 1, now), Ok(vec![]));
        assert!(!s.is_busy());
    }

    #[test]
    fn a_search_asking_past_the_bounds_gives_up() {
        let now = Instant::now();
        let mut s = slot(now);
        let too_many = (0..=MAX_SUBTREE_WANTS_OUTSTANDING as u64)
            .map(want)
            .collect();
        let run = Box::new(Scripted { rounds: 0 });
        assert!(matches!(
            s.begin(run, Ok(too_many), now),
            Err(SearchEnd::GaveUp(_))
        ));
        assert!(!s.is_busy());
        let run = Box::new(Scripted { rounds: 0 });
        assert!(matches!(
            s.begin(run, Ok(vec![]), now),
            Err(SearchEnd::GaveUp(_))
        ));
    }
}
