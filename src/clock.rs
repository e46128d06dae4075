//! Wall-clock time as entries and status records carry it: milliseconds since the Unix
//! epoch. One definition, so an own entry's timestamp and the times `/health` and
//! `GET /peers` report are read the same way. A clock set before 1970 reads as 0 (an own
//! entry's timestamp never goes below its feed's last one anyway, see the store's planner).
//!
//! Monotonic time ([`instant`]) is tokio's clock, so deadlines kept as `std` instants (the
//! fence's claims, admission's windows) follow a runtime whose time is paused, as a
//! deterministic simulation's is; under such a simulation the wall clock is simulated too
//! ([`crate::determinism`]).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 before it; saturates far past the year 500 million).
pub fn now_ms() -> u64 {
    if let Some(simulated) = crate::determinism::now_ms() {
        return simulated;
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Now, on tokio's clock: `Instant::now()` outside a runtime or in one whose time runs,
/// the runtime's paused time in one whose time is paused (tests, the simulation).
pub fn instant() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}
