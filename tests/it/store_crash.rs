//! Power cuts at every file operation, on the in-memory backend that can lose what was not
//! synced (`kappalog::store::io::memory::MemoryIo`).
//!
//! A workload (own appends, foreign entries, a keyed append and its retry, a replacement of
//! a foreign entry's copy, a fork proof) runs on a store whose log and forks file are in memory. A clean run counts the calls
//! that change a file (writes, syncs, cuts, directory syncs). Then, for each of those calls
//! and one past the last (no crash at all), the workload runs again and the power goes at
//! that call: a write reaches the page cache, then the machine stops; a sync, cut or
//! directory sync never happens. From then on every call fails (the process is gone, no
//! more bytes reach the disk). The image a crash leaves is drawn under several seeds (any
//! subset of the unsynced changes, the last one kept torn at any byte; a file whose
//! directory entry was never synced may vanish), and each image is reopened. Each must:
//!
//! - open (a crash never makes the store unopenable);
//! - hold every acknowledged entry, identical (a replaced entry as its acknowledged copy;
//!   one whose replacement was not acknowledged as either copy);
//! - hold nothing else but whole, validly signed entries the workload offered or the
//!   store signed for it: an unacknowledged entry may survive (its sync may have finished
//!   before the power went), but only whole and valid, never torn or made up;
//! - find every acknowledged idempotency key, naming the acknowledged entry;
//! - hold every acknowledged fork proof, its author forked;
//! - take a new append.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use crate::common;
use crate::common::crash_io::CrashIo;
use crate::common::resign::resign;
use crate::common::{fork_proof, identity};
use kappalog::entry::Entry;
use kappalog::hash::Hash;
use kappalog::idempotency::IdempotencyKey;
use kappalog::identity::Author;
use kappalog::store::io::memory::MemoryIo;
use kappalog::store::io::LogIo;
use kappalog::store::{Outcome, OwnAppend, ReplaceOutcome, Store, StoreOptions};

/// Images drawn per crash point.
const SEEDS: u64 = 8;

/// What the workload was told.
#[derive(Default, Debug)]
struct Acked {
    entries: BTreeMap<Hash, Entry>,
    keys: BTreeMap<String, Hash>,
    proofs: BTreeSet<Author>,
    /// Copies offered as replacements and not acknowledged: the entry may hold either.
    unacked_copies: BTreeMap<Hash, Entry>,
    /// Replacements acknowledged.
    replaced: usize,
}

fn options(io: Arc<dyn LogIo>, inline_writer: bool) -> StoreOptions {
    StoreOptions {
        io: io.clone(),
        forks_io: io,
        // Only the workload's own calls, so the same call numbers mean the same step.
        idle_marker_delay: None,
        inline_writer,
        ..StoreOptions::default()
    }
}

fn key(text: &str) -> IdempotencyKey {
    text.parse().unwrap()
}

/// The foreign entries the workload offers (a feed of `identity(2)`).
fn foreign() -> Vec<(Entry, Hash)> {
    common::feed(&identity(2), 2)
}

/// Runs the workload on `io`; returns what was acknowledged. Every failure after the crash
/// is expected: the store says so and the workload goes on, as clients would.
fn workload(dir: &Path, io: Arc<dyn LogIo>, inline_writer: bool) -> Acked {
    let mut acked = Acked::default();
    let Ok((store, owner, _)) =
        Store::open_with_options(dir, &options(io, inline_writer), Some(identity(1)), None)
    else {
        return acked;
    };
    let foreign = foreign();
    let own = |acked: &mut Acked, value: i64, key_text: Option<&str>| match store
        .append_own_keyed(value, format!("own {value}"), key_text.map(key))
        .wait()
    {
        Ok(OwnAppend::Added(entry, hash, _)) => {
            acked.entries.insert(hash, entry);
            if let Some(text) = key_text {
                acked.keys.insert(text.into(), hash);
            }
        }
        Ok(OwnAppend::Replayed { hash, .. }) => {
            let text = key_text.expect("only a keyed append replays");
            if let Some(&first) = acked.keys.get(text) {
                assert_eq!(hash, first, "a replay names the acknowledged entry");
            }
            acked.keys.insert(text.into(), hash);
        }
        Err(_) => {}
    };
    own(&mut acked, 1, None);
    let offer = |acked: &mut Acked, i: usize| {
        let (entry, hash) = foreign[i].clone();
        // Acknowledged only as added: after a failed offer of seq 1, seq 2 is answered
        // with an outcome that adds nothing.
        if let Ok(outcomes) = store.append_entries(vec![entry.clone()]).wait() {
            if outcomes == [Outcome::Added(hash)] {
                acked.entries.insert(hash, entry);
            }
        }
    };
    offer(&mut acked, 0);
    own(&mut acked, 2, Some("retried"));
    own(&mut acked, 2, Some("retried"));
    offer(&mut acked, 1);
    // Another signature of the first foreign entry, made current.
    let copy = resign(&identity(2), &foreign[0].0, 1);
    match store.replace_copies(vec![copy.clone()]).wait().as_deref() {
        Ok([ReplaceOutcome::Replaced]) => {
            acked.entries.insert(foreign[0].1, copy);
            acked.replaced += 1;
        }
        _ => {
            acked.unacked_copies.insert(foreign[0].1, copy);
        }
    }
    let proof = fork_proof(7);
    if matches!(store.record_fork_proof(proof.clone()).wait(), Ok(true)) {
        acked.proofs.insert(proof.author());
    }
    own(&mut acked, 3, None);
    drop(store);
    let _ = owner.shutdown_blocking();
    acked
}

