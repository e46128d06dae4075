//! Replacement records (docs/STORE.md, "Replacement records"): another valid signature of an
//! entry the store holds becomes its current copy through `Store::replace_copies`, every
//! read path returns it (before and after a reopen), `verify_all` checks it, each refusal
//! is its own outcome, and recovery refuses replacement records that are no copy of a held
//! entry.

use std::ops::ControlFlow;
use std::path::Path;

use crate::common::resign::resign;
use crate::common::{entries, feed, fork_proof, identity};
use kappalog::entry::{Entry, UnsignedEntry};
use kappalog::hash::Hash;
use kappalog::identity::{Author, Identity};
use kappalog::store::{
    format, ReplaceOutcome, ReplaceRefusal, Store, StoreError, StoreOwner, StoreReader,
};
use kappalog::validate::ValidationError;

const N: u64 = 6;

fn open(dir: &Path) -> (Store, StoreOwner) {
    let (store, owner, _) = Store::open(dir, None, None).unwrap();
    (store, owner)
}

/// A store holding `identity(seed)`'s feed of `N` entries, each its own write.
fn with_feed(dir: &Path, seed: u8) -> (Store, StoreOwner, Vec<(Entry, Hash)>) {
    let (store, owner) = open(dir);
    let feed = feed(&identity(seed), N);
    for (entry, _) in &feed {
        store.append_entries(vec![entry.clone()]).wait().unwrap();
    }
    (store, owner, feed)
}

