//! The own-feed fence (docs/PROTOCOL.md section 8): when the node may sign a new entry of its
//! own feed. Pure state; the node consults it in its append path, so no door (HTTP, CLI, a
//! future one) can sign past it.
//!
//! # Rules
//!
//! - **diverged** (final): a peer holds a different entry of our feed, or a fork proof of our
//!   author was recorded. Some other process signed with this key; appending again could
//!   only make it worse. Never cleared while the process runs; after a restart the persisted
//!   proof sets it again.
//! - **starting**: sync is configured with peers and not every peer has been tried once (or
//!   `STARTUP_FENCE_TIMEOUT_MS` has not passed). Released by the sync layer.
//! - **catching up**: a peer holds a longer copy of our feed (`PeerAhead`); appends wait until
//!   the store holds our feed up to that length.
//! - otherwise **ok**.

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
    catch_up_to: Seq,
}

impl Fence {
    /// May the node append to its own feed, holding `own_length` entries of it?
    pub fn check(&self, own_length: Seq) -> Result<(), FenceError> {
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
        if own_length < self.catch_up_to {
            return Err(FenceError::CatchingUp {
                have: own_length,
                need: self.catch_up_to,
            });
        }
        Ok(())
    }

    pub fn state(&self, own_length: Seq) -> OwnFeedState {
        match self.check(own_length) {
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

    /// A peer holds `their_length` entries of our feed.
    pub fn catch_up_to(&mut self, their_length: Seq) {
        self.catch_up_to = self.catch_up_to.max(their_length);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_by_default() {
        assert_eq!(Fence::default().check(0), Ok(()));
    }

    #[test]
    fn starting_blocks_until_released() {
        let mut f = Fence::default();
        f.hold_startup("a:1".into());
        assert!(matches!(f.check(5), Err(FenceError::Starting { .. })));
        assert_eq!(f.state(5), OwnFeedState::Starting);
        f.release_startup();
        assert_eq!(f.check(5), Ok(()));
    }

    #[test]
    fn catching_up_blocks_until_the_feed_is_long_enough() {
        let mut f = Fence::default();
        f.catch_up_to(7);
        assert_eq!(f.check(3), Err(FenceError::CatchingUp { have: 3, need: 7 }));
        assert_eq!(f.check(7), Ok(()));
    }

    #[test]
    fn diverged_is_final() {
        let mut f = Fence::default();
        f.diverge("first".into());
        f.diverge("second".into());
        f.release_startup();
        assert_eq!(
            f.check(100),
            Err(FenceError::Diverged {
                reason: "first".into()
            })
        );
        assert_eq!(f.state(100), OwnFeedState::Diverged);
    }
}
