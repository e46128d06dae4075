//! [`KeyTable`]: the idempotency keys the store remembers, which record each of the most
//! recent [`MAX_REMEMBERED_KEYS`] keyed appends is in.
//!
//! Every key stays in its record on disk forever ([`super::format`]); memory holds only a
//! window of them. The table maps a 64-bit fingerprint of the key (SipHash under a key drawn
//! at random when the process starts, so a client cannot craft two keys that collide) to the
//! byte offset of the record, and a queue of `(fingerprint, offset)` in insertion order
//! evicts the oldest once the window is full. A hit is only a candidate: [`super::keys::find`] reads the
//! record at the offset and compares the key stored there with the one asked for, so a
//! fingerprint collision can never answer with another request's entry. When a new key's
//! fingerprint collides with a remembered one (about 1 in 2^45 for a full window), the new
//! key takes the slot and the old one is forgotten early, which a retry sees exactly as if
//! the window had moved past it.
//!
//! Memory: 16 bytes per key in the map (plus a control byte and the slack of a table sized
//! in powers of two) and 16 bytes in the queue, whatever the key's length: measured, 52 bytes
//! per key for a full window of 1,000,000 keys (52 MB), 53 once it starts evicting. Nothing
//! is kept for unkeyed entries.
//!
//! The map is split into [`KEY_SHARDS`] maps by the fingerprint's top bits, for the reason the
//! index's hash-prefix map is ([`super::index`]): a hash map grows all at once, under the
//! index's write lock, and one map of 1,000,000 keys would stall every append and read for
//! tens of milliseconds while it grew; a shard moves 1/64 of that. The queue grows by
//! doubling too, but a move is a plain copy: its largest, past 524,288 keys, copies 8 MB.
//!
//! The writer inserts a key when its record is durable, under the index's write lock, in
//! the same step as the record's offset, so a reader that finds a key finds a synced record.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;

use crate::idempotency::IdempotencyKey;

/// How many of the most recent keyed appends a node remembers. A retry whose key is older
/// than this appends again. At a sustained 1,000 keyed appends per second that is about 17
/// minutes; at 10 per second, more than a day.
pub const MAX_REMEMBERED_KEYS: usize = 1_000_000;

/// How many maps the fingerprint map is split into (a power of two).
pub const KEY_SHARDS: usize = 64;

/// Key fingerprints -> record offsets, for the most recent keys (see the module docs).
#[derive(Debug)]
pub struct KeyTable {
    hasher: RandomState,
    /// [`KEY_SHARDS`] maps, made on first insert; a fingerprint lives in the one its top bits
    /// name.
    shards: Vec<HashMap<u64, u64>>,
    /// Keys in the maps.
    len: usize,
    /// `(fingerprint, offset)`, oldest first.
    order: VecDeque<(u64, u64)>,
    capacity: usize,
}

/// The shard of a fingerprint: its top bits (fingerprints are hash outputs, evenly spread).
fn shard(fingerprint: u64) -> usize {
    (fingerprint >> (64 - KEY_SHARDS.trailing_zeros())) as usize
}

impl Default for KeyTable {
    fn default() -> Self {
        KeyTable::with_capacity(MAX_REMEMBERED_KEYS)
    }
}

impl KeyTable {
    /// A table remembering at most `capacity` keys (at least one).
    pub fn with_capacity(capacity: usize) -> KeyTable {
        KeyTable {
            hasher: RandomState::new(),
            shards: Vec::new(),
            len: 0,
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    fn fingerprint(&self, key: &IdempotencyKey) -> u64 {
        self.hasher.hash_one(key.as_bytes())
    }

    /// Remembers that `key`'s record is at `offset`, forgetting the oldest key if full.
    pub fn insert(&mut self, key: &IdempotencyKey, offset: u64) {
        let fingerprint = self.fingerprint(key);
        if self.shards.is_empty() {
            self.shards = vec![HashMap::new(); KEY_SHARDS];
        }
        if self.shards[shard(fingerprint)]
            .insert(fingerprint, offset)
            .is_none()
        {
            self.len += 1;
        }
        self.order.push_back((fingerprint, offset));
        if self.order.len() > self.capacity {
            if let Some((old, at)) = self.order.pop_front() {
                // Only if the slot still names that record: a newer key with the same
                // fingerprint (or the same key appended again after it was forgotten)
                // took it over.
                let map = &mut self.shards[shard(old)];
                if map.get(&old) == Some(&at) {
                    map.remove(&old);
                    self.len -= 1;
                }
            }
        }
    }

    /// The offset of the record that may hold `key` (confirm it with [`super::keys::find`]).
    pub fn candidate(&self, key: &IdempotencyKey) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        let fingerprint = self.fingerprint(key);
        self.shards
            .get(shard(fingerprint))
            .and_then(|map| map.get(&fingerprint))
            .copied()
    }

    /// Keys remembered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Releases the slack left by growth (called once after open).
    pub fn shrink_to_fit(&mut self) {
        for map in &mut self.shards {
            map.shrink_to_fit();
        }
        self.order.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> IdempotencyKey {
        text.parse().unwrap()
    }

    #[test]
    fn remembers_keys_until_the_window_moves_past_them() {
        let mut table = KeyTable::with_capacity(3);
        assert_eq!(table.candidate(&key("a")), None);
        for (i, k) in ["a", "b", "c"].into_iter().enumerate() {
            table.insert(&key(k), 100 + i as u64);
        }
        assert_eq!(table.candidate(&key("a")), Some(100));
        assert_eq!(table.candidate(&key("c")), Some(102));
        table.insert(&key("d"), 103);
        assert_eq!(table.candidate(&key("a")), None, "the oldest is forgotten");
        assert_eq!(table.candidate(&key("b")), Some(101));
        assert_eq!(table.candidate(&key("d")), Some(103));
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn a_key_appended_again_after_it_was_forgotten_is_not_evicted_by_its_old_slot() {
        let mut table = KeyTable::with_capacity(2);
        table.insert(&key("a"), 1);
        table.insert(&key("b"), 2);
        table.insert(&key("c"), 3); // forgets a
        table.insert(&key("a"), 4); // a again; forgets b
        assert_eq!(table.candidate(&key("a")), Some(4));
        table.insert(&key("e"), 5); // forgets c, not the new a
        assert_eq!(table.candidate(&key("a")), Some(4));
        assert_eq!(table.candidate(&key("c")), None);
        table.insert(&key("f"), 6); // now the new a goes
        assert_eq!(table.candidate(&key("a")), None);
    }

    #[test]
    fn keys_spread_over_every_shard_and_the_window_holds_across_them() {
        let mut table = KeyTable::with_capacity(5_000);
        for i in 0..10_000u64 {
            table.insert(&key(&format!("k{i}")), i);
        }
        assert_eq!(table.len(), 5_000);
        assert!(
            table.shards.iter().all(|m| !m.is_empty()),
            "every shard used"
        );
        assert_eq!(table.candidate(&key("k4999")), None);
        assert_eq!(table.candidate(&key("k5000")), Some(5_000));
        assert_eq!(table.candidate(&key("k9999")), Some(9_999));
    }

    #[test]
    fn fingerprints_differ_between_tables() {
        // Each table draws its own SipHash key, so fingerprints cannot be predicted (and
        // collisions crafted) from outside.
        let k = key("same");
        let fingerprints: std::collections::BTreeSet<u64> = (0..8)
            .map(|_| KeyTable::default().fingerprint(&k))
            .collect();
        assert!(fingerprints.len() > 1);
    }
}
