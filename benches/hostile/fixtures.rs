//! What the hostile scenarios build before they start: keys from counters.

use kappalog::identity::Identity;

/// Key families, the first byte of their seeds, so no two scenarios' keys ever meet.
pub const CLAIMANT: u8 = 1;

/// Key number `i` of family `family`: the family byte, then the counter's eight
/// little-endian bytes, the rest fixed.
pub fn identity(family: u8, i: u64) -> Identity {
    let mut seed = [0x5a; 32];
    seed[0] = family;
    seed[1..9].copy_from_slice(&i.to_le_bytes());
    Identity::from_seed(seed)
}
