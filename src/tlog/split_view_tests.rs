//! Unit tests of `split_view.rs`: proofs built from two real trees that part, each rule's
//! error from one valid base, the encoding, and hostile bytes.

use super::*;
use crate::identity::Identity;
use crate::tlog::author_checkpoint::tests::signed;
use crate::tlog::cosignature::{cosign, cosigner_name};
use crate::tlog::merkle::{leaf_hash, prove_consistency, MemoryTree};

/// Two trees of 40 leaves sharing the first `common`.
fn trees(common: u64) -> (MemoryTree, MemoryTree) {
    let (mut x, mut y) = (MemoryTree::new(), MemoryTree::new());
    for i in 0..40u64 {
        x.append(leaf_hash(format!("entry {i}").as_bytes()))
            .unwrap();
        let other = match i < common {
            true => format!("entry {i}"),
            false => format!("forked {i}"),
        };
        y.append(leaf_hash(other.as_bytes())).unwrap();
    }
    (x, y)
}

fn root(tree: &MemoryTree, size: u64) -> Hash {
    merkle::tree_hash(size, tree).unwrap()
}

fn author() -> Identity {
    Identity::from_seed([1; 32])
}

/// A valid proof: `a` from tree x at `m`, `b` from tree y at `n`; y is the prover's tree.
fn proof(m: u64, n: u64) -> CheckpointForkProof {
    let (x, y) = trees(3);
    let id = author();
    let a = signed(&id, m, root(&x, m));
    let b = signed(&id, n, root(&y, n));
    let path = prove_consistency(m, n, &y).unwrap();
    CheckpointForkProof::from_conflict(&a, &b, &root(&y, m), &path).expect("a conflict")
}

#[test]
fn conflicts_of_every_shape_check_and_name_the_author() {
    // Sizes past the common prefix of 3, powers of two among them, and equal sizes.
    for m in 4..=20u64 {
        for n in m..=24u64 {
            let p = proof(m, n);
            assert_eq!(p.check(), Ok(author().author()), "{m}->{n}");
            assert_eq!(p.a.checkpoint().size(), m);
            assert_eq!(p.consistency.is_empty(), m == n);
            assert_eq!(CheckpointForkProof::decode(&p.encode()), Ok(p));
        }
    }
}

#[test]
fn the_proof_is_the_same_whichever_order_and_whatever_cosignatures() {
    let (x, y) = trees(3);
    let id = author();
    let a = signed(&id, 8, root(&x, 8));
    let mut b = signed(&id, 13, root(&y, 13));
    let path = prove_consistency(8, 13, &y).unwrap();
    let plain = CheckpointForkProof::from_conflict(&a, &b, &root(&y, 8), &path).unwrap();
    let witness = Identity::from_seed([7; 32]);
    let name = cosigner_name(witness.author().as_bytes());
    let body = b.checkpoint().body().to_owned();
    b.add_signature(cosign(&name, witness.signing_key(), &body, 5).unwrap())
        .unwrap();
    let swapped = CheckpointForkProof::from_conflict(&b, &a, &root(&y, 8), &path).unwrap();
    assert_eq!(swapped.encode(), plain.encode());
    // With the cosignature kept, the proof is refused as not canonical.
    let cosigned = CheckpointForkProof { b, ..plain };
    assert_eq!(
        cosigned.check(),
        Err(SplitViewError::ExtraSignatures { side: Side::B })
    );
}

