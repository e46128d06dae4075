//! Note keys: key names, key IDs and verifier keys (*vkeys*), as C2SP signed-note defines them.
//!
//! A vkey is the text `<name>+<hex(key ID)>+<base64(signature type || public key)>`, for
//! example `example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k`.
//!
//! - The **key ID** is `SHA-256(name || 0x0A || signature type || public key)[:4]`, read as a
//!   big-endian u32 ([`key_id`]). A vkey whose written ID is not that hash is refused: the ID is
//!   what a note's signature line names, and a mismatched one would make the key silently
//!   match no signature.
//! - Only the two 32-byte Ed25519 types kappalog uses are supported ([`KeyType`]): `0x01`,
//!   a feed author's checkpoint signature, and `0x04`, a node's tlog-cosignature v1. The spec
//!   asks implementations to support only the types their design needs.
//! - The public key must decode to an Ed25519 point, so a vkey that can never verify anything
//!   is refused where it is read (a policy file, a command line), not at first use.
//!
//! kappalog's names (document these in docs/TLOG.md): a feed's key name, which is also its
//! checkpoint's origin, is `kappalog/feed/<64 lowercase hex author key>`
//! ([`crate::tlog::checkpoint::origin_for`]); a node's cosigner name is
//! `kappalog/node/<64 lowercase hex node key>` ([`crate::tlog::cosignature::cosigner_name`]).
//!
//! Secret keys (the spec's *skey* form) are deliberately absent: kappalog keeps secret keys
//! only in its PKCS#8 key files ([`crate::keys`]), never in text that could be pasted around.

use std::fmt;
use std::str::FromStr;

use base64ct::{Base64, Encoding};
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};

/// The longest key name accepted, in bytes. The spec sets none; kappalog's names are 78
/// bytes, schema-less URLs of other logs and witnesses are far shorter than this, and the cap
/// keeps a stranger's signature line or vkey from carrying a name of unbounded size.
pub const MAX_KEY_NAME_BYTES: usize = 256;

/// Signature type byte of an Ed25519 note signature (signed-note).
pub const SIGNATURE_TYPE_ED25519: u8 = 0x01;
/// Signature type byte of a timestamped Ed25519 cosignature (tlog-cosignature v1).
pub const SIGNATURE_TYPE_COSIGNATURE_V1: u8 = 0x04;

/// The signature types kappalog signs and verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyType {
    /// `0x01`: Ed25519 over the note text; a feed author signs its checkpoints with it.
    Ed25519,
    /// `0x04`: tlog-cosignature v1, Ed25519 over a timestamped message; nodes cosign with it.
    CosignatureV1,
}

impl KeyType {
    /// The type's identifier byte, hashed into the key ID and prefixed to the vkey's key.
    pub fn byte(self) -> u8 {
        match self {
            KeyType::Ed25519 => SIGNATURE_TYPE_ED25519,
            KeyType::CosignatureV1 => SIGNATURE_TYPE_COSIGNATURE_V1,
        }
    }

    fn from_byte(byte: u8) -> Option<KeyType> {
        match byte {
            SIGNATURE_TYPE_ED25519 => Some(KeyType::Ed25519),
            SIGNATURE_TYPE_COSIGNATURE_V1 => Some(KeyType::CosignatureV1),
            _ => None,
        }
    }
}

/// Why a key name is not one the signed-note format allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyNameError {
    /// Key names must be non-empty.
    #[error("key name is empty")]
    Empty,
    /// Longer than [`MAX_KEY_NAME_BYTES`].
    #[error("key name is {len} bytes, more than {MAX_KEY_NAME_BYTES}")]
    TooLong {
        /// The name's length in bytes.
        len: usize,
    },
    /// Unicode spaces separate a signature line's fields; `+` separates a vkey's.
    #[error("key name contains a space or '+'")]
    ForbiddenChar,
    /// Control characters are not allowed anywhere in a note.
    #[error("key name contains a control character")]
    ControlChar,
}

/// Checks a key name against the signed-note rules (non-empty, no Unicode space, no `+`, no
/// control character) and [`MAX_KEY_NAME_BYTES`].
pub fn check_key_name(name: &str) -> Result<(), KeyNameError> {
    if name.is_empty() {
        return Err(KeyNameError::Empty);
    }
    if name.len() > MAX_KEY_NAME_BYTES {
        return Err(KeyNameError::TooLong { len: name.len() });
    }
    if name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(KeyNameError::ForbiddenChar);
    }
    if name.chars().any(char::is_control) {
        return Err(KeyNameError::ControlChar);
    }
    Ok(())
}

