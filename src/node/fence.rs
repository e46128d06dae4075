//! The own-feed fence (docs/PROTOCOL.md section 8): when the node may sign a new entry of its
//! own feed. Pure state; the node consults it in its append path, so no door (HTTP, CLI, a
//! future one) can sign past it.
//!
//! # Rules
//!
//! - **diverged** (final): a fork proof of our own author was recorded: two entries signed by
//!   our key at one seq. Never set on a claim (a peer's `Have` is not signed evidence). Some other process signed with this key; appending again could
//!   only make it worse. Never cleared while the process runs; after a restart the persisted
//!   proof sets it again.
//! - **starting**: sync is configured with peers and not every peer has been tried once (or
//!   `STARTUP_FENCE_TIMEOUT_MS` has not passed). Released by the sync layer.
//! - **catching up**: a trusted peer (configured or allow-listed) claims a longer copy of our
//!   feed (`PeerAhead`); appends wait until the store holds our feed up to that length, but
//!   only while the claim is alive: each claim carries an expiry that the session pushes
//!   back whenever our feed grows, so a peer that claims and does not deliver holds appends
//!   for at most the claim timeout. A stranger's claim never holds appends (the sync layer
//!   does not register it): only signed entries count.
//! - otherwise **ok**.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use crate::entry::Seq;

/// What `/summary` reports as `own_feed` (not part of the digest).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnFeedState {
    Ok,
    Starting,
    CatchingUp,
    Diverged,
}

impl OwnFeedState {
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
    #[error("own feed diverged, appends are stopped for good: {reason}; retire this key")]
    Diverged { reason: String },
    #[error("own-feed fence: waiting to hear from peers before signing ({waiting_for})")]
    Starting { waiting_for: String },
    #[error(
        "own-feed fence: catching up on our own feed from a peer (hold {have} of {need} entries)"
    )]
    CatchingUp { have: Seq, need: Seq },
}

/// The fence state. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct Fence {
    diverged: Option<String>,
    /// While `Some`, the startup wait is on; the text names the peers not heard from yet.
    starting: Option<String>,
    /// Live claims of a longer own feed, by peer: the length claimed and when the claim
    /// lapses unless the session renews it.
    claims: BTreeMap<String, Claim>,
}

#[derive(Debug, Clone, Copy)]
struct Claim {
    need: Seq,
    expires: Instant,
}

impl Fence {
    /// May the node append to its own feed, holding `own_length` entries of it, at `now`?
    pub fn check(&self, own_length: Seq, now: Instant) -> Result<(), FenceError> {
        if let Some(reason) = &self.diverged {
            return Err(FenceError::Diverged {
                reason: reason.clone(),
            });
        }
        if let Some(waiting_for) = &self.starting {
            return Err(FenceError::Starting {
                waiting_for: waiting_for.clone(),
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

    pub fn state(&self, own_length: Seq, now: Instant) -> OwnFeedState {
        match self.check(own_length, now) {
            Ok(()) => OwnFeedState::Ok,
            Err(FenceError::Diverged { .. }) => OwnFeedState::Diverged,
            Err(FenceError::Starting { .. }) => OwnFeedState::Starting,
            Err(FenceError::CatchingUp { .. }) => OwnFeedState::CatchingUp,
        }
    }

    /// Final: see the module docs. The first reason is kept.
    pub fn diverge(&mut self, reason: String) {
        self.diverged.get_or_insert(reason);
    }

    pub fn hold_startup(&mut self, waiting_for: String) {
        self.starting = Some(waiting_for);
    }

    pub fn release_startup(&mut self) {
        self.starting = None;
    }

    /// Trusted peer `peer` claims `their_length` entries of our feed; the claim holds
    /// appends until `expires` (renew it with the same call as entries arrive).
    pub fn claim(&mut self, peer: &str, their_length: Seq, expires: Instant) {
        let claim = self.claims.entry(peer.to_owned()).or_insert(Claim {
            need: their_length,
            expires,
        });
        claim.need = claim.need.max(their_length);
        claim.expires = expires;
    }

    /// Drops `peer`'s claim (met, or not delivered in time).
    pub fn drop_claim(&mut self, peer: &str) {
        self.claims.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    fn now() -> Instant {
        Instant::now()
    }

    #[test]
    fn open_by_default() {
        assert_eq!(Fence::default().check(0, now()), Ok(()));
    }

    #[test]
    fn starting_blocks_until_released() {
        let mut f = Fence::default();
        f.hold_startup("a:1".into());
        assert!(matches!(
            f.check(5, now()),
            Err(FenceError::Starting { .. })
        ));
        assert_eq!(f.state(5, now()), OwnFeedState::Starting);
        f.release_startup();
        assert_eq!(f.check(5, now()), Ok(()));
    }

    #[test]
    fn catching_up_blocks_until_the_feed_is_long_enough_or_the_claim_lapses() {
        let mut f = Fence::default();
        let t = now();
        f.claim("p", 7, t + Duration::from_secs(5));
        assert_eq!(
            f.check(3, t),
            Err(FenceError::CatchingUp { have: 3, need: 7 })
        );
        assert_eq!(f.state(3, t), OwnFeedState::CatchingUp);
        assert_eq!(f.check(7, t), Ok(()));
        // A claim nobody renews stops holding appends at its expiry.
        assert_eq!(f.check(3, t + Duration::from_secs(5)), Ok(()));
        // The highest live claim counts; dropping it opens appends.
        f.claim("q", 9, t + Duration::from_secs(5));
        assert_eq!(
            f.check(8, t),
            Err(FenceError::CatchingUp { have: 8, need: 9 })
        );
        f.drop_claim("q");
        f.drop_claim("p");
        assert_eq!(f.check(3, t), Ok(()));
    }

    #[test]
    fn diverged_is_final() {
        let mut f = Fence::default();
        f.diverge("first".into());
        f.diverge("second".into());
        f.release_startup();
        assert_eq!(
            f.check(100, now()),
            Err(FenceError::Diverged {
                reason: "first".into()
            })
        );
        assert_eq!(f.state(100, now()), OwnFeedState::Diverged);
    }
}
