//! Unit tests of `bundle.rs`: the golden feed of three entries (as tests/it/tlog_golden.rs
//! pins it) proves its second entry; then each rule fails on its own, every bundle built
//! from the one valid base with one thing changed, asserting the exact variant.

use ed25519_dalek::SigningKey;

use super::*;
use crate::entry::UnsignedEntry;
use crate::identity::Identity;
use crate::tlog::checkpoint::Checkpoint;
use crate::tlog::cosignature::{cosign, cosigner_name};
use crate::tlog::merkle::{prove_inclusion, MemoryTree};
use crate::tlog::note::NoteSignature;
use crate::tlog::vkey::KeyType;

/// The witness's cosignature time, as in the golden vectors.
const COSIGNED_AT: u64 = 1_700_000_000;

fn author() -> Identity {
    Identity::from_seed([1; 32])
}
fn witness() -> SigningKey {
    SigningKey::from_bytes(&[5; 32])
}
fn witness_vkey(key: &SigningKey) -> VerifierKey {
    let name = cosigner_name(key.verifying_key().as_bytes());
    VerifierKey::new(&name, KeyType::CosignatureV1, key.verifying_key()).unwrap()
}

/// The golden feed: seq 1, 2, 3 with data "one", "two", "three".
fn feed() -> Vec<Entry> {
    let identity = author();
    let mut prev = None;
    let mut entries = Vec::new();
    for (seq, data) in [(1u64, "one"), (2, "two"), (3, "three")] {
        let (entry, hash) = UnsignedEntry {
            author: identity.author(),
            seq,
            timestamp: 1_700_000_000_000 + seq,
            prev,
            value: i64::try_from(seq).unwrap() * 10,
            data: data.to_string(),
        }
        .sign(&identity);
        prev = Some(hash);
        entries.push(entry);
    }
    entries
}

fn tree(entries: &[Entry]) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for entry in entries {
        tree.append(merkle::leaf_hash(&entry.encode())).unwrap();
    }
    tree
}

/// The feed's checkpoint under `origin`, signed by `key`, cosigned by the witness.
fn checkpoint(origin: &str, key: &SigningKey) -> SignedCheckpoint {
    let tree = tree(&feed());
    let body = Checkpoint::new(origin, tree.size(), tree.root().unwrap()).unwrap();
    let mut signed = SignedCheckpoint::sign(body, key).unwrap();
    let name = cosigner_name(witness().verifying_key().as_bytes());
    let body = signed.checkpoint().body().to_owned();
    let line = cosign(&name, &witness(), &body, COSIGNED_AT).unwrap();
    signed.add_signature(line).unwrap();
    signed
}

fn good_checkpoint() -> SignedCheckpoint {
    let identity = author();
    checkpoint(
        &origin_for(identity.author().as_bytes()),
        identity.signing_key(),
    )
}

/// The valid base: the bundle of the second entry.
fn good() -> TlogProof {
    let entries = feed();
    let hashes = prove_inclusion(3, 1, &tree(&entries)).unwrap();
    make_entry_proof(entries[1].encode(), 1, hashes, good_checkpoint()).unwrap()
}

fn verify(proof: &TlogProof, policy: Option<&Policy>) -> Result<VerifiedEntry, EntryProofError> {
    verify_entry_proof(&proof.to_bytes(), policy)
}

/// A policy trusting the golden feed, knowing the witness and `extra` witnesses, with
/// `quorum` as its quorum line's name.
fn policy(extra: &[(&str, SigningKey)], quorum: &str) -> Policy {
    let feed = author_vkey(&author().signing_key().verifying_key());
    let mut text = format!("log {feed}\nwitness node5 {}\n", witness_vkey(&witness()));
    for (name, key) in extra {
        text.push_str(&format!("witness {name} {}\n", witness_vkey(key)));
    }
    text.push_str(&format!("quorum {quorum}\n"));
    Policy::parse(text.as_bytes()).unwrap()
}

#[test]
fn the_golden_bundle_proves_the_second_entry_and_lists_unchecked_cosigners() {
    let verified = verify(&good(), None).unwrap();
    assert_eq!(verified.entry, feed()[1]);
    assert_eq!(verified.hash, feed()[1].hash());
    assert_eq!(verified.tree_size(), 3);
    assert_eq!(*verified.root(), tree(&feed()).root().unwrap());
    let witness_name = cosigner_name(witness().verifying_key().as_bytes());
    assert_eq!(verified.cosigners, Cosigners::Unchecked(vec![witness_name]));
}

