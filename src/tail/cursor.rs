//! A tail cursor: where in this node's log a tail stream stands, as an opaque string.
//!
//! # Format
//!
//! 48 lowercase hex characters (24 bytes), in this order:
//!
//! | chars | bytes | field                                                              |
//! |-------|-------|--------------------------------------------------------------------|
//! | 0-15  | 8     | the first 8 bytes of the node's author (which node's log it names) |
//! | 16-31 | 8     | big-endian u64: the log offset where the delivered entry's record starts |
//! | 32-47 | 8     | the first 8 bytes of the delivered entry's hash                    |
//!
//! A cursor names the entry it was sent with; a stream resumed from it starts with the
//! record after that entry's. Clients treat it as opaque: only its holder's node reads it.
//! Uppercase hex is accepted on input (a client may have normalised it).

use std::fmt;
use std::str::FromStr;

use crate::hash::Hash;
use crate::identity::Author;

/// Characters of a cursor.
pub const CURSOR_CHARS: usize = 48;
/// Bytes of the node's author and of the entry's hash a cursor keeps. Eight bytes of an
/// ed25519 key tell nodes apart; eight bytes of a sha256 tell a replaced log from the one
/// the cursor came from (a stranger crafting a cursor gains nothing: it only picks where a
/// read of public entries starts).
pub const CURSOR_PREFIX_BYTES: usize = 8;

/// A parsed cursor (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// The first bytes of the author of the node whose log the cursor names.
    pub node: [u8; CURSOR_PREFIX_BYTES],
    /// Byte offset in that log where the delivered entry's record starts.
    pub offset: u64,
    /// The first bytes of the delivered entry's hash: tells a replaced log apart.
    pub hash: [u8; CURSOR_PREFIX_BYTES],
}

/// Why a string is not a cursor.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Not [`CURSOR_CHARS`] characters (the count given carried).
    #[error("a cursor is {CURSOR_CHARS} hex characters, this one has {0}")]
    Length(usize),
    /// A character (carried, with its 0-based position) that is not a hex digit.
    #[error("a cursor is hex, this one has {0:?} at character {1}")]
    NotHex(char, usize),
}

impl Cursor {
    /// The cursor of the entry with `hash` whose record starts at `offset` in the log of the
    /// node `node`.
    pub fn new(node: &Author, offset: u64, hash: &Hash) -> Cursor {
        Cursor {
            node: prefix(node.as_bytes()),
            offset,
            hash: prefix(&hash.0),
        }
    }

    /// Whether the cursor came from the node `node`.
    pub fn is_of(&self, node: &Author) -> bool {
        self.node == prefix(node.as_bytes())
    }

    /// Whether it names the entry with `hash`.
    pub fn names(&self, hash: &Hash) -> bool {
        self.hash == prefix(&hash.0)
    }

    /// The 48 characters, written without allocating.
    pub fn to_hex(&self) -> [u8; CURSOR_CHARS] {
        let mut bytes = [0u8; 24];
        bytes[..8].copy_from_slice(&self.node);
        bytes[8..16].copy_from_slice(&self.offset.to_be_bytes());
        bytes[16..].copy_from_slice(&self.hash);
        let mut out = [0u8; CURSOR_CHARS];
        // 24 bytes always fill exactly 48 hex characters.
        let _ = hex::encode_to_slice(bytes, &mut out);
        out
    }
}

fn prefix(bytes: &[u8; 32]) -> [u8; CURSOR_PREFIX_BYTES] {
    let mut out = [0u8; CURSOR_PREFIX_BYTES];
    out.copy_from_slice(&bytes[..CURSOR_PREFIX_BYTES]);
    out
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hex digits are ASCII.
        f.write_str(std::str::from_utf8(&self.to_hex()).unwrap_or_default())
    }
}

impl FromStr for Cursor {
    type Err = CursorError;

    fn from_str(text: &str) -> Result<Cursor, CursorError> {
        let chars = text.chars().count();
        if chars != CURSOR_CHARS || text.len() != CURSOR_CHARS {
            return Err(CursorError::Length(chars));
        }
        if let Some((at, c)) = text
            .chars()
            .enumerate()
            .find(|(_, c)| !c.is_ascii_hexdigit())
        {
            return Err(CursorError::NotHex(c, at));
        }
        let mut bytes = [0u8; 24];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| CursorError::Length(chars))?;
        let mut node = [0u8; CURSOR_PREFIX_BYTES];
        let mut offset = [0u8; 8];
        let mut hash = [0u8; CURSOR_PREFIX_BYTES];
        node.copy_from_slice(&bytes[..8]);
        offset.copy_from_slice(&bytes[8..16]);
        hash.copy_from_slice(&bytes[16..]);
        Ok(Cursor {
            node,
            offset: u64::from_be_bytes(offset),
            hash,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Cursor {
        Cursor::new(&Author([0xab; 32]), 0x1234, &Hash([0xcd; 32]))
    }

    #[test]
    fn the_layout_is_node_prefix_offset_hash_prefix() {
        assert_eq!(
            sample().to_string(),
            "abababababababab0000000000001234cdcdcdcdcdcdcdcd"
        );
    }

    #[test]
    fn a_cursor_round_trips_and_uppercase_is_accepted() {
        let text = sample().to_string();
        assert_eq!(text.parse::<Cursor>(), Ok(sample()));
        assert_eq!(text.to_uppercase().parse::<Cursor>(), Ok(sample()));
    }

    #[test]
    fn a_cursor_knows_its_node_and_entry() {
        let c = sample();
        assert!(c.is_of(&Author([0xab; 32])));
        assert!(!c.is_of(&Author([0xac; 32])));
        assert!(c.names(&Hash([0xcd; 32])));
        assert!(!c.names(&Hash([0xce; 32])));
    }

    #[test]
    fn a_wrong_length_is_refused() {
        assert_eq!("".parse::<Cursor>(), Err(CursorError::Length(0)));
        let long = format!("{}0", sample());
        assert_eq!(long.parse::<Cursor>(), Err(CursorError::Length(49)));
        // 48 bytes but fewer characters.
        let multibyte = format!("é{}", &sample().to_string()[2..]);
        assert_eq!(multibyte.parse::<Cursor>(), Err(CursorError::Length(47)));
    }

    #[test]
    fn a_non_hex_character_is_refused_with_its_place() {
        let mut text = sample().to_string();
        text.replace_range(5..6, "g");
        assert_eq!(text.parse::<Cursor>(), Err(CursorError::NotHex('g', 5)));
    }
}
