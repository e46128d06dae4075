//! Which stranger session makes room when every stranger slot is taken (docs/PROTOCOL.md
//! section 9). Without it, whoever holds the slots first holds them for good: 64 idle
//! authenticated keys would lock every honest stranger out (the README's one-way setup,
//! `B --peer A`, makes B a stranger at A).
//!
//! The rule, over the inbound stranger sessions:
//!
//! 1. protect the [`protected_useful`] sessions that most recently delivered entries the
//!    node stored (a session that never did is not protected by this rule);
//! 2. of the rest, protect the older half (rounded up) by connection time: a long-lived session is
//!    more likely an honest peer, and an attacker cannot make its own sessions older than
//!    the ones already there;
//! 3. evict, of what is left, the session idle longest: the earliest of its last stored
//!    delivery, or its connection if it never delivered.
//!
//! If nothing is left (very few slots), the newcomer is refused (`Bye(Busy)`). So an idle
//! flood costs the attacker connections: every newcomer, honest or not, gets in by evicting
//! an idle young session, and sessions that bring entries or have been there long stay.
//! Pure: the caller passes the sessions and their clocks.

use std::time::Instant;

/// One stranger session, as the rule sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate<K> {
    /// What the caller names the session by (returned when it is chosen).
    pub key: K,
    /// When the session was admitted; older sessions are kept.
    pub connected_at: Instant,
    /// When it last delivered entries the node stored.
    pub last_useful: Option<Instant>,
}

impl<K> Candidate<K> {
    fn idle_since(&self) -> Instant {
        self.last_useful
            .map_or(self.connected_at, |u| u.max(self.connected_at))
    }
}

/// Sessions protected by their deliveries, for `slots` stranger slots: an eighth, at most 8.
pub fn protected_useful(slots: usize) -> usize {
    (slots / 8).min(8)
}

/// The session to evict among `sessions` (all stranger slots' holders), if any.
pub fn choose_victim<K: Copy>(sessions: &[Candidate<K>], slots: usize) -> Option<K> {
    let mut rest: Vec<&Candidate<K>> = sessions.iter().collect();
    // 1. The most recent deliverers.
    rest.sort_by_key(|c| std::cmp::Reverse(c.last_useful));
    let useful = rest
        .iter()
        .take(protected_useful(slots))
        .take_while(|c| c.last_useful.is_some())
        .count();
    rest.drain(..useful);
    // 2. The older half by connection time, rounded up (ties: the first listed), so a sole
    //    session is never evicted: with one slot, whoever holds it keeps it.
    rest.sort_by_key(|c| c.connected_at);
    let older = rest.len().div_ceil(2);
    rest.drain(..older);
    // 3. The idlest of the young.
    rest.into_iter()
        .min_by_key(|c| c.idle_since())
        .map(|c| c.key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn an_idle_flood_gives_way_to_a_newcomer_but_old_and_useful_sessions_stay() {
        let t0 = Instant::now();
        // 16 idle sessions connected at 0..16 s: the young half's idlest (connected at 8 s) goes.
        let idle: Vec<Candidate<u32>> = (0..16)
            .map(|i| Candidate {
                key: i,
                connected_at: at(t0, u64::from(i)),
                last_useful: None,
            })
            .collect();
        assert_eq!(choose_victim(&idle, 16), Some(8));
        // Young sessions that delivered recently are protected by rule 1 (two of 16 slots);
        // the older half of the rest by rule 2; the idlest left is the one connected at 7 s.
        let mut mixed = idle.clone();
        mixed[8].last_useful = Some(at(t0, 100));
        mixed[9].last_useful = Some(at(t0, 99));
        assert_eq!(choose_victim(&mixed, 16), Some(7));
        // The oldest session (an honest peer connected first) is never chosen.
        assert!((0..16).all(|n| choose_victim(&idle[..n], 16) != Some(0)));
    }

    #[test]
    fn sessions_that_all_deliver_evict_the_one_idle_longest_among_the_young() {
        let t0 = Instant::now();
        let mut sessions: Vec<Candidate<u32>> = (0..64)
            .map(|i| Candidate {
                key: i,
                connected_at: at(t0, u64::from(i)),
                last_useful: Some(at(t0, 200 + u64::from(i % 7))),
            })
            .collect();
        // An honest peer connected first and never delivered: protected by its age.
        sessions[0].last_useful = None;
        let victim = choose_victim(&sessions, 64).unwrap();
        assert_ne!(victim, 0);
        let v = &sessions[victim as usize];
        assert_eq!(v.last_useful, Some(at(t0, 200)), "{victim}");
    }

    #[test]
    fn too_few_sessions_leave_nothing_to_evict() {
        let t0 = Instant::now();
        let one = [Candidate {
            key: 1,
            connected_at: t0,
            last_useful: None,
        }];
        assert_eq!(choose_victim(&one, 1), None);
        assert_eq!(choose_victim::<u32>(&[], 0), None);
        let two = [one[0], Candidate { key: 2, ..one[0] }];
        assert_eq!(choose_victim(&two, 2), Some(2));
    }
}
