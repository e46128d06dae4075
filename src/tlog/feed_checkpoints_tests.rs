//! Unit tests of `feed_checkpoints.rs`: one test per rule of the module docs, the bounds
//! (pending slot, cosigner cap), and the served bytes' independence from arrival order.

use std::convert::Infallible;

use proptest::prelude::*;

use super::*;
use crate::identity::Identity;
use crate::tlog::author_checkpoint::tests::signed;
use crate::tlog::cosignature::{cosign, cosigner_name};
use crate::tlog::merkle::{leaf_hash, prove_consistency, tree_hash, MemoryTree};
use crate::tlog::note::Note;
use crate::tlog::vkey::KeyType;

/// A feed of 40 entries; with `fork_at`, entries from there on differ.
fn tree(fork_at: u64) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for i in 0..40u64 {
        let input = match i < fork_at {
            true => format!("entry {i}"),
            false => format!("other {i}"),
        };
        tree.append(leaf_hash(input.as_bytes())).unwrap();
    }
    tree
}

fn roots(tree: &MemoryTree) -> impl FnMut(u64) -> Result<Hash, Infallible> + '_ {
    |size| Ok(tree_hash(size, tree).unwrap())
}

fn author() -> Identity {
    Identity::from_seed([1; 32])
}

fn checkpoint_of(tree: &MemoryTree, size: u64) -> SignedCheckpoint {
    signed(&author(), size, tree_hash(size, tree).unwrap())
}

fn state() -> FeedCheckpoints {
    FeedCheckpoints::new(author().author())
}

/// A cosigner with a kappalog node name.
fn witness(seed: u8) -> (Identity, VerifierKey) {
    let id = Identity::from_seed([seed; 32]);
    let name = cosigner_name(id.author().as_bytes());
    let vkey = VerifierKey::new(
        &name,
        KeyType::CosignatureV1,
        id.signing_key().verifying_key(),
    )
    .unwrap();
    (id, vkey)
}

fn cosignature(seed: u8, checkpoint: &Checkpoint, time: u64) -> (VerifierKey, NoteSignature) {
    let (id, vkey) = witness(seed);
    let line = cosign(vkey.name(), id.signing_key(), checkpoint.body(), time).unwrap();
    (vkey, line)
}

fn nobody_trusted(_: &VerifierKey) -> bool {
    false
}

#[test]
fn a_consistent_larger_checkpoint_is_kept_and_served_with_the_authors_line_only() {
    let x = tree(40);
    let mut s = state();
    assert_eq!(s.served(), None);
    let mut ten = checkpoint_of(&x, 10);
    let (vkey, line) = cosignature(9, ten.checkpoint(), 5);
    ten.add_signature(line).unwrap();
    assert_eq!(s.offer_author(&ten, 20, roots(&x)), Ok(Offer::Kept));
    assert_eq!(s.served(), Some(checkpoint_of(&x, 10)));
    assert_eq!(
        s.k(),
        0,
        "a line on the note is not a kept cosignature: {vkey:?}"
    );
    assert_eq!(s.offer_author(&ten, 20, roots(&x)), Ok(Offer::NotNewer));
    let five = checkpoint_of(&x, 5);
    assert_eq!(s.offer_author(&five, 20, roots(&x)), Ok(Offer::NotNewer));
    let twenty = checkpoint_of(&x, 20);
    assert_eq!(s.offer_author(&twenty, 20, roots(&x)), Ok(Offer::Kept));
    assert_eq!(s.current().map(|c| c.size()), Some(20));
}

#[test]
fn other_feeds_and_bad_signatures_are_refused() {
    let x = tree(40);
    let mut s = state();
    let other = Identity::from_seed([2; 32]);
    let theirs = signed(&other, 3, tree_hash(3, &x).unwrap());
    assert_eq!(
        s.offer_author(&theirs, 20, roots(&x)),
        Ok(Offer::WrongFeed(other.author()))
    );
    let body = checkpoint_of(&x, 3).checkpoint().clone();
    let forged = SignedCheckpoint::sign(body, other.signing_key()).unwrap();
    assert!(matches!(
        s.offer_author(&forged, 20, roots(&x)),
        Ok(Offer::Invalid(_))
    ));
    assert_eq!(s.current(), None);
}

