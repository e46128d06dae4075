//! Who may hold a session, and how much a peer may add (docs/PROTOCOL.md section 9): the
//! allow-list, the author policy, one session per peer key, per-address inbound limits, the
//! new-feed budgets of strangers, the node's feed cap, and the refusal counters
//! `GET /peers` and `/metrics` show.
//!
//! # Threats and what each rule guarantees
//!
//! - A stranger can open connections from many keys and addresses. It can never take a
//!   slot a configured peer or an allow-listed key needs: dials use no inbound slot,
//!   trusted keys ([`Admission::is_trusted`]) are admitted past the stranger cap, and
//!   pending handshakes are shed oldest first (see `listener.rs`).
//! - One address cannot hold more than `max_inbound_per_addr` inbound connections.
//! - One key holds at most one session: a second session with the same key replaces the
//!   older one when the same side dialed both (a reconnect), and otherwise the session
//!   dialed by the lower author is kept on both sides ([`keep_new_session`]), so two nodes
//!   that list each other end with one session, the same one on each side.
//! - A stranger can sign as many fresh feeds as it likes. It may introduce at most
//!   `new_feeds_per_hour` feeds the node does not hold yet per hour; beyond that its new
//!   feeds are skipped (not an error, not a disconnect) and the reason is shown. The node
//!   holds at most `max_feeds` feeds whoever offers them. Configured and allow-listed peers
//!   have no hourly budget, so a fresh node joins an honest network at full speed.
//! - With `--accept-authors`, entries of other authors are neither stored nor forwarded.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::message::ByeReason;
use super::status::Control;
use crate::identity::Author;

/// Default: new feeds one stranger may introduce per hour.
pub const NEW_FEEDS_PER_HOUR: u64 = 10_000;
/// Default: the most feeds a node holds.
pub const MAX_FEEDS: u64 = 1_000_000;
/// Default: inbound connections (pending or in session) from one IP address.
pub const MAX_INBOUND_PER_ADDR: usize = 8;
/// The budget window.
const BUDGET_WINDOW: Duration = Duration::from_secs(3600);
/// Stranger budgets remembered (oldest window dropped first); bounds the map a stream of
/// fresh keys could grow.
const MAX_BUDGET_RECORDS: usize = 4096;

/// The operator's policy, from flags.
#[derive(Clone, Debug)]
pub struct Policy {
    /// When non-empty, only these keys may hold a session, in either direction.
    pub allow_peers: BTreeSet<Author>,
    /// When set, only these authors' entries are stored and forwarded.
    pub accept_authors: Option<BTreeSet<Author>>,
    pub new_feeds_per_hour: u64,
    pub max_feeds: u64,
    pub max_inbound_per_addr: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allow_peers: BTreeSet::new(),
            accept_authors: None,
            new_feeds_per_hour: NEW_FEEDS_PER_HOUR,
            max_feeds: MAX_FEEDS,
            max_inbound_per_addr: MAX_INBOUND_PER_ADDR,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    #[error("reading {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path} line {line}: {error}")]
    BadAuthor {
        path: String,
        line: usize,
        error: String,
    },
}

/// Parses an `--accept-authors` file: one author hex per line; blank lines and `#` comments
/// (whole-line or trailing) are ignored.
pub fn parse_author_list(text: &str, path: &str) -> Result<BTreeSet<Author>, PolicyFileError> {
    let mut authors = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let author = line
            .parse::<Author>()
            .map_err(|e| PolicyFileError::BadAuthor {
                path: path.to_owned(),
                line: i + 1,
                error: e.to_string(),
            })?;
        authors.insert(author);
    }
    Ok(authors)
}

/// Reads an `--accept-authors` file.
pub fn read_author_list(path: &Path) -> Result<BTreeSet<Author>, PolicyFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| PolicyFileError::Read {
        path: shown.clone(),
        error,
    })?;
    parse_author_list(&text, &shown)
}

/// Which of two sessions with one peer key to keep, given who dialed each: the newer one
/// when one side dialed both (a reconnect replaces a stale session), else the one dialed by
/// the lower author, which both nodes compute alike.
pub fn keep_new_session(existing_dialer: &Author, new_dialer: &Author) -> bool {
    existing_dialer == new_dialer || new_dialer < existing_dialer
}

