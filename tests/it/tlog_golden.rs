//! Golden vectors of issue 22's transparency-log formats: a feed of three entries signed by
//! `Identity::from_seed([1; 32])`, its checkpoint signed by the author, cosigned by the
//! witness key `SigningKey::from_bytes(&[5; 32])` at a fixed time, and the
//! `c2sp.org/tlog-proof@v1` bundle of its second entry. Ed25519 is deterministic, so every
//! byte is fixed; a change to any format fails here.
//!
//! The tree's root and the inclusion check are computed by a small RFC 6962 implementation
//! local to this file (from RFC 9162 section 2.1), not by the crate. `tests/interop/tlog_note.py`
//! checks the same vectors again, independently, from the C2SP text.

use std::collections::BTreeSet;

use base64ct::{Base64, Encoding};
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

use kappalog::entry::{Entry, UnsignedEntry};
use kappalog::identity::Identity;
use kappalog::tlog::bundle::{make_entry_proof, verify_entry_proof, Cosigners};
use kappalog::tlog::checkpoint::{author_vkey, origin_for, Checkpoint, SignedCheckpoint};
use kappalog::tlog::cosignature::{cosign, cosigner_name};
use kappalog::tlog::policy::Policy;
use kappalog::tlog::proof::{Inclusion, TlogProof};
use kappalog::tlog::vkey::{KeyType, VerifierKey};

use crate::common::python::python_verdict;

/// The cosignature's time: 2023-11-14T22:13:20Z.
const COSIGNED_AT: u64 = 1_700_000_000;

/// The feed's vkey: its name is the origin, `kappalog/feed/<author hex>`; type 0x01.
const AUTHOR_VKEY: &str =
    "kappalog/feed/8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c\
                           +d95f7287+AYqI4910CfGV/VLbLTy6XXLKZwm/HZQSG/N0iAG0D29c";
/// The witness's vkey: a node's cosigner name, `kappalog/node/<node hex>`; type 0x04.
const WITNESS_VKEY: &str =
    "kappalog/node/6e7a1cdd29b0b78fd13af4c5598feff4ef2a97166e3ca6f2e4fbfccd80505bf1\
                            +106cd1cd+BG56HN0psLeP0Tr0xVmP7/TvKpcWbjym8uT7/M2AUFvx";
/// The checkpoint over the three entries: signed by the author, cosigned by the witness.
pub(crate) const CHECKPOINT: &str = "\
kappalog/feed/8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c
3
5nePoMOTUPBUnSSlEf6Sm2o/RmJqPue7qKqgp7Jst1o=

\u{2014} kappalog/feed/8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c \
2V9yh1H2EkyZQKV07tCR+0gn6dx0am5N9x96cuv+pktb4P9HjiugcmrpOHG1gm+Tr8g5Qf5BEDaEvQTYsbPc8IxLzQ4=
\u{2014} kappalog/node/6e7a1cdd29b0b78fd13af4c5598feff4ef2a97166e3ca6f2e4fbfccd80505bf1 \
EGzRzQAAAABlU/EA35lVoMPfU6HoulK/Jkq1riA5RDT3b/qsr3lrYzytuKI1h92FFUDXNzjsrLFHhZWEO3wlA+Vq/TPnbgatz0n/AA==
";
/// The bundle of the second entry, before its checkpoint (which follows, verbatim): the
/// entry's encoding in the extra line, index 1, the audit path (leaf 0, then leaf 2).
pub(crate) const PROOF_HEAD: &str = "\
c2sp.org/tlog-proof@v1
extra AYqI4910CfGV/VLbLTy6XXLKZwm/HZQSG/N0iAG0D29cAAAAAAAAAAIAAAGLz+VoAgHHSZ2eyIxY//r65eaeOSwK/iLZ\
qLWLpWohRe1d5ITGQwAAAAAAAAAUAAAAA3R3byiqsoTOljY//hE3DFtafqLKrIbGayLLYELpLPP6uRVsc0DWtOeWXY7I/dgG5I\
/LWKtxZ2RmYMmjU9GZhkj8RAk=
index 1
km46DGuBMSK2Am24sR7mGhhczfqIcS/4Urpx3UByCJs=
I2niB2FHUXG0pLnr/engK7nsTCA1HCMEW8d4SJBsaak=

