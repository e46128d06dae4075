//! A feed's checkpoint as its author signed it: verified, and reduced to the author's own
//! signature line.
//!
//! A checkpoint note travels with cosignatures and possibly lines of keys nobody here knows.
//! What a node keeps as "the author's checkpoint", and what a split-view fork proof carries,
//! is the body and the author's line alone: the same bytes on every node for the same
//! signature, whoever cosigned it on the way. [`AuthorCheckpoint::verify`] checks, in order:
//!
//! - **origin**: the origin is a feed's, `kappalog/feed/<64 lowercase hex>`, exactly as
//!   [`origin_for`] writes it ([`AuthorCheckpointError::NotAFeedOrigin`]); the author is
//!   the key in it;
//! - **key**: those 32 bytes are an Ed25519 public key ([`AuthorCheckpointError::AuthorKey`]);
//! - **signature**: the note carries the author's signature under the key name equal to the
//!   origin, and it verifies ([`AuthorCheckpointError::Signature`]); other lines are ignored,
//!   then dropped.

use ed25519_dalek::VerifyingKey;

use crate::identity::Author;
use crate::tlog::checkpoint::SignedCheckpoint;
use crate::tlog::checkpoint::{author_vkey, origin_for, Checkpoint, CheckpointError};
use crate::tlog::merkle::Hash;

/// The prefix of every feed origin.
const FEED_ORIGIN_PREFIX: &str = "kappalog/feed/";

/// The author whose feed `origin` names, if it is a feed origin written as [`origin_for`]
/// writes it (lowercase hex; an uppercase spelling is another origin, not this feed's).
pub fn author_of_origin(origin: &str) -> Option<Author> {
    let author: Author = origin.strip_prefix(FEED_ORIGIN_PREFIX)?.parse().ok()?;
    (origin_for(author.as_bytes()) == origin).then_some(author)
}

/// Why a signed checkpoint is not an author's checkpoint of a feed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorCheckpointError {
    /// The origin (carried) is not `kappalog/feed/<64 lowercase hex>`.
    #[error("origin {0:?} is not a kappalog feed origin")]
    NotAFeedOrigin(String),
    /// The origin's key is not an Ed25519 public key.
    #[error("the key in origin {0:?} is not an Ed25519 public key")]
    AuthorKey(String),
    /// The author's signature is missing or does not verify.
    #[error("author signature: {0}")]
    Signature(CheckpointError),
}

/// A feed checkpoint whose author's signature verified, holding only that signature line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorCheckpoint {
    author: Author,
    signed: SignedCheckpoint,
}

impl AuthorCheckpoint {
    /// Checks `signed` under the rules of the module docs and keeps only the author's line.
    pub fn verify(signed: &SignedCheckpoint) -> Result<AuthorCheckpoint, AuthorCheckpointError> {
        let origin = signed.checkpoint().origin();
        let author = author_of_origin(origin)
            .ok_or_else(|| AuthorCheckpointError::NotAFeedOrigin(origin.to_owned()))?;
        let key = VerifyingKey::from_bytes(author.as_bytes())
            .map_err(|_| AuthorCheckpointError::AuthorKey(origin.to_owned()))?;
        let vkey = author_vkey(&key);
        signed
            .verify_author(&vkey)
            .map_err(AuthorCheckpointError::Signature)?;
        // verify_author succeeded, so the note has a verified line of exactly this name and
        // key ID (a note holds at most one line per name and ID).
        let line = signed
            .note()
            .signatures()
            .iter()
            .find(|line| line.name() == vkey.name() && line.key_id() == vkey.key_id());
        let stripped = line.map(|line| {
            let mut bytes = signed.checkpoint().body().as_bytes().to_vec();
            bytes.push(b'\n');
            bytes.extend_from_slice(line.to_line().as_bytes());
            SignedCheckpoint::parse(&bytes)
        });
        match stripped {
            Some(Ok(signed)) => Ok(AuthorCheckpoint { author, signed }),
            // Unreachable by the comment above; reported rather than assumed.
            Some(Err(error)) => Err(AuthorCheckpointError::Signature(error)),
            None => Err(AuthorCheckpointError::Signature(
                CheckpointError::Signature(crate::tlog::note::VerifyError::NoKnownSignature),
            )),
        }
    }

