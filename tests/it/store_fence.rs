//! The own-feed fence where the store's writer orders own appends: fence events and own
//! appends go down one channel, so an append requested after an event that closes the fence
//! is refused, one requested after the event that opens it passes, and appends racing a
//! closing event never pass it. A replay of an idempotency key is answered whatever the
//! fence says. (The fence's rules on their own: `src/fence/tests.rs`.)

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{identity, wait_until};
use kappalog::fence::{FenceError, FenceEvent, OwnFeedState, StartupRelease};
use kappalog::idempotency::IdempotencyKey;
use kappalog::store::{AppendError, OwnAppend, Store};

fn hold(peers: &[&str]) -> FenceEvent {
    FenceEvent::HoldStartup {
        peers: peers
            .iter()
            .map(|p| (*p).to_owned())
            .collect::<BTreeSet<_>>(),
        release: StartupRelease::EachTriedOnce,
    }
}

fn refusal(result: Result<impl std::fmt::Debug, AppendError>) -> FenceError {
    match result {
        Err(AppendError::Fence(refused)) => refused,
        other => panic!("expected a fence refusal, got {other:?}"),
    }
}

/// Each event is in force for the very next append: no waiting, no polling.
#[test]
fn each_event_rules_the_append_queued_right_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _owner, _) = Store::open(dir.path(), Some(identity(1)), None).unwrap();

    store.fence_event(hold(&["a:1", "b:2"]));
    assert_eq!(
        refusal(store.append_own(1, "early".into()).wait()),
        FenceError::Starting {
            waiting_for: "a:1, b:2".into()
        }
    );
    store.fence_event(FenceEvent::PeerTried {
        peer: "a:1".into(),
        pinned_exchange: false,
    });
    assert!(matches!(
        refusal(store.append_own(1, "still early".into()).wait()),
        FenceError::Starting { .. }
    ));
    store.fence_event(FenceEvent::StartupTimeout);
    assert_eq!(store.append_own(1, "open".into()).wait().unwrap().0.seq, 1);

    let expires = Instant::now() + Duration::from_secs(3600);
    store.fence_event(FenceEvent::Claim {
        peer: "p".into(),
        need: 5,
        expires,
    });
    assert_eq!(
        refusal(store.append_own(2, "claimed".into()).wait()),
        FenceError::CatchingUp { have: 1, need: 5 }
    );
    store.fence_event(FenceEvent::ClaimDropped { peer: "p".into() });
    assert_eq!(
        store.append_own(2, "dropped".into()).wait().unwrap().0.seq,
        2
    );

    store.fence_event(FenceEvent::Diverged {
        reason: "test".into(),
    });
    assert_eq!(
        refusal(store.append_own(3, "forked".into()).wait()),
        FenceError::Diverged {
            reason: "test".into()
        }
    );
    // Nothing refused was written.
    assert_eq!(store.reader().head(&identity(1).author()).unwrap().seq, 2);
}

/// Appends from several threads race one closing event. Every append requested after the
/// event was sent is refused (whatever the writer was doing when it arrived), and none
/// refused takes a seq: the feed has no gap.
#[test]
fn appends_racing_a_closing_event_never_pass_it() {
    const THREADS: usize = 4;
    const AFTER_EACH: u64 = 25;
    let dir = tempfile::tempdir().unwrap();
    let (store, _owner, _) = Store::open(dir.path(), Some(identity(1)), None).unwrap();
    let closed = Arc::new(AtomicBool::new(false));
    let added = Arc::new(AtomicU64::new(0));
    let appenders: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, closed, added) = (store.clone(), closed.clone(), added.clone());
            std::thread::spawn(move || {
                let mut refused_after = 0;
                while refused_after < AFTER_EACH {
                    let after = closed.load(Ordering::SeqCst);
                    let result = store
                        .append_own(i64::try_from(t).unwrap(), "race".into())
                        .wait();
                    if after {
                        assert!(
                            matches!(result, Err(AppendError::Fence(FenceError::Starting { .. }))),
                            "an append requested after the fence closed got {result:?}"
                        );
                        refused_after += 1;
                    } else if result.is_ok() {
                        added.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    wait_until("some appends to pass the open fence", || {
        added.load(Ordering::SeqCst) >= 20
    });
    store.fence_event(hold(&["a:1"]));
    closed.store(true, Ordering::SeqCst);
    for appender in appenders {
        appender.join().unwrap();
    }
    let length = store.reader().head(&identity(1).author()).unwrap().seq;
    assert_eq!(
        length,
        added.load(Ordering::SeqCst),
        "a refused append took a seq"
    );
    let reader = store.reader();
    for seq in 1..=length {
        assert!(reader.get(&identity(1).author(), seq).unwrap().is_some());
    }
}

/// A replay signs nothing: answered while the fence refuses new appends; a new key is not.
#[test]
fn a_replay_is_answered_while_the_fence_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _owner, _) = Store::open(dir.path(), Some(identity(1)), None).unwrap();
    let key = |k: &str| Some(k.parse::<IdempotencyKey>().unwrap());
    let OwnAppend::Added(first, hash, _) = store
        .append_own_keyed(5, "x".into(), key("k-1"))
        .wait()
        .unwrap()
    else {
        panic!("a new key replayed")
    };
    store.fence_event(hold(&["a:1"]));
    assert_eq!(
        store
            .append_own_keyed(5, "x".into(), key("k-1"))
            .wait()
            .unwrap(),
        OwnAppend::Replayed {
            seq: first.seq,
            hash
        }
    );
    assert!(matches!(
        refusal(store.append_own_keyed(5, "x".into(), key("k-2")).wait()),
        FenceError::Starting { .. }
    ));
}

/// Readers see the fence the writer publishes after each event (`/summary`'s `own_feed`).
#[test]
fn the_published_fence_follows_the_events() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _owner, _) = Store::open(dir.path(), Some(identity(1)), None).unwrap();
    let state = |store: &Store| store.fence().state(0, Instant::now());
    assert_eq!(state(&store), OwnFeedState::Ok);
    store.fence_event(hold(&["a:1"]));
    wait_until("the fence to be published closed", || {
        state(&store) == OwnFeedState::Starting
    });
    store.fence_event(FenceEvent::PeerTried {
        peer: "a:1".into(),
        pinned_exchange: false,
    });
    wait_until("the fence to be published open", || {
        state(&store) == OwnFeedState::Ok
    });
}
