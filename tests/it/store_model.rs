//! Model-based store tests.
//!
//! - After any sequence of own appends and torn-tail cuts, reopening yields exactly the
//!   entries appended and not cut, in order.
//! - Own appends mixed with foreign entries (in and out of order, repeated, forked, forged)
//!   and CSV imports: every outcome is the model's, and a reopen gives back the model's feeds
//!   in its commit order.

use std::ops::ControlFlow;
use std::sync::Arc;

use crate::common;
use crate::common::identity;
use kappalog::hash::Hash;
use kappalog::store::io::memory::MemoryIo;
use kappalog::store::{Store, StoreOptions};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append(u8),
    /// Cut this many bytes (1..=165) off the end, tearing the last record.
    Tear(u8),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..20).prop_map(Op::Append),
        1 => (1u8..=165).prop_map(Op::Tear),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn reopen_matches_model(ops in proptest::collection::vec(op(), 1..25)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entries.log");
        let me = identity(1);
        let mut model: Vec<(Hash, u64)> = Vec::new();
        let open = || {
            let (store, owner, _) = Store::open(dir.path(), Some(me.clone()), None).unwrap();
            (store, owner)
        };
        let mut store = Some(open());
        for op in ops {
            match op {
                Op::Append(len) => {
                    let (s, _) = store.get_or_insert_with(open);
                    let (e, h) = s.append_own(1, "d".repeat(len.into())).wait().unwrap();
                    model.push((h, 8 + e.encoded_len() as u64));
                }
                Op::Tear(n) => {
                    if let Some((_, owner)) = store.take() { owner.shutdown_blocking().unwrap(); }
                    // Recover any earlier tear first, so this one tears an intact record.
                    Store::open(dir.path(), None, None).unwrap().1.shutdown_blocking().unwrap();
                    let Some((_, last_len)) = model.pop() else { continue };
                    // A crash while writing the last entry: its record is cut short and the
                    // commit marker after it never made it either.
                    let len = common::last_entry_end(&path);
                    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                    f.set_len(len - u64::from(n).min(last_len)).unwrap();
                }
                Op::Reopen => {
                    if let Some((_, owner)) = store.take() { owner.shutdown_blocking().unwrap(); }
                }
            }
        }
        if let Some((_, owner)) = store.take() { owner.shutdown_blocking().unwrap(); }
        let (s, _owner, _) = Store::open(dir.path(), Some(me.clone()), None).unwrap();
        let mut got = Vec::new();
        s.reader().for_each_in_log_order(|_, h| { got.push(*h); ControlFlow::Continue(()) }).unwrap();
        let want: Vec<Hash> = model.iter().map(|(h, _)| *h).collect();
        prop_assert_eq!(got, want);
    }
}

/// What the store is offered in the mixed model.
#[derive(Debug, Clone)]
enum Mixed {
    /// An own append with this much data.
    Own(u8),
    /// Entry `seq` (1-based) of foreign feed `feed`.
    Foreign {
        feed: usize,
        seq: u8,
    },
    /// The same position with another signed entry: a fork once the first is held.
    Fork {
        feed: usize,
        seq: u8,
    },
    /// A copy of entry `seq` of `feed` whose signature is not the author's.
    Forged {
        feed: usize,
        seq: u8,
    },
    /// Entries `from..=to` of `feed`, imported as CSV.
    Import {
        feed: usize,
        from: u8,
        to: u8,
    },
    Reopen,
}

const FEEDS: usize = 3;
const FEED_LEN: u8 = 10;

fn mixed() -> impl Strategy<Value = Mixed> {
    let feed = 0..FEEDS;
    let seq = 1..=FEED_LEN;
    prop_oneof![
        2 => (0u8..20).prop_map(Mixed::Own),
        5 => (feed.clone(), seq.clone()).prop_map(|(feed, seq)| Mixed::Foreign { feed, seq }),
        1 => (feed.clone(), seq.clone()).prop_map(|(feed, seq)| Mixed::Fork { feed, seq }),
        1 => (feed.clone(), seq.clone()).prop_map(|(feed, seq)| Mixed::Forged { feed, seq }),
        2 => (feed, seq.clone(), seq).prop_map(|(feed, a, b)| Mixed::Import { feed, from: a.min(b), to: a.max(b) }),
        1 => Just(Mixed::Reopen),
    ]
}

/// The model's verdict on offering `(entry, hash)` to a feed holding `held`: what the store
/// must answer, and whether it appends.
fn expect(held: &[Hash], entry: &kappalog::entry::Entry, hash: Hash, signed: bool) -> &'static str {
    let seq = usize::try_from(entry.seq).unwrap();
    if !signed {
        "rejected"
    } else if seq <= held.len() {
        if held[seq - 1] == hash {
            "duplicate"
        } else {
            "fork"
        }
    } else if seq > held.len() + 1 {
        "gap"
    } else if entry.prev != held.last().copied() {
        "rejected"
    } else {
        "added"
    }
}

