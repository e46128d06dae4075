//! What the hostile scenarios build before they start: keys from counters and fresh feeds.

use kappalog::entry::{Entry, UnsignedEntry};
use kappalog::hash::Hash;
use kappalog::identity::Identity;

/// Key families, the first byte of their seeds, so no two scenarios' keys ever meet.
pub const CLAIMANT: u8 = 1;
pub const SESSION: u8 = 2;
pub const NEW_FEED: u8 = 3;
pub const STRANGER: u8 = 5;

/// Key number `i` of family `family`: the family byte, then the counter's eight
/// little-endian bytes, the rest fixed.
pub fn identity(family: u8, i: u64) -> Identity {
    let mut seed = [0x5a; 32];
    seed[0] = family;
    seed[1..9].copy_from_slice(&i.to_le_bytes());
    Identity::from_seed(seed)
}

/// The first entry (seq 1) of `id`'s feed, and its hash.
pub fn first_entry(id: &Identity, value: i64) -> (Entry, Hash) {
    UnsignedEntry {
        author: id.author(),
        seq: 1,
        timestamp: 1_700_000_000_000,
        prev: None,
        value,
        data: String::new(),
    }
    .sign(id)
}