/// Why a new feed offered by a peer is skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Outside `--accept-authors`.
    AuthorPolicy,
    /// The peer's hourly new-feed budget is spent.
    Budget,
    /// The node holds `max_feeds` feeds.
    FeedCap,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::AuthorPolicy => "author_policy",
            Skip::Budget => "new_feed_budget",
            Skip::FeedCap => "feed_cap",
        }
    }
}

struct Live {
    id: u64,
    dialer: Author,
    control: mpsc::UnboundedSender<Control>,
    /// The session's initial exchange is done.
    exchanged: bool,
}

struct Budget {
    window_start: Instant,
    used: u64,
}

#[derive(Default)]
struct State {
    live: BTreeMap<Author, Live>,
    next_id: u64,
    per_addr: HashMap<IpAddr, usize>,
    /// Authors met on dials to configured peers: trusted like allow-listed keys.
    configured: BTreeSet<Author>,
    refused: BTreeMap<&'static str, u64>,
    skipped: BTreeMap<&'static str, u64>,
    budgets: HashMap<Author, Budget>,
    /// Peers that claimed more of our feed than they delivered: their claims are ignored.
    failed_claims: BTreeSet<Author>,
}

/// The admission state of one node's sync.
pub struct Admission {
    policy: Policy,
    state: Mutex<State>,
    /// Woken whenever a session leaves or completes its initial exchange.
    changed: tokio::sync::Notify,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // Plain maps updated in single calls: poisoning leaves nothing torn.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Another session with the same key is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DuplicateSession;

/// A registered session; give it back to [`Admission::leave`] when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTicket {
    pub author: Author,
    id: u64,
}

impl Admission {
    pub fn new(policy: Policy) -> Admission {
        Admission {
            policy,
            state: Mutex::new(State::default()),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Whether an author's entries are stored and forwarded at all.
    pub fn accepts_author(&self, author: &Author) -> bool {
        self.policy
            .accept_authors
            .as_ref()
            .is_none_or(|set| set.contains(author))
    }

    /// Allow-listed, or the key of a configured peer.
    pub fn is_trusted(&self, author: &Author) -> bool {
        self.policy.allow_peers.contains(author) || lock(&self.state).configured.contains(author)
    }

    /// May `author` hold a session at all (the allow-list)?
    pub fn allowed(&self, author: &Author) -> bool {
        self.policy.allow_peers.is_empty() || self.policy.allow_peers.contains(author)
    }

    pub fn learn_configured(&self, author: Author) {
        lock(&self.state).configured.insert(author);
    }

    /// Counts a refusal by reason (shown in `GET /peers` and `/metrics`).
    pub fn count_refusal(&self, reason: &'static str) {
        *lock(&self.state).refused.entry(reason).or_insert(0) += 1;
    }

    pub fn refusals(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.state).refused.clone()
    }

    pub fn skipped(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.state).skipped.clone()
    }

    /// An inbound connection from `ip` is opening; false (and counted) when the address is
    /// at its limit. Pair every `true` with [`Admission::inbound_closed`].
    pub fn inbound_opened(&self, ip: IpAddr) -> bool {
        let mut state = lock(&self.state);
        let open = state.per_addr.entry(ip).or_insert(0);
        if *open >= self.policy.max_inbound_per_addr {
            *state.refused.entry("per_address_limit").or_insert(0) += 1;
            return false;
        }
        *open += 1;
        true
    }