/// Reopens `image` and checks it against what was acknowledged (see the module docs).
fn check(dir: &Path, image: MemoryIo, acked: &Acked, case: &str) {
    let image: Arc<dyn LogIo> = Arc::new(image);
    let (store, owner, _) =
        Store::open_with_options(dir, &options(image, false), Some(identity(1)), None)
            .unwrap_or_else(|e| panic!("{case}: the image does not open: {e}"));
    let held = common::entries_by_hash(&store.reader());
    for (hash, entry) in &acked.entries {
        let got = held.get(hash);
        // A replacement not acknowledged may have become durable all the same.
        let unacked_copy = acked.unacked_copies.get(hash);
        assert!(
            got == Some(entry) || (got.is_some() && got == unacked_copy),
            "{case}: acknowledged entry lost (or not as its acknowledged copy)"
        );
    }
    let offered: BTreeSet<Hash> = foreign().into_iter().map(|(_, h)| h).collect();
    for (hash, entry) in &held {
        if acked.entries.contains_key(hash) {
            continue;
        }
        // Not acknowledged: allowed only whole and valid, and only what was offered (a
        // foreign entry) or signed by the store for the workload (its own feed).
        assert_eq!(entry.hash(), *hash, "{case}: an entry not whole");
        kappalog::validate::check_signature(entry, hash)
            .unwrap_or_else(|e| panic!("{case}: an unacknowledged entry that is not valid: {e}"));
        assert!(
            offered.contains(hash) || entry.author == identity(1).author(),
            "{case}: an entry nobody offered"
        );
    }
    for (text, hash) in &acked.keys {
        let found = store.reader().find_key(&key(text)).unwrap();
        assert_eq!(found.map(|(_, h)| h), Some(*hash), "{case}: key {text}");
    }
    for author in &acked.proofs {
        assert!(store.forked().contains(author), "{case}: fork forgotten");
        assert!(
            store.forked().proofs().contains(author),
            "{case}: acknowledged fork proof lost"
        );
    }
    store
        .append_own(99, "after the crash".into())
        .wait()
        .unwrap_or_else(|e| panic!("{case}: no append after reopening: {e}"));
    drop(store);
    owner.shutdown_blocking().unwrap();
}

#[test]
fn a_crash_at_every_write_or_sync_keeps_exactly_the_acknowledged() {
    crash_at_every_call(false);
}

/// The same with the writer inline (`StoreOptions::inline_writer`, the simulation's store):
/// the same records and syncs, made on the caller's thread.
#[test]
fn a_crash_at_every_call_of_the_inline_writer_keeps_exactly_the_acknowledged() {
    crash_at_every_call(true);
}

fn crash_at_every_call(inline_writer: bool) {
    let dir = tempfile::tempdir().unwrap();
    let clean = Arc::new(CrashIo::new(None, SEEDS));
    let acked = workload(dir.path(), clean.clone(), inline_writer);
    let calls = clean.state().calls;
    assert_eq!(
        acked.entries.len(),
        5,
        "the clean run acknowledges every append"
    );
    assert_eq!(acked.proofs.len(), 1);
    assert_eq!(acked.replaced, 1, "the clean run replaces the copy");
    assert!(calls > 10, "{calls} calls");
    for seed in 0..SEEDS {
        check(
            dir.path(),
            clean.memory.crash(seed),
            &acked,
            &format!("no crash, seed {seed}"),
        );
    }
    for crash_at in 1..=calls {
        let dir = tempfile::tempdir().unwrap();
        let io = Arc::new(CrashIo::new(Some(crash_at), SEEDS));
        let acked = workload(dir.path(), io.clone(), inline_writer);
        let images = std::mem::take(&mut io.state().images);
        assert_eq!(images.len() as u64, SEEDS, "call {crash_at} was made");
        for (seed, image) in images.into_iter().enumerate() {
            check(
                dir.path(),
                image,
                &acked,
                &format!("crash at call {crash_at} of {calls}, seed {seed}"),
            );
        }
    }
}
