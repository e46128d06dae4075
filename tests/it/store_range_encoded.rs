//! `StoreReader::range_encoded`, the read sync sends from: the stored bytes of a feed's
//! entries, checked but not decoded, several records per positional read.
//!
//! - For any mix of own (keyed and unkeyed) appends and foreign feeds interleaved in the file,
//!   with entries from the shortest to the longest, every `(feed, from, limit)` gives exactly
//!   the encodings of what the decoding `range` gives.
//! - A record damaged on disk fails the read as corrupt, naming its offset; nothing of it is
//!   returned.

use crate::common;
use crate::common::identity;
use kappalog::entry::{Entry, UnsignedEntry, MAX_DATA_BYTES};
use kappalog::hash::Hash;
use kappalog::idempotency::IdempotencyKey;
use kappalog::identity::{Author, Identity};
use kappalog::store::{Store, StoreError, StoreReader};
use proptest::prelude::*;

/// What goes into the store, in this order.
#[derive(Debug, Clone)]
enum Put {
    /// An own append with this much data, under an idempotency key or not.
    Own { data: usize, keyed: bool },
    /// The next entry of foreign feed `feed`, with this much data.
    Foreign { feed: usize, data: usize },
}

const FEEDS: usize = 2;

fn data_len() -> impl Strategy<Value = usize> {
    // Mostly short entries (many records per read), some at the limit (a record straddling
    // the read window, or one alone in it).
    prop_oneof![
        6 => 0usize..64,
        1 => (MAX_DATA_BYTES - 8)..=MAX_DATA_BYTES,
    ]
}

fn put() -> impl Strategy<Value = Put> {
    prop_oneof![
        2 => (data_len(), any::<bool>()).prop_map(|(data, keyed)| Put::Own { data, keyed }),
        3 => (0..FEEDS, data_len()).prop_map(|(feed, data)| Put::Foreign { feed, data }),
    ]
}

/// The next entry of `id`'s feed after `last`.
fn next_entry(id: &Identity, last: Option<&(Entry, Hash)>, data: usize) -> (Entry, Hash) {
    let seq = last.map_or(1, |(e, _)| e.seq + 1);
    UnsignedEntry {
        author: id.author(),
        seq,
        timestamp: 1_700_000_000_000 + seq,
        prev: last.map(|(_, h)| *h),
        value: i64::try_from(seq).unwrap(),
        data: "x".repeat(data),
    }
    .sign(id)
}

fn fill(store: &Store, puts: &[Put], foreign: &[Identity]) {
    let mut held: Vec<Option<(Entry, Hash)>> = vec![None; foreign.len()];
    for (i, put) in puts.iter().enumerate() {
        match *put {
            Put::Own { data, keyed } => {
                let key = keyed.then(|| IdempotencyKey::try_from(format!("k{i}").as_bytes()));
                store
                    .append_own_keyed(1, "o".repeat(data), key.map(Result::unwrap))
                    .wait()
                    .unwrap();
            }
            Put::Foreign { feed, data } => {
                let next = next_entry(&foreign[feed], held[feed].as_ref(), data);
                store.append_entries(vec![next.0.clone()]).wait().unwrap();
                held[feed] = Some(next);
            }
        }
    }
}

fn decoded_then_encoded(
    reader: &StoreReader,
    author: &Author,
    from: u64,
    limit: usize,
) -> Vec<Vec<u8>> {
    reader
        .range(author, from, limit)
        .unwrap()
        .iter()
        .map(|(e, _)| e.encode())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn encoded_range_is_the_decoded_range_encoded(
        puts in proptest::collection::vec(put(), 1..120),
        from in 0u64..40,
        limit in 1usize..200,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let me = identity(1);
        let foreign: Vec<Identity> = (0..FEEDS).map(|i| identity(10 + i as u8)).collect();
        let (store, owner, _) = Store::open(dir.path(), Some(me.clone()), None).unwrap();
        fill(&store, &puts, &foreign);
        let reader = store.reader();
        let authors = std::iter::once(me.author()).chain(foreign.iter().map(Identity::author));
        for author in authors {
            let length = reader.head(&author).map_or(0, |h| h.seq);
            for (from, limit) in [(from, limit), (1, usize::MAX), (length, 1), (length + 1, 5)] {
                let got = reader.range_encoded(&author, from, limit).unwrap();
                prop_assert_eq!(&got, &decoded_then_encoded(&reader, &author, from, limit));
            }
        }
        drop(reader);
        owner.shutdown_blocking().unwrap();
    }
}

#[test]
fn a_damaged_record_fails_the_read_as_corrupt_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let me = identity(1);
    let (store, owner, _) = Store::open(dir.path(), Some(me.clone()), None).unwrap();
    for i in 0..20 {
        store.append_own(i, format!("entry {i}")).wait().unwrap();
    }
    let reader = store.reader();
    assert_eq!(
        reader.range_encoded(&me.author(), 1, 100).unwrap().len(),
        20
    );

    // Flip one byte inside the data of the 12th entry's record, as a failing disk would.
    let path = dir.path().join("entries.log");
    let mut bytes = std::fs::read(&path).unwrap();
    let (offset, end, _) = common::log_records(&bytes)
        .into_iter()
        .filter(|&(_, _, marker)| !marker)
        .nth(11)
        .unwrap();
    bytes[usize::try_from(end).unwrap() - 70] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();

    match reader.range_encoded(&me.author(), 1, 100) {
        Err(StoreError::Corrupt {
            offset: at, reason, ..
        }) => {
            assert_eq!(at, offset);
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("expected a corrupt record at {offset}, got {other:?}"),
    }
    // The entries before it still read; the read that reaches it fails.
    assert_eq!(reader.range_encoded(&me.author(), 1, 11).unwrap().len(), 11);
    assert!(reader.range_encoded(&me.author(), 12, 1).is_err());
    drop(reader);
    owner.shutdown_blocking().unwrap();
}