#[test]
fn every_entry_of_the_feed_proves_at_its_own_index() {
    let entries = feed();
    for (index, entry) in (0u64..).zip(&entries) {
        let hashes = prove_inclusion(3, index, &tree(&entries)).unwrap();
        let proof = make_entry_proof(entry.encode(), index, hashes, good_checkpoint()).unwrap();
        assert_eq!(verify(&proof, None).unwrap().entry, *entry);
    }
}

#[test]
fn a_policy_met_names_the_witnesses_that_cosigned() {
    let verified = verify(&good(), Some(&policy(&[], "node5"))).unwrap();
    assert_eq!(
        verified.cosigners,
        Cosigners::Verified(vec!["node5".into()])
    );
    // A policy of witnesses only (no log lines) trusts any self-certified feed.
    let text = format!("witness node5 {}\nquorum node5\n", witness_vkey(&witness()));
    let witnesses_only = Policy::parse(text.as_bytes()).unwrap();
    assert!(verify(&good(), Some(&witnesses_only)).is_ok());
}

#[test]
fn a_quorum_the_cosigners_do_not_meet_is_refused() {
    let other = SigningKey::from_bytes(&[6; 32]);
    let policy = policy(&[("node6", other)], "node6");
    assert_eq!(
        verify(&good(), Some(&policy)),
        Err(EntryProofError::QuorumNotMet { cosigned: 1 })
    );
}

#[test]
fn a_known_witness_line_that_does_not_verify_is_refused() {
    // The witness's line now claims another time than the one it signed.
    let signed = good_checkpoint();
    let line = signed.note().signatures()[1].clone();
    let mut raw = line.signature().to_vec();
    raw[7] ^= 1;
    let forged = NoteSignature::new(line.name(), line.key_id(), raw).unwrap();
    let mut signed =
        SignedCheckpoint::sign(signed.checkpoint().clone(), author().signing_key()).unwrap();
    signed.add_signature(forged).unwrap();
    let hashes = prove_inclusion(3, 1, &tree(&feed())).unwrap();
    let proof = make_entry_proof(feed()[1].encode(), 1, hashes, signed).unwrap();
    assert_eq!(
        verify(&proof, Some(&policy(&[], "node5"))),
        Err(EntryProofError::BadCosignature(line.name().to_owned()))
    );
}

#[test]
fn a_policy_whose_logs_do_not_name_the_feed_is_refused() {
    let stranger = SigningKey::from_bytes(&[7; 32]);
    let text = format!(
        "log {}\nwitness node5 {}\nquorum node5\n",
        author_vkey(&stranger.verifying_key()),
        witness_vkey(&witness())
    );
    let policy = Policy::parse(text.as_bytes()).unwrap();
    assert!(matches!(
        verify(&good(), Some(&policy)),
        Err(EntryProofError::UntrustedFeed(name)) if name == origin_for(author().author().as_bytes())
    ));
}

#[test]
fn a_tampered_entry_byte_breaks_the_entrys_signature() {
    let good = good();
    let mut encoded = good.extra().unwrap().to_vec();
    // The last byte of the data "two".
    let at = encoded.len() - 64 - 1;
    encoded[at] ^= 1;
    let proof = make_entry_proof(
        encoded,
        1,
        good.hashes().to_vec(),
        good.checkpoint().clone(),
    )
    .unwrap();
    assert!(matches!(
        verify(&proof, None),
        Err(EntryProofError::EntrySignature(_))
    ));
}

#[test]
fn an_extra_that_is_not_an_entry_is_refused() {
    let good = good();
    let proof = |extra: Vec<u8>| {
        make_entry_proof(extra, 1, good.hashes().to_vec(), good.checkpoint().clone()).unwrap()
    };
    assert!(matches!(
        verify(&proof(b"not an entry".to_vec()), None),
        Err(EntryProofError::EntryDecode(_))
    ));
    let mut trailing = good.extra().unwrap().to_vec();
    trailing.push(0);
    assert!(matches!(
        verify(&proof(trailing), None),
        Err(EntryProofError::EntryDecode(
            crate::entry::DecodeError::TrailingBytes(1)
        ))
    ));
}

