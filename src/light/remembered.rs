//! The light client's memory (`kappalog get --state DIR`), the pure half: how the checkpoint
//! a node answers with must relate to the newest one the client verified before, for the
//! same feed.
//!
//! One verified bundle proves an entry in the tree the node chose to show. A node (or an
//! author) showing different clients different trees, a split view, is caught only by a
//! client that remembers what it was shown and asks each later answer to be consistent with
//! it, as Go's checksum database client does with its `latest` note. The rule, for the
//! remembered checkpoint of `m` entries and the answer's of `n`, both signed by the author
//! (each was verified under the author's key before it gets here):
//!
//! - `n == m`: the roots must be equal. Two roots of one size signed by one author are a
//!   split view, proved by the two notes alone (the evidence the client keeps).
//! - `n > m`: the node must prove the tree of `m` consistent with the tree of `n`
//!   (`GET /feeds/AUTHOR/consistency?from=m&to=n`); the answer then becomes what is
//!   remembered.
//! - `n < m`: the node shows an older tree (a lagging node, or `--size`): it must prove that
//!   tree consistent with the remembered one (`from=n&to=m`); what is remembered stays.
//!
//! A proof that does not verify fails the answer: the node did not show that the two trees
//! are one history, whoever is to blame.

use crate::tlog::checkpoint::{parse_hash, Checkpoint};
use crate::tlog::merkle::{verify_consistency, Hash, VerifyError};
use crate::tlog::proof::MAX_PROOF_HASHES;

/// What an answer's checkpoint needs, given the remembered one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// Nothing remembered for this feed: the answer is remembered as it is.
    First,
    /// The same tree as remembered.
    Same,
    /// Two different trees of one size, both signed by the author: a split view.
    SplitView,
    /// A consistency proof from the tree of `from` entries to the tree of `to` is needed;
    /// `grows` when the answer's tree is the larger (it is then remembered).
    NeedsProof {
        /// The smaller tree's size.
        from: u64,
        /// The larger tree's size.
        to: u64,
        /// Whether the answer's tree is the larger.
        grows: bool,
    },
}

/// How `answer` relates to `remembered` (module docs).
pub fn relate(remembered: Option<&Checkpoint>, answer: &Checkpoint) -> Relation {
    let Some(remembered) = remembered else {
        return Relation::First;
    };
    let (m, n) = (remembered.size(), answer.size());
    match n.cmp(&m) {
        std::cmp::Ordering::Equal if remembered.root() == answer.root() => Relation::Same,
        std::cmp::Ordering::Equal => Relation::SplitView,
        std::cmp::Ordering::Greater => Relation::NeedsProof {
            from: m,
            to: n,
            grows: true,
        },
        std::cmp::Ordering::Less => Relation::NeedsProof {
            from: n,
            to: m,
            grows: false,
        },
    }
}

/// Checks `proof` for a [`Relation::NeedsProof`] between the two checkpoints.
pub fn check_proof(
    remembered: &Checkpoint,
    answer: &Checkpoint,
    proof: &[Hash],
) -> Result<(), VerifyError> {
    let (old, new) = if answer.size() > remembered.size() {
        (remembered, answer)
    } else {
        (answer, remembered)
    };
    verify_consistency(old.size(), new.size(), old.root(), new.root(), proof)
}

/// Why a node's consistency answer is not a list of hashes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofLinesError {
    /// More lines than any proof has.
    #[error("the consistency proof has more than {MAX_PROOF_HASHES} lines")]
    TooLong,
    /// A line is not canonical standard base64 of 32 bytes, or the text does not end in a
    /// newline.
    #[error("consistency proof line {line} is not base64 of a 32-byte hash")]
    BadLine {
        /// 1-based.
        line: usize,
    },
}