#[test]
fn one_beyond_the_entries_waits_and_the_slot_keeps_the_largest() {
    let x = tree(40);
    let mut s = state();
    assert_eq!(
        s.offer_author(&checkpoint_of(&x, 30), 10, roots(&x)),
        Ok(Offer::Pending)
    );
    assert_eq!(
        s.offer_author(&checkpoint_of(&x, 25), 10, roots(&x)),
        Ok(Offer::Superseded)
    );
    assert_eq!(
        s.offer_author(&checkpoint_of(&x, 30), 10, roots(&x)),
        Ok(Offer::NotNewer)
    );
    assert_eq!(
        s.offer_author(&checkpoint_of(&x, 35), 10, roots(&x)),
        Ok(Offer::Pending)
    );
    assert_eq!(s.pending().map(|p| p.size()), Some(35));
    assert_eq!(s.entries_arrived(34, roots(&x)), Ok(None));
    assert_eq!(s.pending().map(|p| p.size()), Some(35));
    assert_eq!(s.entries_arrived(35, roots(&x)), Ok(Some(Offer::Kept)));
    assert_eq!(
        (s.pending(), s.current().map(|c| c.size())),
        (None, Some(35))
    );
    assert_eq!(s.entries_arrived(40, roots(&x)), Ok(None));
}

#[test]
fn two_pending_checkpoints_of_one_size_and_two_roots_are_a_fork() {
    let (x, y) = (tree(40), tree(3));
    let mut s = state();
    assert_eq!(
        s.offer_author(&checkpoint_of(&x, 30), 10, roots(&x)),
        Ok(Offer::Pending)
    );
    let Ok(Offer::Fork(evidence)) = s.offer_author(&checkpoint_of(&y, 30), 10, roots(&x)) else {
        panic!("expected a fork");
    };
    assert_eq!(evidence.consistency_sizes(), None);
    let proof = evidence.into_proof(&[]).expect("a proof");
    assert_eq!(proof.check(), Ok(author().author()));
}

#[test]
fn a_checkpoint_disagreeing_with_the_entries_under_a_kept_one_is_a_fork() {
    let (x, y) = (tree(40), tree(3));
    let mut s = state();
    assert_eq!(
        s.offer_author(&checkpoint_of(&x, 20), 40, roots(&x)),
        Ok(Offer::Kept)
    );
    for size in [8, 16, 20] {
        let Ok(Offer::Fork(evidence)) = s.offer_author(&checkpoint_of(&y, size), 40, roots(&x))
        else {
            panic!("expected a fork at {size}");
        };
        let proof = match evidence.consistency_sizes() {
            Some((old, new)) => {
                assert_eq!((old, new), (size, 20));
                prove_consistency(old, new, &x).unwrap()
            }
            None => vec![],
        };
        let proof = evidence.into_proof(&proof).expect("a proof");
        assert_eq!(proof.check(), Ok(author().author()));
    }
    assert_eq!(s.current().map(|c| c.size()), Some(20));
    assert_eq!(s.inconsistent_count(), 0);
}

#[test]
fn a_disagreeing_checkpoint_with_nothing_to_pair_is_dropped_and_counted() {
    let (x, y) = (tree(40), tree(3));
    let mut s = state();
    assert_eq!(
        s.offer_author(&checkpoint_of(&y, 8), 40, roots(&x)),
        Ok(Offer::Inconsistent)
    );
    assert_eq!(
        s.offer_author(&checkpoint_of(&x, 5), 40, roots(&x)),
        Ok(Offer::Kept)
    );
    assert_eq!(
        s.offer_author(&checkpoint_of(&y, 8), 40, roots(&x)),
        Ok(Offer::Inconsistent)
    );
    // Pending, then checkable on arrival: the same rule.
    assert_eq!(
        s.offer_author(&checkpoint_of(&y, 30), 10, roots(&x)),
        Ok(Offer::Pending)
    );
    assert_eq!(
        s.entries_arrived(30, roots(&x)),
        Ok(Some(Offer::Inconsistent))
    );
    assert_eq!(s.inconsistent_count(), 3);
    assert_eq!(s.current().map(|c| c.size()), Some(5));
}

#[test]
fn a_failing_root_lookup_is_returned_and_changes_nothing() {
    let x = tree(40);
    let mut s = state();
    let failing = |_: u64| Err::<Hash, &str>("disk");
    assert_eq!(
        s.offer_author(&checkpoint_of(&x, 5), 40, failing),
        Err("disk")
    );
    assert_eq!(s.current(), None);
}

