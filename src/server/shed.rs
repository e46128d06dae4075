//! Which connection to close when the HTTP connection cap is reached, so a new client is
//! still served (`server/connections.rs` asks when every slot is taken).
//!
//! Threat: a client that opens connections and then sends nothing, sends a request head a
//! byte at a time, stalls an upload, or stops reading a response. Each such connection is
//! bounded in time (the header deadline, the stream idle timeout), but hundreds of them at
//! once would hold every slot for that long and make every new client wait. The rule:
//!
//! 1. a connection with no request in flight (idle keep-alive, or still waiting for its
//!    first request head) goes first, the one quiet longest first;
//! 2. otherwise the connection whose bytes last moved longest ago, if that was at least
//!    [`MIN_STALL_TO_SHED_MS`] ago (a stalled upload, a reader that stopped reading);
//! 3. otherwise nobody: every connection is busy and moving, and the newcomer waits for a
//!    slot as before.

use crate::poison::lock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::AbortHandle;
use tokio::time::Instant;

/// A busy connection is shed only if none of its bytes moved for this long.
pub(crate) const MIN_STALL_TO_SHED_MS: u64 = 1_000;

/// What a connection is doing, updated by its I/O and its requests.
#[derive(Debug)]
pub(crate) struct Activity {
    origin: Instant,
    /// Requests whose response (body included) is not finished.
    in_flight: AtomicUsize,
    /// Milliseconds after `origin` when a byte last moved, or a request began or ended.
    last_moved_ms: AtomicU64,
}

impl Activity {
    pub(crate) fn new(origin: Instant) -> Arc<Activity> {
        let activity = Arc::new(Activity {
            origin,
            in_flight: AtomicUsize::new(0),
            last_moved_ms: AtomicU64::new(0),
        });
        activity.moved();
        activity
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Bytes moved (or a request began or ended) now.
    pub(crate) fn moved(&self) {
        self.last_moved_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// A request began; it counts until the returned guard drops (with its response body).
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.moved();
        InFlight(self.clone())
    }
}

/// Holds one request in flight; drop it when the response body is done.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.moved();
    }
}

/// One connection as the shedding rule sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Seen {
    pub id: u64,
    pub busy: bool,
    pub last_moved_ms: u64,
}

/// The connection to close (see the module docs), at `now_ms`.
pub(crate) fn pick_victim(conns: &[Seen], now_ms: u64) -> Option<u64> {
    let quiet = |c: &&Seen| (c.last_moved_ms, c.id);
    if let Some(idle) = conns.iter().filter(|c| !c.busy).min_by_key(quiet) {
        return Some(idle.id);
    }
    conns
        .iter()
        .filter(|c| now_ms.saturating_sub(c.last_moved_ms) >= MIN_STALL_TO_SHED_MS)
        .min_by_key(quiet)
        .map(|c| c.id)
}

/// The open connections of one server, each with the handle that closes it.
#[derive(Default)]
pub(crate) struct Connections {
    open: Mutex<HashMap<u64, (Arc<Activity>, AbortHandle)>>,
}

impl Connections {
    pub(crate) fn insert(&self, id: u64, activity: Arc<Activity>, abort: AbortHandle) {
        lock(&self.open).insert(id, (activity, abort));
    }

    pub(crate) fn remove(&self, id: u64) {
        lock(&self.open).remove(&id);
    }

    /// Closes the connection the rule picks, if any; returns whether one was closed.
    pub(crate) fn shed_one(&self, origin: Instant) -> bool {
        let now_ms = u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut open = lock(&self.open);
        let seen: Vec<Seen> = open
            .iter()
            .map(|(id, (activity, _))| Seen {
                id: *id,
                busy: activity.in_flight.load(Ordering::Relaxed) > 0,
                last_moved_ms: activity.last_moved_ms.load(Ordering::Relaxed),
            })
            .collect();
        let Some(victim) = pick_victim(&seen, now_ms) else {
            return false;
        };
        if let Some((_, abort)) = open.remove(&victim) {
            abort.abort();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: u64, busy: bool, last_moved_ms: u64) -> Seen {
        Seen {
            id,
            busy,
            last_moved_ms,
        }
    }

    #[test]
    fn idle_connections_go_first_the_quietest_first() {
        let conns = [
            c(1, true, 0),
            c(2, false, 500),
            c(3, false, 100),
            c(4, true, 50),
        ];
        assert_eq!(pick_victim(&conns, 10_000), Some(3));
    }

    #[test]
    fn then_the_busy_connection_stalled_longest() {
        let conns = [c(1, true, 9_500), c(2, true, 2_000), c(3, true, 5_000)];
        assert_eq!(pick_victim(&conns, 10_000), Some(2));
    }

    #[test]
    fn busy_connections_that_move_are_never_shed() {
        let conns = [c(1, true, 9_500), c(2, true, 9_900)];
        assert_eq!(pick_victim(&conns, 10_000), None);
        assert_eq!(pick_victim(&[], 10_000), None);
    }

    #[test]
    fn a_request_counts_until_its_guard_drops() {
        let activity = Activity::new(Instant::now());
        let guard = activity.begin();
        assert_eq!(activity.in_flight.load(Ordering::Relaxed), 1);
        drop(guard);
        assert_eq!(activity.in_flight.load(Ordering::Relaxed), 0);
    }
}
