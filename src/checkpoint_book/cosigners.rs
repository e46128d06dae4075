//! Which key a cosignature line on a checkpoint note is checked under. Pure.
//!
//! A line names its key (name and key ID) but does not carry it, so the book can check only
//! lines whose key it can find:
//!
//! - **kappalog nodes**: the name `kappalog/node/<64 lowercase hex>` carries the node's
//!   public key ([`crate::tlog::cosignature::cosigner_name`]); the cosignature key (type
//!   `0x04`) is derived from it, and kept only if its key ID is the line's;
//! - **configured keys**: any other name is checked only under a cosignature vkey the
//!   operator configured (`--witness-key`: witnesses outside kappalog), of the same name
//!   and key ID;
//! - anything else is unknown: dropped, counted, and costs no signature verification.
//!
//! The author's own line (name = the origin) is not a cosignature and is skipped by the
//! caller.

use ed25519_dalek::VerifyingKey;

use crate::tlog::cosignature::cosigner_name;
use crate::tlog::note::NoteSignature;
use crate::tlog::vkey::{KeyType, VerifierKey};

/// The prefix of a kappalog node's cosigner name.
const NODE_NAME_PREFIX: &str = "kappalog/node/";

/// The keys a book checks cosignatures under besides kappalog nodes', and which of them
/// rank first.
#[derive(Debug, Clone, Default)]
pub struct CosignerKeys {
    configured: Vec<VerifierKey>,
    trusted: Vec<[u8; 32]>,
}

impl CosignerKeys {
    /// Cosignature keys the operator configured (others, and keys of another type, are
    /// ignored) and the public keys of trusted nodes (pinned, allow-listed peers), whose
    /// cosignatures rank first.
    pub fn new(configured: Vec<VerifierKey>, trusted: Vec<[u8; 32]>) -> CosignerKeys {
        let configured = configured
            .into_iter()
            .filter(|k| k.key_type() == KeyType::CosignatureV1)
            .collect();
        CosignerKeys {
            configured,
            trusted,
        }
    }

    /// The key `line` claims to be by, if the book can know it (module docs).
    pub fn resolve(&self, line: &NoteSignature) -> Option<VerifierKey> {
        let name = line.name();
        if let Some(hex) = name.strip_prefix(NODE_NAME_PREFIX) {
            let mut key = [0u8; 32];
            hex::decode_to_slice(hex, &mut key).ok()?;
            // Lowercase only, as cosigner_name writes it: another spelling is another name.
            if cosigner_name(&key) != name {
                return None;
            }
            let key = VerifyingKey::from_bytes(&key).ok()?;
            let vkey = VerifierKey::new(name, KeyType::CosignatureV1, key).ok()?;
            return (vkey.key_id() == line.key_id()).then_some(vkey);
        }
        self.configured
            .iter()
            .find(|k| k.name() == name && k.key_id() == line.key_id())
            .cloned()
    }

    /// Whether `vkey` ranks first: a configured key, or a trusted node's.
    pub fn is_trusted(&self, vkey: &VerifierKey) -> bool {
        self.configured.contains(vkey) || self.trusted.contains(vkey.key().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::tlog::cosignature::cosign;

    fn line_by(id: &Identity, name: &str) -> NoteSignature {
        cosign(name, id.signing_key(), "origin\n1\nAAAA\n", 1).unwrap()
    }

    #[test]
    fn node_names_carry_their_key_and_the_id_must_match() {
        let node = Identity::from_seed([4; 32]);
        let name = cosigner_name(node.author().as_bytes());
        let keys = CosignerKeys::default();
        let vkey = keys.resolve(&line_by(&node, &name)).unwrap();
        assert_eq!(vkey.key().as_bytes(), node.author().as_bytes());
        assert!(!keys.is_trusted(&vkey));
        // Another key signing under that name: the ID does not match.
        let stranger = Identity::from_seed([5; 32]);
        assert!(keys.resolve(&line_by(&stranger, &name)).is_none());
        let upper = format!("kappalog/node/{}", node.author().to_hex().to_uppercase());
        assert!(keys.resolve(&line_by(&node, &upper)).is_none());
        let trusted = CosignerKeys::new(vec![], vec![*node.author().as_bytes()]);
        assert!(trusted.is_trusted(&vkey));
    }

    #[test]
    fn other_names_only_under_a_configured_key() {
        let witness = Identity::from_seed([6; 32]);
        let line = line_by(&witness, "example.com/witness");
        assert!(CosignerKeys::default().resolve(&line).is_none());
        let vkey = VerifierKey::new(
            "example.com/witness",
            KeyType::CosignatureV1,
            witness.signing_key().verifying_key(),
        )
        .unwrap();
        let keys = CosignerKeys::new(vec![vkey.clone()], vec![]);
        assert_eq!(keys.resolve(&line), Some(vkey.clone()));
        assert!(keys.is_trusted(&vkey));
    }
}
