//! Unit tests of `proof.rs`: a bundle over a two-leaf tree (a stand-in for the Merkle check), every verification step failing
//! on its own, and one hostile bundle per parsing rule.

use super::*;
use crate::tlog::checkpoint::{author_vkey, origin_for, Checkpoint};
use crate::tlog::cosignature::cosign;
use crate::tlog::vkey::KeyType;
use ed25519_dalek::SigningKey;

/// The tree's values: the bundle must hand exactly these to the inclusion check. (The tree
/// code itself lives elsewhere; here only the composition is under test.)
const LEAF_A: [u8; 32] = [0xa; 32];
const LEAF_B: [u8; 32] = [0xb; 32];
const ROOT: [u8; 32] = [0xab; 32];

/// Stands in for the Merkle check: true only for leaf B at index 1 of 2, path [A], root ROOT.
fn two_leaf_inclusion(q: &Inclusion<'_>) -> bool {
    *q.leaf_hash == LEAF_B && q.index == 1 && q.size == 2 && q.proof == [LEAF_A] && *q.root == ROOT
}

struct Fixture {
    author: SigningKey,
    witness: SigningKey,
    policy: Policy,
    proof: TlogProof,
}

/// A two-leaf feed, its checkpoint signed by the author and cosigned by the policy's only
/// witness (quorum: that witness), and the bundle for leaf 1.
fn fixture() -> Fixture {
    let author = SigningKey::from_bytes(&[1; 32]);
    let witness = SigningKey::from_bytes(&[5; 32]);
    let origin = origin_for(author.verifying_key().as_bytes());
    let checkpoint = Checkpoint::new(&origin, 2, ROOT).unwrap();
    let mut signed = SignedCheckpoint::sign(checkpoint, &author).unwrap();
    let line = cosign(
        "w.example",
        &witness,
        signed.checkpoint().body(),
        1_700_000_000,
    )
    .unwrap();
    signed.add_signature(line).unwrap();
    let witness_vkey =
        VerifierKey::new("w.example", KeyType::CosignatureV1, witness.verifying_key()).unwrap();
    let policy = format!(
        "log {}\nwitness W {witness_vkey}\nquorum W\n",
        author_vkey(&author.verifying_key())
    );
    let policy = Policy::parse(policy.as_bytes()).unwrap();
    let proof = TlogProof::new(Some(b"leaf b".to_vec()), 1, vec![LEAF_A], signed).unwrap();
    Fixture {
        author,
        witness,
        policy,
        proof,
    }
}

fn logs(policy: &Policy) -> Vec<VerifierKey> {
    policy.logs().iter().map(|l| l.vkey.clone()).collect()
}

#[test]
fn a_bundle_round_trips_and_verifies() {
    let f = fixture();
    let bytes = f.proof.to_bytes();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(
        text.starts_with("c2sp.org/tlog-proof@v1\nextra bGVhZiBi\nindex 1\n"),
        "{text}"
    );
    let parsed = TlogProof::parse(&bytes).unwrap();
    assert_eq!(parsed, f.proof);
    assert_eq!(parsed.to_bytes(), bytes);
    assert_eq!(parsed.extra(), Some(&b"leaf b"[..]));
    let verified = parsed
        .verify(&LEAF_B, &logs(&f.policy), &f.policy, two_leaf_inclusion)
        .unwrap();
    assert_eq!(verified.log, 0);
    assert_eq!(verified.cosigners, BTreeSet::from([0]));
}

