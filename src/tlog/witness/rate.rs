//! How often the node cosigns one feed while gossiping: at most about once a second per
//! feed (issue 22). A peer that sends a new checkpoint every millisecond then costs one
//! signature and one durable record a second per feed, not one per message; the checkpoint
//! that arrives in between is cosigned at the next chance, since the newest one wins.

/// The least time between two cosignatures of one feed by the node, in milliseconds.
pub const MIN_COSIGN_INTERVAL_MS: u64 = 1000;

/// Whether the node may cosign a feed at `now_ms` if it last did at `last_cosigned_ms`
/// (None: never, since this process started). The clock may step back (NTP, a restored
/// VM); a step of a second or more either way counts as time passed, so a clock set back
/// an hour delays nothing by an hour, and each step allows at most one extra cosignature.
pub fn should_cosign(last_cosigned_ms: Option<u64>, now_ms: u64) -> bool {
    last_cosigned_ms.is_none_or(|last| now_ms.abs_diff(last) >= MIN_COSIGN_INTERVAL_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_a_second_per_feed() {
        assert!(should_cosign(None, 0));
        assert!(!should_cosign(Some(5_000), 5_000));
        assert!(!should_cosign(Some(5_000), 5_999));
        assert!(should_cosign(Some(5_000), 6_000));
    }

    #[test]
    fn a_clock_stepped_back_does_not_stall_cosigning() {
        assert!(!should_cosign(Some(5_000), 4_001));
        assert!(should_cosign(Some(5_000), 4_000));
        assert!(should_cosign(Some(u64::MAX), 0));
    }
}