fn outcome_name(o: &kappalog::store::Outcome) -> &'static str {
    use kappalog::store::Outcome;
    match o {
        Outcome::Added(_) => "added",
        Outcome::Duplicate(_) => "duplicate",
        Outcome::Fork { .. } => "fork",
        Outcome::Rejected(_) => "rejected",
        Outcome::Gap { .. } => "gap",
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Own appends, foreign entries (in and out of order, repeated, forked, forged), CSV
    /// imports and reopens: every outcome is the model's, and after a reopen the store holds
    /// exactly the model's feeds, in the model's commit order.
    #[test]
    fn mixed_operations_match_model(ops in proptest::collection::vec(mixed(), 1..40)) {
        mixed_model(ops, None, false)?;
    }

    /// The same, with the log and the forks file in memory ([`MemoryIo`], never crashed).
    #[test]
    fn mixed_operations_match_model_in_memory(ops in proptest::collection::vec(mixed(), 1..40)) {
        mixed_model(ops, Some(MemoryIo::new()), false)?;
    }

    /// The same in memory with the writer inline (the simulation's store).
    #[test]
    fn mixed_operations_match_model_inline(ops in proptest::collection::vec(mixed(), 1..40)) {
        mixed_model(ops, Some(MemoryIo::new()), true)?;
    }
}

/// The mixed model on real files, or on `memory`'s (with the writer inline if asked).
fn mixed_model(
    ops: Vec<Mixed>,
    memory: Option<MemoryIo>,
    inline_writer: bool,
) -> Result<(), TestCaseError> {
    use kappalog::entry::Entry;
    let options = match memory {
        Some(memory) => StoreOptions {
            io: Arc::new(memory.clone()),
            forks_io: Arc::new(memory),
            inline_writer,
            ..StoreOptions::default()
        },
        None => StoreOptions::default(),
    };
    let dir = tempfile::tempdir().unwrap();
    let me = identity(1);
    let feeds: Vec<Vec<(Entry, Hash)>> = (0..FEEDS)
        .map(|i| common::feed(&identity(10 + i as u8), u64::from(FEED_LEN)))
        .collect();
    let other = |feed: usize, seq: u8| -> (Entry, Hash) {
        let mut u = feeds[feed][usize::from(seq) - 1].0.unsigned();
        u.value += 1_000;
        u.sign(&identity(10 + feed as u8))
    };
    let mut held: std::collections::BTreeMap<kappalog::identity::Author, Vec<Hash>> =
        Default::default();
    let mut log: Vec<Hash> = Vec::new();
    let open = || {
        let (store, owner, _) =
            Store::open_with_options(dir.path(), &options, Some(me.clone()), None).unwrap();
        (store, owner)
    };
    let mut store = Some(open());
    for op in ops {
        let (s, _) = store.get_or_insert_with(open);
        let mut offer = |offered: Vec<(Entry, Hash, bool)>| -> Result<(), TestCaseError> {
            let outcomes = s
                .append_entries(offered.iter().map(|(e, _, _)| e.clone()).collect())
                .wait()
                .unwrap();
            for ((e, h, signed), o) in offered.iter().zip(&outcomes) {
                let feed = held.entry(e.author).or_default();
                let want = expect(feed, e, *h, *signed);
                prop_assert_eq!(outcome_name(o), want, "{:?} seq {}", e.author, e.seq);
                if want == "added" {
                    feed.push(*h);
                    log.push(*h);
                }
            }
            Ok(())
        };
        match op {
            Mixed::Own(len) => {
                let (e, h) = s.append_own(1, "d".repeat(len.into())).wait().unwrap();
                held.entry(e.author).or_default().push(h);
                log.push(h);
            }
            Mixed::Foreign { feed, seq } => {
                let (e, h) = feeds[feed][usize::from(seq) - 1].clone();
                offer(vec![(e, h, true)])?;
            }
            Mixed::Fork { feed, seq } => {
                let (e, h) = other(feed, seq);
                offer(vec![(e, h, true)])?;
            }
            Mixed::Forged { feed, seq } => {
                let (mut e, h) = feeds[feed][usize::from(seq) - 1].clone();
                e.signature = kappalog::identity::Signature([5; 64]);
                offer(vec![(e, h, false)])?;
            }
            Mixed::Import { feed, from, to } => {
                let rows = &feeds[feed][usize::from(from) - 1..usize::from(to)];
                let mut w = kappalog::csv::CsvWriter::new(Vec::new()).unwrap();
                for (e, h) in rows {
                    w.write_entry(e, h).unwrap();
                }
                let csv = w.finish().unwrap();
                let report =
                    kappalog::import::import_csv(s, &csv[..], dir.path(), |_| false, |_| Ok(()))
                        .unwrap();
                // The import offers the rows in seq order, exactly as single offers would.
                let (mut added, mut dups, mut forks) = (0u64, 0u64, 0usize);
                for (e, h) in rows {
                    let feed = held.entry(e.author).or_default();
                    match expect(feed, e, *h, true) {
                        "added" => {
                            feed.push(*h);
                            log.push(*h);
                            added += 1;
                        }
                        "duplicate" => dups += 1,
                        "fork" => forks += 1,
                        _ => {}
                    }
                }
                prop_assert_eq!(
                    (report.added, report.duplicates, report.forks.len()),
                    (added, dups, forks),
                    "{}",
                    report
                );
            }
            Mixed::Reopen => {
                if let Some((_, owner)) = store.take() {
                    owner.shutdown_blocking().unwrap();
                }
            }
        }
    }
    if let Some((_, owner)) = store.take() {
        owner.shutdown_blocking().unwrap();
    }
    let (s, _owner) = open();
    let mut got_log = Vec::new();
    let mut got_feeds: std::collections::BTreeMap<kappalog::identity::Author, Vec<Hash>> =
        Default::default();
    s.reader()
        .for_each_in_log_order(|e, h| {
            got_log.push(*h);
            got_feeds.entry(e.author).or_default().push(*h);
            ControlFlow::Continue(())
        })
        .unwrap();
    held.retain(|_, v| !v.is_empty());
    prop_assert_eq!(got_feeds, held);
    prop_assert_eq!(got_log, log);
    Ok(())
}