#[test]
fn consistent_checkpoints_are_no_proof() {
    let (x, _) = trees(3);
    let id = author();
    for (m, n) in [(1, 5), (4, 9), (5, 5), (8, 13), (0, 7)] {
        let a = signed(&id, m, root(&x, m));
        let b = signed(&id, n, root(&x, n));
        let path = prove_consistency(m, n, &x).unwrap();
        assert_eq!(
            CheckpointForkProof::from_conflict(&a, &b, &root(&x, m), &path),
            None
        );
        if m < n {
            let p = CheckpointForkProof {
                a,
                b,
                consistency: merkle::seeded_consistency_path(m, &root(&x, m), &path),
            };
            assert_eq!(p.check(), Err(SplitViewError::NotAConflict), "{m}->{n}");
        }
    }
    // Before the trees part, the two trees' checkpoints agree.
    let (x, y) = trees(10);
    let a = signed(&id, 6, root(&x, 6));
    let b = signed(&id, 20, root(&y, 20));
    let path = prove_consistency(6, 20, &y).unwrap();
    assert_eq!(
        CheckpointForkProof::from_conflict(&a, &b, &root(&y, 6), &path),
        None
    );
}

#[test]
fn a_checkpoint_of_size_zero_with_another_root_conflicts_with_any() {
    let (x, _) = trees(3);
    let id = author();
    let a = signed(&id, 0, [5; 32]);
    let b = signed(&id, 4, root(&x, 4));
    let p = CheckpointForkProof::from_conflict(&a, &b, &[0; 32], &[]).unwrap();
    assert_eq!(p.check(), Ok(id.author()));
}

#[test]
fn each_rule_has_its_error() {
    let valid = proof(6, 11);
    let id = author();

    // The author's origin, signed by a stranger.
    let body = crate::tlog::checkpoint::Checkpoint::new(valid.a.checkpoint().origin(), 6, [1; 32])
        .unwrap();
    let stranger = Identity::from_seed([3; 32]);
    let p = CheckpointForkProof {
        a: SignedCheckpoint::sign(body, stranger.signing_key()).unwrap(),
        ..valid.clone()
    };
    assert!(matches!(
        p.check(),
        Err(SplitViewError::NotAuthorSigned { side: Side::A, .. })
    ));

    let other = Identity::from_seed([2; 32]);
    let p = CheckpointForkProof {
        a: signed(&other, 6, [1; 32]),
        ..valid.clone()
    };
    assert_eq!(
        p.check(),
        Err(SplitViewError::DifferentFeeds {
            a: other.author(),
            b: id.author()
        })
    );

    let p = CheckpointForkProof {
        a: valid.a.clone(),
        b: valid.a.clone(),
        consistency: vec![],
    };
    assert_eq!(p.check(), Err(SplitViewError::SameCheckpoint));

    let p = CheckpointForkProof {
        a: valid.b.clone(),
        b: valid.a.clone(),
        ..valid.clone()
    };
    assert_eq!(p.check(), Err(SplitViewError::NotCanonicalOrder));

    let mut p = valid.clone();
    p.consistency[0][0] ^= 1;
    assert_eq!(
        p.check(),
        Err(SplitViewError::Consistency(VerifyError::NewRootMismatch))
    );
    let mut p = valid.clone();
    p.consistency.pop();
    assert!(matches!(
        p.check(),
        Err(SplitViewError::Consistency(VerifyError::ProofLength { .. }))
    ));

    // Equal sizes take no path.
    let p = CheckpointForkProof {
        consistency: vec![[0; 32]],
        ..proof(6, 6)
    };
    assert_eq!(
        p.check(),
        Err(SplitViewError::Consistency(VerifyError::ProofLength {
            expected: 0,
            found: 1
        }))
    );
}

#[test]
fn agreeing_side_reads_the_nodes_own_root() {
    let (x, y) = trees(3);
    let p = proof(9, 17);
    assert_eq!(p.agreeing_side(&root(&x, 9)), Agreement::A);
    assert_eq!(p.agreeing_side(&root(&y, 9)), Agreement::B);
    assert_eq!(p.agreeing_side(&[0; 32]), Agreement::Neither);
    let same = proof(12, 12);
    // Equal sizes are ordered by note bytes: x's checkpoint may be either side.
    let (x_side, y_side) = match same.a.checkpoint().root() == &root(&x, 12) {
        true => (Agreement::A, Agreement::B),
        false => (Agreement::B, Agreement::A),
    };
    assert_eq!(same.agreeing_side(&root(&x, 12)), x_side);
    assert_eq!(same.agreeing_side(&root(&y, 12)), y_side);
}