    pub fn inbound_closed(&self, ip: IpAddr) {
        let mut state = lock(&self.state);
        if let Some(open) = state.per_addr.get_mut(&ip) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                state.per_addr.remove(&ip);
            }
        }
    }

    /// Registers an authenticated session with `author`, dialed by `dialer`. `Err`: an
    /// existing session with this key is kept, refuse this one. `Ok`: the ticket, after
    /// telling a replaced session (if any) to close with `Bye(Duplicate)`.
    pub fn join(
        &self,
        author: Author,
        dialer: Author,
        control: mpsc::UnboundedSender<Control>,
    ) -> Result<SessionTicket, DuplicateSession> {
        let mut state = lock(&self.state);
        if let Some(existing) = state.live.get(&author) {
            if !keep_new_session(&existing.dialer, &dialer) {
                *state.refused.entry("duplicate_session").or_insert(0) += 1;
                return Err(DuplicateSession);
            }
            let _ = existing
                .control
                .send(Control::Stop(Some(ByeReason::Duplicate)));
        }
        state.next_id += 1;
        let id = state.next_id;
        state.live.insert(
            author,
            Live {
                id,
                dialer,
                control,
                exchanged: false,
            },
        );
        Ok(SessionTicket { author, id })
    }

    /// The session of `ticket` ended.
    pub fn leave(&self, ticket: SessionTicket) {
        {
            let mut state = lock(&self.state);
            if state.live.get(&ticket.author).map(|l| l.id) == Some(ticket.id) {
                state.live.remove(&ticket.author);
            }
        }
        self.changed.notify_waiters();
    }

    /// The session with `author` completed its initial exchange.
    pub fn exchanged(&self, author: &Author) {
        if let Some(live) = lock(&self.state).live.get_mut(author) {
            live.exchanged = true;
        }
        self.changed.notify_waiters();
    }

    /// Whether a session with `author` is live now, and whether its initial exchange is done.
    pub fn session(&self, author: &Author) -> Option<bool> {
        lock(&self.state).live.get(author).map(|l| l.exchanged)
    }

    /// Resolves at the next [`Admission::leave`] or [`Admission::exchanged`]; create it
    /// before checking the condition it waits for.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// Decides whether a feed the node does not hold yet, offered by `peer`, is taken.
    /// `held_feeds` is how many feeds the node holds now. Spends budget when it says yes.
    pub fn admit_new_feed(
        &self,
        peer: &Author,
        feed: &Author,
        held_feeds: u64,
        now: Instant,
    ) -> Result<(), Skip> {
        let skip = self.decide_new_feed(peer, feed, held_feeds, now);
        if let Err(skip) = skip {
            *lock(&self.state).skipped.entry(skip.as_str()).or_insert(0) += 1;
        }
        skip
    }

    fn decide_new_feed(
        &self,
        peer: &Author,
        feed: &Author,
        held_feeds: u64,
        now: Instant,
    ) -> Result<(), Skip> {
        if !self.accepts_author(feed) {
            return Err(Skip::AuthorPolicy);
        }
        if held_feeds >= self.policy.max_feeds {
            return Err(Skip::FeedCap);
        }
        if self.is_trusted(peer) {
            return Ok(());
        }
        let mut state = lock(&self.state);
        if !state.budgets.contains_key(peer) && state.budgets.len() >= MAX_BUDGET_RECORDS {
            // Forget the budget record whose window started first (a spent window of an old
            // key); a fresh key starts with a full budget anyway.
            let oldest = state
                .budgets
                .iter()
                .min_by_key(|(_, b)| b.window_start)
                .map(|(a, _)| *a);
            if let Some(oldest) = oldest {
                state.budgets.remove(&oldest);
            }
        }
        let budget = state.budgets.entry(*peer).or_insert(Budget {
            window_start: now,
            used: 0,
        });
        if now.duration_since(budget.window_start) >= BUDGET_WINDOW {
            budget.window_start = now;
            budget.used = 0;
        }
        if budget.used >= self.policy.new_feeds_per_hour {
            return Err(Skip::Budget);
        }
        budget.used += 1;
        Ok(())
    }

    /// A peer claimed more of our own feed than it delivered in time.
    pub fn claim_failed(&self, peer: Author) {
        lock(&self.state).failed_claims.insert(peer);
    }

    /// Whether a claim of `peer` about our own feed may hold our appends: only trusted peers
    /// that have not failed a claim before. A stranger's `Have` is a claim nobody signed.
    pub fn claim_may_hold(&self, peer: &Author) -> bool {
        self.is_trusted(peer) && !lock(&self.state).failed_claims.contains(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: u8) -> Author {
        Author([n; 32])
    }

    #[test]
    fn duplicate_sessions_keep_the_one_dialed_by_the_lower_author_on_both_sides() {
        // Nodes 1 and 2 dial each other: both keep the session node 1 dialed.
        assert!(!keep_new_session(&a(1), &a(2)));
        assert!(keep_new_session(&a(2), &a(1)));
        // A reconnect by the same dialer replaces the stale session.
        assert!(keep_new_session(&a(2), &a(2)));
    }

    #[test]
    fn join_refuses_or_replaces() {
        let adm = Admission::new(Policy::default());
        let (tx1, mut rx1) = mpsc::unbounded_channel();
        let (tx2, _rx2) = mpsc::unbounded_channel();
        let first = adm.join(a(9), a(1), tx1).unwrap();
        // The same key, dialed by the higher author: refused.
        assert!(adm.join(a(9), a(5), tx2.clone()).is_err());
        assert_eq!(adm.refusals().get("duplicate_session"), Some(&1));
        // Dialed by the same side again: replaces, and the old one is told to stop.
        let second = adm.join(a(9), a(1), tx2).unwrap();
        assert!(matches!(
            rx1.try_recv(),
            Ok(Control::Stop(Some(ByeReason::Duplicate)))
        ));
        // The replaced session's end does not remove the new one.
        adm.leave(first);
        assert_eq!(adm.session(&a(9)), Some(false));
        adm.exchanged(&a(9));
        assert_eq!(adm.session(&a(9)), Some(true));
        adm.leave(second);
        assert_eq!(adm.session(&a(9)), None);
    }

    #[test]
    fn per_address_limit() {
        let adm = Admission::new(Policy {
            max_inbound_per_addr: 2,
            ..Policy::default()
        });
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(adm.inbound_opened(ip));
        assert!(adm.inbound_opened(ip));
        assert!(!adm.inbound_opened(ip));
        assert!(adm.inbound_opened("10.0.0.2".parse().unwrap()));
        adm.inbound_closed(ip);
        assert!(adm.inbound_opened(ip));
        assert_eq!(adm.refusals().get("per_address_limit"), Some(&1));
    }

    #[test]
    fn strangers_spend_an_hourly_budget_trusted_peers_do_not() {
        let adm = Admission::new(Policy {
            new_feeds_per_hour: 2,
            allow_peers: BTreeSet::from([a(7)]),
            ..Policy::default()
        });
        let t0 = Instant::now();
        assert_eq!(adm.admit_new_feed(&a(1), &a(50), 0, t0), Ok(()));
        assert_eq!(adm.admit_new_feed(&a(1), &a(51), 0, t0), Ok(()));
        assert_eq!(adm.admit_new_feed(&a(1), &a(52), 0, t0), Err(Skip::Budget));
        // Another stranger has its own budget; an allow-listed key has none to spend.
        assert_eq!(adm.admit_new_feed(&a(2), &a(52), 0, t0), Ok(()));
        for i in 0..10 {
            assert_eq!(adm.admit_new_feed(&a(7), &a(100 + i), 0, t0), Ok(()));
        }
        // A configured peer's key, once learned, is trusted too.
        adm.learn_configured(a(3));
        for i in 0..10 {
            assert_eq!(adm.admit_new_feed(&a(3), &a(100 + i), 0, t0), Ok(()));
        }
        // The window renews after an hour.
        let later = t0 + BUDGET_WINDOW;
        assert_eq!(adm.admit_new_feed(&a(1), &a(52), 0, later), Ok(()));
        assert_eq!(adm.skipped().get("new_feed_budget"), Some(&1));
    }

    #[test]
    fn feed_cap_and_author_policy_apply_to_everyone() {
        let adm = Admission::new(Policy {
            max_feeds: 10,
            accept_authors: Some(BTreeSet::from([a(50), a(51)])),
            allow_peers: BTreeSet::from([a(7)]),
            ..Policy::default()
        });
        let now = Instant::now();
        assert_eq!(
            adm.admit_new_feed(&a(7), &a(52), 0, now),
            Err(Skip::AuthorPolicy)
        );
        assert_eq!(
            adm.admit_new_feed(&a(7), &a(50), 10, now),
            Err(Skip::FeedCap)
        );
        assert_eq!(adm.admit_new_feed(&a(7), &a(50), 9, now), Ok(()));
        assert!(!adm.accepts_author(&a(52)));
    }

    #[test]
    fn claims_hold_only_for_trusted_peers_that_never_failed_one() {
        let adm = Admission::new(Policy {
            allow_peers: BTreeSet::from([a(7)]),
            ..Policy::default()
        });
        assert!(!adm.claim_may_hold(&a(1)));
        assert!(adm.claim_may_hold(&a(7)));
        adm.claim_failed(a(7));
        assert!(!adm.claim_may_hold(&a(7)));
    }

    #[test]
    fn author_list_file() {
        let hex1 = "01".repeat(32);
        let hex2 = "02".repeat(32);
        let text = format!("# policy\n{hex1}\n\n  {hex2}  # second\n");
        assert_eq!(
            parse_author_list(&text, "f").unwrap(),
            BTreeSet::from([a(1), a(2)])
        );
        let err = parse_author_list("# x\nnot-hex\n", "f").unwrap_err();
        assert!(err.to_string().starts_with("f line 2:"), "{err}");
    }
}
