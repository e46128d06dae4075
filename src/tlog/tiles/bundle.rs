//! Entry bundles: a level-0 tile's entries, each a big-endian `u16` length then the entry's
//! bytes, concatenated (tlog-tiles).
//!
//! A kappalog leaf is an encoded entry (body then signature), at most
//! [`MAX_ENCODED_BYTES`] = 4,254 bytes: it always fits the `u16` length, and a full bundle
//! is at most 256 * (2 + 4,254) = 1,089,536 bytes.

use crate::entry::MAX_ENCODED_BYTES;

use super::TILE_WIDTH;

/// The longest entry a bundle can carry: what a `u16` length can say.
pub const MAX_BUNDLE_ENTRY_BYTES: usize = u16::MAX as usize;

// Every kappalog entry fits a bundle.
const _: () = assert!(MAX_ENCODED_BYTES <= MAX_BUNDLE_ENTRY_BYTES);

/// Why entries cannot make a bundle, or bytes are not a bundle of the expected width.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Not 1 to 256 entries (an empty bundle is never served; a full one holds 256).
    #[error("a bundle holds 1 to 256 entries, not {entries}")]
    BadWidth {
        /// The number of entries given or asked for.
        entries: usize,
    },
    /// An entry longer than a `u16` length can say.
    #[error("entry {position} of the bundle has {len} bytes, over {MAX_BUNDLE_ENTRY_BYTES}")]
    EntryTooLong {
        /// The entry's position in the bundle.
        position: usize,
        /// Its length, in bytes.
        len: usize,
    },
    /// The bytes end inside an entry (or its length).
    #[error("the bundle ends inside entry {position}")]
    Truncated {
        /// The position of the entry cut short.
        position: usize,
    },
    /// Bytes after the last expected entry.
    #[error("{extra} bytes after the bundle's last entry")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
}

/// The bytes of the entry bundle holding `entries`, in order.
pub fn entry_bundle_bytes<E: AsRef<[u8]>>(entries: &[E]) -> Result<Vec<u8>, BundleError> {
    check_width(entries.len())?;
    let mut bytes = Vec::new();
    for (position, entry) in entries.iter().enumerate() {
        let entry = entry.as_ref();
        let len = u16::try_from(entry.len()).map_err(|_| BundleError::EntryTooLong {
            position,
            len: entry.len(),
        })?;
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(entry);
    }
    Ok(bytes)
}

/// The entries of a bundle expected to hold `width` of them: exactly that many, and no
/// byte after the last. Borrowed from `bytes`, so nothing is allocated per length read.
pub fn parse_entry_bundle(bytes: &[u8], width: u16) -> Result<Vec<&[u8]>, BundleError> {
    let width = usize::from(width);
    check_width(width)?;
    let mut entries = Vec::with_capacity(width);
    let mut rest = bytes;
    for position in 0..width {
        let truncated = BundleError::Truncated { position };
        let (len, after) = rest.split_first_chunk::<2>().ok_or(truncated.clone())?;
        let len = usize::from(u16::from_be_bytes(*len));
        if after.len() < len {
            return Err(truncated);
        }
        let (entry, after) = after.split_at(len);
        entries.push(entry);
        rest = after;
    }
    if !rest.is_empty() {
        return Err(BundleError::TrailingBytes { extra: rest.len() });
    }
    Ok(entries)
}

fn check_width(entries: usize) -> Result<(), BundleError> {
    if entries == 0 || entries > usize::from(TILE_WIDTH) {
        return Err(BundleError::BadWidth { entries });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_is_length_prefixed_entries() {
        let bytes = entry_bundle_bytes(&[&b"ab"[..], b"", b"xyz"]).unwrap();
        assert_eq!(bytes, b"\x00\x02ab\x00\x00\x00\x03xyz");
        let entries = parse_entry_bundle(&bytes, 3).unwrap();
        assert_eq!(entries, [&b"ab"[..], b"", b"xyz"]);
    }

    #[test]
    fn the_longest_entries_fit_and_longer_ones_do_not() {
        let longest = vec![7u8; MAX_BUNDLE_ENTRY_BYTES];
        let full: Vec<&[u8]> = vec![&longest; 256];
        let bytes = entry_bundle_bytes(&full).unwrap();
        assert_eq!(bytes.len(), 256 * (2 + MAX_BUNDLE_ENTRY_BYTES));
        assert_eq!(parse_entry_bundle(&bytes, 256).unwrap(), full);
        let over = vec![0u8; MAX_BUNDLE_ENTRY_BYTES + 1];
        assert_eq!(
            entry_bundle_bytes(&[&b"a"[..], &over]),
            Err(BundleError::EntryTooLong {
                position: 1,
                len: MAX_BUNDLE_ENTRY_BYTES + 1
            })
        );
    }

    #[test]
    fn widths_outside_1_to_256_are_refused() {
        let none: [&[u8]; 0] = [];
        assert_eq!(
            entry_bundle_bytes(&none),
            Err(BundleError::BadWidth { entries: 0 })
        );
        let many = vec![&b""[..]; 257];
        assert_eq!(
            entry_bundle_bytes(&many),
            Err(BundleError::BadWidth { entries: 257 })
        );
        assert_eq!(
            parse_entry_bundle(b"", 0),
            Err(BundleError::BadWidth { entries: 0 })
        );
        assert_eq!(
            parse_entry_bundle(b"", 257),
            Err(BundleError::BadWidth { entries: 257 })
        );
    }

    #[test]
    fn parsing_is_strict() {
        let bytes = entry_bundle_bytes(&[&b"ab"[..], b"xyz"]).unwrap();
        for cut in 0..bytes.len() {
            let position = if cut < 4 { 0 } else { 1 };
            assert_eq!(
                parse_entry_bundle(&bytes[..cut], 2),
                Err(BundleError::Truncated { position }),
                "cut at {cut}"
            );
        }
        assert_eq!(
            parse_entry_bundle(&bytes, 1),
            Err(BundleError::TrailingBytes { extra: 5 })
        );
        assert_eq!(
            parse_entry_bundle(&bytes, 3),
            Err(BundleError::Truncated { position: 2 })
        );
        // A length field far past the end allocates nothing and is refused.
        assert_eq!(
            parse_entry_bundle(b"\xff\xff", 1),
            Err(BundleError::Truncated { position: 0 })
        );
    }

    proptest::proptest! {
        /// Any bytes: an error or entries that rebuild exactly those bytes.
        #[test]
        fn parsing_never_panics_and_round_trips(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            width in 0u16..300,
        ) {
            if let Ok(entries) = parse_entry_bundle(&bytes, width) {
                proptest::prop_assert_eq!(entry_bundle_bytes(&entries).unwrap(), bytes);
            }
        }
    }
}
