//! Locking a mutex whatever a panicking holder left behind.
//!
//! Every `std::sync::Mutex` in the node guards plain data changed in single statements (maps
//! of peers and connections, counters, views folded one entry at a time), so a thread that
//! panicked while holding one cannot have left it half-updated. Recovering the guard keeps one
//! bug from turning every later request into a second panic.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, taking the data over from a poisoned lock (see the module docs for why
/// that is sound here).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
