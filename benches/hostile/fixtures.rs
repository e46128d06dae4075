//! What the hostile scenarios build before they start: keys from counters, fresh feeds, a
//! CSV of many feeds for `kappalog import`, and synthetic reconciliation items.

use std::io::Write;
use std::path::Path;

use kappalog::entry::{Entry, UnsignedEntry};
use kappalog::hash::Hash;
use kappalog::identity::Identity;
use kappalog::sync::message::FeedHave;

/// Key families, the first byte of their seeds, so no two scenarios' keys ever meet.
pub const CLAIMANT: u8 = 1;
pub const SESSION: u8 = 2;
pub const NEW_FEED: u8 = 3;
pub const IMPORTED_FEED: u8 = 4;
pub const STRANGER: u8 = 5;
pub const TRUSTED: u8 = 6;

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

/// Writes `feeds` feeds of one entry each, authors from [`IMPORTED_FEED`] keys, as a CSV
/// `kappalog import` reads (docs/CSV.md). Returns the feeds as reconciliation items,
/// sorted by author: what a node holding exactly them states.
pub fn write_feeds_csv(path: &Path, feeds: u64) -> Vec<FeedHave> {
    let file = std::fs::File::create(path).expect("create the CSV");
    let mut out = std::io::BufWriter::new(file);
    writeln!(out, "author,seq,timestamp,prev,value,data,hash,signature").unwrap();
    let mut items = Vec::new();
    for i in 0..feeds {
        let id = identity(IMPORTED_FEED, i);
        let value = i64::try_from(i).unwrap_or(i64::MAX);
        let (entry, hash) = first_entry(&id, value);
        writeln!(
            out,
            "{},1,{},,{},,{},{}",
            entry.author, entry.timestamp, entry.value, hash, entry.signature
        )
        .unwrap();
        items.push(FeedHave {
            author: entry.author,
            length: 1,
            head: hash,
        });
    }
    out.flush().unwrap();
    items.sort_by_key(|item| item.author);
    items
}

/// `n` made-up feeds (length 1, made-up heads) whose authors are spread evenly over the
/// author space, in ascending order: a claim nobody could check without the entries.
pub fn synthetic_items(n: u64) -> Vec<FeedHave> {
    let step = u64::MAX / n.max(1);
    (0..n)
        .map(|i| {
            let mut author = [0x33; 32];
            author[..8].copy_from_slice(&(i * step).to_be_bytes());
            author[8..16].copy_from_slice(&i.to_le_bytes());
            let mut head = [0xcd; 32];
            head[..8].copy_from_slice(&i.to_le_bytes());
            FeedHave {
                author: kappalog::identity::Author(author),
                length: 1,
                head: Hash(head),
            }
        })
        .collect()
}
