//! The identity handshake (docs/PROTOCOL.md section 6), run inside the encrypted channel:
//! each side proves it holds its key by signing the peer's fresh nonce and the channel's
//! Noise handshake hash. Pure: the caller supplies the nonce and the binding and does the I/O.
//!
//! # The signed message
//!
//! ```text
//! "kappalog/handshake/v2" (21 bytes) || version (u16 BE: the session's, 2 or 3)
//!   || signer author (32) || signer nonce (32) || verifier author (32) || verifier nonce (32)
//!   || channel binding (32: the Noise handshake hash)
//! ```
//!
//! [`AUTH_MESSAGE_BYTES`] = 183 bytes. Entry signatures sign exactly 32 bytes (an entry
//! hash), so a handshake signature is never a valid entry signature and the reverse; the tag
//! separates it from any future signed message. The verifier's nonce makes the signature
//! fresh; the signer's nonce and both authors tie it to this session and direction, so a
//! signature cannot be replayed in another session or reflected back to its sender. The
//! channel binding ties it to this encrypted channel: a man in the middle who runs one
//! Noise session with each side holds two different handshake hashes, so neither side's
//! signature verifies on the other's channel, and he cannot sign for either key.
//!
//! # Rules for the peer's `Hello` and `Auth`
//!
//! - **version**: `Hello.version` is the version both openings agreed on (2 or 3, see
//!   [`super::opening`]; [`HandshakeError::VersionMismatch`]);
//! - **not ourselves**: the peer's author is not our own ([`HandshakeError::SelfConnection`]).
//!   A `Hello` is unsigned, so this alone proves nothing: the session layer tells a proven
//!   self-connection (see [`super::self_probe`]; the dialer stops redialling that address)
//!   from a peer that only says our name (it must then pass [`Handshake::on_own_hello`] and
//!   [`Handshake::on_auth`] under our own key: if it fails it lied, if it passes it holds a
//!   copy of our key, an alarm). Either way the session ends: two holders of one key must
//!   not sync directly because they may hold diverging feeds; the own-feed fence detects
//!   that through third nodes;
//! - **fresh**: the peer's nonce differs from ours ([`HandshakeError::ReflectedNonce`]);
//! - **auth**: the signature verifies over the message above under the entry signature
//!   acceptance rule ([`HandshakeError::BadAuthSignature`]).

use crate::identity::{Author, Identity};
use crate::signature::{self, SignatureError};

use super::message::{Auth, ByeReason, Hello, Nonce, PROTOCOL_VERSION};

/// The tag that opens every handshake message.
pub const HANDSHAKE_TAG: &[u8; 21] = b"kappalog/handshake/v2";
/// The length of the signed handshake message.
pub const AUTH_MESSAGE_BYTES: usize = 21 + 2 + 5 * 32;

/// The channel's Noise handshake hash, signed by both identities.
pub type Binding = [u8; 32];

/// Why the peer's `Hello` or `Auth` is refused. One variant per rule of the module docs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The **version** rule.
    #[error("peer speaks protocol version {theirs}, we speak {ours}")]
    VersionMismatch {
        /// The version the openings agreed on.
        ours: u16,
        /// The version the peer's `Hello` names.
        theirs: u16,
    },
    /// The **not ourselves** rule: the peer's `Hello` names our own author (carried).
    #[error("peer has our own author {0}: connected to ourselves or to a copy of our key")]
    SelfConnection(Author),
    /// The **fresh** rule: the peer's nonce is ours.
    #[error("peer sent our own nonce back")]
    ReflectedNonce,
    /// The **auth** rule.
    #[error("peer {author} failed to prove its key: {error}")]
    BadAuthSignature {
        /// The author the peer claimed in its `Hello`.
        author: Author,
        /// Why its signature does not verify.
        error: SignatureError,
    },
}

impl HandshakeError {
    /// The reason to send in `Bye` before closing.
    pub fn bye_reason(&self) -> ByeReason {
        match self {
            HandshakeError::VersionMismatch { .. } => ByeReason::VersionMismatch,
            HandshakeError::SelfConnection(_) => ByeReason::SelfConnection,
            HandshakeError::ReflectedNonce | HandshakeError::BadAuthSignature { .. } => {
                ByeReason::BadAuth
            }
        }
    }
}

/// The bytes a signer signs (see the module docs) in a session of `version`.
pub fn auth_message(
    version: u16,
    signer: &Author,
    signer_nonce: &Nonce,
    verifier: &Author,
    verifier_nonce: &Nonce,
    binding: &Binding,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(AUTH_MESSAGE_BYTES);
    out.extend_from_slice(HANDSHAKE_TAG);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(signer.as_bytes());
    out.extend_from_slice(&signer_nonce.0);
    out.extend_from_slice(verifier.as_bytes());
    out.extend_from_slice(&verifier_nonce.0);
    out.extend_from_slice(binding);
    out
}

