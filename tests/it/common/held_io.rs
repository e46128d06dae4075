//! A [`LogIo`] whose `fdatasync` the test controls: it can hold a sync (after the real one,
//! so the bytes are durable but nobody has been told: the moment between commit and
//! response) until the test releases it, and fail a chosen sync call (held first, if
//! holding, then failing without syncing).

use std::collections::BTreeSet;
use std::io;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use kappalog::store::io::{LogFile, LogIo};

use super::DEADLINE;

#[derive(Debug, Default)]
struct State {
    /// While true, every sync waits (after syncing for real) until it is false.
    holding: bool,
    /// Syncs waiting right now.
    held: usize,
    /// Sync calls so far (1-based numbers of the calls).
    calls: u64,
    /// Call numbers that fail without syncing.
    fail_calls: BTreeSet<u64>,
}

/// See the module docs. Share it with the store as `Arc<HeldIo>`.
#[derive(Debug, Default)]
pub struct HeldIo {
    state: Mutex<State>,
    changed: Condvar,
}

impl HeldIo {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on every sync is held after it has synced, until [`HeldIo::release`].
    pub fn hold(&self) {
        self.state().holding = true;
    }

    /// Lets every held sync (and later ones) return.
    pub fn release(&self) {
        self.state().holding = false;
        self.changed.notify_all();
    }

    /// Makes sync call number `n` (1-based, counted from the store's open) fail with an
    /// injected error, without syncing (after being held, while holding).
    pub fn fail_call(&self, n: u64) {
        self.state().fail_calls.insert(n);
    }

    /// Sync calls made so far.
    pub fn calls(&self) -> u64 {
        self.state().calls
    }

    /// Waits (bounded by [`DEADLINE`]) until a sync is being held.
    pub fn wait_until_held(&self) {
        let deadline = Instant::now() + DEADLINE;
        let mut state = self.state();
        while state.held == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no fdatasync was held before the deadline");
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl LogIo for HeldIo {
    fn sync_data(&self, file: &LogFile) -> io::Result<()> {
        let call = {
            let mut state = self.state();
            state.calls += 1;
            state.calls
        };
        let fail = self.state().fail_calls.contains(&call);
        let result = if fail {
            Err(io::Error::other(format!(
                "injected failure of sync call {call}"
            )))
        } else {
            file.sync_data()
        };
        let mut state = self.state();
        state.held += 1;
        self.changed.notify_all();
        // Bounded like every wait in the tests: a test that forgets to release fails here
        // instead of hanging.
        let deadline = Instant::now() + DEADLINE;
        while state.holding && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        state.held -= 1;
        result
    }
}

/// A node on `dir` (identity 1) whose store syncs through a new [`HeldIo`], with no idle
/// marker (so a held sync is the only one in flight): the node and the `HeldIo` to hold.
pub fn node_with_held_syncs(
    dir: &std::path::Path,
) -> (kappalog::node::Node, std::sync::Arc<HeldIo>) {
    let io = std::sync::Arc::new(HeldIo::default());
    let options = kappalog::store::StoreOptions {
        io: io.clone(),
        idle_marker_delay: None,
        ..kappalog::store::StoreOptions::default()
    };
    let (node, _) =
        kappalog::node::Node::open_with_store_options(dir, super::identity(1), &options).unwrap();
    (node, io)
}
