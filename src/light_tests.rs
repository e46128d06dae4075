//! Unit tests of `light.rs`: a feed of three entries proves each of them; then each rule the
//! light client adds to the bundle's own fails on its own, with its exact variant.

use super::*;
use crate::entry::{Entry, UnsignedEntry};
use crate::identity::Identity;
use crate::tlog::bundle::make_entry_proof;
use crate::tlog::checkpoint::{origin_for, Checkpoint, SignedCheckpoint};
use crate::tlog::merkle::{self, prove_inclusion, MemoryTree};

fn feed(identity: &Identity) -> Vec<Entry> {
    let mut prev = None;
    let mut entries = Vec::new();
    for seq in 1..=3u64 {
        let (entry, hash) = UnsignedEntry {
            author: identity.author(),
            seq,
            timestamp: 1_700_000_000_000 + seq,
            prev,
            value: 7,
            data: format!("entry {seq}"),
        }
        .sign(identity);
        prev = Some(hash);
        entries.push(entry);
    }
    entries
}

/// The bundle of `identity`'s entry at `seq` in the tree of its first `size` entries.
fn bundle(identity: &Identity, seq: u64, size: u64) -> Vec<u8> {
    let entries = feed(identity);
    let mut tree = MemoryTree::new();
    for entry in entries.iter().take(usize::try_from(size).unwrap()) {
        tree.append(merkle::leaf_hash(&entry.encode())).unwrap();
    }
    let origin = origin_for(identity.author().as_bytes());
    let body = Checkpoint::new(&origin, size, tree.root().unwrap()).unwrap();
    let checkpoint = SignedCheckpoint::sign(body, identity.signing_key()).unwrap();
    let hashes = prove_inclusion(size, seq - 1, &tree).unwrap();
    let encoded = entries[usize::try_from(seq - 1).unwrap()].encode();
    make_entry_proof(encoded, seq - 1, hashes, checkpoint)
        .unwrap()
        .to_bytes()
}

fn alice() -> Identity {
    Identity::from_seed([1; 32])
}

#[test]
fn a_bundle_of_the_entry_asked_for_verifies() {
    for (seq, size) in [(1, 1), (1, 3), (2, 3), (3, 3), (2, 2)] {
        let request = EntryRequest::new(alice().author(), seq, Some(size)).unwrap();
        let verified = check_answer(&bundle(&alice(), seq, size), &request, None).unwrap();
        assert_eq!(
            verified.entry,
            feed(&alice())[usize::try_from(seq - 1).unwrap()]
        );
        assert_eq!(verified.tree_size(), size);
        let request = EntryRequest::new(alice().author(), seq, None).unwrap();
        assert!(check_answer(&bundle(&alice(), seq, size), &request, None).is_ok());
    }
}

#[test]
fn an_entry_of_another_feed_is_refused_though_its_bundle_verifies() {
    let bob = Identity::from_seed([2; 32]);
    let request = EntryRequest::new(alice().author(), 2, None).unwrap();
    assert_eq!(
        check_answer(&bundle(&bob, 2, 3), &request, None),
        Err(AnswerError::WrongAuthor {
            asked: alice().author(),
            found: bob.author()
        })
    );
}

#[test]
fn another_entry_of_the_feed_is_refused() {
    let request = EntryRequest::new(alice().author(), 2, None).unwrap();
    assert_eq!(
        check_answer(&bundle(&alice(), 3, 3), &request, None),
        Err(AnswerError::WrongSeq { asked: 2, found: 3 })
    );
}

#[test]
fn a_proof_in_another_tree_than_asked_is_refused() {
    let request = EntryRequest::new(alice().author(), 2, Some(2)).unwrap();
    assert_eq!(
        check_answer(&bundle(&alice(), 2, 3), &request, None),
        Err(AnswerError::WrongSize { asked: 2, found: 3 })
    );
}

#[test]
fn a_bundle_that_does_not_prove_its_entry_is_refused_first() {
    let bob = Identity::from_seed([2; 32]);
    let mut bytes = bundle(&bob, 3, 3);
    // Garbage in place of the header: refused as no bundle, before the author is compared.
    bytes[0] = b'x';
    let request = EntryRequest::new(alice().author(), 2, None).unwrap();
    assert!(matches!(
        check_answer(&bytes, &request, None),
        Err(AnswerError::Proof(EntryProofError::Malformed(_)))
    ));
}

#[test]
fn a_request_names_its_route_and_refuses_what_cannot_be() {
    let author = alice().author();
    let hex = author.to_hex();
    assert_eq!(
        EntryRequest::new(author, 5, None).unwrap().path(),
        format!("/feeds/{hex}/proof?seq=5")
    );
    assert_eq!(
        EntryRequest::new(author, 5, Some(9)).unwrap().path(),
        format!("/feeds/{hex}/proof?seq=5&size=9")
    );
    assert_eq!(
        EntryRequest::new(author, 0, None),
        Err(RequestError::SeqZero)
    );
    assert_eq!(
        EntryRequest::new(author, 5, Some(4)),
        Err(RequestError::SizeBelowSeq { seq: 5, size: 4 })
    );
}
