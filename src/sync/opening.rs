//! The plaintext version opening and the version rule (docs/PROTOCOL.md sections 2 and 4):
//! which versions a node speaks, which one a responder answers a dialer's opening with, and
//! the Noise prologue of a session of each version. Pure; [`super::transport`] does the I/O.
//!
//! A node speaks [`MIN_PROTOCOL_VERSION`] (2) to
//! [`PROTOCOL_VERSION`](super::message::PROTOCOL_VERSION) (4). The **responder**
//! reads the dialer's opening before it writes its own and answers with the dialer's version
//! if it speaks it, so a v2 dialer gets a v2 opening and a v2 session, a v3 dialer a v3 one.
//! A v2 node writes its opening at once and refuses any version but 2; a v3 node answers a
//! v4 opening with its own v3 opening and `Bye(VersionMismatch)`. Either way a **dialer**
//! that reads an opening of an older version it speaks knows what it reached and redials
//! with that version ([`super::peers`]).
//!
//! The prologue of a v2 session is v2's, `kappalog/sync/v2`, so real v2 nodes still complete
//! the handshake. A v3 session's prologue also holds both openings' bytes, the dialer's first:
//! an on-path change of either opening (to a version both speak, or any other byte) makes the
//! two sides' handshakes disagree and the first Noise message fail. What it cannot stop is a
//! rewrite of a v3 dialer's opening to 2 toward a node that speaks 2: both sides then run an
//! honest v2 session, whose prologue holds no opening. That downgrade costs checkpoint gossip
//! only; entries stay authenticated and verified as in every v2 session. A v4 session's
//! prologue is built as v3's, with its own tag, `kappalog/sync/v4`; a rewrite of a v4
//! opening to 3 fails the handshake as any other change of a bound opening does, unless the
//! responder is a v3 node, which answers with its own opening and never completes a v4
//! handshake anyway.

use super::frame::encode_frame;
use super::message::{Hello, Message, Nonce, NONCE_BYTES};
use crate::identity::Author;

/// The oldest version this node speaks: a v2 node syncs with it without checkpoints.
pub const MIN_PROTOCOL_VERSION: u16 = 2;
/// The version without checkpoints, whose opening and prologue are kept byte for byte.
pub const V2: u16 = 2;
/// The Noise prologue of a v2 session (16 ASCII bytes).
pub const NOISE_PROLOGUE_V2: &[u8] = b"kappalog/sync/v2";
/// The start of the Noise prologue of a v3 session; both openings follow it.
pub const NOISE_PROLOGUE_V3_TAG: &[u8] = b"kappalog/sync/v3";
/// The start of the Noise prologue of a v4 session; both openings follow it.
pub const NOISE_PROLOGUE_V4_TAG: &[u8] = b"kappalog/sync/v4";

/// The opening frame of `version`: `Hello { version, author: 0^32, nonce: 0^32 }`.
pub fn opening_frame_of(version: u16) -> Vec<u8> {
    let hello = Message::Hello(Hello {
        version,
        author: Author([0; 32]),
        nonce: Nonce([0; NONCE_BYTES]),
    });
    // A Hello has no counted field to exceed and is far below the frame cap: it always
    // encodes.
    encode_frame(&hello).expect("an opening frame encodes")
}

/// Whether this node, speaking up to `max`, speaks `version`.
pub fn speaks(version: u16, max: u16) -> bool {
    (MIN_PROTOCOL_VERSION..=max).contains(&version)
}

/// The version a responder speaking up to `max` answers a dialer's opening of `theirs` with:
/// the dialer's own, if it speaks it; `None` means `Bye(VersionMismatch)`.
pub fn answer(theirs: u16, max: u16) -> Option<u16> {
    speaks(theirs, max).then_some(theirs)
}

/// The Noise prologue of a session of `version`, given the bytes of both openings as they
/// crossed the wire (see the module docs).
pub fn prologue(version: u16, dialer_opening: &[u8], responder_opening: &[u8]) -> Vec<u8> {
    let tag = match version {
        ..=V2 => return NOISE_PROLOGUE_V2.to_vec(),
        3 => NOISE_PROLOGUE_V3_TAG,
        _ => NOISE_PROLOGUE_V4_TAG,
    };
    let mut out = Vec::with_capacity(tag.len() + dialer_opening.len() + responder_opening.len());
    out.extend_from_slice(tag);
    out.extend_from_slice(dialer_opening);
    out.extend_from_slice(responder_opening);
    out
}

/// What a session of `version` goes without, for the log line of a peer that speaks an
/// older version than ours: `None` at our highest.
pub fn missing_in(version: u16, ours: u16) -> Option<&'static str> {
    match version {
        v if v >= ours => None,
        ..=V2 => Some("syncing without checkpoints"),
        _ => Some("syncing without copy searches"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_responder_answers_every_version_it_speaks_with_that_version() {
        assert_eq!(answer(2, 3), Some(2));
        assert_eq!(answer(3, 3), Some(3));
        for refused in [0, 1, 4, 300, u16::MAX] {
            assert_eq!(answer(refused, 3), None, "{refused}");
        }
        for spoken in [2, 3, 4] {
            assert_eq!(answer(spoken, 4), Some(spoken));
        }
        assert_eq!(answer(5, 4), None);
        // A node held to v2 speaks only 2.
        assert_eq!(answer(2, 2), Some(2));
        assert_eq!(answer(3, 2), None);
    }

    #[test]
    fn the_v2_prologue_is_v2s_and_the_v3_one_binds_both_openings_in_order() {
        let (d, r) = (opening_frame_of(3), opening_frame_of(3));
        assert_eq!(prologue(2, &d, &r), b"kappalog/sync/v2");
        let p = prologue(3, &d, &r);
        assert_eq!(p.len(), 16 + 72 + 72);
        assert!(p.starts_with(b"kappalog/sync/v3"));
        let mut changed = d.clone();
        changed[10] ^= 1;
        assert_ne!(prologue(3, &changed, &r), p);
        assert_ne!(prologue(3, &r, &changed), prologue(3, &changed, &r));
        // v4: v3's layout under its own tag.
        let (d4, r4) = (opening_frame_of(4), opening_frame_of(4));
        let p4 = prologue(4, &d4, &r4);
        assert_eq!(&p4[..16], b"kappalog/sync/v4");
        assert_eq!(&p4[16..], &prologue(3, &d4, &r4)[16..]);
    }

    #[test]
    fn an_older_peer_is_logged_with_what_the_session_goes_without() {
        assert_eq!(missing_in(2, 4), Some("syncing without checkpoints"));
        assert_eq!(missing_in(3, 4), Some("syncing without copy searches"));
        assert_eq!(missing_in(4, 4), None);
        assert_eq!(missing_in(2, 3), Some("syncing without checkpoints"));
    }

    #[test]
    fn an_opening_is_72_bytes_for_every_version() {
        assert_eq!(opening_frame_of(2).len(), 72);
        assert_eq!(opening_frame_of(3).len(), 72);
        assert_eq!(opening_frame_of(4).len(), 72);
        assert_ne!(opening_frame_of(2), opening_frame_of(3));
        assert_ne!(opening_frame_of(3), opening_frame_of(4));
    }
}
