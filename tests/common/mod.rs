//! Fixtures shared by the store tests: fixed-seed identities and hand-built feeds.
#![allow(dead_code)]

use kappalog::entry::{Entry, UnsignedEntry};
use kappalog::hash::Hash;
use kappalog::identity::Identity;

pub fn identity(seed: u8) -> Identity {
    Identity::from_seed([seed; 32])
}

/// A valid feed of `n` entries by `id`, starting at seq 1.
pub fn feed(id: &Identity, n: u64) -> Vec<(Entry, Hash)> {
    let mut out: Vec<(Entry, Hash)> = Vec::new();
    for seq in 1..=n {
        let prev = out.last().map(|(_, h)| *h);
        out.push(
            UnsignedEntry {
                author: id.author(),
                seq,
                timestamp: 1_700_000_000_000 + seq,
                prev,
                value: seq as i64,
                data: format!("entry {seq}"),
            }
            .sign(id),
        );
    }
    out
}

pub fn entries(feed: &[(Entry, Hash)]) -> Vec<Entry> {
    feed.iter().map(|(e, _)| e.clone()).collect()
}
