//! The bound on a v4 peer's `WantSubtrees` in one session (docs/PROTOCOL.md section 7, "Copy
//! searches"): a bucket (a burst, then a rate) and a cap on the wants received and not yet
//! answered by the sending half. Pure: the receiving half takes, the sending half counts
//! its answers off.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::time::Instant;

use super::checkpoint_gossip::NoteBucket;
use super::error::SessionError;
use super::limits::MAX_SUBTREE_WANTS_OUTSTANDING;

/// The bound on the peer's `WantSubtrees` (see the module docs).
pub(super) struct PeerWants {
    bucket: NoteBucket,
    /// Received and not yet answered; the sending half counts its answers off.
    pub(super) unanswered: Arc<AtomicUsize>,
}

impl PeerWants {
    pub(super) fn new(burst: u32, per_second: u32, now: Instant) -> PeerWants {
        PeerWants {
            bucket: NoteBucket::new(burst, per_second, now),
            unanswered: Arc::default(),
        }
    }

    /// Takes one want at `now`, or the violation of the bound.
    pub(super) fn take(&mut self, now: Instant) -> Result<(), SessionError> {
        let unanswered = self.unanswered.load(Ordering::SeqCst);
        if unanswered >= MAX_SUBTREE_WANTS_OUTSTANDING || !self.bucket.take(1, now) {
            return Err(SessionError::TooManySubtreeWants {
                burst: self.bucket.burst,
                per_second: self.bucket.per_second,
                outstanding: MAX_SUBTREE_WANTS_OUTSTANDING,
            });
        }
        self.unanswered.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peers_wants_are_bounded_by_the_bucket_and_the_unanswered_cap() {
        let now = Instant::now();
        let mut wants = PeerWants::new(3, 0, now);
        for _ in 0..3 {
            wants.take(now).unwrap();
        }
        assert!(matches!(
            wants.take(now),
            Err(SessionError::TooManySubtreeWants { .. })
        ));
        let mut wants = PeerWants::new(u32::MAX, 0, now);
        for _ in 0..MAX_SUBTREE_WANTS_OUTSTANDING {
            wants.take(now).unwrap();
        }
        assert!(wants.take(now).is_err());
        wants.unanswered.fetch_sub(1, Ordering::SeqCst);
        assert!(wants.take(now).is_ok());
    }
}