/// One side of a handshake: our `Hello`, then the peer's `Hello`, then its `Auth`.
#[derive(Debug, Clone)]
pub struct Handshake {
    ours: Hello,
    binding: Binding,
}

impl Handshake {
    /// Starts a handshake as `author` with a fresh random `nonce` (the caller draws it from a
    /// CSPRNG; a reused nonce lets an old signature be replayed) on the channel whose Noise
    /// handshake hash is `binding`.
    pub fn new(author: Author, nonce: Nonce, binding: Binding) -> Handshake {
        Handshake::for_version(PROTOCOL_VERSION, author, nonce, binding)
    }

    /// [`Handshake::new`] in a session whose openings agreed on `version` (the channel's):
    /// both `Hello`s must carry it, and both signatures sign it.
    pub fn for_version(version: u16, author: Author, nonce: Nonce, binding: Binding) -> Handshake {
        Handshake {
            ours: Hello {
                version,
                author,
                nonce,
            },
            binding,
        }
    }

    /// The `Hello` to send first.
    pub fn hello(&self) -> &Hello {
        &self.ours
    }

    /// Checks the peer's `Hello` and returns our `Auth` for it. `identity` must be the key of
    /// the author given to [`Handshake::new`].
    pub fn on_hello(&self, identity: &Identity, theirs: &Hello) -> Result<Auth, HandshakeError> {
        if theirs.author == self.ours.author {
            // Checked after the version, so a peer of another version hears that first.
            self.check_hello(theirs)?;
            return Err(HandshakeError::SelfConnection(theirs.author));
        }
        self.check_hello(theirs)?;
        Ok(self.auth(identity, theirs))
    }

    /// [`Handshake::on_hello`] for a peer `Hello` that carries our own author (which
    /// `on_hello` refuses): every other check, and our `Auth`, so the session can find out
    /// with [`Handshake::on_auth`] whether the peer really holds our key.
    pub fn on_own_hello(
        &self,
        identity: &Identity,
        theirs: &Hello,
    ) -> Result<Auth, HandshakeError> {
        self.check_hello(theirs)?;
        Ok(self.auth(identity, theirs))
    }

    /// The rules of a peer `Hello` other than "not ourselves".
    fn check_hello(&self, theirs: &Hello) -> Result<(), HandshakeError> {
        if theirs.version != self.ours.version {
            return Err(HandshakeError::VersionMismatch {
                ours: self.ours.version,
                theirs: theirs.version,
            });
        }
        if theirs.nonce == self.ours.nonce {
            return Err(HandshakeError::ReflectedNonce);
        }
        Ok(())
    }

    fn auth(&self, identity: &Identity, theirs: &Hello) -> Auth {
        let message = auth_message(
            self.ours.version,
            &self.ours.author,
            &self.ours.nonce,
            &theirs.author,
            &theirs.nonce,
            &self.binding,
        );
        Auth {
            signature: identity.sign_tagged(&message),
        }
    }

