//! Telling a real self-connection from a peer that merely says our name (docs/PROTOCOL.md
//! section 6).
//!
//! A `Hello` is not signed, so anyone can answer our dial with our own author in it. If that
//! alone stopped the dialer, one unsigned message would disable a configured peer for good.
//! A real self-connection (our own address among our peers, or a proxy back to us) is two
//! sessions of this very process on one Noise channel: both ends hold the same handshake
//! hash, and each end's `Hello` carries a nonce this process drew. So every session records
//! `(channel binding, own nonce)` here before it sends its `Hello`, and a peer `Hello` with
//! our author is a **proven** self-connection only if its nonce is recorded under this
//! channel's binding. Nobody else can produce that: the binding is unique to the channel, and
//! a man in the middle holds two channels with two bindings.
//!
//! Anything else with our author is either a liar (its `Auth` fails: a bad handshake, the
//! dial is retried with backoff) or a copy of our key (its `Auth` verifies: an alarm, and the
//! dial is retried with backoff too, never stopped).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use super::handshake::Binding;
use super::message::Nonce;
use crate::poison::lock;

/// The `(binding, nonce)` pairs of this process's sessions still in their handshake.
#[derive(Debug, Default)]
pub struct SelfProbe {
    open: Mutex<HashSet<(Binding, [u8; 32])>>,
}

/// Removes its pair when dropped (the session's handshake is over).
#[derive(Debug)]
pub struct ProbeGuard {
    probe: Arc<SelfProbe>,
    pair: (Binding, [u8; 32]),
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        lock(&self.probe.open).remove(&self.pair);
    }
}

impl SelfProbe {
    /// Records that a session on the channel `binding` sends `nonce` in its `Hello`.
    pub fn register(probe: &Arc<SelfProbe>, binding: Binding, nonce: &Nonce) -> ProbeGuard {
        let pair = (binding, nonce.0);
        lock(&probe.open).insert(pair);
        ProbeGuard {
            probe: probe.clone(),
            pair,
        }
    }

    /// Whether a peer `Hello` carrying `their_nonce` on the channel `binding` came from a
    /// session of this process: a proven self-connection.
    pub fn is_own(&self, binding: &Binding, their_nonce: &Nonce) -> bool {
        lock(&self.open).contains(&(*binding, their_nonce.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_nonce_recorded_on_the_same_channel_proves_a_self_connection() {
        let probe = Arc::new(SelfProbe::default());
        let guard = SelfProbe::register(&probe, [1; 32], &Nonce([7; 32]));
        assert!(probe.is_own(&[1; 32], &Nonce([7; 32])));
        // The same nonce echoed on another channel (a peer that saw it elsewhere): no proof.
        assert!(!probe.is_own(&[2; 32], &Nonce([7; 32])));
        assert!(!probe.is_own(&[1; 32], &Nonce([8; 32])));
        drop(guard);
        assert!(!probe.is_own(&[1; 32], &Nonce([7; 32])));
    }
}