    /// The feed's author.
    pub fn author(&self) -> Author {
        self.author
    }
    /// The checkpoint body.
    pub fn checkpoint(&self) -> &Checkpoint {
        self.signed.checkpoint()
    }
    /// The tree size.
    pub fn size(&self) -> u64 {
        self.signed.checkpoint().size()
    }
    /// The tree's root.
    pub fn root(&self) -> &Hash {
        self.signed.checkpoint().root()
    }
    /// The note: the body and the author's line alone.
    pub fn signed(&self) -> &SignedCheckpoint {
        &self.signed
    }
    /// The note's bytes: body, blank line, the author's line.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.signed.to_bytes()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::tlog::cosignature::{cosign, cosigner_name};

    /// An author-signed checkpoint of `id`'s feed.
    pub(crate) fn signed(id: &Identity, size: u64, root: Hash) -> SignedCheckpoint {
        let body = Checkpoint::new(&origin_for(id.author().as_bytes()), size, root).unwrap();
        SignedCheckpoint::sign(body, id.signing_key()).unwrap()
    }

    #[test]
    fn origins_name_their_author_exactly() {
        let author = Identity::from_seed([1; 32]).author();
        let origin = origin_for(author.as_bytes());
        assert_eq!(author_of_origin(&origin), Some(author));
        assert_eq!(author_of_origin(&origin.to_uppercase()), None);
        let upper_hex = format!("kappalog/feed/{}", author.to_hex().to_uppercase());
        assert_eq!(author_of_origin(&upper_hex), None);
        assert_eq!(author_of_origin(&origin[..origin.len() - 2]), None);
        assert_eq!(author_of_origin(&format!("{origin}00")), None);
        assert_eq!(author_of_origin("example.com/log"), None);
    }

    #[test]
    fn cosignatures_and_unknown_lines_are_dropped() {
        let id = Identity::from_seed([1; 32]);
        let plain = signed(&id, 5, [9; 32]);
        let mut cosigned = plain.clone();
        let witness = Identity::from_seed([2; 32]);
        let name = cosigner_name(witness.author().as_bytes());
        let body = plain.checkpoint().body().to_owned();
        let line = cosign(&name, witness.signing_key(), &body, 1_700_000_000).unwrap();
        cosigned.add_signature(line).unwrap();
        let verified = AuthorCheckpoint::verify(&cosigned).unwrap();
        assert_eq!(verified.to_bytes(), plain.to_bytes());
        assert_eq!(verified.author(), id.author());
        assert_eq!((verified.size(), *verified.root()), (5, [9; 32]));
    }

    #[test]
    fn each_rule_has_its_error() {
        let id = Identity::from_seed([1; 32]);
        let body = Checkpoint::new("example.com/log", 1, [0; 32]).unwrap();
        let other = SignedCheckpoint::sign(body, id.signing_key()).unwrap();
        assert_eq!(
            AuthorCheckpoint::verify(&other),
            Err(AuthorCheckpointError::NotAFeedOrigin(
                "example.com/log".into()
            ))
        );
        // Some 32-byte strings are no point on the curve: the first such is found, not
        // assumed, so the test cannot pass vacuously.
        let not_a_point = (0u8..=255)
            .map(|b| [b; 32])
            .find(|bytes| VerifyingKey::from_bytes(bytes).is_err())
            .expect("some repeated byte is not a curve point");
        let origin = origin_for(&not_a_point);
        let body = Checkpoint::new(&origin, 1, [0; 32]).unwrap();
        let forged = SignedCheckpoint::sign(body, id.signing_key()).unwrap();
        assert_eq!(
            AuthorCheckpoint::verify(&forged),
            Err(AuthorCheckpointError::AuthorKey(origin))
        );
        let stranger = Identity::from_seed([3; 32]);
        let body = Checkpoint::new(&origin_for(id.author().as_bytes()), 1, [0; 32]).unwrap();
        let forged = SignedCheckpoint::sign(body, stranger.signing_key()).unwrap();
        assert!(matches!(
            AuthorCheckpoint::verify(&forged),
            Err(AuthorCheckpointError::Signature(_))
        ));
    }
}
