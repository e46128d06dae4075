//! Idempotency keys: what a valid key is, and when a retry is "the same request".
//!
//! A client of `POST /add` may send an `Idempotency-Key` header so that retrying a request
//! whose answer it never got (a timeout, a dropped connection, a crash of the node) cannot
//! append the entry twice. The node stores the key in the log record of the entry it
//! appended (local metadata beside the entry, never hashed, signed, exported or synced: see
//! [`crate::store::format`]), so the key is exactly as durable as the entry.
//!
//! Rules, each with its own [`KeyError`] variant:
//!
//! - a key is 1 to [`MAX_KEY_BYTES`] bytes (`Empty`, `TooLong`);
//! - every byte is visible ASCII, `0x21..=0x7E`: no spaces, no control characters, no
//!   non-ASCII (`BadByte`). Keys are compared byte for byte, so a key that could be
//!   re-encoded, trimmed or case-folded on its way would not be reliably the same key.
//!
//! A retry under a known key is the same request ([`same_request`]) when it asks for the same
//! data and, if it names a value, the same value; a body that leaves the value to the node
//! (an empty `/add` body: a random value) matches whatever value the node picked the first
//! time. Anything else is a different request reusing the key, which the node refuses
//! (422) rather than answering with an entry the client did not ask for.

use std::fmt;
use std::sync::Arc;

use crate::entry::Entry;

/// The longest key, in bytes. It is stored in the log record, so it bounds what a key costs
/// on disk (and it is what Stripe-style clients generate: a UUID is 36 bytes).
pub const MAX_KEY_BYTES: usize = 64;

/// A valid idempotency key (see the module rules). Holds only visible ASCII, so it is text;
/// shared, because a key travels from the request through the writer to the index.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey(Arc<str>);

/// Why a header value is not an idempotency key (the client gets a 400 with the message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The header is present but empty.
    #[error("Idempotency-Key is empty: it must be 1 to {MAX_KEY_BYTES} visible ASCII characters")]
    Empty,
    /// The key is over [`MAX_KEY_BYTES`].
    #[error("Idempotency-Key is {len} bytes, the limit is {MAX_KEY_BYTES}")]
    TooLong {
        /// The key's length, in bytes.
        len: usize,
    },
    /// A byte outside visible ASCII (a space, a control byte, non-ASCII).
    #[error(
        "Idempotency-Key byte {at} is 0x{byte:02x}: only visible ASCII (0x21-0x7e) is allowed"
    )]
    BadByte {
        /// The byte's offset in the key, from 0.
        at: usize,
        /// The byte.
        byte: u8,
    },
}

impl IdempotencyKey {
    /// The key as text (visible ASCII only).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key's bytes, as stored in the log record.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Bytes of the key.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a valid key has at least one byte.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<&[u8]> for IdempotencyKey {
    type Error = KeyError;

    fn try_from(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.is_empty() {
            return Err(KeyError::Empty);
        }
        // Checked before the bytes are looked at or copied: a header may be large.
        if bytes.len() > MAX_KEY_BYTES {
            return Err(KeyError::TooLong { len: bytes.len() });
        }
        if let Some((at, &byte)) = bytes
            .iter()
            .enumerate()
            .find(|(_, b)| !(0x21..=0x7e).contains(*b))
        {
            return Err(KeyError::BadByte { at, byte });
        }
        // Visible ASCII is valid UTF-8, so the lossy conversion borrows the bytes unchanged.
        Ok(IdempotencyKey(Arc::from(
            String::from_utf8_lossy(bytes).as_ref(),
        )))
    }
}

impl std::str::FromStr for IdempotencyKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        IdempotencyKey::try_from(s.as_bytes())
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({:?})", self.0)
    }
}

/// Whether a retry asking for `value` (`None`: the node picks one) and `data` is the request
/// that appended `entry`.
pub fn same_request(entry: &Entry, value: Option<i64>, data: &str) -> bool {
    entry.data == data && value.is_none_or(|v| v == entry.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Author, Signature};

    fn key(bytes: &[u8]) -> Result<IdempotencyKey, KeyError> {
        IdempotencyKey::try_from(bytes)
    }

    #[test]
    fn accepts_one_to_64_visible_ascii_bytes() {
        assert_eq!(key(b"a").unwrap().as_str(), "a");
        let longest = [b'~'; MAX_KEY_BYTES];
        assert_eq!(key(&longest).unwrap().len(), MAX_KEY_BYTES);
        let every_visible: Vec<u8> = (0x21..=0x7e).collect();
        for chunk in every_visible.chunks(MAX_KEY_BYTES) {
            assert_eq!(key(chunk).unwrap().as_bytes(), chunk);
        }
        let uuid = "3f2b8c1e-7a0d-4e5f-9b6a-0c1d2e3f4a5b";
        assert_eq!(uuid.parse::<IdempotencyKey>().unwrap().to_string(), uuid);
    }

    #[test]
    fn an_empty_key_is_refused() {
        assert_eq!(key(b""), Err(KeyError::Empty));
    }

    #[test]
    fn a_key_over_64_bytes_is_refused() {
        assert_eq!(
            key(&[b'a'; MAX_KEY_BYTES + 1]),
            Err(KeyError::TooLong { len: 65 })
        );
    }

    #[test]
    fn each_byte_outside_visible_ascii_is_refused_where_it_is() {
        for byte in (0x00..=0x20).chain(0x7f..=0xff) {
            assert_eq!(
                key(&[b'o', b'k', byte]),
                Err(KeyError::BadByte { at: 2, byte }),
                "0x{byte:02x}"
            );
        }
        let message = key(b"a b").unwrap_err().to_string();
        assert_eq!(
            message,
            "Idempotency-Key byte 1 is 0x20: only visible ASCII (0x21-0x7e) is allowed"
        );
    }

    #[test]
    fn a_retry_is_the_same_request_when_data_and_any_named_value_match() {
        let entry = Entry {
            author: Author([1; 32]),
            seq: 1,
            timestamp: 0,
            prev: None,
            value: 42,
            data: "hi".into(),
            signature: Signature([0; 64]),
        };
        assert!(same_request(&entry, Some(42), "hi"));
        assert!(
            same_request(&entry, None, "hi"),
            "the node picked the value"
        );
        assert!(!same_request(&entry, Some(43), "hi"));
        assert!(!same_request(&entry, Some(42), "hi!"));
        assert!(!same_request(&entry, None, ""));
    }
}