#[test]
fn cosignatures_of_consistent_checkpoints_are_kept_and_served() {
    let x = tree(40);
    let mut s = state();
    s.offer_author(&checkpoint_of(&x, 20), 40, roots(&x))
        .unwrap();
    let twenty = checkpoint_of(&x, 20).checkpoint().clone();
    let ten = checkpoint_of(&x, 10).checkpoint().clone();
    let (w1, l1) = cosignature(11, &twenty, 100);
    let (w2, l2) = cosignature(12, &ten, 100);
    let offer = |s: &mut FeedCheckpoints, w: &VerifierKey, c: &Checkpoint, l: &NoteSignature| {
        s.offer_cosignature(w, c, l, 40, roots(&x), nobody_trusted)
    };
    assert_eq!(offer(&mut s, &w1, &twenty, &l1), Ok(CosignatureOffer::Kept));
    assert_eq!(offer(&mut s, &w2, &ten, &l2), Ok(CosignatureOffer::Kept));
    assert_eq!(
        offer(&mut s, &w1, &twenty, &l1),
        Ok(CosignatureOffer::NotNewer)
    );
    assert_eq!(s.k(), 2);
    // Only the cosignature over the served checkpoint has a line on it, and it verifies.
    let served = s.served().unwrap();
    assert_eq!(served.note().signatures().len(), 2);
    let verifier = CosignatureVerifier::new(w1.clone()).unwrap();
    assert_eq!(
        verifier.verify_line(served.checkpoint().body(), &served.note().signatures()[1]),
        Some(100)
    );
    let reparsed = SignedCheckpoint::parse(&served.to_bytes()).unwrap();
    assert_eq!(reparsed, served);
    // A larger checkpoint from w2 replaces its older one and joins the served lines.
    let (_, l2_new) = cosignature(12, &twenty, 50);
    assert_eq!(
        offer(&mut s, &w2, &twenty, &l2_new),
        Ok(CosignatureOffer::Kept)
    );
    assert_eq!(s.served().unwrap().note().signatures().len(), 3);
    assert_eq!(
        offer(&mut s, &w2, &ten, &l2),
        Ok(CosignatureOffer::NotNewer)
    );
}

#[test]
fn cosignatures_are_refused_by_rule() {
    let (x, y) = (tree(40), tree(3));
    let mut s = state();
    let thirty = checkpoint_of(&x, 30).checkpoint().clone();
    let (w, line) = cosignature(11, &thirty, 100);
    let mut offer = |c: &Checkpoint, l: &NoteSignature, held: u64| {
        s.offer_cosignature(&w, c, l, held, roots(&x), nobody_trusted)
    };
    assert_eq!(offer(&thirty, &line, 20), Ok(CosignatureOffer::Ahead));
    let theirs = y_checkpoint(&y, 30);
    let (_, their_line) = cosignature(11, &theirs, 100);
    assert_eq!(
        offer(&theirs, &their_line, 40),
        Ok(CosignatureOffer::Inconsistent)
    );
    // The line of one checkpoint does not verify over another.
    assert_eq!(offer(&theirs, &line, 40), Ok(CosignatureOffer::Invalid));
    let other_feed = signed(&Identity::from_seed([2; 32]), 30, *thirty.root());
    let other_body = other_feed.checkpoint().clone();
    let (_, other_line) = cosignature(11, &other_body, 100);
    assert_eq!(
        offer(&other_body, &other_line, 40),
        Ok(CosignatureOffer::Invalid)
    );
    assert_eq!(s.inconsistent_count(), 1);
    // An Ed25519 note key is not a cosignature key.
    let (id, _) = witness(11);
    let note_key = VerifierKey::new("w", KeyType::Ed25519, id.signing_key().verifying_key());
    assert_eq!(
        s.offer_cosignature(
            &note_key.unwrap(),
            &thirty,
            &line,
            40,
            roots(&x),
            nobody_trusted
        ),
        Ok(CosignatureOffer::Invalid)
    );
    assert_eq!(s.cosignatures().count(), 0);
}

fn y_checkpoint(y: &MemoryTree, size: u64) -> Checkpoint {
    checkpoint_of(y, size).checkpoint().clone()
}

