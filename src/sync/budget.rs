//! What a stranger may spend, counted by where it comes from rather than by which key it
//! shows (docs/PROTOCOL.md section 9). Keys cost nothing to make, so a budget per key is no
//! budget; addresses cost something, and a node-wide figure caps even an attacker with many.
//!
//! - [`Source`]: the unit a budget is charged to: an IPv4 address (/32), or an IPv6 /64 (one
//!   customer's allocation, so rotating addresses inside it gains nothing); an IPv4-mapped
//!   IPv6 address is its IPv4 address.
//! - [`HourlyBudget`]: a count per hour window (new feeds, fork proofs of new authors).
//! - [`SendBucket`]: bytes served per second, with a burst: a token bucket that may go into
//!   debt by one frame, so a sender waits before its next frame instead of cutting one.
//!
//! Pure: the caller passes the clock.

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The budget window of [`HourlyBudget`].
pub const BUDGET_WINDOW: Duration = Duration::from_secs(3600);

/// Where a stranger comes from, as budgets see it (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// The whole address.
    V4([u8; 4]),
    /// The first 64 bits.
    V6([u8; 8]),
}

impl Source {
    /// The source an address is charged to (an IPv4-mapped IPv6 address as its IPv4).
    pub fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.octets()),
                None => {
                    let o = v6.octets();
                    Source::V6([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
                }
            },
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::V4(o) => write!(f, "{}.{}.{}.{}", o[0], o[1], o[2], o[3]),
            Source::V6(o) => {
                for pair in o.chunks(2) {
                    write!(f, "{:x}:", u16::from_be_bytes([pair[0], pair[1]]))?;
                }
                f.write_str(":/64")
            }
        }
    }
}

/// A count that renews every [`BUDGET_WINDOW`].
#[derive(Clone, Copy, Debug)]
pub struct HourlyBudget {
    window_start: Instant,
    used: u64,
}

impl HourlyBudget {
    /// Nothing spent, in a window that starts at `now`.
    pub fn new(now: Instant) -> HourlyBudget {
        HourlyBudget {
            window_start: now,
            used: 0,
        }
    }

    /// Whether one more fits under `limit` in the window of `now` (renewing a window that
    /// ended). Does not spend.
    pub fn has_room(&mut self, limit: u64, now: Instant) -> bool {
        if now.duration_since(self.window_start) >= BUDGET_WINDOW {
            self.window_start = now;
            self.used = 0;
        }
        self.used < limit
    }

    /// Counts one against the current window (after [`HourlyBudget::has_room`] said yes).
    pub fn spend(&mut self) {
        self.used = self.used.saturating_add(1);
    }

    /// When the current window began; it renews [`BUDGET_WINDOW`] later.
    pub fn window_start(&self) -> Instant {
        self.window_start
    }
}

/// Bytes per second with a burst (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct SendBucket {
    /// Bytes available; negative: the debt of the last frame.
    tokens: f64,
    at: Instant,
}

impl SendBucket {
    /// A full bucket.
    pub fn new(burst: u64, now: Instant) -> SendBucket {
        SendBucket {
            tokens: burst as f64,
            at: now,
        }
    }

    fn refill(&mut self, rate: u64, burst: u64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate as f64).min(burst as f64);
        self.at = now;
    }

    /// How long to wait before sending anything more (zero: send now).
    pub fn wait(&mut self, rate: u64, burst: u64, now: Instant) -> Duration {
        self.refill(rate, burst, now);
        if self.tokens >= 0.0 || rate == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(-self.tokens / rate as f64)
    }

    /// `bytes` were sent.
    pub fn spend(&mut self, bytes: u64, rate: u64, burst: u64, now: Instant) {
        self.refill(rate, burst, now);
        self.tokens -= bytes as f64;
    }

    /// Whether the bucket is full again (a record nobody needs to keep).
    pub fn is_full(&mut self, rate: u64, burst: u64, now: Instant) -> bool {
        self.refill(rate, burst, now);
        self.tokens >= burst as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_group_ipv6_by_64_and_fold_mapped_ipv4() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(Source::of(ip("10.0.0.1")), Source::V4([10, 0, 0, 1]));
        assert_ne!(Source::of(ip("10.0.0.1")), Source::of(ip("10.0.0.2")));
        assert_eq!(
            Source::of(ip("::ffff:10.0.0.1")),
            Source::of(ip("10.0.0.1"))
        );
        assert_eq!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(Source::of(ip("10.0.0.1")).to_string(), "10.0.0.1");
        assert_eq!(
            Source::of(ip("2001:db8:1:2::1")).to_string(),
            "2001:db8:1:2::/64"
        );
    }

    #[test]
    fn an_hourly_budget_renews_after_its_window() {
        let t0 = Instant::now();
        let mut b = HourlyBudget::new(t0);
        assert!(b.has_room(2, t0));
        b.spend();
        b.spend();
        assert!(!b.has_room(2, t0 + Duration::from_secs(3599)));
        assert!(b.has_room(2, t0 + BUDGET_WINDOW));
    }

    #[test]
    fn a_send_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let (rate, burst) = (1000, 4000);
        let mut b = SendBucket::new(burst, t0);
        assert_eq!(b.wait(rate, burst, t0), Duration::ZERO);
        b.spend(5000, rate, burst, t0);
        // 1,000 bytes of debt at 1,000 bytes/s: a second's wait.
        assert_eq!(b.wait(rate, burst, t0), Duration::from_secs(1));
        assert_eq!(
            b.wait(rate, burst, t0 + Duration::from_millis(500)),
            Duration::from_millis(500)
        );
        assert_eq!(
            b.wait(rate, burst, t0 + Duration::from_secs(1)),
            Duration::ZERO
        );
        assert!(!b.is_full(rate, burst, t0 + Duration::from_secs(4)));
        assert!(b.is_full(rate, burst, t0 + Duration::from_secs(5)));
    }
}