/// The hashes of the consistency route's answer: one base64 hash a line, each ending in a
/// newline (docs/HTTP.md); empty for an empty proof.
pub fn parse_proof_lines(text: &[u8]) -> Result<Vec<Hash>, ProofLinesError> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let body = text
        .strip_suffix(b"\n")
        .ok_or(ProofLinesError::BadLine { line: 1 })?;
    let mut hashes = Vec::new();
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        // Counted before decoding, so a flood of lines costs one comparison each.
        if i == MAX_PROOF_HASHES {
            return Err(ProofLinesError::TooLong);
        }
        let hash = std::str::from_utf8(line)
            .ok()
            .and_then(parse_hash)
            .ok_or(ProofLinesError::BadLine { line: i + 1 })?;
        hashes.push(hash);
    }
    Ok(hashes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::merkle::{leaf_hash, prove_consistency, tree_hash, MemoryTree};

    /// A tree of `leaves` leaves, the `i`th hashing `i + offset`.
    fn tree(leaves: u64, offset: u64) -> MemoryTree {
        let mut tree = MemoryTree::new();
        for i in 0..leaves {
            tree.append(leaf_hash(&(i + offset).to_be_bytes())).unwrap();
        }
        tree
    }

    fn checkpoint(tree: &MemoryTree, size: u64) -> Checkpoint {
        let root = tree_hash(size, tree).unwrap();
        Checkpoint::new("kappalog/feed/test", size, root).unwrap()
    }

    fn lines(proof: &[Hash]) -> Vec<u8> {
        use base64ct::{Base64, Encoding};
        proof
            .iter()
            .flat_map(|h| format!("{}\n", Base64::encode_string(h)).into_bytes())
            .collect()
    }

    #[test]
    fn sizes_and_roots_decide_what_is_needed() {
        let t = tree(20, 0);
        let (c7, c12) = (checkpoint(&t, 7), checkpoint(&t, 12));
        assert_eq!(relate(None, &c7), Relation::First);
        assert_eq!(relate(Some(&c7), &c7), Relation::Same);
        let other = Checkpoint::new("kappalog/feed/test", 7, [9; 32]).unwrap();
        assert_eq!(relate(Some(&c7), &other), Relation::SplitView);
        let grows = Relation::NeedsProof {
            from: 7,
            to: 12,
            grows: true,
        };
        assert_eq!(relate(Some(&c7), &c12), grows);
        let older = Relation::NeedsProof {
            from: 7,
            to: 12,
            grows: false,
        };
        assert_eq!(relate(Some(&c12), &c7), older);
    }

    #[test]
    fn a_true_proof_passes_both_ways_and_a_false_one_fails() {
        let t = tree(20, 0);
        let (c7, c12) = (checkpoint(&t, 7), checkpoint(&t, 12));
        let proof = prove_consistency(7, 12, &t).unwrap();
        let parsed = parse_proof_lines(&lines(&proof)).unwrap();
        assert_eq!(parsed, proof);
        assert_eq!(check_proof(&c7, &c12, &parsed), Ok(()));
        assert_eq!(check_proof(&c12, &c7, &parsed), Ok(()));
        // Another history of 12 entries, sharing nothing with the 7 remembered: its own
        // true proof does not reach the remembered root.
        let other = tree(12, 100);
        let c12_other = checkpoint(&other, 12);
        let proof = prove_consistency(7, 12, &other).unwrap();
        assert!(check_proof(&c7, &c12_other, &proof).is_err());
        let mut bent = prove_consistency(7, 12, &t).unwrap();
        bent[0][0] ^= 1;
        assert!(check_proof(&c7, &c12, &bent).is_err());
    }

    #[test]
    fn proof_lines_are_parsed_strictly() {
        assert_eq!(parse_proof_lines(b""), Ok(vec![]));
        let good = lines(&[[1; 32], [2; 32]]);
        assert_eq!(parse_proof_lines(&good), Ok(vec![[1; 32], [2; 32]]));
        let unterminated = &good[..good.len() - 1];
        assert_eq!(
            parse_proof_lines(unterminated),
            Err(ProofLinesError::BadLine { line: 1 })
        );
        let mut bad = good.clone();
        bad[50] = b'*';
        assert_eq!(
            parse_proof_lines(&bad),
            Err(ProofLinesError::BadLine { line: 2 })
        );
        assert_eq!(
            parse_proof_lines(b"\n"),
            Err(ProofLinesError::BadLine { line: 1 })
        );
        let flood = lines(&vec![[3; 32]; MAX_PROOF_HASHES + 1]);
        assert_eq!(parse_proof_lines(&flood), Err(ProofLinesError::TooLong));
    }
}