/// The signed-note key ID: `SHA-256(name || 0x0A || type || public key)[:4]`, big-endian.
pub fn key_id(name: &str, key_type: KeyType, public_key: &[u8; 32]) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', key_type.byte()]);
    hasher.update(public_key);
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Why a vkey was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VkeyError {
    /// Not three fields separated by `+`.
    #[error("a vkey is NAME+KEYID+KEY")]
    Shape,
    /// The name breaks a signed-note rule.
    #[error("vkey name: {0}")]
    Name(#[from] KeyNameError),
    /// The key ID is not 8 lowercase hex digits.
    #[error("vkey key ID is not 8 lowercase hex digits")]
    KeyIdHex,
    /// The key is not canonical standard base64.
    #[error("vkey key is not valid base64")]
    Base64,
    /// The signature type byte is not one kappalog supports.
    #[error("vkey signature type 0x{0:02x} is not supported (only 0x01 and 0x04)")]
    UnsupportedType(u8),
    /// The key material is not 32 bytes.
    #[error("vkey key is {len} bytes after the type, not 32")]
    KeyLength {
        /// Bytes after the type byte.
        len: usize,
    },
    /// The 32 bytes are not an Ed25519 point.
    #[error("vkey key is not an Ed25519 public key")]
    NotAPoint,
    /// The written key ID is not the one the name, type and key hash to.
    #[error("vkey key ID {written:08x} does not match its name and key ({computed:08x})")]
    KeyIdMismatch {
        /// The ID in the text.
        written: u32,
        /// The ID [`key_id`] computes.
        computed: u32,
    },
}

/// A vkey of another type where an Ed25519 note key (or a cosigner key) was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key {name} is of type {found:?}, not {expected:?}")]
pub struct WrongKeyType {
    /// The key's name.
    pub name: String,
    /// The type the key has.
    pub found: KeyType,
    /// The type the caller needs.
    pub expected: KeyType,
}

/// A verifier key: a name, a signature type and an Ed25519 public key. Its key ID is derived,
/// never stored apart, so it cannot disagree with the rest.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key_type: KeyType,
    key: VerifyingKey,
}

impl VerifierKey {
    /// A vkey for `key` under `name`.
    pub fn new(name: &str, key_type: KeyType, key: VerifyingKey) -> Result<Self, KeyNameError> {
        check_key_name(name)?;
        Ok(VerifierKey {
            name: name.to_owned(),
            key_type,
            key,
        })
    }
    /// The key name signature lines carry.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// What the key signs: note text or cosignature messages.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }
    /// The Ed25519 public key.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }
    /// The key ID signature lines carry.
    pub fn key_id(&self) -> u32 {
        key_id(&self.name, self.key_type, self.key.as_bytes())
    }
    /// This key if it is of type `expected`: a note key never checks cosignatures, nor the
    /// reverse, even when the bytes of the public key are the same.
    pub fn require(self, expected: KeyType) -> Result<VerifierKey, WrongKeyType> {
        if self.key_type != expected {
            return Err(WrongKeyType {
                name: self.name,
                found: self.key_type,
                expected,
            });
        }
        Ok(self)
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut material = [0u8; 33];
        material[0] = self.key_type.byte();
        material[1..].copy_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            self.key_id(),
            Base64::encode_string(&material)
        )
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

impl FromStr for VerifierKey {
    type Err = VkeyError;
    fn from_str(s: &str) -> Result<Self, VkeyError> {
        // The name cannot contain '+' and the ID is hex, so the first two '+' separate the
        // fields; the base64 after them may itself contain '+'.
        let mut fields = s.splitn(3, '+');
        let (Some(name), Some(id), Some(material)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(VkeyError::Shape);
        };
        check_key_name(name)?;
        let written = parse_key_id_hex(id).ok_or(VkeyError::KeyIdHex)?;
        // 33 bytes are 44 base64 characters; anything much longer is refused before decoding.
        if material.len() > 64 {
            return Err(VkeyError::KeyLength {
                len: material.len() * 3 / 4,
            });
        }
        let material = Base64::decode_vec(material).map_err(|_| VkeyError::Base64)?;
        let (&type_byte, key) = material.split_first().ok_or(VkeyError::Base64)?;
        let key_type =
            KeyType::from_byte(type_byte).ok_or(VkeyError::UnsupportedType(type_byte))?;
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| VkeyError::KeyLength { len: key.len() })?;
        let key = VerifyingKey::from_bytes(&key).map_err(|_| VkeyError::NotAPoint)?;
        let vkey = VerifierKey {
            name: name.to_owned(),
            key_type,
            key,
        };
        let computed = vkey.key_id();
        if written != computed {
            return Err(VkeyError::KeyIdMismatch { written, computed });
        }
        Ok(vkey)
    }
}

