//! What a deterministic simulation replaces, for the one thread it runs on.
//!
//! The network simulation (tests/it/sim.rs) runs every node of a simulated network on one
//! current-thread tokio runtime with paused time, over an in-memory network, with each
//! store on the in-memory backend and its writer stepping inline
//! ([`crate::store::StoreOptions::inline_writer`]). What is then left to chance is what the
//! code draws from outside the runtime, and each such draw goes through this module:
//!
//! - **the wall clock** ([`crate::clock::now_ms`]): an entry's timestamp goes into its hash,
//!   and so into the order of feeds in a reconciliation and into what a digest covers;
//!   under a simulation it is `epoch_ms` plus the runtime's (paused) time since [`enter`];
//! - **random numbers that decide something** ([`random_u64`], [`random_bytes`]): a
//!   session's handshake nonce (it decides which of two sessions of one pair survives) and
//!   a dialer's jitter (it decides which dialer fires first); drawn from a generator seeded
//!   by the simulation's seed. Randomness that decides nothing (the encrypted transport's
//!   ephemeral keys, which change ciphertext but never its length) is left alone;
//! - **work sent to tokio's blocking pool** ([`blocking`]): a blocking task finishes at a
//!   moment real time decides, and the other tasks it overlaps with differ from run to
//!   run; under a simulation it runs inline, at the point it is awaited.
//!
//! Outside a simulation (every node, every other test) each function here is what it
//! replaces: the system clock, the thread's random generator, `spawn_blocking`. The switch
//! is per thread, so a simulation cannot leak into the rest of the process.

use std::cell::RefCell;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The state of a simulation on this thread.
struct Simulated {
    rng: StdRng,
    epoch_ms: u64,
    start: tokio::time::Instant,
}

thread_local! {
    static SIMULATED: RefCell<Option<Simulated>> = const { RefCell::new(None) };
}

/// Ends the simulation on this thread when dropped.
#[must_use = "the simulation ends when the guard is dropped"]
pub struct Guard {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        SIMULATED.with(|s| s.borrow_mut().take());
    }
}

/// Starts a simulation on this thread: from here on, [`crate::clock::now_ms`] reads
/// `epoch_ms` plus the tokio runtime's time since this call, the random draws listed in the
/// module docs come from a generator seeded with `seed`, and [`blocking`] runs its work
/// inline. Call it inside the runtime (its clock is read here), on the thread that runs it.
pub fn enter(seed: u64, epoch_ms: u64) -> Guard {
    let simulated = Simulated {
        rng: StdRng::seed_from_u64(seed),
        epoch_ms,
        start: tokio::time::Instant::now(),
    };
    SIMULATED.with(|s| *s.borrow_mut() = Some(simulated));
    Guard {
        _not_send: std::marker::PhantomData,
    }
}

/// Whether a simulation runs on this thread.
pub fn active() -> bool {
    SIMULATED.with(|s| s.borrow().is_some())
}

/// The simulated wall clock, if a simulation runs on this thread.
pub(crate) fn now_ms() -> Option<u64> {
    SIMULATED.with(|s| {
        s.borrow().as_ref().map(|sim| {
            let elapsed = tokio::time::Instant::now().saturating_duration_since(sim.start);
            sim.epoch_ms
                .saturating_add(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        })
    })
}

/// A random `u64`: the simulation's generator under a simulation, else the thread's.
pub(crate) fn random_u64() -> u64 {
    SIMULATED.with(|s| match s.borrow_mut().as_mut() {
        Some(sim) => sim.rng.gen(),
        None => rand::random(),
    })
}

/// Random bytes, drawn as [`random_u64`] is.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    SIMULATED.with(|s| match s.borrow_mut().as_mut() {
        Some(sim) => sim.rng.fill(&mut bytes[..]),
        None => rand::thread_rng().fill(&mut bytes[..]),
    });
    bytes
}

/// Runs `work` on tokio's blocking pool, or inline under a simulation (see the module
/// docs). Callers treat the result as they treat `spawn_blocking`'s.
pub(crate) async fn blocking<F, R>(work: F) -> Result<R, tokio::task::JoinError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    if active() {
        Ok(work())
    } else {
        tokio::task::spawn_blocking(work).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_simulation_reads_its_own_clock_and_draws_from_its_seed() {
        assert!(!active());
        let (first, again) = {
            let _sim = enter(7, 1_000);
            assert_eq!(now_ms(), Some(1_000));
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            assert_eq!(now_ms(), Some(1_250));
            (random_u64(), random_bytes::<8>())
        };
        assert!(!active());
        assert_eq!(now_ms(), None);
        let _sim = enter(7, 0);
        assert_eq!((random_u64(), random_bytes::<8>()), (first, again));
    }

    #[tokio::test(start_paused = true)]
    async fn blocking_work_runs_inline_only_under_a_simulation() {
        let caller = std::thread::current().id();
        let pooled = blocking(move || std::thread::current().id()).await.unwrap();
        assert_ne!(pooled, caller);
        let _sim = enter(1, 0);
        let inline = blocking(move || std::thread::current().id()).await.unwrap();
        assert_eq!(inline, caller);
    }
}
