//! The in-memory cache of complete rows of layers >= 1: a bounded least-recently-used map.
//!
//! A proof in a feed of 1,000,000 entries reads one row of each layer: the layer-0 row
//! (from SQLite: 7,813 of them, too many to keep) and the layer-1 and 2 rows, which every
//! proof in the feed shares, from here. [`ROW_CACHE_ROWS`] rows of 4,064 bytes bound it to
//! 4 MiB; a layer-1 row covers 16,384 entries, so it holds the upper rows of 16 million
//! entries' worth of feeds.

use std::collections::HashMap;
use std::sync::Arc;

/// The most rows kept.
pub const ROW_CACHE_ROWS: usize = 1024;

/// Rows by key, each with when it was last used.
#[derive(Default)]
pub struct RowCache {
    rows: HashMap<i64, (Arc<Vec<u8>>, u64)>,
    clock: u64,
}

impl RowCache {
    /// The row at `key`, if cached (now the most recently used).
    pub fn get(&mut self, key: i64) -> Option<Arc<Vec<u8>>> {
        self.clock += 1;
        let clock = self.clock;
        self.rows.get_mut(&key).map(|(row, used)| {
            *used = clock;
            Arc::clone(row)
        })
    }

    /// Keeps `row` at `key`, evicting the least recently used row when full (a scan of the
    /// map: only on a miss, and the map is small).
    pub fn put(&mut self, key: i64, row: Arc<Vec<u8>>) {
        self.clock += 1;
        if self.rows.len() >= ROW_CACHE_ROWS && !self.rows.contains_key(&key) {
            if let Some(oldest) = self
                .rows
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k)
            {
                self.rows.remove(&oldest);
            }
        }
        self.rows.insert(key, (row, self.clock));
    }

    /// Drops every row (the file was replaced).
    pub fn clear(&mut self) {
        self.rows.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_row_goes_first() {
        let mut cache = RowCache::default();
        for key in 0..ROW_CACHE_ROWS as i64 {
            cache.put(key, Arc::new(vec![1]));
        }
        assert!(cache.get(0).is_some());
        cache.put(-1, Arc::new(vec![2]));
        assert!(cache.get(0).is_some(), "used recently: kept");
        assert!(cache.get(1).is_none(), "the oldest is evicted");
        assert_eq!(cache.rows.len(), ROW_CACHE_ROWS);
    }
}
