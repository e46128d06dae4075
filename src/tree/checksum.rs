//! The CRC32C seal on what the cache stores (pure): every complete row and every flushed
//! edge is written as its bytes followed by a CRC32C, little-endian, over a *context* (what
//! the bytes are stored under: a row's key, an edge's feed id and size) and the bytes. A
//! reader checks the seal as the value leaves SQLite, once: a row then lives in memory (the
//! LRU, a proof's rows) unchecked. A flipped bit in the file, or a row stored under another
//! key, then reads as damage, never as a hash handed to a client.
//!
//! CRC32C is the store's checksum too ([`crate::store::format`]): it detects every error of
//! up to 3 bits in a 4,064-byte row and any burst of up to 32, which is what a failing disk
//! or a stray write leaves; it is not a defence against someone who edits the file on
//! purpose (they could edit the log as well; clients verify what they are served).

/// Bytes a seal adds to what it seals.
pub const CHECKSUM_BYTES: usize = 4;

/// Why a stored value failed its seal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumError {
    /// Fewer bytes than a seal.
    #[error("{len} bytes, too short to hold a checksum")]
    Short {
        /// The stored length.
        len: usize,
    },
    /// The bytes do not match their checksum.
    #[error("checksum {stored:08x} stored, {computed:08x} computed")]
    Mismatch {
        /// The checksum stored after the bytes.
        stored: u32,
        /// The checksum of the context and the bytes as read.
        computed: u32,
    },
}

fn checksum(context: &[u8], bytes: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(context), bytes)
}

/// `bytes` followed by the checksum of `context` and `bytes`.
pub fn seal(context: &[u8], bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + CHECKSUM_BYTES);
    out.extend_from_slice(bytes);
    out.extend_from_slice(&checksum(context, bytes).to_le_bytes());
    out
}

/// The bytes `stored` seals under `context`, the seal cut off (no copy).
pub fn unseal(context: &[u8], mut stored: Vec<u8>) -> Result<Vec<u8>, ChecksumError> {
    let len = stored.len();
    let Some(body) = len.checked_sub(CHECKSUM_BYTES) else {
        return Err(ChecksumError::Short { len });
    };
    let mut seal = [0u8; CHECKSUM_BYTES];
    seal.copy_from_slice(&stored[body..]);
    let stored_crc = u32::from_le_bytes(seal);
    let computed = checksum(context, &stored[..body]);
    if stored_crc != computed {
        return Err(ChecksumError::Mismatch {
            stored: stored_crc,
            computed,
        });
    }
    stored.truncate(body);
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Vec<u8> {
        (0..4_064u32).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn a_sealed_value_unseals_to_itself() {
        let sealed = seal(b"key", &row());
        assert_eq!(sealed.len(), row().len() + CHECKSUM_BYTES);
        assert_eq!(unseal(b"key", sealed).unwrap(), row());
        assert_eq!(unseal(b"", seal(b"", &[])).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn every_flipped_bit_of_a_sealed_row_is_detected() {
        let sealed = seal(b"key", &row());
        for bit in 0..sealed.len() * 8 {
            let mut damaged = sealed.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(unseal(b"key", damaged), Err(ChecksumError::Mismatch { .. })),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn a_value_read_under_another_context_or_cut_short_is_refused() {
        let sealed = seal(&7i64.to_le_bytes(), &row());
        assert!(unseal(&8i64.to_le_bytes(), sealed.clone()).is_err());
        assert!(unseal(b"key", sealed[..100].to_vec()).is_err());
        assert_eq!(
            unseal(b"key", vec![1, 2]),
            Err(ChecksumError::Short { len: 2 })
        );
    }
}