#[test]
fn the_cosigner_cap_holds_and_strangers_never_evict_trusted_cosigners() {
    let x = tree(40);
    let mut s = state();
    s.offer_author(&checkpoint_of(&x, 20), 40, roots(&x))
        .unwrap();
    let twenty = checkpoint_of(&x, 20).checkpoint().clone();
    let trusted_key = witness(200).1;
    let is_trusted = |k: &VerifierKey| k == &trusted_key;
    let cap = u8::try_from(MAX_COSIGNERS_PER_FEED).unwrap();
    // The cap filled with strangers.
    for seed in 10..10 + cap {
        let (w, l) = cosignature(seed, &twenty, 1);
        assert_eq!(
            s.offer_cosignature(&w, &twenty, &l, 40, roots(&x), is_trusted),
            Ok(CosignatureOffer::Kept)
        );
    }
    assert_eq!(s.k(), MAX_COSIGNERS_PER_FEED);
    let lowest = s
        .cosignatures()
        .map(|c| c.cosigner.name().to_owned())
        .max()
        .unwrap();
    // A trusted cosigner evicts the stranger ranked last (the greatest name).
    let (w, l) = cosignature(200, &twenty, 1);
    assert_eq!(
        s.offer_cosignature(&w, &twenty, &l, 40, roots(&x), is_trusted),
        Ok(CosignatureOffer::Kept)
    );
    assert_eq!(s.k(), MAX_COSIGNERS_PER_FEED);
    assert!(s.cosignatures().all(|c| c.cosigner.name() != lowest));
    let served = s.served().unwrap();
    assert_eq!(served.note().signatures().len(), MAX_COSIGNERS_PER_FEED + 1);
    assert_eq!(
        served.note().signatures()[1].name(),
        w.name(),
        "trusted first"
    );
    // The evicted stranger stays out; strangers cannot evict the trusted one.
    let evicted = (10..10 + cap)
        .chain(200..=200)
        .map(|seed| cosignature(seed, &twenty, 2))
        .find(|(w, _)| w.name() == lowest)
        .unwrap();
    assert_eq!(
        s.offer_cosignature(&evicted.0, &twenty, &evicted.1, 40, roots(&x), is_trusted),
        Ok(CosignatureOffer::OverCap)
    );
    for seed in 100..140u8 {
        let (w, l) = cosignature(seed, &twenty, 1);
        s.offer_cosignature(&w, &twenty, &l, 40, roots(&x), is_trusted)
            .unwrap();
    }
    assert_eq!(s.k(), MAX_COSIGNERS_PER_FEED);
    assert!(s
        .cosignatures()
        .any(|c| c.cosigner == trusted_key && c.trusted));
}

/// An offer in the determinism test: an author checkpoint or a cosignature.
// A few hundred values of test data: their size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
enum Input {
    Author(SignedCheckpoint),
    Cosignature(VerifierKey, Checkpoint, NoteSignature),
}

fn inputs() -> Vec<Input> {
    let x = tree(40);
    let mut inputs: Vec<Input> = [5, 12, 20, 33, 38]
        .iter()
        .map(|&size| Input::Author(checkpoint_of(&x, size)))
        .collect();
    // More cosigners than the cap, at several sizes and times each.
    for seed in 10..50u8 {
        for (size, time) in [(20, 1), (33, 2), (33, 3), (12, 9)] {
            if (u64::from(seed) + size).is_multiple_of(3) {
                continue;
            }
            let checkpoint = checkpoint_of(&x, size).checkpoint().clone();
            let (w, l) = cosignature(seed, &checkpoint, time);
            inputs.push(Input::Cosignature(w, checkpoint, l));
        }
    }
    inputs
}

fn apply(inputs: &[Input]) -> (Option<Vec<u8>>, usize) {
    let x = tree(40);
    let trusted = |k: &VerifierKey| k.key().as_bytes()[0].is_multiple_of(4);
    let mut s = state();
    for input in inputs {
        match input {
            Input::Author(c) => {
                let _ = s.offer_author(c, 35, roots(&x));
            }
            Input::Cosignature(w, c, l) => {
                let _ = s.offer_cosignature(w, c, l, 35, roots(&x), trusted);
            }
        }
    }
    (s.served().map(|c| c.to_bytes()), s.k())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// The same offers in any order serve the same bytes and the same k.
    #[test]
    fn served_bytes_do_not_depend_on_arrival_order(
        order in Just((0..inputs().len()).collect::<Vec<_>>()).prop_shuffle()
    ) {
        let all = inputs();
        let shuffled: Vec<Input> = order.iter().map(|&i| all[i].clone()).collect();
        let (bytes, k) = apply(&shuffled);
        let (expected_bytes, expected_k) = apply(&all);
        prop_assert_eq!(k, expected_k);
        prop_assert_eq!(k, MAX_COSIGNERS_PER_FEED);
        let bytes = bytes.unwrap();
        prop_assert_eq!(&bytes, &expected_bytes.unwrap());
        // The served note is a valid note with the author's line and cosignatures.
        let note = Note::parse(&bytes).unwrap();
        prop_assert!(note.signatures().len() > 1);
    }
}