#[test]
fn the_encoding_has_the_documented_layout() {
    let p = proof(5, 9);
    let bytes = p.encode();
    assert_eq!(&bytes[..4], b"KLCF");
    assert_eq!(bytes[4], 1);
    let len_a = usize::from(u16::from_be_bytes([bytes[5], bytes[6]]));
    assert_eq!(&bytes[7..7 + len_a], p.a.to_bytes().as_slice());
    let at_b = 7 + len_a;
    let len_b = usize::from(u16::from_be_bytes([bytes[at_b], bytes[at_b + 1]]));
    let at_path = at_b + 2 + len_b;
    assert_eq!(usize::from(bytes[at_path]), p.consistency.len());
    assert_eq!(bytes.len(), at_path + 1 + 32 * p.consistency.len());
    assert!(bytes.len() <= MAX_SPLIT_VIEW_PROOF_BYTES);
    assert!(len_a < 400 && len_b < 400, "{len_a} {len_b}");
}

#[test]
fn decoding_refuses_each_malformation() {
    let bytes = proof(5, 9).encode();
    let with = |at: usize, value: &[u8]| {
        let mut bad = bytes.clone();
        bad[at..at + value.len()].copy_from_slice(value);
        CheckpointForkProof::decode(&bad)
    };
    assert_eq!(with(0, b"X"), Err(SplitViewDecodeError::BadMagic));
    assert_eq!(with(4, &[2]), Err(SplitViewDecodeError::UnknownVersion(2)));
    assert_eq!(
        with(5, &u16::MAX.to_be_bytes()),
        Err(SplitViewDecodeError::NoteTooLong {
            side: Side::A,
            len: u16::MAX
        })
    );
    assert!(matches!(
        with(7, b"\x01"),
        Err(SplitViewDecodeError::Note { side: Side::A, .. })
    ));
    let at_path = bytes.len() - 1 - 32 * proof(5, 9).consistency.len();
    assert_eq!(
        with(at_path, &[64]),
        Err(SplitViewDecodeError::PathTooLong(64))
    );
    assert!(matches!(
        CheckpointForkProof::decode(&bytes[..bytes.len() - 1]),
        Err(SplitViewDecodeError::Truncated { .. })
    ));
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(
        CheckpointForkProof::decode(&long),
        Err(SplitViewDecodeError::TrailingBytes(1))
    );
    for cut in 0..bytes.len() {
        assert!(
            CheckpointForkProof::decode(&bytes[..cut]).is_err(),
            "cut {cut}"
        );
    }
}

proptest::proptest! {
    /// Random bytes, and a valid proof with bytes flipped, inserted or cut: an answer
    /// (a decode error, a check error, or a check that still passes), never a panic.
    #[test]
    fn hostile_bytes_never_panic(
        random in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2400),
        flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 0..8),
        cut in proptest::prelude::any::<usize>(),
    ) {
        let _ = CheckpointForkProof::decode(&random).map(|p| p.check());
        let mut prefixed = b"KLCF\x01".to_vec();
        prefixed.extend_from_slice(&random);
        let _ = CheckpointForkProof::decode(&prefixed).map(|p| p.check());
        let mut bytes = proof(5, 9).encode();
        for (at, value) in flips {
            let at = at % bytes.len();
            bytes[at] ^= value;
        }
        if let Ok(p) = CheckpointForkProof::decode(&bytes) {
            let _ = p.check();
            let _ = p.agreeing_side(&[0; 32]);
            let _ = p.encode();
        }
        let _ = CheckpointForkProof::decode(&bytes[..cut % (bytes.len() + 1)]);
    }
}