#[test]
fn each_verification_step_fails_on_its_own() {
    let f = fixture();
    let leaf = LEAF_B;
    let logs = logs(&f.policy);

    assert_eq!(
        f.proof
            .verify(&LEAF_A, &logs, &f.policy, two_leaf_inclusion),
        Err(ProofVerifyError::Inclusion)
    );
    assert_eq!(
        f.proof.verify(&leaf, &[], &f.policy, two_leaf_inclusion),
        Err(ProofVerifyError::UnknownOrigin(
            f.proof.checkpoint().checkpoint().origin().into()
        ))
    );
    // A key named after the origin that did not sign it.
    let impostor =
        VerifierKey::new(logs[0].name(), KeyType::Ed25519, f.witness.verifying_key()).unwrap();
    assert!(matches!(
        f.proof
            .verify(&leaf, &[impostor], &f.policy, two_leaf_inclusion),
        Err(ProofVerifyError::LogSignature(_))
    ));

    // Without the cosignature the quorum is not met.
    let mut bare =
        SignedCheckpoint::sign(f.proof.checkpoint().checkpoint().clone(), &f.author).unwrap();
    let uncosigned = TlogProof::new(None, 1, f.proof.hashes().to_vec(), bare.clone()).unwrap();
    assert_eq!(
        uncosigned.verify(&leaf, &logs, &f.policy, two_leaf_inclusion),
        Err(ProofVerifyError::Quorum { cosigned: 0 })
    );
    // A cosignature line for the known witness that does not verify rejects the bundle.
    let good_line = &f.proof.checkpoint().note().signatures()[1];
    let mut forged = good_line.signature().to_vec();
    forged[0] ^= 1;
    let forged =
        crate::tlog::note::NoteSignature::new(good_line.name(), good_line.key_id(), forged)
            .unwrap();
    bare.add_signature(forged).unwrap();
    let tampered = TlogProof::new(None, 1, f.proof.hashes().to_vec(), bare).unwrap();
    assert_eq!(
        tampered.verify(&leaf, &logs, &f.policy, two_leaf_inclusion),
        Err(ProofVerifyError::BadCosignature("w.example".into()))
    );
}

#[test]
fn hostile_bundles_are_refused_with_the_exact_reason() {
    let f = fixture();
    let good = String::from_utf8(f.proof.to_bytes()).unwrap();
    let (head, note) = good.split_once("\n\n").unwrap();
    let hash_line = head.lines().last().unwrap().to_owned();
    let with_head = |h: &str| format!("{h}\n\n{note}");
    let cases = [
        (
            good.replacen("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2", 1),
            ProofError::Header,
        ),
        (head.to_owned(), ProofError::Truncated),
        (
            with_head(&head.replace("extra bGVhZiBi", "extra bGVhZiB")),
            ProofError::Extra,
        ),
        (
            with_head(&head.replace("extra bGVhZiBi", "extra ")),
            ProofError::Extra,
        ),
        (
            with_head(&head.replace("index 1", "index 01")),
            ProofError::Index { line: 3 },
        ),
        (
            with_head(&head.replace("index 1", "index -1")),
            ProofError::Index { line: 3 },
        ),
        (
            with_head(&head.replace("index 1", "index  1")),
            ProofError::Index { line: 3 },
        ),
        (
            with_head(&head.replace("index 1", "index 18446744073709551616")),
            ProofError::Index { line: 3 },
        ),
        (
            with_head(&head.replace("index 1\n", "")),
            ProofError::Index { line: 3 },
        ),
        (
            with_head(&head.replace("index 1", "index 2")),
            ProofError::IndexOutOfRange { index: 2, size: 2 },
        ),
        (
            with_head(&format!("{head}\nAAAA")),
            ProofError::Hash { line: 5 },
        ),
        (
            with_head(&format!(
                "{head}{}",
                format!("\n{hash_line}").repeat(MAX_PROOF_HASHES)
            )),
            ProofError::TooManyHashes,
        ),
        (
            format!("{head}\n\nnot a note\n"),
            ProofError::Checkpoint(CheckpointError::Note(
                crate::tlog::note::NoteError::NoSeparator,
            )),
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(TlogProof::parse(text.as_bytes()), Err(expected), "{text:?}");
    }
    let huge = vec![b'a'; MAX_PROOF_BYTES + 1];
    assert_eq!(
        TlogProof::parse(&huge),
        Err(ProofError::TooLarge(MAX_PROOF_BYTES + 1))
    );
}

#[test]
fn a_bundle_without_extra_or_hashes_round_trips() {
    let f = fixture();
    let one_leaf = Checkpoint::new(f.proof.checkpoint().checkpoint().origin(), 1, [3; 32]).unwrap();
    let signed = SignedCheckpoint::sign(one_leaf, &f.author).unwrap();
    let proof = TlogProof::new(None, 0, Vec::new(), signed).unwrap();
    let text = String::from_utf8(proof.to_bytes()).unwrap();
    assert!(
        text.starts_with("c2sp.org/tlog-proof@v1\nindex 0\n\nkappalog/feed/"),
        "{text}"
    );
    assert_eq!(TlogProof::parse(text.as_bytes()).unwrap(), proof);
}
