//! The reconnect delay for configured peers (docs/PROTOCOL.md section 9): exponential from
//! [`RECONNECT_BACKOFF_MIN_MS`] doubling per consecutive failure, capped at
//! [`RECONNECT_BACKOFF_MAX_MS`] ([`crate::backoff`] with the protocol's bounds). Jitter, if
//! any, is the caller's (it needs randomness).

use super::message::{RECONNECT_BACKOFF_MAX_MS, RECONNECT_BACKOFF_MIN_MS};
use crate::backoff::exponential_ms;

/// The delay before redial number `failures + 1`, in milliseconds, after `failures`
/// consecutive failures (0 after a session that completed its handshake).
pub fn reconnect_delay_ms(failures: u32) -> u64 {
    exponential_ms(RECONNECT_BACKOFF_MIN_MS, RECONNECT_BACKOFF_MAX_MS, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_min_and_caps_at_max() {
        assert_eq!(reconnect_delay_ms(0), 500);
        assert_eq!(reconnect_delay_ms(1), 1_000);
        assert_eq!(reconnect_delay_ms(3), 4_000);
        assert_eq!(reconnect_delay_ms(7), 60_000);
        assert_eq!(reconnect_delay_ms(63), 60_000);
        assert_eq!(reconnect_delay_ms(u32::MAX), 60_000);
    }
}
