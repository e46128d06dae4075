//! The own-feed fence (docs/PROTOCOL.md section 8): when the node may sign a new entry of its
//! own feed. A pure state machine fed by [`FenceEvent`]s; it reads no clock (the caller
//! passes `now`) and imports nothing of the node or of sync.
//!
//! # One owner
//!
//! The store's writer owns the one live fence: its planner applies every event and checks
//! every own append, in the one order its request channel gives them
//! ([`crate::store::Store::fence_event`]). So an append queued after an event that closes
//! the fence is refused, whichever thread sent either, and no event can be lost between two
//! locks: each event states a fact (a peer was tried, the timeout passed), never the state
//! the sender computed from a copy. Everyone else reads the snapshot the writer publishes
//! after each event (`/summary`'s `own_feed`).
//!
//! # Rules
//!
//! - **diverged** (final): a fork proof of our own author was recorded: two entries signed by
//!   our key at one seq. Never set on a claim (a peer's `Have` is not signed evidence). Some
//!   other process signed with this key; appending again could only make it worse. Never
//!   cleared while the process runs; after a restart the persisted proof sets it again.
//! - **starting**: sync is configured with peers ([`FenceEvent::HoldStartup`]) and they are
//!   not all tried yet. With [`StartupRelease::EachTriedOnce`] each peer counts once it
//!   exchanged or failed once, and the startup timeout ([`FenceEvent::StartupTimeout`])
//!   releases the rest; with [`StartupRelease::OnePinnedExchange`] one pinned peer's
//!   completed exchange releases it, failures count for nothing, and there is no timeout
//!   (the sync layer sends none). Once released it stays released.
//! - **catching up**: a trusted peer (configured or allow-listed) claims a longer copy of our
//!   feed (`PeerAhead`); appends wait until the store holds our feed up to that length, but
//!   only while the claim is alive: each claim carries an expiry that the session pushes
//!   back whenever our feed grows, so a peer that claims and does not deliver holds appends
//!   for at most the claim timeout. A stranger's claim never holds appends (the sync layer
//!   does not send it): only signed entries count.
//! - otherwise **ok**.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde::Serialize;

use crate::entry::Seq;

/// What `/summary` reports as `own_feed` (not part of the digest).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnFeedState {
    /// Own appends are allowed now.
    Ok,
    /// Held until the configured peers are tried (or the startup timeout passes).
    Starting,
    /// Held until the store has our feed up to the longest live trusted claim.
    CatchingUp,
    /// Stopped for good: a fork proof of our own author was recorded.
    Diverged,
}

impl OwnFeedState {
    /// The snake_case name, the same string serde writes for `/summary`.
    pub fn as_str(self) -> &'static str {
        match self {
            OwnFeedState::Ok => "ok",
            OwnFeedState::Starting => "starting",
            OwnFeedState::CatchingUp => "catching_up",
            OwnFeedState::Diverged => "diverged",
        }
    }
}

/// Why an own append is refused now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FenceError {
    /// A fork proof of our own author was recorded; no own append will ever pass again.
    #[error("own feed diverged, appends are stopped for good: {reason}; retire this key")]
    Diverged {
        /// The first recorded reason (the fork proof's description), kept for the operator.
        reason: String,
    },
    /// The startup wait is still held: some configured peers are not tried yet.
    #[error("own-feed fence: waiting to hear from peers before signing ({waiting_for})")]
    Starting {
        /// The peers still pending, comma-separated in sorted order.
        waiting_for: String,
    },
    /// A live trusted claim says our feed is longer than the store holds.
    #[error(
        "own-feed fence: catching up on our own feed from a peer (hold {have} of {need} entries)"
    )]
    CatchingUp {
        /// How many entries of our own feed the store holds now.
        have: Seq,
        /// The longest live claim: appends wait until `have` reaches it.
        need: Seq,
    },
}

/// What releases the startup wait (the sync layer's `--startup-fence`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartupRelease {
    /// Every peer exchanged or failed once, or the startup timeout passed.
    EachTriedOnce,
    /// One peer's pinned key completed an exchange; nothing else.
    OnePinnedExchange,
}

