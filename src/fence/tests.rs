//! The fence's rules, each from events alone, and the startup interleavings that once
//! closed it for good.

use super::*;

use std::time::Duration;

fn now() -> Instant {
    Instant::now()
}

fn peers(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

fn hold(names: &[&str], release: StartupRelease) -> FenceEvent {
    FenceEvent::HoldStartup {
        peers: peers(names),
        release,
    }
}

fn tried(peer: &str) -> FenceEvent {
    FenceEvent::PeerTried {
        peer: peer.into(),
        pinned_exchange: false,
    }
}

fn diverged(reason: &str) -> FenceEvent {
    FenceEvent::Diverged {
        reason: reason.into(),
    }
}

#[test]
fn open_by_default() {
    assert_eq!(Fence::default().check(0, now()), Ok(()));
}

#[test]
fn starting_names_the_peers_not_tried_until_all_are() {
    let mut f = Fence::default();
    f.apply(hold(&["a:1", "b:2"], StartupRelease::EachTriedOnce));
    assert_eq!(
        f.check(5, now()),
        Err(FenceError::Starting {
            waiting_for: "a:1, b:2".into()
        })
    );
    assert_eq!(f.state(5, now()), OwnFeedState::Starting);
    assert_eq!(f.apply(tried("a:1")), None);
    assert_eq!(
        f.check(5, now()),
        Err(FenceError::Starting {
            waiting_for: "b:2".into()
        })
    );
    // A peer tried again, or one never configured, changes nothing.
    assert_eq!(f.apply(tried("a:1")), None);
    assert_eq!(f.apply(tried("c:3")), None);
    assert_eq!(f.state(5, now()), OwnFeedState::Starting);
    assert_eq!(f.apply(tried("b:2")), Some(Released::AllTried));
    assert_eq!(f.check(5, now()), Ok(()));
}

#[test]
fn the_timeout_releases_the_wait_and_names_who_was_not_heard() {
    let mut f = Fence::default();
    f.apply(hold(&["a:1", "b:2"], StartupRelease::EachTriedOnce));
    f.apply(tried("b:2"));
    assert_eq!(
        f.apply(FenceEvent::StartupTimeout),
        Some(Released::TimedOut {
            unheard: vec!["a:1".into()]
        })
    );
    assert_eq!(f.check(0, now()), Ok(()));
    // Released for good: a late peer, a late timeout or a second hold change nothing.
    assert_eq!(f.apply(tried("a:1")), None);
    assert_eq!(f.apply(FenceEvent::StartupTimeout), None);
    f.apply(hold(&["a:1"], StartupRelease::EachTriedOnce));
    assert_eq!(f.check(0, now()), Ok(()));
}

#[test]
fn no_peers_hold_nothing_and_a_timeout_before_any_hold_ends_nothing() {
    let mut f = Fence::default();
    assert_eq!(f.apply(FenceEvent::StartupTimeout), None);
    f.apply(hold(&[], StartupRelease::EachTriedOnce));
    assert_eq!(f.check(0, now()), Ok(()));
    // The early timeout did not use up the one wait a process holds.
    f.apply(hold(&["a:1"], StartupRelease::EachTriedOnce));
    assert_eq!(f.state(0, now()), OwnFeedState::Starting);
}

#[test]
fn pinned_waits_for_one_pinned_exchange_and_nothing_else() {
    let mut f = Fence::default();
    f.apply(hold(&["a:1", "b:2"], StartupRelease::OnePinnedExchange));
    // Failures and unpinned exchanges count for nothing.
    assert_eq!(f.apply(tried("a:1")), None);
    assert_eq!(f.apply(tried("b:2")), None);
    assert_eq!(
        f.check(0, now()),
        Err(FenceError::Starting {
            waiting_for: "a:1, b:2".into()
        })
    );
    assert_eq!(
        f.apply(FenceEvent::PeerTried {
            peer: "b:2".into(),
            pinned_exchange: true
        }),
        Some(Released::AllTried)
    );
    assert_eq!(f.check(0, now()), Ok(()));
}

/// Commit 59d2ade: two configured peers tried at once, and the startup timeout. Each call
/// of the old `peer_tried` took the pending set under one lock and changed the fence under
/// another; peer a's call computed "still waiting for b", peer b's call released the fence,
/// and then a's call set "waiting for b" on the fence: closed, with nobody left to open it.
/// As events the stale "waiting for b" does not exist: every event states a fact and the
/// fence alone derives the state, so every order of the three ends open, the one that broke
/// it included.
#[test]
fn peers_tried_concurrently_with_the_timeout_leave_the_fence_open_in_every_order() {
    let events = [tried("a:1"), tried("b:2"), FenceEvent::StartupTimeout];
    let orders = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    for order in orders {
        let mut f = Fence::default();
        f.apply(hold(&["a:1", "b:2"], StartupRelease::EachTriedOnce));
        let mut released = 0;
        for (step, &i) in order.iter().enumerate() {
            released += usize::from(f.apply(events[i].clone()).is_some());
            if step + 1 < order.len() && released == 0 {
                assert_eq!(f.state(0, now()), OwnFeedState::Starting, "{order:?}");
            }
        }
        assert_eq!(released, 1, "released once, in order {order:?}");
        assert_eq!(f.check(0, now()), Ok(()), "closed after order {order:?}");
    }
}

/// The exact order of seed 938: b's call releases first, a's (late) call lands after it,
/// then the timeout. The late event must not close the fence again.
#[test]
fn the_late_peer_tried_of_seed_938_does_not_close_the_fence_again() {
    let mut f = Fence::default();
    f.apply(hold(&["a:1", "b:2"], StartupRelease::EachTriedOnce));
    // a's bookkeeping happened first (b still pending) but its event is applied after b's.
    assert_eq!(f.apply(tried("b:2")), None);
    assert_eq!(f.apply(tried("a:1")), Some(Released::AllTried));
    assert_eq!(f.check(0, now()), Ok(()));
    assert_eq!(f.apply(tried("a:1")), None);
    assert_eq!(f.apply(FenceEvent::StartupTimeout), None);
    assert_eq!(f.check(0, now()), Ok(()));
}

#[test]
fn catching_up_blocks_until_the_feed_is_long_enough_or_the_claim_lapses() {
    let mut f = Fence::default();
    let t = now();
    let claim = |peer: &str, need, expires| FenceEvent::Claim {
        peer: peer.into(),
        need,
        expires,
    };
    f.apply(claim("p", 7, t + Duration::from_secs(5)));
    assert_eq!(
        f.check(3, t),
        Err(FenceError::CatchingUp { have: 3, need: 7 })
    );
    assert_eq!(f.state(3, t), OwnFeedState::CatchingUp);
    assert_eq!(f.check(7, t), Ok(()));
    // A claim nobody renews stops holding appends at its expiry.
    assert_eq!(f.check(3, t + Duration::from_secs(5)), Ok(()));
    // A renewal keeps the highest need and moves the expiry.
    f.apply(claim("p", 6, t + Duration::from_secs(9)));
    assert_eq!(
        f.check(3, t + Duration::from_secs(5)),
        Err(FenceError::CatchingUp { have: 3, need: 7 })
    );
    // The highest live claim counts; dropping it opens appends.
    f.apply(claim("q", 9, t + Duration::from_secs(5)));
    assert_eq!(
        f.check(8, t),
        Err(FenceError::CatchingUp { have: 8, need: 9 })
    );
    f.apply(FenceEvent::ClaimDropped { peer: "q".into() });
    f.apply(FenceEvent::ClaimDropped { peer: "p".into() });
    assert_eq!(f.check(3, t), Ok(()));
}

#[test]
fn diverged_is_final_and_outranks_the_rest() {
    let mut f = Fence::default();
    f.apply(hold(&["a:1"], StartupRelease::EachTriedOnce));
    f.apply(diverged("first"));
    f.apply(diverged("second"));
    f.apply(tried("a:1"));
    f.apply(FenceEvent::StartupTimeout);
    assert_eq!(
        f.check(100, now()),
        Err(FenceError::Diverged {
            reason: "first".into()
        })
    );
    assert_eq!(f.state(100, now()), OwnFeedState::Diverged);
}