";

/// The three entries of the golden feed.
fn feed() -> Vec<Entry> {
    let identity = Identity::from_seed([1; 32]);
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

pub(crate) fn leaf_hash(leaf: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update([0])
        .chain_update(leaf)
        .finalize()
        .into()
}
fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update([1])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// RFC 6962 MTH: split at the largest power of two below the size.
fn root(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves {
        [] => Sha256::digest([]).into(),
        [leaf] => *leaf,
        _ => {
            let k = leaves.len().next_power_of_two() / 2;
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// RFC 9162 section 2.1.3.2: verifying an inclusion proof.
fn verify_inclusion(q: &Inclusion<'_>) -> bool {
    if q.index >= q.size {
        return false;
    }
    let (mut fn_, mut sn) = (q.index, q.size - 1);
    let mut r = *q.leaf_hash;
    for p in q.proof {
        if sn == 0 {
            return false;
        }
        if (fn_ & 1) == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if (fn_ & 1) == 0 {
                while (fn_ & 1) == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == *q.root
}

/// The golden feed's values; tests/it/cli_proof.rs builds its altered bundles from them.
pub(crate) struct Golden {
    pub(crate) entries: Vec<Entry>,
    pub(crate) author: VerifierKey,
    pub(crate) witness: VerifierKey,
    pub(crate) checkpoint: SignedCheckpoint,
    pub(crate) proof: TlogProof,
}

pub(crate) fn golden() -> Golden {
    let entries = feed();
    let leaves: Vec<[u8; 32]> = entries.iter().map(|e| leaf_hash(&e.encode())).collect();
    let identity = Identity::from_seed([1; 32]);
    let author_key = identity.signing_key();
    let origin = origin_for(author_key.verifying_key().as_bytes());
    let body = Checkpoint::new(&origin, 3, root(&leaves)).unwrap();
    let mut checkpoint = SignedCheckpoint::sign(body, author_key).unwrap();

    let witness_key = SigningKey::from_bytes(&[5; 32]);
    let witness_name = cosigner_name(witness_key.verifying_key().as_bytes());
    let body = checkpoint.checkpoint().body().to_owned();
    let line = cosign(&witness_name, &witness_key, &body, COSIGNED_AT).unwrap();
    checkpoint.add_signature(line).unwrap();
    let witness = VerifierKey::new(
        &witness_name,
        KeyType::CosignatureV1,
        witness_key.verifying_key(),
    )
    .unwrap();

    // The second entry: leaf 1, whose audit path is leaf 0, then leaf 2.
    let proof = TlogProof::new(
        Some(entries[1].encode()),
        1,
        vec![leaves[0], leaves[2]],
        checkpoint.clone(),
    )
    .unwrap();
    Golden {
        entries,
        author: author_vkey(&author_key.verifying_key()),
        witness,
        checkpoint,
        proof,
    }
}

#[test]
fn the_golden_feed_checkpoint_cosignature_and_proof_are_pinned() {
    let g = golden();
    assert_eq!(g.author.to_string(), AUTHOR_VKEY);
    assert_eq!(g.witness.to_string(), WITNESS_VKEY);
    assert_eq!(g.checkpoint.to_string(), CHECKPOINT);
    assert_eq!(
        String::from_utf8(g.proof.to_bytes()).unwrap(),
        format!("{PROOF_HEAD}{CHECKPOINT}")
    );
}

#[test]
fn the_pinned_bundle_verifies_against_a_policy_naming_the_witness() {
    let g = golden();
    let proof = TlogProof::parse(format!("{PROOF_HEAD}{CHECKPOINT}").as_bytes()).unwrap();
    let policy = format!(
        "log {}\nwitness node5 {}\nquorum node5\n",
        g.author, g.witness
    );
    let policy = Policy::parse(policy.as_bytes()).unwrap();
    let logs: Vec<VerifierKey> = policy.logs().iter().map(|l| l.vkey.clone()).collect();
    let entry = Entry::decode(proof.extra().unwrap()).unwrap().0;
    assert_eq!(entry, g.entries[1]);
    let leaf = leaf_hash(proof.extra().unwrap());
    let verified = proof
        .verify(&leaf, &logs, &policy, verify_inclusion)
        .unwrap();
    assert_eq!(verified.cosigners, BTreeSet::from([0]));
    // The third entry's leaf is not at index 1.
    let other = leaf_hash(&g.entries[2].encode());
    assert!(proof
        .verify(&other, &logs, &policy, verify_inclusion)
        .is_err());
}

#[test]
fn the_pinned_bundle_is_a_kappalog_entry_proof_and_make_entry_proof_writes_it() {
    let g = golden();
    let pinned = format!("{PROOF_HEAD}{CHECKPOINT}");
    let verified = verify_entry_proof(pinned.as_bytes(), None).unwrap();
    assert_eq!(verified.entry, g.entries[1]);
    assert_eq!(verified.tree_size(), 3);
    assert_eq!(
        verified.cosigners,
        Cosigners::Unchecked(vec![g.witness.name().to_owned()])
    );
    let leaves: Vec<[u8; 32]> = g.entries.iter().map(|e| leaf_hash(&e.encode())).collect();
    let made = make_entry_proof(
        g.entries[1].encode(),
        1,
        vec![leaves[0], leaves[2]],
        g.checkpoint.clone(),
    )
    .unwrap();
    assert_eq!(String::from_utf8(made.to_bytes()).unwrap(), pinned);
}

/// The vectors the Python cross-check reads, as JSON.
fn vectors_json(g: &Golden, checkpoint: &str) -> String {
    serde_json::json!({
        "author_public_hex": hex::encode(g.author.key().as_bytes()),
        "author_name": g.author.name(),
        "author_vkey": g.author.to_string(),
        "witness_public_hex": hex::encode(g.witness.key().as_bytes()),
        "witness_name": g.witness.name(),
        "witness_vkey": g.witness.to_string(),
        "checkpoint": checkpoint,
        "proof": String::from_utf8(g.proof.to_bytes()).unwrap(),
        "entries_hex": g.entries.iter().map(|e| hex::encode(e.encode())).collect::<Vec<_>>(),
        "cosigned_at": COSIGNED_AT,
    })
    .to_string()
}

#[test]
fn an_independent_python_implementation_agrees_and_catches_a_changed_timestamp() {
    let g = golden();
    let dir = tempfile::tempdir().unwrap();
    let Some((agrees, printed)) =
        python_verdict("tlog_note.py", dir.path(), &vectors_json(&g, CHECKPOINT))
    else {
        return;
    };
    assert!(agrees, "the Python cross-check disagrees:\n{printed}");
    assert!(printed.contains("all checks agree"), "{printed}");

    // The cosignature claims a time one second later than the one it signed: Python must
    // refuse it, or its agreement above means nothing.
    let cosigned = &g.checkpoint.note().signatures()[1];
    let mut raw = cosigned.key_id().to_be_bytes().to_vec();
    raw.extend_from_slice(cosigned.signature());
    raw[4 + 7] ^= 1;
    let forged_line = format!(
        "\u{2014} {} {}\n",
        cosigned.name(),
        Base64::encode_string(&raw)
    );
    let mut lines: Vec<&str> = CHECKPOINT.split_inclusive('\n').collect();
    let last = lines.len() - 1;
    lines[last] = &forged_line;
    let tampered = lines.concat();
    assert_ne!(tampered, CHECKPOINT);
    let (agrees, printed) =
        python_verdict("tlog_note.py", dir.path(), &vectors_json(&g, &tampered)).unwrap();
    assert!(
        !agrees,
        "Python accepted a cosignature whose timestamp was changed:\n{printed}"
    );
    assert!(
        printed.contains("DISAGREE: cosignature verifies over its timestamped message"),
        "{printed}"
    );
}