/// Every read path's copy of each entry of `author` (seqs 1..=N), checked to be `want`'s.
fn assert_reads(reader: &StoreReader, author: &Author, want: &[Entry]) {
    let hashes: Vec<Hash> = want.iter().map(Entry::hash).collect();
    for (i, entry) in want.iter().enumerate() {
        let seq = i as u64 + 1;
        assert_eq!(
            reader.get(author, seq).unwrap().unwrap().0,
            *entry,
            "get {seq}"
        );
        assert_eq!(
            reader.get_by_hash(&hashes[i]).unwrap().unwrap().0,
            *entry,
            "get_by_hash {seq}"
        );
        let offset = reader.offset_of(author, seq).unwrap();
        assert_eq!(
            reader.record_at(offset).unwrap().unwrap().0,
            *entry,
            "record_at {seq}"
        );
    }
    let range: Vec<Entry> = reader
        .range(author, 1, 100)
        .unwrap()
        .into_iter()
        .map(|(e, _)| e)
        .collect();
    assert_eq!(range, want, "range");
    let encoded: Vec<Vec<u8>> = want.iter().map(Entry::encode).collect();
    assert_eq!(
        reader.range_encoded(author, 1, 100).unwrap(),
        encoded,
        "range_encoded"
    );
    let mut in_log_order = Vec::new();
    reader
        .for_each_in_log_order(|e, h| {
            assert_eq!(*h, e.hash());
            in_log_order.push(e.clone());
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(
        in_log_order, want,
        "for_each_in_log_order: each entry once, current copy"
    );
    let mut bytes_in_log_order = Vec::new();
    reader
        .for_each_entry_bytes_between(
            format::FILE_HEADER_BYTES,
            reader.committed_end(),
            1 << 16,
            |record| {
                assert_eq!(reader.offset_of(author, record.seq), Some(record.offset));
                bytes_in_log_order.push(record.bytes.to_vec());
                ControlFlow::Continue(())
            },
        )
        .unwrap();
    assert_eq!(bytes_in_log_order, encoded, "for_each_entry_bytes_between");
    let mut sorted = Vec::new();
    reader
        .for_each_sorted(|e, _| {
            sorted.push(e.clone());
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(sorted, want, "for_each_sorted");
    let mut csv = Vec::new();
    kappalog::node::export(reader, &mut csv).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    assert_eq!(
        csv.lines().count(),
        want.len() + 1,
        "export: a header and each entry once"
    );
    for entry in want {
        assert!(
            csv.contains(&entry.signature.to_hex()),
            "export writes the current copy of seq {}",
            entry.seq
        );
    }
    assert_eq!(reader.len(), N);
}

#[test]
fn a_replaced_copy_is_what_every_read_returns_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity(21);
    let (store, owner, feed) = with_feed(dir.path(), 21);
    let mut want = entries(&feed);
    let author = id.author();
    assert_reads(&store.reader(), &author, &want);

    let third = resign(&id, &want[2], 1);
    let last = resign(&id, &want[5], 2);
    assert_ne!(third.signature, want[2].signature);
    assert_eq!(third.hash(), want[2].hash());
    let outcomes = store
        .replace_copies(vec![third.clone(), last.clone()])
        .wait()
        .unwrap();
    assert_eq!(
        outcomes,
        vec![ReplaceOutcome::Replaced, ReplaceOutcome::Replaced]
    );
    want[2] = third.clone();
    want[5] = last;
    let reader = store.reader();
    assert_eq!(reader.replacement_count(), 2);
    assert_reads(&reader, &author, &want);
    // Back to the first copy: a replacement of a replacement.
    let outcomes = store
        .replace_copies(vec![feed[2].0.clone()])
        .wait()
        .unwrap();
    assert_eq!(outcomes, vec![ReplaceOutcome::Replaced]);
    want[2] = feed[2].0.clone();
    assert_eq!(reader.replacement_count(), 3);
    assert_reads(&reader, &author, &want);
    // The feed keeps taking entries after its replaced head.
    owner.shutdown_blocking().unwrap();

    let (store, owner) = open(dir.path());
    assert_eq!(store.reader().replacement_count(), 3);
    assert_reads(&store.reader(), &author, &want);
    assert!(store.reader().verify_all().unwrap().is_ok());
    let next = UnsignedEntry {
        author,
        seq: N + 1,
        timestamp: 1_700_000_000_000 + N + 1,
        prev: Some(want[5].hash()),
        value: 7,
        data: String::new(),
    }
    .sign(&id)
    .0;
    store.append_entries(vec![next]).wait().unwrap();
    owner.shutdown_blocking().unwrap();

    let (reader, report) = StoreReader::open_read_only(dir.path()).unwrap();
    assert_eq!(report.entries, N + 1);
    assert_eq!(reader.get(&author, 6).unwrap().unwrap().0, want[5]);
    assert!(reader.verify_all().unwrap().is_ok());
}

#[test]
fn each_refusal_is_its_own_outcome_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity(22);
    let (store, owner, feed) = with_feed(dir.path(), 22);
    let before = std::fs::metadata(dir.path().join("entries.log"))
        .unwrap()
        .len();
    let missing = {
        let mut e = resign(&id, &feed[1].0, 1);
        e.seq = N + 5;
        e.signature = id.sign_hash(&e.hash());
        e
    };
    let other = UnsignedEntry {
        author: id.author(),
        seq: 2,
        timestamp: 5,
        prev: Some(feed[0].1),
        value: 99,
        data: String::new(),
    }
    .sign(&id)
    .0;
    let mut bad_signature = resign(&id, &feed[1].0, 1);
    bad_signature.signature.0[40] ^= 1;
    let outcomes = store
        .replace_copies(vec![
            missing,
            other.clone(),
            bad_signature,
            feed[3].0.clone(),
        ])
        .wait()
        .unwrap();
    assert_eq!(
        outcomes[0],
        ReplaceOutcome::Refused(ReplaceRefusal::NoSuchEntry)
    );
    assert_eq!(
        outcomes[1],
        ReplaceOutcome::Refused(ReplaceRefusal::OtherEntryHash { held: feed[1].1 })
    );
    assert!(
        matches!(
            outcomes[2],
            ReplaceOutcome::Refused(ReplaceRefusal::Invalid(ValidationError::BadSignature(_)))
        ),
        "{:?}",
        outcomes[2]
    );
    assert_eq!(outcomes[3], ReplaceOutcome::AlreadyCurrent);
    // The same copy twice in one request: the second is current by then.
    let again = resign(&id, &feed[1].0, 3);
    let outcomes = store
        .replace_copies(vec![again.clone(), again])
        .wait()
        .unwrap();
    assert_eq!(
        outcomes,
        vec![ReplaceOutcome::Replaced, ReplaceOutcome::AlreadyCurrent]
    );
    assert_eq!(store.reader().replacement_count(), 1);
    let after_one = std::fs::metadata(dir.path().join("entries.log"))
        .unwrap()
        .len();
    // A marker and one replacement record, and nothing for the refusals.
    assert_eq!(after_one - before, 16 + 8 + feed[1].0.encode().len() as u64);

    // A forked author's copies are not kept.
    let forked_id: Identity = identity(23);
    let forked_feed = crate::common::first_entry(&forked_id, 1);
    store
        .append_entries(vec![forked_feed.clone()])
        .wait()
        .unwrap();
    assert!(store.record_fork_proof(fork_proof(23)).wait().unwrap());
    let outcomes = store
        .replace_copies(vec![resign(&forked_id, &forked_feed, 1)])
        .wait()
        .unwrap();
    assert_eq!(
        outcomes,
        vec![ReplaceOutcome::Refused(ReplaceRefusal::Forked)]
    );
    assert_eq!(store.reader().replacement_count(), 1);
    owner.shutdown_blocking().unwrap();
}

/// Builds a log of one feed, then appends `forged` (replacement records encoded by the
/// format's own encoder, checksums right) after its last byte.
fn forge(dir: &Path, forged: impl FnOnce(&[(Entry, Hash)], &Identity) -> Vec<u8>) -> u64 {
    let (_store, owner, feed) = with_feed(dir, 24);
    owner.shutdown_blocking().unwrap();
    let path = dir.join("entries.log");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() as u64;
    bytes.extend(forged(&feed, &identity(24)));
    std::fs::write(&path, bytes).unwrap();
    at
}

/// Forges the records appended to a log of `feed`, signed by the feed's key.
type Forger = fn(&[(Entry, Hash)], &Identity) -> Vec<u8>;

fn replacement(entry: &Entry) -> Vec<u8> {
    let mut out = Vec::new();
    format::encode_replacement(entry, &mut out);
    out
}

#[test]
fn recovery_refuses_a_replacement_that_is_no_copy_of_a_held_entry() {
    let cases: Vec<(&str, Forger)> = vec![
        ("a seq the log does not hold", |feed, id| {
            let mut e = feed[1].0.clone();
            e.seq = N + 1;
            e.signature = id.sign_hash(&e.hash());
            replacement(&e)
        }),
        ("another entry hash", |feed, id| {
            let mut e = feed[1].0.clone();
            e.value += 1;
            e.signature = id.sign_hash(&e.hash());
            replacement(&e)
        }),
        ("the current copy's signature", |feed, _| {
            replacement(&feed[1].0)
        }),
        (
            "the current copy's signature, after a replacement",
            |feed, id| {
                let copy = resign(id, &feed[1].0, 1);
                let mut out = replacement(&copy);
                out.extend(replacement(&copy));
                out
            },
        ),
    ];
    for (what, forged) in cases {
        let dir = tempfile::tempdir().unwrap();
        let at = forge(dir.path(), forged);
        let before = std::fs::read(dir.path().join("entries.log")).unwrap();
        match Store::open(dir.path(), None, None) {
            Err(StoreError::Corrupt { offset, reason, .. }) => {
                let expected = match what.ends_with("after a replacement") {
                    // The first replacement is sound; the second repeats its signature.
                    true => at + (before.len() as u64 - at) / 2,
                    false => at,
                };
                assert_eq!(offset, expected, "{what}: {reason}");
                assert!(reason.contains("replacement record"), "{what}: {reason}");
            }
            other => panic!("{what}: the open gave {:?}", other.map(|_| ())),
        }
        assert!(StoreReader::open_read_only(dir.path()).is_err(), "{what}");
        let after = std::fs::read(dir.path().join("entries.log")).unwrap();
        assert_eq!(after, before, "{what}: a damaged file is left alone");
    }
}

#[test]
fn verify_all_fails_on_a_replacement_whose_signature_does_not_verify() {
    let dir = tempfile::tempdir().unwrap();
    let at = forge(dir.path(), |feed, id| {
        let mut copy = resign(id, &feed[2].0, 1);
        copy.signature.0[10] ^= 1;
        replacement(&copy)
    });
    // Signatures are not verified on open: it opens, and serves the copy.
    let (reader, report) = StoreReader::open_read_only(dir.path()).unwrap();
    assert_eq!(report.entries, N);
    assert_eq!(reader.replacement_count(), 1);
    let verified = reader.verify_all().unwrap();
    let offsets: Vec<u64> = verified.problems.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, vec![at], "{verified}");
    assert!(verified.to_string().contains("bad signature"), "{verified}");
}