/// What the fence is told. Each event is a fact; the fence alone decides what follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FenceEvent {
    /// Sync starts with these configured peers: hold appends until they are tried. Ignored
    /// once a startup wait was released (a wait is held once per process) or if `peers`
    /// is empty.
    HoldStartup {
        /// The configured peers' addresses, as the sync layer names them in `PeerTried`.
        peers: BTreeSet<String>,
        /// What ends the wait.
        release: StartupRelease,
    },
    /// The configured peer `peer` was heard from or failed once; `pinned_exchange` when
    /// its pinned key completed an exchange.
    PeerTried {
        /// The configured peer's address, as named in `HoldStartup`.
        peer: String,
        /// True when the exchange completed under the peer's pinned key.
        pinned_exchange: bool,
    },
    /// The startup timeout passed (or sync is shutting down): stop waiting.
    StartupTimeout,
    /// Trusted peer `peer` claims `need` entries of our feed; the claim holds appends until
    /// `expires`. A renewal is the same event again (the highest `need` is kept).
    Claim {
        /// The claiming peer: one live claim per peer.
        peer: String,
        /// The length of our feed the peer says it holds.
        need: Seq,
        /// When the claim stops holding appends unless renewed.
        expires: Instant,
    },
    /// `peer`'s claim is met, or was not delivered in time.
    ClaimDropped {
        /// The peer whose claim is withdrawn.
        peer: String,
    },
    /// A fork proof of our own author: final. The first reason is kept.
    Diverged {
        /// What the proof shows, for `FenceError::Diverged` and the operator.
        reason: String,
    },
}

/// A startup wait that ended with an event, for the owner to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Released {
    /// Every peer was tried (or a pinned one exchanged).
    AllTried,
    /// The timeout passed before these peers were tried.
    TimedOut {
        /// The peers never tried, in sorted order.
        unheard: Vec<String>,
    },
}

/// The fence state. See the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fence {
    diverged: Option<String>,
    startup: Startup,
    /// Live claims of a longer own feed, by peer: the length claimed and when the claim
    /// lapses unless the session renews it.
    claims: BTreeMap<String, Claim>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Startup {
    /// No wait held yet.
    #[default]
    NotHeld,
    /// Waiting for `pending` (never empty).
    Waiting {
        pending: BTreeSet<String>,
        release: StartupRelease,
    },
    /// The wait ended; a later `HoldStartup` does not start another.
    Released,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Claim {
    need: Seq,
    expires: Instant,
}

impl Fence {
    /// Applies one event; says so when it ended the startup wait.
    pub fn apply(&mut self, event: FenceEvent) -> Option<Released> {
        match event {
            FenceEvent::HoldStartup { peers, release } => {
                if self.startup == Startup::NotHeld && !peers.is_empty() {
                    self.startup = Startup::Waiting {
                        pending: peers,
                        release,
                    };
                }
                None
            }
            FenceEvent::PeerTried {
                peer,
                pinned_exchange,
            } => {
                let Startup::Waiting { pending, release } = &mut self.startup else {
                    return None;
                };
                match release {
                    StartupRelease::EachTriedOnce => {
                        pending.remove(&peer);
                    }
                    StartupRelease::OnePinnedExchange if pinned_exchange => pending.clear(),
                    StartupRelease::OnePinnedExchange => {}
                }
                if !pending.is_empty() {
                    return None;
                }
                self.startup = Startup::Released;
                Some(Released::AllTried)
            }
            FenceEvent::StartupTimeout => match std::mem::take(&mut self.startup) {
                Startup::Waiting { pending, .. } => {
                    self.startup = Startup::Released;
                    Some(Released::TimedOut {
                        unheard: pending.into_iter().collect(),
                    })
                }
                // Not waiting: nothing to end.
                other => {
                    self.startup = other;
                    None
                }
            },
            FenceEvent::Claim {
                peer,
                need,
                expires,
            } => {
                let claim = self.claims.entry(peer).or_insert(Claim { need, expires });
                claim.need = claim.need.max(need);
                claim.expires = expires;
                None
            }
            FenceEvent::ClaimDropped { peer } => {
                self.claims.remove(&peer);
                None
            }
            FenceEvent::Diverged { reason } => {
                self.diverged.get_or_insert(reason);
                None
            }
        }
    }

    /// May the node append to its own feed, holding `own_length` entries of it, at `now`?
    pub fn check(&self, own_length: Seq, now: Instant) -> Result<(), FenceError> {
        if let Some(reason) = &self.diverged {
            return Err(FenceError::Diverged {
                reason: reason.clone(),
            });
        }
        if let Startup::Waiting { pending, .. } = &self.startup {
            let names: Vec<&str> = pending.iter().map(String::as_str).collect();
            return Err(FenceError::Starting {
                waiting_for: names.join(", "),
            });
        }
        let need = self
            .claims
            .values()
            .filter(|c| c.expires > now)
            .map(|c| c.need)
            .max()
            .unwrap_or(0);
        if own_length < need {
            return Err(FenceError::CatchingUp {
                have: own_length,
                need,
            });
        }
        Ok(())
    }

    /// The state `/summary` reports: the outcome of [`Fence::check`] with the detail dropped.
    pub fn state(&self, own_length: Seq, now: Instant) -> OwnFeedState {
        match self.check(own_length, now) {
            Ok(()) => OwnFeedState::Ok,
            Err(FenceError::Diverged { .. }) => OwnFeedState::Diverged,
            Err(FenceError::Starting { .. }) => OwnFeedState::Starting,
            Err(FenceError::CatchingUp { .. }) => OwnFeedState::CatchingUp,
        }
    }
}

#[cfg(test)]
mod tests;