#[test]
fn an_entry_at_seq_zero_is_refused_by_its_shape() {
    let identity = author();
    let (entry, _) = UnsignedEntry {
        author: identity.author(),
        seq: 0,
        timestamp: 1,
        prev: None,
        value: 0,
        data: String::new(),
    }
    .sign(&identity);
    let good = good();
    let proof =
        make_entry_proof(entry.encode(), 1, good.hashes().to_vec(), good_checkpoint()).unwrap();
    assert_eq!(
        verify(&proof, None),
        Err(EntryProofError::EntryShape(ValidationError::SeqZero))
    );
}

#[test]
fn a_bundle_without_an_entry_is_refused() {
    let good = good();
    let proof = TlogProof::new(None, 1, good.hashes().to_vec(), good.checkpoint().clone()).unwrap();
    assert_eq!(verify(&proof, None), Err(EntryProofError::NoEntry));
}

#[test]
fn an_index_other_than_seq_minus_one_is_refused() {
    let good = good();
    let proof = make_entry_proof(
        good.extra().unwrap().to_vec(),
        2,
        good.hashes().to_vec(),
        good.checkpoint().clone(),
    )
    .unwrap();
    assert_eq!(
        verify(&proof, None),
        Err(EntryProofError::WrongIndex { index: 2, seq: 2 })
    );
}

#[test]
fn a_checkpoint_of_another_origin_is_refused() {
    let identity = author();
    let stranger = SigningKey::from_bytes(&[7; 32]);
    let origin = origin_for(stranger.verifying_key().as_bytes());
    let good = good();
    let proof = make_entry_proof(
        good.extra().unwrap().to_vec(),
        1,
        good.hashes().to_vec(),
        checkpoint(&origin, &stranger),
    )
    .unwrap();
    assert_eq!(
        verify(&proof, None),
        Err(EntryProofError::WrongOrigin {
            found: origin,
            expected: origin_for(identity.author().as_bytes()),
        })
    );
}

#[test]
fn a_checkpoint_signed_by_another_key_is_refused() {
    let identity = author();
    let stranger = SigningKey::from_bytes(&[7; 32]);
    let good = good();
    let forged = checkpoint(&origin_for(identity.author().as_bytes()), &stranger);
    let proof = make_entry_proof(
        good.extra().unwrap().to_vec(),
        1,
        good.hashes().to_vec(),
        forged,
    )
    .unwrap();
    assert!(matches!(
        verify(&proof, None),
        Err(EntryProofError::CheckpointSignature(_))
    ));
}

#[test]
fn a_flipped_proof_hash_or_a_short_proof_is_not_included() {
    let good = good();
    let rebuild = |hashes: Vec<[u8; 32]>| {
        make_entry_proof(
            good.extra().unwrap().to_vec(),
            1,
            hashes,
            good.checkpoint().clone(),
        )
        .unwrap()
    };
    let mut flipped = good.hashes().to_vec();
    flipped[1][31] ^= 1;
    assert_eq!(
        verify(&rebuild(flipped), None),
        Err(EntryProofError::NotIncluded(
            merkle::VerifyError::RootMismatch
        ))
    );
    assert!(matches!(
        verify(&rebuild(good.hashes()[..1].to_vec()), None),
        Err(EntryProofError::NotIncluded(
            merkle::VerifyError::ProofLength { .. }
        ))
    ));
}

#[test]
fn garbage_and_over_long_input_are_refused_before_anything_else() {
    assert!(matches!(
        verify_entry_proof(b"hello\n", None),
        Err(EntryProofError::Malformed(ProofError::Header))
    ));
    assert!(matches!(
        verify_entry_proof(&[0xff; 100], None),
        Err(EntryProofError::Malformed(_))
    ));
    assert_eq!(
        verify_entry_proof(&vec![b'a'; MAX_BUNDLE_BYTES + 1], None),
        Err(EntryProofError::TooLarge)
    );
    // The valid bundle with one byte cut off the end no longer parses.
    let bytes = good().to_bytes();
    assert!(matches!(
        verify_entry_proof(&bytes[..bytes.len() - 1], None),
        Err(EntryProofError::Malformed(_))
    ));
}