    /// Verifies the peer's `Auth` (after [`Handshake::on_hello`] accepted its `Hello`) and
    /// returns the authenticated peer author.
    pub fn on_auth(&self, theirs: &Hello, auth: &Auth) -> Result<Author, HandshakeError> {
        let message = auth_message(
            self.ours.version,
            &theirs.author,
            &theirs.nonce,
            &self.ours.author,
            &self.ours.nonce,
            &self.binding,
        );
        signature::verify_message(&theirs.author, &message, &auth.signature).map_err(|error| {
            HandshakeError::BadAuthSignature {
                author: theirs.author,
                error,
            }
        })?;
        Ok(theirs.author)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Hash;

    struct Side {
        id: Identity,
        hs: Handshake,
    }

    fn side(seed: u8, nonce: u8) -> Side {
        let id = Identity::from_seed([seed; 32]);
        let hs = Handshake::new(id.author(), Nonce([nonce; 32]), [42; 32]);
        Side { id, hs }
    }

    #[test]
    fn both_sides_authenticate_each_other() {
        let (a, b) = (side(1, 10), side(2, 20));
        let auth_a = a.hs.on_hello(&a.id, b.hs.hello()).unwrap();
        let auth_b = b.hs.on_hello(&b.id, a.hs.hello()).unwrap();
        assert_eq!(b.hs.on_auth(a.hs.hello(), &auth_a), Ok(a.id.author()));
        assert_eq!(a.hs.on_auth(b.hs.hello(), &auth_b), Ok(b.id.author()));
    }

    #[test]
    fn message_is_tagged_and_never_hash_sized() {
        let (a, b) = (side(1, 10), side(2, 20));
        let m = auth_message(
            PROTOCOL_VERSION,
            &a.id.author(),
            &Nonce([1; 32]),
            &b.id.author(),
            &Nonce([2; 32]),
            &[3; 32],
        );
        assert_eq!(m.len(), AUTH_MESSAGE_BYTES);
        assert_ne!(m.len(), Hash::LEN);
        assert!(m.starts_with(b"kappalog/handshake/v2"));
        assert!(m.ends_with(&[3; 32]));
    }

    #[test]
    fn version_mismatch() {
        let (a, b) = (side(1, 10), side(2, 20));
        let mut hello = b.hs.hello().clone();
        hello.version = 2;
        assert_eq!(
            a.hs.on_hello(&a.id, &hello),
            Err(HandshakeError::VersionMismatch { ours: 4, theirs: 2 })
        );
        // In a session the openings agreed to run at 2, a `Hello` of 4 is the mismatch.
        let v2 = Handshake::for_version(2, a.id.author(), Nonce([10; 32]), [42; 32]);
        assert_eq!(
            v2.on_hello(&a.id, b.hs.hello()),
            Err(HandshakeError::VersionMismatch { ours: 2, theirs: 4 })
        );
    }

    #[test]
    fn self_connection() {
        let a = side(1, 10);
        let other_session = side(1, 11);
        let err = a.hs.on_hello(&a.id, other_session.hs.hello()).unwrap_err();
        assert_eq!(err, HandshakeError::SelfConnection(a.id.author()));
        assert_eq!(err.bye_reason(), ByeReason::SelfConnection);
        // Whoever says our name must prove our key: a copy of the key passes, a liar fails.
        let auth = other_session
            .hs
            .on_own_hello(&other_session.id, a.hs.hello())
            .unwrap();
        assert_eq!(
            a.hs.on_auth(other_session.hs.hello(), &auth),
            Ok(a.id.author())
        );
        let liar = side(9, 12);
        let hello = Hello {
            author: a.id.author(),
            ..liar.hs.hello().clone()
        };
        let lie = Handshake::new(a.id.author(), hello.nonce, [42; 32]);
        let forged = lie.on_own_hello(&liar.id, a.hs.hello()).unwrap();
        assert!(matches!(
            a.hs.on_auth(&hello, &forged),
            Err(HandshakeError::BadAuthSignature { .. })
        ));
        // A reflected Hello is a reflection, not a self-connection.
        assert_eq!(
            a.hs.on_hello(&a.id, a.hs.hello()),
            Err(HandshakeError::ReflectedNonce)
        );
    }

    #[test]
    fn reflected_nonce() {
        let (a, b) = (side(1, 10), side(2, 10));
        assert_eq!(
            a.hs.on_hello(&a.id, b.hs.hello()),
            Err(HandshakeError::ReflectedNonce)
        );
    }

    #[test]
    fn auth_from_another_key_is_refused() {
        let (a, b, mallory) = (side(1, 10), side(2, 20), side(3, 20));
        // Mallory claims to be b but signs with its own key.
        let forged = mallory.hs.on_hello(&mallory.id, a.hs.hello()).unwrap();
        assert!(matches!(
            a.hs.on_auth(b.hs.hello(), &forged),
            Err(HandshakeError::BadAuthSignature { .. })
        ));
    }

    #[test]
    fn auth_for_another_session_is_refused() {
        let (a, b) = (side(1, 10), side(2, 20));
        // b's auth made for a session in which a used a different nonce.
        let old_a = side(1, 11);
        let replayed = b.hs.on_hello(&b.id, old_a.hs.hello()).unwrap();
        assert_eq!(
            a.hs.on_auth(b.hs.hello(), &replayed),
            Err(HandshakeError::BadAuthSignature {
                author: b.id.author(),
                error: SignatureError::Mismatch
            })
        );
    }

    #[test]
    fn own_auth_reflected_back_is_refused() {
        let (a, b) = (side(1, 10), side(2, 20));
        let auth_a = a.hs.on_hello(&a.id, b.hs.hello()).unwrap();
        // An attacker posing as b echoes a's own signature.
        assert!(matches!(
            a.hs.on_auth(b.hs.hello(), &auth_a),
            Err(HandshakeError::BadAuthSignature { .. })
        ));
    }

    #[test]
    fn auth_made_on_another_channel_is_refused() {
        // A man in the middle relays b's Auth, made on b's channel with him, to a.
        let (a, b) = (side(1, 10), side(2, 20));
        let b_on_other_channel = Handshake::new(b.id.author(), Nonce([20; 32]), [99; 32]);
        let relayed = b_on_other_channel.on_hello(&b.id, a.hs.hello()).unwrap();
        assert!(matches!(
            a.hs.on_auth(b.hs.hello(), &relayed),
            Err(HandshakeError::BadAuthSignature { .. })
        ));
    }

    #[test]
    fn entry_style_signature_over_a_hash_is_refused() {
        let (a, b) = (side(1, 10), side(2, 20));
        let sig = b.id.sign_hash(&Hash([20; 32]));
        assert!(matches!(
            a.hs.on_auth(b.hs.hello(), &Auth { signature: sig }),
            Err(HandshakeError::BadAuthSignature { .. })
        ));
    }
}