/// Exactly 8 lowercase hex digits (the spec's fixed-length lowercase hex).
fn parse_key_id_hex(s: &str) -> Option<u32> {
    if s.len() != 8 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of signed-note's "Verifier keys" section.
    const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";

    #[test]
    fn the_spec_example_parses_and_formats_back() {
        let vkey: VerifierKey = SPEC_VKEY.parse().unwrap();
        assert_eq!(vkey.name(), "example.com/foo");
        assert_eq!(vkey.key_type(), KeyType::Ed25519);
        assert_eq!(vkey.key_id(), 0x530d903a);
        assert_eq!(vkey.to_string(), SPEC_VKEY);
    }

    #[test]
    fn key_names_follow_the_note_rules() {
        assert_eq!(check_key_name(""), Err(KeyNameError::Empty));
        assert_eq!(check_key_name("a b"), Err(KeyNameError::ForbiddenChar));
        assert_eq!(check_key_name("a+b"), Err(KeyNameError::ForbiddenChar));
        assert_eq!(
            check_key_name("a\u{3000}b"),
            Err(KeyNameError::ForbiddenChar)
        );
        assert_eq!(check_key_name("a\u{7}b"), Err(KeyNameError::ControlChar));
        let long = "a".repeat(MAX_KEY_NAME_BYTES + 1);
        assert_eq!(
            check_key_name(&long),
            Err(KeyNameError::TooLong {
                len: MAX_KEY_NAME_BYTES + 1
            })
        );
        assert_eq!(check_key_name("é.example/ok"), Ok(()));
    }

    #[test]
    fn hostile_vkeys_are_refused_with_the_exact_reason() {
        let cases = [
            ("example.com/foo+530d903a", VkeyError::Shape),
            (
                "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k+x",
                VkeyError::Base64,
            ),
            (
                "+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
                VkeyError::Name(KeyNameError::Empty),
            ),
            (
                "example.com/foo+530D903A+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
                VkeyError::KeyIdHex,
            ),
            (
                "example.com/foo+530d903+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
                VkeyError::KeyIdHex,
            ),
            (
                "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2",
                VkeyError::Base64,
            ),
            (
                "example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
                VkeyError::KeyIdMismatch {
                    written: 0x530d903b,
                    computed: 0x530d903a,
                },
            ),
            (
                // The same key under type 0x02 (ECDSA), which kappalog does not support.
                "example.com/foo+530d903a+AukyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
                VkeyError::UnsupportedType(0x02),
            ),
            (
                "example.com/foo+530d903a+AQID",
                VkeyError::KeyLength { len: 2 },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<VerifierKey>(), Err(expected), "{text}");
        }
    }

    #[test]
    fn keys_whose_base64_holds_a_plus_round_trip() {
        let vkeys: Vec<String> = (0..64u8)
            .map(|seed| {
                let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key();
                VerifierKey::new("k.example", KeyType::CosignatureV1, key)
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert!(
            vkeys.iter().any(|v| v.matches('+').count() > 2),
            "no key to test with"
        );
        for vkey in vkeys {
            assert_eq!(vkey.parse::<VerifierKey>().unwrap().to_string(), vkey);
        }
    }

    #[test]
    fn the_key_id_changes_with_the_type() {
        let vkey: VerifierKey = SPEC_VKEY.parse().unwrap();
        let as_cosigner =
            VerifierKey::new(vkey.name(), KeyType::CosignatureV1, *vkey.key()).unwrap();
        assert_ne!(as_cosigner.key_id(), vkey.key_id());
        assert_eq!(
            as_cosigner.to_string().parse::<VerifierKey>().unwrap(),
            as_cosigner
        );
    }
}
