//! The one retry delay: exponential from a minimum, doubling per consecutive failure, capped
//! at a maximum. Used by the sync dialers (with the protocol's bounds,
//! [`crate::sync::backoff`]), the sync listener's accept loop and the tail client (`kappalog
//! tail`). Pure: jitter, if any, and the sleeping are the caller's.

/// The delay before retry number `failures + 1`, in milliseconds, after `failures`
/// consecutive failures: `min_ms * 2^failures`, at most `max_ms`.
pub fn exponential_ms(min_ms: u64, max_ms: u64, failures: u32) -> u64 {
    let factor = 1u64.checked_shl(failures).unwrap_or(u64::MAX);
    min_ms.saturating_mul(factor).min(max_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_min_and_caps_at_max() {
        assert_eq!(exponential_ms(100, 5_000, 0), 100);
        assert_eq!(exponential_ms(100, 5_000, 1), 200);
        assert_eq!(exponential_ms(100, 5_000, 5), 3_200);
        assert_eq!(exponential_ms(100, 5_000, 6), 5_000);
        assert_eq!(exponential_ms(100, 5_000, 64), 5_000);
        assert_eq!(exponential_ms(100, 5_000, u32::MAX), 5_000);
    }
}
